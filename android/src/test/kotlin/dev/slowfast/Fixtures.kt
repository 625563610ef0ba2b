package dev.slowfast

import java.io.File
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

    private fun vector(i: Int, dim: Int, k: Int) = List(dim) { j -> (0.1 * sin(0.37 * i + 0.11 * j + 1.3 * k)).toFloat() }
}
