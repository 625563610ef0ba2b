package dev.slowfast

import dev.slowfast.ffi.Cancellation
import dev.slowfast.ffi.SlowFastEngine
import java.io.File
import java.io.InputStream
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors
import java.util.concurrent.ThreadFactory
import java.util.concurrent.atomic.AtomicBoolean
import java.util.concurrent.atomic.AtomicInteger
import java.util.zip.ZipInputStream
import dev.slowfast.ffi.SlowFastException as FfiException

/**
 * The on-device half of MC²-SF: records clicks and exposures, keeps the negative memory `r̂2`
 * (eq. 5), re-ranks the server's feed with the fast model (eq. 7–8) and syncs with the server.
 *
 * Thread-safe; one engine per data directory (a second one throws [SlowFastException.InUse]
 * until the first is closed). Recording and re-ranking are local and quick (a store write, one
 * model call). The network calls come three ways:
 *
 * - `suspend fun` ([fetchFeed], [syncNow], [updateModel]): run on the engine's own threads;
 *   the calling coroutine suspends, its thread is free;
 * - `…Async` ([fetchFeedAsync], [syncNowAsync], [updateModelAsync]): return a [SlowFastCall]
 *   at once, which can be cancelled, awaited or given a callback;
 * - `…Blocking`: block the calling thread until the server answers or the HTTP timeout
 *   passes. Never on Android's main thread.
 *
 * Network calls do not wait for each other: a feed is fetched while a sync waits on a slow
 * server. Every call is durable when it returns. Close the engine (or open it in `use {}`) to
 * release the store; any call after [close] throws [SlowFastException.Closed].
 *
 * @throws SlowFastException when the store cannot be opened or the shipped bundle is refused.
 */
class SlowFast(config: Config) : AutoCloseable {
    private val engine: SlowFastEngine = ffi { SlowFastEngine(config.toFfi()) }
    private val closed = AtomicBoolean(false)
    private val executor: ExecutorService = Executors.newCachedThreadPool(SdkThreads)
    private val modelListeners = CopyOnWriteArrayList<(String) -> Unit>()
    private val inFlight = ConcurrentHashMap.newKeySet<SlowFastCall<*>>()

    /** Records a click on [item] at [tsMs] (Unix milliseconds, default now). */
    fun recordClick(item: String, tsMs: Long = System.currentTimeMillis()) = call { it.recordClick(item, tsMs) }

    /** Records that [item] was shown at [tsMs]; advances `r̂2` by one `GRU_n` step (eq. 5). */
    fun recordExposure(item: String, tsMs: Long = System.currentTimeMillis()) = call { it.recordExposure(item, tsMs) }

    /** Scores the whole [feed] in one call into the SDK and returns it best first. */
    fun rerank(feed: Feed): List<ScoredItem> = call { it.rerank(feed) }

    /** The server's top [k] (1..500) candidates with their priors, kept as [lastFeed]. */
    suspend fun fetchFeed(k: Int = 100): Feed = fetchFeedAsync(k).await()

    /** [fetchFeed] as a call that can be cancelled. */
    fun fetchFeedAsync(k: Int = 100): SlowFastCall<Feed> = submit { c -> fetchFeedBlocking(k, c) }

    /** [fetchFeed] on the calling thread: blocks until the server answers or times out. */
    fun fetchFeedBlocking(k: Int = 100): Feed = fetchFeedBlocking(k, Cancellation())

    private fun fetchFeedBlocking(k: Int, cancel: Cancellation): Feed = call { it.fetchFeed(k, cancel) }

    /**
     * The last feed [fetchFeed] returned for the installed model, kept durably with its priors
     * (it survives a restart); `null` before the first one and after a model change. Re-rank it
     * when the network is down.
     */
    val lastFeed: Feed? get() = call { it.lastFeed() }

    /** Uploads `r̂2` and pending events when a time or count threshold says so. */
    suspend fun syncNow(): SyncReport = syncNowAsync().await()

    /** [syncNow] as a call that can be cancelled; a batch cut off is resent by the next sync. */
    fun syncNowAsync(): SlowFastCall<SyncReport> = submit { c -> syncNowBlocking(c) }

    /** [syncNow] on the calling thread: blocks while the server is slow (retries included). */
    fun syncNowBlocking(): SyncReport = syncNowBlocking(Cancellation())

    private fun syncNowBlocking(cancel: Cancellation): SyncReport = call { it.syncNow(cancel) }

    /** Downloads, verifies and installs a newer model bundle; `true` when the model changed. */
    suspend fun updateModel(): Boolean = updateModelAsync().await()

    /** [updateModel] as a call that can be cancelled. */
    fun updateModelAsync(): SlowFastCall<Boolean> = submit { c -> updateModelBlocking(c) }

    /** [updateModel] on the calling thread: blocks while the bundle downloads. */
    fun updateModelBlocking(): Boolean = updateModelBlocking(Cancellation())

