package dev.slowfast

import com.sun.net.httpserver.HttpExchange
import com.sun.net.httpserver.HttpServer
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Rule
import org.junit.Test
import org.junit.rules.TemporaryFolder
import java.io.File
import java.net.InetSocketAddress
import java.util.concurrent.CountDownLatch
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import kotlin.time.Duration.Companion.minutes

/** The non-blocking entry points, the kept feed, bundles from a stream and the model listener. */
class AsyncTest {
    @get:Rule
    val tmp = TemporaryFolder()

    private fun open(dir: File, server: String, bundle: File? = Fixtures.bundle) = SlowFast(
        // An HTTP timeout longer than any test: nothing below may pass by timing out.
        SlowFast.config(dir, server, "token", "alice").copy(initialBundle = bundle, httpTimeout = 10.minutes),
    )

    /** A server that answers feeds and holds every upload unanswered until [release]. */
    private class HoldingServer : AutoCloseable {
        val uploadArrived = CountDownLatch(1)
        val release = CountDownLatch(1)
        private val server = HttpServer.create(InetSocketAddress("127.0.0.1", 0), 0).apply {
            executor = Executors.newCachedThreadPool()
            createContext("/v1/feed") { ex ->
                val k = Regex("""k=(\d+)""").find(ex.requestURI.query ?: "")?.groupValues?.get(1)?.toInt() ?: 0
                ex.reply(200, Fixtures.feedJson(Fixtures.feed(k)))
            }
            createContext("/v1/upload") { ex ->
                ex.requestBody.readBytes()
                uploadArrived.countDown()
                release.await()
                ex.reply(503, """{"error":"unavailable","message":"released"}""")
            }
            start()
        }
        val url = "http://127.0.0.1:${server.address.port}"

        override fun close() {
            release.countDown()
            server.stop(0)
        }

        private fun HttpExchange.reply(status: Int, json: String) {
            val body = json.toByteArray()
            responseHeaders.add("Content-Type", "application/json")
            sendResponseHeaders(status, body.size.toLong())
            responseBody.use { it.write(body) }
        }
    }

    @Test
    fun syncNowAsyncReturnsAtOnceAFeedIsNotDelayedByItAndCancelStopsIt(): Unit = HoldingServer().use { server ->
        open(tmp.newFolder(), server.url).use { sf ->
            sf.recordClick("item-1", 1)
            val sync = sf.syncNowAsync()
            // The call returned while its upload sits at the server, unanswered.
            assertTrue(server.uploadArrived.await(5, TimeUnit.MINUTES))
            assertFalse(sync.isDone)
            // A feed is fetched meanwhile, not queued behind the upload.
            assertEquals(5, sf.fetchFeedBlocking(5).items.size)
            assertFalse("the held upload cannot have been answered", sync.isDone)
            sync.cancel()
            assertThrows(SlowFastException.Cancelled::class.java) { sync.get() }
            // Nothing was acknowledged, so nothing is lost.
            assertEquals(1L, sf.pendingUploads)
        }
    }

    @Test
    fun suspendingCallsRunOnTheEnginesThreads(): Unit = HoldingServer().use { server ->
        open(tmp.newFolder(), server.url).use { sf ->
            val caller = Thread.currentThread()
            val (feed, thread) = runSuspending { sf.fetchFeed(7) to Thread.currentThread() }
            assertEquals(7, feed.items.size)
            assertTrue(thread.name, thread.name.startsWith("slowfast-") && thread != caller)
            var outcome: Result<Feed>? = null
            val done = CountDownLatch(1)
            sf.fetchFeedAsync(3).onComplete { outcome = it; done.countDown() }
            assertTrue(done.await(5, TimeUnit.MINUTES))
            assertEquals(3, outcome!!.getOrThrow().items.size)
        }
    }

    @Test
    fun theLastFeedIsKeptAcrossARestartForOfflineUse() {
        val dir = tmp.newFolder()
        val fetched = HoldingServer().use { server ->
            open(dir, server.url).use { sf ->
                assertEquals(null, sf.lastFeed)
                sf.fetchFeedBlocking(6)
            }
        }
        open(dir, "http://127.0.0.1:9", bundle = null).use { sf ->
            assertThrows(SlowFastException.Network::class.java) { sf.fetchFeedBlocking(6) }
            val kept = sf.lastFeed ?: error("the last feed was not kept")
            assertEquals(fetched, kept)
            assertEquals(6, sf.rerank(kept).size)
        }
    }

    @Test
    fun aBundleInstallsFromAZipStreamAndTellsTheListener() {
        open(tmp.newFolder(), "http://127.0.0.1:9", bundle = null).use { sf ->
            val changes = mutableListOf<String>()
            sf.addModelUpdateListener { changes += it }
            assertTrue(sf.installBundle(Fixtures.bundleZip().inputStream()))
            assertEquals(Fixtures.modelVersion, sf.modelVersion)
            assertEquals(listOf(Fixtures.modelVersion), changes)
            // The same bundle again changes nothing and says nothing.
            assertFalse(sf.installBundle(Fixtures.bundleZip().inputStream()))
            assertEquals(1, changes.size)
            assertEquals(10, sf.rerank(Fixtures.feed(10)).size)
        }
    }
}
