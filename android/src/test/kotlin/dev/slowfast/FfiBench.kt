package dev.slowfast

import java.nio.file.Files

/**
 * `scripts/test-kotlin.sh --bench`: the Kotlin side of the FFI benchmark, the same workload
 * as `cargo run --example rerank -- bench` (median of 500 calls after 100 warm-up calls).
 */
fun main() {
    val dir = Files.createTempDirectory("slowfast-bench").toFile()
    val config = SlowFast.config(dir, "http://127.0.0.1:9", "t", "u").copy(initialBundle = Fixtures.bundle)
    SlowFast(config).use { sf ->
        val feed = Fixtures.feed(100)
        val rerank = medianMicros(500) { sf.rerank(feed) }
        val exposure = medianMicros(500) { i -> sf.recordExposure("item-${i % 100}", i.toLong()) }
        println("kotlin rerank(100): %.1f us   record_exposure: %.1f us".format(rerank, exposure))
    }
    dir.deleteRecursively()
}

private inline fun medianMicros(runs: Int, call: (Int) -> Unit): Double {
    repeat(runs / 5) { call(it) }
    val times = DoubleArray(runs) { i ->
        val t = System.nanoTime()
        call(i)
        (System.nanoTime() - t) / 1e3
    }
    times.sort()
    return times[runs / 2]
}
