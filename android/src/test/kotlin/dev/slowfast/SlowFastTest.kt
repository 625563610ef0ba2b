package dev.slowfast

import com.sun.net.httpserver.HttpServer
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNotEquals
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Rule
import org.junit.Test
import org.junit.rules.TemporaryFolder
import java.io.File
import java.net.InetSocketAddress
import kotlin.time.Duration.Companion.seconds

class SlowFastTest {
    @get:Rule
    val tmp = TemporaryFolder()

    /** Port 9 on loopback: nothing listens, so every request fails fast with a network error. */
    private fun open(
        dir: File = tmp.newFolder(),
        server: String = "http://127.0.0.1:9",
        bundle: File? = Fixtures.bundle,
        configure: (Config) -> Config = { it },
    ) = SlowFast(configure(SlowFast.config(dir, server, "token", "alice").copy(initialBundle = bundle)))

    @Test
    fun versionIsTheCrateVersion() {
        assertTrue(SlowFast.version, Regex("""\d+\.\d+\.\d+.*""").matches(SlowFast.version))
    }

    @Test
    fun feedItemsCarryFloatArraysAndAreEqualByContent() {
        val (a, b) = Fixtures.feed(3) to Fixtures.feed(3)
        assertTrue(a.items[1].rT !== b.items[1].rT)
        assertEquals(a, b)
        assertEquals(a.items[1].hashCode(), b.items[1].hashCode())
        val changed = b.items[1].rT.copyOf().also { it[0] += 1f }
        assertNotEquals(a.items[1], b.items[1].copy(rT = changed))
        assertEquals(setOf(a.items[0], a.items[1]), setOf(b.items[1], b.items[0]))
    }

    @Test
    fun opensWithTheShippedBundleAndReranksTheWholeFeedBestFirst(): Unit = open().use { sf ->
        assertEquals(Fixtures.modelVersion, sf.modelVersion)
        assertArrayEquals(FloatArray(Fixtures.dim), sf.negMemory, 0f)
        val feed = Fixtures.feed(20)
        val ranked = sf.rerank(feed)
        assertEquals(feed.items.map { it.item }.toSet(), ranked.map { it.item }.toSet())
        assertEquals(ranked.sortedByDescending { it.score }, ranked)
        val slow = feed.items.associate { it.item to it.slowScore }
        ranked.forEach { assertEquals(slow.getValue(it.item), it.slowScore, 0f) }
    }

    @Test
    fun exposuresMoveTheNegativeMemoryAndClicksChangeTheScores(): Unit = open().use { sf ->
        val feed = Fixtures.feed(10)
        val before = sf.rerank(feed).associate { it.item to it.score }
        sf.recordExposure(feed.items[0].item, 1_000)
        assertNotEquals(0f, sf.negMemory.maxOf { kotlin.math.abs(it) })
        sf.recordClick(feed.items[1].item, 2_000)
        val after = sf.rerank(feed).associate { it.item to it.score }
        assertTrue("scores did not change", after.any { (item, s) -> kotlin.math.abs(s - before.getValue(item)) > 1e-6 })
        assertEquals(2L, sf.pendingUploads)
    }

    @Test
    fun eventsAndNegativeMemorySurviveClosingAndReopening() {
        val dir = tmp.newFolder()
        val feed = Fixtures.feed(5)
        val memory = open(dir).use { sf ->
            sf.rerank(feed)
            feed.items.take(3).forEachIndexed { i, it -> sf.recordExposure(it.item, 1_000L + i) }
            sf.recordClick(feed.items[0].item, 2_000)
            sf.negMemory
        }
        open(dir, bundle = null).use { sf ->
            assertEquals(Fixtures.modelVersion, sf.modelVersion)
            assertEquals(4L, sf.pendingUploads)
            assertArrayEquals(memory, sf.negMemory, 1e-6f)
        }
    }

    @Test
    fun everyCallAfterCloseThrowsClosed() {
        val sf = open()
        sf.close()
        sf.close() // idempotent
        assertThrows(SlowFastException.Closed::class.java) { sf.recordClick("item-1") }
        assertThrows(SlowFastException.Closed::class.java) { sf.rerank(Fixtures.feed(3)) }
        val e = assertThrows(SlowFastException.Closed::class.java) { sf.modelVersion }
        assertTrue(e.message!!, e.message!!.contains("closed"))
    }

