package dev.slowfast

import dev.slowfast.ffi.Cancellation
import java.util.concurrent.CompletableFuture
import java.util.concurrent.CompletionException
import java.util.concurrent.ExecutionException
import kotlin.coroutines.suspendCoroutine

/**
 * A network call running on the engine's threads (`SlowFast.fetchFeedAsync`, `syncNowAsync`,
 * `updateModelAsync`). Its result is awaited ([await], a `suspend fun`), waited for ([get],
 * blocking) or delivered to a callback ([onComplete]); [cancel] stops it at once, in flight or
 * not yet started, and it then fails with [SlowFastException.Cancelled].
 *
 * With kotlinx.coroutines, tie it to the coroutine's cancellation in `suspendCancellableCoroutine`:
 * `cont.invokeOnCancellation { call.cancel() }` and `call.onComplete { cont.resumeWith(it) }`.
 */
class SlowFastCall<T> internal constructor(internal val cancellation: Cancellation) {
    private val result = CompletableFuture<T>()

    /** Stops the call; it completes with [SlowFastException.Cancelled]. Idempotent. */
    fun cancel() = cancellation.cancel()

    /** Whether the call has finished, with a result or an error. */
    val isDone: Boolean get() = result.isDone

    /** Suspends until the call finishes; its result or its [SlowFastException]. */
    suspend fun await(): T = suspendCoroutine { cont ->
        onComplete { cont.resumeWith(it) }
    }

    /** Blocks the calling thread until the call finishes; its result or its [SlowFastException]. */
    fun get(): T = try {
        result.get()
    } catch (e: ExecutionException) {
        throw e.cause ?: e
    }

    /** Calls [callback] with the outcome, on the thread that finished the call (or at once when done). */
    fun onComplete(callback: (Result<T>) -> Unit) {
        result.whenComplete { value, error ->
            val cause = (error as? CompletionException)?.cause ?: error
            callback(if (cause == null) Result.success(value) else Result.failure(cause))
        }
    }

    internal inline fun complete(work: () -> T) {
        try {
            result.complete(work())
        } catch (e: Throwable) {
            result.completeExceptionally(e)
        }
    }
}
