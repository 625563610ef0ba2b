package dev.slowfast

import java.io.File
import kotlin.time.Duration
import kotlin.time.Duration.Companion.milliseconds
import dev.slowfast.ffi.SlowFastException as FfiException

/**
 * Why a call into the SDK failed: one subclass per cause, with the fields an app branches on.
 * [isRetryable] says whether the same call may succeed later unchanged; [httpStatus] is the
 * server's answer where there was one.
 */
sealed class SlowFastException(message: String) : Exception(message) {
    /** The HTTP status the server answered with, or `null` when no answer was involved. */
    open val httpStatus: Int? get() = null

    /** Whether retrying the same call later may succeed: network failures, 408, 429, 5xx. */
    open val isRetryable: Boolean get() = false

    /** An argument was unusable (empty item id, non-finite float, wrong dimension, negative setting, …). */
    class InvalidArgument(message: String) : SlowFastException(message)

    /** A model bundle was refused: a missing file, a wrong hash or shape, a newer format. [file] is at fault. */
    class Bundle(val file: String, message: String) : SlowFastException(message)

    /** The on-device model failed to load or run. */
    class Model(message: String) : SlowFastException(message)

    /** A file-system error in the engine's data directory. */
    class Io(message: String) : SlowFastException(message)

    /** JSON that could not be read or written. */
    class Json(message: String) : SlowFastException(message)

    /** The on-device store (SQLite) failed a read or write. */
    class Store(message: String) : SlowFastException(message)

    /** The store is damaged beyond repair; nothing was changed. Move the data directory aside and open afresh. */
    class StoreCorrupt(message: String) : SlowFastException(message)

    /** No model bundle is installed yet: recording works, scoring waits for one ([SlowFast.updateModel]). */
    class NoModel(message: String) : SlowFastException(message)

    /**
     * The feed was computed by model [feedVersion], the device runs [deviceVersion]: the first
     * launch after a server retrain meets this. Call [SlowFast.updateModel], then fetch again.
     */
    class VersionMismatch(val feedVersion: String, val deviceVersion: String, message: String) : SlowFastException(message)

    /** The configuration cannot work: a server URL that does not parse, a token for another user. */
    class InvalidConfig(message: String) : SlowFastException(message)

    /** Another engine holds the data directory [dir] (in this process or another): close it first. */
    class InUse(val dir: File, message: String) : SlowFastException(message)

    /** The call was cancelled ([SlowFastCall.cancel], or the engine closed while it ran). */
    class Cancelled(message: String) : SlowFastException(message)

    /** The server could not be reached (timeout, DNS, TLS, reset). Retry later. */
    class Network(message: String) : SlowFastException(message) {
        override val isRetryable get() = true
    }

    /** The server refused the token (401): fetch a fresh one and [SlowFast.setToken]. */
    class Unauthorized(message: String) : SlowFastException(message) {
        override val httpStatus get() = 401
    }

    /** The server refused the request for this token's user (403). */
    class Forbidden(message: String) : SlowFastException(message) {
        override val httpStatus get() = 403
    }

    /** The server's rate limit refused the request (429); wait [retryAfter] (zero when it said nothing). */
    class RateLimited(val retryAfter: Duration, message: String) : SlowFastException(message) {
        override val httpStatus get() = 429
        override val isRetryable get() = true
    }

    /** The server holds an upload's key with other content (409); the batch goes again under a new key. */
    class Conflict(message: String) : SlowFastException(message) {
        override val httpStatus get() = 409
    }

    /** The server answered [status] with error [code]. */
    class Server(val status: Int, val code: String, message: String) : SlowFastException(message) {
        override val httpStatus get() = status
        override val isRetryable get() = status >= 500 || status == 408
    }

    /** The engine was closed; open a new one. */
    class Closed(message: String) : SlowFastException(message)

    /** A bug: the SDK panicked inside this call (caught at the boundary). Please report it. */
    class Internal(message: String) : SlowFastException(message)

    internal companion object {
        fun from(e: FfiException): SlowFastException = when (e) {
            is FfiException.InvalidArgument -> InvalidArgument(e.text)
            is FfiException.Bundle -> Bundle(e.file, e.text)
            is FfiException.Model -> Model(e.text)
            is FfiException.Io -> Io(e.text)
            is FfiException.Json -> Json(e.text)
            is FfiException.Store -> Store(e.text)
            is FfiException.StoreCorrupt -> StoreCorrupt(e.text)
            is FfiException.NoModel -> NoModel(e.text)
            is FfiException.VersionMismatch -> VersionMismatch(e.feedVersion, e.deviceVersion, e.text)
            is FfiException.InvalidConfig -> InvalidConfig(e.text)
            is FfiException.InUse -> InUse(File(e.dir), e.text)
            is FfiException.Cancelled -> Cancelled(e.text)
            is FfiException.Network -> Network(e.text)
            is FfiException.Unauthorized -> Unauthorized(e.text)
            is FfiException.Forbidden -> Forbidden(e.text)
            is FfiException.RateLimited -> RateLimited(e.retryAfterMs.milliseconds, e.text)
            is FfiException.Conflict -> Conflict(e.text)
            is FfiException.Server -> Server(e.status, e.code, e.text)
            is FfiException.Closed -> Closed(e.text)
            is FfiException.Internal -> Internal(e.text)
        }
    }
}
