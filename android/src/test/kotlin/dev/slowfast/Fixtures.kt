package dev.slowfast

import java.io.File
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import kotlin.coroutines.Continuation
import kotlin.coroutines.EmptyCoroutineContext
import kotlin.coroutines.startCoroutine
import kotlin.math.sin

/** The fixture bundle the test script points at (`-Dslowfast.bundle=core/tests/data/bundle`). */
object Fixtures {
    val bundle: File = File(System.getProperty("slowfast.bundle") ?: error("run with -Dslowfast.bundle=<bundle dir>"))
    private val manifest = bundle.resolve("manifest.json").readText()
    val modelVersion: String = field(""""model_version"\s*:\s*"([^"]+)"""")
    val dim: Int = field(""""dim"\s*:\s*(\d+)""").toInt()

    private fun field(pattern: String) =
        Regex(pattern).find(manifest)?.groupValues?.get(1) ?: error("manifest.json has no match for $pattern")

    /** [n] candidates with deterministic embeddings and priors (the same formula as the Rust example). */
    fun feed(n: Int, version: String = modelVersion, dim: Int = this.dim): Feed = Feed(
        modelVersion = version,
        items = (0 until n).map { i ->
            FeedItem(
                item = "item-$i",
                embedding = vector(i, dim, 0),
                rT = vector(i, dim, 1),
                rN = vector(i, dim, 2),
                slowScore = (n - i).toFloat() / n,
            )
        },
    )

    /** The wire format of `GET /v1/feed` (core/src/wire.rs `FeedResponse`). */
    fun feedJson(feed: Feed): String {
        fun floats(v: FloatArray) = v.joinToString(",", "[", "]")
        return feed.items.joinToString(",", """{"model_version":"${feed.modelVersion}","items":[""", "]}") {
            """{"item":"${it.item}","embedding":${floats(it.embedding)},"r_t":${floats(it.rT)},""" +
                """"r_n":${floats(it.rN)},"slow_score":${it.slowScore}}"""
        }
    }

    /** The fixture bundle as a zip archive, its files at the top level. */
    fun bundleZip(): ByteArray {
        val bytes = java.io.ByteArrayOutputStream()
        java.util.zip.ZipOutputStream(bytes).use { zip ->
            bundle.listFiles()!!.filter { it.isFile }.forEach { f ->
                zip.putNextEntry(java.util.zip.ZipEntry(f.name))
                f.inputStream().use { it.copyTo(zip) }
                zip.closeEntry()
            }
        }
        return bytes.toByteArray()
    }

    private fun vector(i: Int, dim: Int, k: Int) = FloatArray(dim) { j -> (0.1 * sin(0.37 * i + 0.11 * j + 1.3 * k)).toFloat() }
}

/** Runs a suspending [block] to its end on a coroutine of the standard library (no kotlinx needed). */
fun <T> runSuspending(block: suspend () -> T): T {
    val done = CountDownLatch(1)
    var result: Result<T>? = null
    block.startCoroutine(Continuation(EmptyCoroutineContext) { result = it; done.countDown() })
    check(done.await(5, TimeUnit.MINUTES)) { "the coroutine did not finish" }
    return result!!.getOrThrow()
}