    @Test
    fun badArgumentsThrowInvalidArgumentAndChangeNothing(): Unit = open().use { sf ->
        assertThrows(SlowFastException.InvalidArgument::class.java) { sf.recordClick("") }
        val e = assertThrows(SlowFastException.InvalidArgument::class.java) { sf.rerank(Fixtures.feed(3, dim = Fixtures.dim + 1)) }
        assertTrue(e.message!!, e.message!!.contains("embedding"))
        assertThrows(SlowFastException.InvalidArgument::class.java) { sf.fetchFeedBlocking(0) }
        assertEquals(0L, sf.pendingUploads)
    }

    @Test
    fun scoringWithoutABundleThrowsNoModelButRecordingWorks(): Unit = open(bundle = null).use { sf ->
        assertEquals(null, sf.modelVersion)
        sf.recordClick("item-1", 1)
        assertThrows(SlowFastException.NoModel::class.java) { sf.rerank(Fixtures.feed(3)) }
    }

    @Test
    fun aFeedForAnotherModelThrowsVersionMismatch(): Unit = open().use { sf ->
        val e = assertThrows(SlowFastException.VersionMismatch::class.java) { sf.rerank(Fixtures.feed(3, version = "other")) }
        assertTrue(e.message!!, e.message!!.contains("other"))
    }

    @Test
    fun aCorruptBundleThrowsBundleAndKeepsTheInstalledModel(): Unit = open().use { sf ->
        val copy = tmp.newFolder("bundle")
        Fixtures.bundle.copyRecursively(copy, overwrite = true)
        copy.resolve("fast.onnx").appendBytes(byteArrayOf(0))
        val e = assertThrows(SlowFastException.Bundle::class.java) { sf.installBundle(copy) }
        assertTrue(e.message!!, e.message!!.contains("fast.onnx"))
        assertEquals(Fixtures.modelVersion, sf.modelVersion)
    }

    @Test
    fun anUnreachableServerThrowsNetwork(): Unit = open().use { sf ->
        assertThrows(SlowFastException.Network::class.java) { sf.fetchFeedBlocking(10) }
    }

    /** Runs [block] with an engine whose server answers every request with [status] and [json]. */
    private fun withFailingServer(status: Int, json: String, headers: Map<String, String> = emptyMap(), block: (SlowFast) -> Unit) {
        val server = HttpServer.create(InetSocketAddress("127.0.0.1", 0), 0)
        server.createContext("/") { ex ->
            val body = json.toByteArray()
            ex.responseHeaders.add("Content-Type", "application/json")
            headers.forEach { (name, value) -> ex.responseHeaders.add(name, value) }
            ex.sendResponseHeaders(status, body.size.toLong())
            ex.responseBody.use { it.write(body) }
        }
        server.start()
        try {
            open(server = "http://127.0.0.1:${server.address.port}").use(block)
        } finally {
            server.stop(0)
        }
    }

    @Test
    fun aRefusedTokenThrowsUnauthorizedWithItsMessage() =
        withFailingServer(401, """{"error":"unauthorized","message":"token revoked"}""") { sf ->
            val e = assertThrows(SlowFastException.Unauthorized::class.java) { sf.fetchFeedBlocking(10) }
            assertEquals(401, e.httpStatus)
            assertFalse(e.isRetryable)
            assertTrue(e.message!!, e.message!!.contains("token revoked"))
        }

    @Test
    fun aForbiddenRequestThrowsForbidden() =
        withFailingServer(403, """{"error":"forbidden","message":"not your feed"}""") { sf ->
            assertEquals(403, assertThrows(SlowFastException.Forbidden::class.java) { sf.fetchFeedBlocking(10) }.httpStatus)
        }

    @Test
    fun aServerErrorThrowsServerWithItsStatusAndCode() =
        withFailingServer(503, """{"error":"unavailable","message":"draining"}""") { sf ->
            val e = assertThrows(SlowFastException.Server::class.java) { sf.fetchFeedBlocking(10) }
            assertEquals(503, e.status)
            assertEquals("unavailable", e.code)
            assertTrue(e.isRetryable)
            assertTrue(e.message!!, e.message!!.contains("draining"))
        }