    private fun updateModelBlocking(cancel: Cancellation): Boolean =
        call { it.updateModel(cancel) }.also { if (it) modelChanged() }

    /**
     * Verifies the bundle in directory [dir] and installs it atomically; `true` when the model
     * changed (`false` for the version already installed).
     */
    fun installBundle(dir: File): Boolean = call { it.installBundle(dir.path) }.also { if (it) modelChanged() }

    /**
     * Installs the bundle in the zip archive [zip] (its files at the top level, as
     * `slowfast export` writes them), e.g. one shipped in Android's `assets/`:
     * `sf.installBundle(context.assets.open("slowfast-bundle.zip"))`. Closes the stream.
     */
    fun installBundle(zip: InputStream): Boolean {
        val staging = File.createTempFile("slowfast-bundle", "")
        try {
            check(staging.delete() && staging.mkdir()) { "cannot create ${staging.path}" }
            ZipInputStream(zip.buffered()).use { entries ->
                generateSequence { entries.nextEntry }.filterNot { it.isDirectory }.forEach { entry ->
                    val name = entry.name.substringAfterLast('/')
                    if (name.isEmpty() || name == "." || name == "..") {
                        throw SlowFastException.InvalidArgument("bundle archive entry ${entry.name} has no file name")
                    }
                    staging.resolve(name).outputStream().use { entries.copyTo(it) }
                }
            }
            return installBundle(staging)
        } finally {
            staging.deleteRecursively()
        }
    }

    /**
     * Calls [listener] with the new model version after every model change ([updateModel],
     * [installBundle]), on the thread that made it. Feeds fetched before it are for the old
     * model: fetch again.
     */
    fun addModelUpdateListener(listener: (modelVersion: String) -> Unit) {
        modelListeners += listener
    }

    fun removeModelUpdateListener(listener: (modelVersion: String) -> Unit) {
        modelListeners -= listener
    }

    /**
     * Replaces the bearer token (after the app refreshed it, e.g. on
     * [SlowFastException.Unauthorized]); calls started afterwards send it. A token minted for
     * another user than this engine's throws [SlowFastException.InvalidConfig].
     */
    fun setToken(token: String) = call { it.setToken(token) }

    /** The installed bundle's model version, or `null` before the first bundle. */
    val modelVersion: String? get() = call { it.modelVersion() }

    /** The negative memory `r̂2` (eq. 5), `d` floats; empty without a model. */
    val negMemory: FloatArray get() = call { it.negMemory() }

    /** Events recorded but not yet acknowledged by the server. */
    val pendingUploads: Long get() = call { it.pendingUploads() }

    /**
     * Releases the engine, its store and its data directory; network calls in flight are
     * cancelled. Idempotent.
     */
    override fun close() {
        if (closed.compareAndSet(false, true)) {
            inFlight.forEach { it.cancel() }
            executor.shutdown()
            engine.close()
        }
    }

    private fun modelChanged() {
        val version = modelVersion ?: return
        modelListeners.forEach { it(version) }
    }

    private fun <T> submit(work: (Cancellation) -> T): SlowFastCall<T> {
        if (closed.get()) throw closedException()
        val call = SlowFastCall<T>(Cancellation())
        inFlight += call
        try {
            executor.execute {
                try {
                    call.complete { work(call.cancellation) }
                } finally {
                    inFlight -= call
                }
            }
        } catch (e: java.util.concurrent.RejectedExecutionException) {
            inFlight -= call
            throw closedException()
        }
        return call
    }

    private inline fun <T> call(block: (SlowFastEngine) -> T): T {
        if (closed.get()) throw closedException()
        try {
            return ffi { block(engine) }
        } catch (e: IllegalStateException) {
            // The generated layer refuses a call that raced with close().
            if (closed.get()) throw closedException()
            throw e
        }
    }

    private fun closedException() = SlowFastException.Closed("this SlowFast engine is closed; open a new one")

    /** Daemon threads named `slowfast-N`: the engine's network calls never keep the app alive. */
    private object SdkThreads : ThreadFactory {
        private val count = AtomicInteger()
        override fun newThread(r: Runnable) = Thread(r, "slowfast-${count.incrementAndGet()}").apply { isDaemon = true }
    }

    companion object {
        /** The SDK version, e.g. `"0.1.0"`. */
        val version: String get() = dev.slowfast.ffi.version()

        /** The runtime's default [Config] for this data directory, server and user. */
        fun config(dataDir: File, serverUrl: String, token: String, user: String): Config =
            Config.fromFfi(dev.slowfast.ffi.defaultConfig(dataDir.path, serverUrl, token, user))
    }
}

/** Runs a call into the generated bindings, turning their exception into [SlowFastException]. */
internal inline fun <T> ffi(block: () -> T): T = try {
    block()
} catch (e: FfiException) {
    throw SlowFastException.from(e)
}
