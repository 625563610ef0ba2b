package dev.slowfast.sample

import dev.slowfast.Feed
import dev.slowfast.FeedItem
import dev.slowfast.ScoredItem
import dev.slowfast.SlowFast
import dev.slowfast.SlowFastException
import java.io.File
import java.nio.file.Files

/**
 * What a feed screen of an app does with the SDK: one engine for the app's lifetime, the
 * server's feed re-ranked on device, every shown item an exposure, every tap a click, and a
 * sync that tolerates being offline.
 */
class FeedScreen(private val sdk: SlowFast) {
    private var lastFeed: Feed? = null

    /** The items to show, best first: the fresh feed if the server answers, else the last one. */
    fun load(size: Int): List<ScoredItem> {
        val feed = try {
            sdk.fetchFeed(size).also { lastFeed = it }
        } catch (e: SlowFastException.Network) {
            lastFeed ?: return emptyList()
        }
        return try {
            sdk.rerank(feed)
        } catch (e: SlowFastException.VersionMismatch) {
            sdk.updateModel()
            sdk.rerank(feed)
        }
    }

    /** Rendering [shown] records one exposure each; the negative memory `r̂2` moves on device. */
    fun onShown(shown: List<ScoredItem>) = shown.forEach { sdk.recordExposure(it.item) }

    fun onTap(item: ScoredItem) = sdk.recordClick(item.item)

    /** Called from a periodic background job; offline is not an error for the app. */
    fun backgroundSync(): String = try {
        val r = sdk.syncNow()
        if (r.skipped) "sync skipped, ${r.pending} pending" else "uploaded ${r.uploadedClicks} clicks"
    } catch (e: SlowFastException.Network) {
        "offline, ${sdk.pendingUploads} events kept for later"
    }

    /** A feed handed over by the app itself (here: a cached one from an earlier session). */
    fun restore(feed: Feed) {
        lastFeed = feed
    }
}

/** `Main <bundle dir> [server url]`: one screen's lifecycle against a server, or offline. */
fun main(args: Array<String>) {
    val bundle = File(args.getOrElse(0) { "core/tests/data/bundle" })
    val server = args.getOrElse(1) { "http://127.0.0.1:9" }
    val filesDir = Files.createTempDirectory("sample-app").toFile()
    println("slowfast ${SlowFast.version}, store in $filesDir")
    val config = SlowFast.config(filesDir.resolve("slowfast"), server, "demo-token", "demo-user")
        .copy(initialBundle = bundle.path)
    SlowFast(config).use { sdk ->
        val screen = FeedScreen(sdk)
        screen.restore(cachedFeed(sdk.modelVersion ?: error("the shipped bundle did not install"), sdk.negMemory.size))
        val ranked = screen.load(20)
        screen.onShown(ranked.take(5))
        screen.onTap(ranked.first())
        println("top 3: " + ranked.take(3).joinToString { "%s (%.4f)".format(it.item, it.score) })
        println("r̂2 norm after 5 exposures: %.4f".format(Math.sqrt(sdk.negMemory.sumOf { it.toDouble() * it })))
        println(screen.backgroundSync())
    }
    filesDir.deleteRecursively()
}

/** A stand-in for the feed an app caches on disk between sessions. */
private fun cachedFeed(version: String, dim: Int) = Feed(
    modelVersion = version,
    items = (0 until 20).map { i ->
        fun v(k: Int) = List(dim) { j -> (0.1 * Math.sin(0.7 * i + 0.3 * j + k)).toFloat() }
        FeedItem(item = "movie-$i", embedding = v(0), rT = v(1), rN = v(2), slowScore = 1f - i / 20f)
    },
)
