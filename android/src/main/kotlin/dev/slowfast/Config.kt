package dev.slowfast

import java.io.File
import kotlin.time.Duration
import kotlin.time.Duration.Companion.milliseconds

/**
 * A candidate with the slow component's priors (S2F, eq. 7): `embedding` `e_i`, `rT` `r_t`, `rN` `r_n`,
 * each a [FloatArray]. Equal (and hashed alike) when every field is equal, the vectors compared by content.
 */
typealias FeedItem = dev.slowfast.ffi.FeedItem

/** The server's candidates for this user, best first by the slow model, for one model version. */
typealias Feed = dev.slowfast.ffi.Feed

/** One re-ranked candidate: the fast model's logit `score` (eq. 8) and the feed's `slowScore`. */
typealias ScoredItem = dev.slowfast.ffi.ScoredItem

/** What one sync did: counts of events and batches uploaded, retries, whether it was skipped. */
typealias SyncReport = dev.slowfast.ffi.SyncReport

/** What a recorded event survives once its call returned: `PROCESS` (default) or `POWER_LOSS`. */
typealias Durability = dev.slowfast.ffi.Durability

/**
 * How to open an engine; [SlowFast.config] fills in the defaults, `copy(...)` changes them.
 *
 * @property dataDir the engine's store (created if missing); one user and one engine per directory.
 * @property serverUrl the sync server, `https://…` (the `/v1` prefix is added).
 * @property token the bearer token; replace it on an open engine with [SlowFast.setToken].
 * @property user the store's user; a store or token of another user is refused.
 * @property clickWindow real-time clicks the fast model reads, `H^F_p` (eq. 7).
 * @property exposureWindow real-time exposures the fast model reads, `H^F_n` (eq. 7).
 * @property syncInterval [SlowFast.syncNow] uploads once this long has passed since the last upload …
 * @property syncMaxEvents … or once this many events are pending, whichever comes first.
 * @property embeddingCache item embeddings kept in memory and in the store.
 * @property initialBundle a bundle directory shipped with the app, installed when the store has none
 *   (for a bundle in Android `assets/`, see [SlowFast.installBundle] with an `InputStream`).
 * @property httpTimeout the timeout of each HTTP request.
 * @property durability what a recorded event survives once its call returned.
 */
data class Config(
    val dataDir: File,
    val serverUrl: String,
    val token: String,
    val user: String,
    val clickWindow: Int,
    val exposureWindow: Int,
    val syncInterval: Duration,
    val syncMaxEvents: Int,
    val embeddingCache: Int,
    val initialBundle: File?,
    val httpTimeout: Duration,
    val durability: Durability,
) {
    /** The token is a secret: not in logs. */
    override fun toString() =
        "Config(dataDir=$dataDir, serverUrl=$serverUrl, user=$user, clickWindow=$clickWindow, " +
            "exposureWindow=$exposureWindow, syncInterval=$syncInterval, syncMaxEvents=$syncMaxEvents, " +
            "embeddingCache=$embeddingCache, initialBundle=$initialBundle, httpTimeout=$httpTimeout, durability=$durability)"

    internal fun toFfi() = dev.slowfast.ffi.Config(
        dataDir = dataDir.path,
        serverUrl = serverUrl,
        token = token,
        user = user,
        clickWindow = clickWindow,
        exposureWindow = exposureWindow,
        syncIntervalMs = syncInterval.inWholeMilliseconds,
        syncMaxEvents = syncMaxEvents,
        embeddingCache = embeddingCache,
        initialBundle = initialBundle?.path,
        httpTimeoutMs = httpTimeout.inWholeMilliseconds,
        durability = durability,
    )

    internal companion object {
        fun fromFfi(c: dev.slowfast.ffi.Config) = Config(
            dataDir = File(c.dataDir),
            serverUrl = c.serverUrl,
            token = c.token,
            user = c.user,
            clickWindow = c.clickWindow,
            exposureWindow = c.exposureWindow,
            syncInterval = c.syncIntervalMs.milliseconds,
            syncMaxEvents = c.syncMaxEvents,
            embeddingCache = c.embeddingCache,
            initialBundle = c.initialBundle?.let(::File),
            httpTimeout = c.httpTimeoutMs.milliseconds,
            durability = c.durability,
        )
    }
}