    @Test
    fun aRateLimitedRequestThrowsRateLimitedWithTheWait() =
        withFailingServer(429, """{"error":"rate_limited","message":"slow down"}""", mapOf("Retry-After" to "30")) { sf ->
            val e = assertThrows(SlowFastException.RateLimited::class.java) { sf.fetchFeedBlocking(10) }
            assertEquals(30.seconds, e.retryAfter)
            assertTrue(e.isRetryable)
        }

    @Test
    fun aMalformedServerUrlOrATokenForAnotherUserThrowsInvalidConfig() {
        val e = assertThrows(SlowFastException.InvalidConfig::class.java) { open(server = "sync.example.com") }
        assertFalse(e.isRetryable)
        open().use { sf ->
            // A token in the sync server's format names its user: base64url("bob|expiry").signature.
            val enc = java.util.Base64.getUrlEncoder().withoutPadding()
            fun token(user: String) = enc.encodeToString("$user|4102444800".toByteArray()) + "." + enc.encodeToString("sig".toByteArray())
            assertThrows(SlowFastException.InvalidConfig::class.java) { sf.setToken(token("bob")) }
            sf.setToken(token("alice"))
        }
    }

    @Test
    fun aNegativeSettingThrowsInvalidArgument() {
        assertThrows(SlowFastException.InvalidArgument::class.java) { open(configure = { it.copy(syncMaxEvents = -1) }) }
    }

    @Test
    fun oneEnginePerDataDirectory() {
        val dir = tmp.newFolder()
        open(dir).use { first ->
            val e = assertThrows(SlowFastException.InUse::class.java) { open(dir) }
            assertEquals(dir, e.dir)
            first.recordClick("item-1", 1)
        }
        open(dir).use { assertEquals(1L, it.pendingUploads) }
    }

    @Test
    fun aDurabilityChoiceIsPartOfTheConfig(): Unit = open(
        configure = { it.copy(durability = Durability.POWER_LOSS) },
    ).use { sf ->
        assertEquals(Durability.PROCESS, SlowFast.config(tmp.newFolder(), "http://x", "t", "u").durability)
        sf.recordClick("item-1")
        assertEquals(1L, sf.pendingUploads)
    }

    @Test
    fun aDamagedStoreThrowsStoreCorrupt() {
        val dir = tmp.newFolder()
        dir.resolve("slowfast.sqlite3").writeBytes(ByteArray(8192) { 0x5a })
        assertThrows(SlowFastException.StoreCorrupt::class.java) { open(dir) }
    }

    @Test
    fun aDataDirThatIsAFileThrowsIo() {
        assertThrows(SlowFastException.Io::class.java) { open(tmp.newFile()) }
    }

    /** Fails to compile when a Rust variant is added or removed without updating the Kotlin surface. */
    @Test
    fun everyErrorVariantIsASubclassOfTheSealedException() {
        fun kind(e: SlowFastException): String = when (e) {
            is SlowFastException.InvalidArgument -> "InvalidArgument"
            is SlowFastException.Bundle -> "Bundle"
            is SlowFastException.Model -> "Model"
            is SlowFastException.Io -> "Io"
            is SlowFastException.Json -> "Json"
            is SlowFastException.Store -> "Store"
            is SlowFastException.StoreCorrupt -> "StoreCorrupt"
            is SlowFastException.NoModel -> "NoModel"
            is SlowFastException.VersionMismatch -> "VersionMismatch"
            is SlowFastException.InvalidConfig -> "InvalidConfig"
            is SlowFastException.InUse -> "InUse"
            is SlowFastException.Cancelled -> "Cancelled"
            is SlowFastException.Network -> "Network"
            is SlowFastException.Unauthorized -> "Unauthorized"
            is SlowFastException.Forbidden -> "Forbidden"
            is SlowFastException.Server -> "Server"
            is SlowFastException.RateLimited -> "RateLimited"
            is SlowFastException.Conflict -> "Conflict"
            is SlowFastException.Closed -> "Closed"
            is SlowFastException.Internal -> "Internal"
        }
        assertEquals("Internal", kind(SlowFastException.Internal("boom")))
        assertEquals("boom", SlowFastException.Model("boom").message)
    }
}
