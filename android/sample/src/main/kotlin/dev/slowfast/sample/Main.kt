package dev.slowfast.sample

import dev.slowfast.ScoredItem
import dev.slowfast.SlowFast
import dev.slowfast.SlowFastException
import java.io.File
import java.nio.file.Files
import java.util.concurrent.CountDownLatch
import kotlin.coroutines.Continuation
import kotlin.coroutines.EmptyCoroutineContext
import kotlin.coroutines.startCoroutine

/**
 * What a feed screen of an app does with the SDK: one engine for the app's lifetime, the
 * server's feed re-ranked on device (or the last one kept, offline), every shown item an
 * exposure, every tap a click, and a sync that tolerates being offline. The network calls
 * suspend; none blocks the thread the screen runs on.
 */
class FeedScreen(private val sdk: SlowFast) {
    /** The items to show, best first: the fresh feed if the server answers, else the last one kept. */
    suspend fun load(size: Int): List<ScoredItem> {
        val feed = try {
            sdk.fetchFeed(size)
        } catch (e: SlowFastException.Network) {
            sdk.lastFeed ?: return emptyList()
        }
        return try {
            sdk.rerank(feed)
        } catch (e: SlowFastException.VersionMismatch) {
            sdk.updateModel()
            sdk.rerank(sdk.fetchFeed(size))
        }
    }

    /** Rendering [shown] records one exposure each; the negative memory `r̂2` moves on device. */
    fun onShown(shown: List<ScoredItem>) = shown.forEach { sdk.recordExposure(it.item) }

    fun onTap(item: ScoredItem) = sdk.recordClick(item.item)

    /** Called from a periodic background job; offline is not an error for the app. */
    suspend fun backgroundSync(): String = try {
        val r = sdk.syncNow()
        if (r.skipped) "sync skipped, ${r.pending} pending" else "uploaded ${r.uploadedClicks} clicks"
    } catch (e: SlowFastException.Network) {
        "offline, ${sdk.pendingUploads} events kept for later"
    }
}

/** `Main <bundle dir> [server url]`: one screen's lifecycle against a server, or offline. */
fun main(args: Array<String>) {
    val bundle = File(args.getOrElse(0) { "core/tests/data/bundle" })
    val server = args.getOrElse(1) { "http://127.0.0.1:9" }
    val filesDir = Files.createTempDirectory("sample-app").toFile()
    println("slowfast ${SlowFast.version}, store in $filesDir")
    val config = SlowFast.config(filesDir.resolve("slowfast"), server, "demo-token", "demo-user")
        .copy(initialBundle = bundle)
    SlowFast(config).use { sdk ->
        val screen = FeedScreen(sdk)
        onCoroutine {
            val ranked = screen.load(20)
            if (ranked.isEmpty()) {
                println("offline on first launch: no feed kept yet, nothing to show")
            } else {
                screen.onShown(ranked.take(5))
                screen.onTap(ranked.first())
                println("top 3: " + ranked.take(3).joinToString { "%s (%.4f)".format(it.item, it.score) })
                println("r̂2 norm after 5 exposures: %.4f".format(Math.sqrt(sdk.negMemory.sumOf { it.toDouble() * it })))
            }
            println(screen.backgroundSync())
        }
    }
    filesDir.deleteRecursively()
}

/** Runs [block] on a coroutine of the standard library and waits for it (an app uses its own scope). */
private fun onCoroutine(block: suspend () -> Unit) {
    val done = CountDownLatch(1)
    var outcome: Result<Unit>? = null
    block.startCoroutine(Continuation(EmptyCoroutineContext) { outcome = it; done.countDown() })
    done.await()
    outcome!!.getOrThrow()
}
