package dev.slowfast

import java.io.File
import java.util.concurrent.atomic.AtomicBoolean

/**
 * The on-device half of MC²-SF: records clicks and exposures, keeps the negative memory `r̂2`
 * (eq. 5), re-ranks the server's feed with the fast model (eq. 7–8) and syncs with the server.
 *
 * Thread-safe. Every call is durable when it returns. Close it (or open it in `use {}`) to
 * release the store; any call after [close] throws [SlowFastException.Closed].
 *
 * ```
 * SlowFast(SlowFast.config(filesDir.resolve("slowfast"), "https://sync.example.com", token, userId)).use { sf ->
 *     val ranked = sf.rerank(sf.fetchFeed(100))
 *     sf.recordExposure(ranked.first().item)
 * }
 * ```
 *
 * @throws SlowFastException when the store cannot be opened or the shipped bundle is refused.
 */
class SlowFast(config: Config) : AutoCloseable {
    private val engine = SlowFastEngine(config)
    private val closed = AtomicBoolean(false)

    /** Records a click on [item] at [tsMs] (Unix milliseconds, default now). */
    fun recordClick(item: String, tsMs: Long = System.currentTimeMillis()) = call { it.recordClick(item, tsMs) }

    /** Records that [item] was shown at [tsMs]; advances `r̂2` by one `GRU_n` step (eq. 5). */
    fun recordExposure(item: String, tsMs: Long = System.currentTimeMillis()) = call { it.recordExposure(item, tsMs) }

    /** Scores the whole [feed] in one call into the SDK and returns it best first. */
    fun rerank(feed: Feed): List<ScoredItem> = call { it.rerank(feed) }

    /** Fetches the server's top [k] (1..500) candidates with their priors. */
    fun fetchFeed(k: Int = 100): Feed = call { it.fetchFeed(k.coerceAtLeast(0).toUInt()) }

    /** Uploads `r̂2` and pending events when a time or count threshold says so. */
    fun syncNow(): SyncReport = call { it.syncNow() }

    /** Downloads, verifies and installs a newer model bundle; `true` when the model changed. */
    fun updateModel(): Boolean = call { it.updateModel() }

    /** Verifies the bundle in [dir] and installs it atomically. */
    fun installBundle(dir: File) = call { it.installBundle(dir.path) }

    /** The installed bundle's model version, or `null` before the first bundle. */
    val modelVersion: String? get() = call { it.modelVersion() }

    /** The negative memory `r̂2` (eq. 5), `d` floats; empty without a model. */
    val negMemory: FloatArray get() = call { it.negMemory().toFloatArray() }

    /** Events recorded but not yet acknowledged by the server. */
    val pendingUploads: Long get() = call { it.pendingUploads().toLong() }

    /** Releases the engine and its store. Idempotent. */
    override fun close() {
        if (closed.compareAndSet(false, true)) engine.close()
    }

    private inline fun <T> call(block: (SlowFastEngine) -> T): T {
        if (closed.get()) throw closedException()
        try {
            return block(engine)
        } catch (e: IllegalStateException) {
            // The generated layer refuses a call that raced with close().
            if (closed.get()) throw closedException()
            throw e
        }
    }

    private fun closedException() = SlowFastException.Closed("this SlowFast engine is closed; open a new one")

    companion object {
        /** The SDK version, e.g. `"0.1.0"`. */
        val version: String get() = dev.slowfast.version()

        /** The runtime's default [Config] for this data directory, server and user. */
        fun config(dataDir: File, serverUrl: String, token: String, user: String): Config =
            defaultConfig(dataDir.path, serverUrl, token, user)
    }
}
