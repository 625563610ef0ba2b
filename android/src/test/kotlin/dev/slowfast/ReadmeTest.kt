package dev.slowfast

import com.sun.net.httpserver.HttpServer
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Rule
import org.junit.Test
import org.junit.rules.TemporaryFolder
import java.io.File
import java.net.InetSocketAddress

/**
 * The README's "Use it from an app" Kotlin snippet: [appCode] between the `README` markers is
 * the README's block verbatim (scripts/lib/check_snippets.py compares them), run here against
 * a sync server and against none.
 */
class ReadmeTest {
    @get:Rule
    val tmp = TemporaryFolder()

    private suspend fun appCode(filesDir: File, serverUrl: String, token: String, userId: String, shippedBundleDir: File) {
        // README: begin
        val config = SlowFast.config(filesDir.resolve("slowfast"), serverUrl, token, userId)
            .copy(initialBundle = shippedBundleDir)
        SlowFast(config).use { sf ->
            val feed = try {
                sf.fetchFeed(100) // suspends; the request runs on the SDK's own threads
            } catch (e: SlowFastException.Network) {
                sf.lastFeed ?: return // offline: the last feed, kept on the device with its priors
            }
            val ranked = try {
                sf.rerank(feed) // one call into Rust for the whole feed, best first
            } catch (e: SlowFastException.VersionMismatch) {
                sf.updateModel() // the server retrained: install its new bundle, then fetch for it
                sf.rerank(sf.fetchFeed(100))
            }
            ranked.take(10).forEach { sf.recordExposure(it.item) } // moves r̂2 on the device
            sf.recordClick(ranked.first().item)
            try {
                sf.syncNow() // uploads r̂2 and the events when a threshold is reached
            } catch (e: SlowFastException.Network) {
                // kept on the device; a later syncNow uploads them
            }
        }
        // README: end
    }

    /** Runs the snippet on a coroutine of the standard library (no kotlinx needed). */
    private fun runApp(filesDir: File, serverUrl: String) =
        runSuspending { appCode(filesDir, serverUrl, "token", "alice", Fixtures.bundle) }

    @Test
    fun theSnippetFetchesRanksRecordsAndUploadsWithAServer() = theSnippetFetchesRanksRecordsAndUploadsWith(tmp.newFolder())

    private fun theSnippetFetchesRanksRecordsAndUploadsWith(dir: File) {
        val uploads = mutableListOf<String>()
        val server = HttpServer.create(InetSocketAddress("127.0.0.1", 0), 0)
        server.createContext("/v1/feed") { ex ->
            val k = Regex("""k=(\d+)""").find(ex.requestURI.query ?: "")?.groupValues?.get(1)?.toInt() ?: 0
            ex.reply(Fixtures.feedJson(Fixtures.feed(k)))
        }
        server.createContext("/v1/upload") { ex ->
            uploads += ex.requestBody.readBytes().decodeToString()
            ex.reply("""{"accepted_clicks":1,"accepted_exposures":10,"duplicate":false}""")
        }
        server.start()
        try {
            runApp(dir, "http://127.0.0.1:${server.address.port}")
        } finally {
            server.stop(0)
        }
        // The first sync is due at once: the server got the 10 exposures and the click.
        assertEquals(1, uploads.size)
        val body = uploads.single()
        assertEquals(11, Regex(""""item":"item-\d+"""").findAll(body).count())
        assertTrue(body, body.contains(""""model_version":"${Fixtures.modelVersion}""""))
        reopen(dir).use { assertEquals(0L, it.pendingUploads) }
    }

    @Test
    fun offlineTheSnippetRanksTheLastFeedAndKeepsTheEvents() {
        val dir = tmp.newFolder()
        // A fresh install offline: no feed yet, nothing to rank, nothing recorded.
        runApp(dir, "http://127.0.0.1:9")
        reopen(dir).use { assertEquals(0L, it.pendingUploads) }
        theSnippetFetchesRanksRecordsAndUploadsWith(dir)
        // Offline after one online session: the kept feed is ranked and the events are kept.
        runApp(dir, "http://127.0.0.1:9")
        reopen(dir).use { sf ->
            assertEquals(11L, sf.pendingUploads)
            assertTrue(sf.negMemory.any { it != 0f })
        }
    }

    private fun reopen(dir: File) = SlowFast(SlowFast.config(dir.resolve("slowfast"), "http://127.0.0.1:9", "token", "alice"))

    private fun com.sun.net.httpserver.HttpExchange.reply(json: String) {
        val body = json.toByteArray()
        responseHeaders.add("Content-Type", "application/json")
        sendResponseHeaders(200, body.size.toLong())
        responseBody.use { it.write(body) }
    }
}
