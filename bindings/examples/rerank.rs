//! The Rust side of the binding checks, through the same exported API the foreign code calls:
//!
//! - `rerank scores <bundle>`: prints one score per line (`item score`) for a deterministic feed
//!   after a fixed sequence of events; `scripts/test-aarch64.sh` compares x86-64 with aarch64.
//! - `rerank bench <bundle>`: median cost of one `rerank` of 100 candidates and of one
//!   `record_exposure`, the baseline for `scripts/test-kotlin.sh --bench`.

use std::time::Instant;

use slowfast_ffi::{default_config, Engine, FeedItem, FeedResponse, Vector};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, bundle) = match args.as_slice() {
        [mode, bundle] => (mode.as_str(), bundle.clone()),
        _ => exit("usage: rerank scores|bench <bundle dir>"),
    };
    let store = std::env::temp_dir().join(format!("slowfast-rerank-{}", std::process::id()));
    let config = slowfast_ffi::Config {
        initial_bundle: Some(bundle),
        ..default_config(
            store.display().to_string(),
            "http://127.0.0.1:9".into(),
            "t".into(),
            "u".into(),
        )
    };
    let engine = Engine::new(config).unwrap_or_else(|e| exit(&e.to_string()));
    let result = match mode {
        "scores" => scores(&engine),
        "bench" => bench(&engine),
        _ => exit("mode must be scores or bench"),
    };
    drop(engine);
    let _ = std::fs::remove_dir_all(&store);
    if let Err(e) = result {
        exit(&e.to_string());
    }
}

fn scores(engine: &Engine) -> Result<(), slowfast_ffi::SlowFastError> {
    let feed = feed(engine, 50);
    engine.rerank(feed.clone())?;
    for (i, it) in feed.items.iter().take(8).enumerate() {
        engine.record_exposure(it.item.clone(), 1_000 + i as i64)?;
    }
    engine.record_click(feed.items[3].item.clone(), 2_000)?;
    for s in engine.rerank(feed)? {
        println!("{} {:.9}", s.item, s.score);
    }
    Ok(())
}

fn bench(engine: &Engine) -> Result<(), slowfast_ffi::SlowFastError> {
    let feed = feed(engine, 100);
    let rerank = median_us(500, |_| engine.rerank(feed.clone()).map(drop))?;
    let exposure = median_us(500, |i| {
        engine.record_exposure(format!("item-{}", i % 100), i as i64)
    })?;
    println!("rust   rerank(100): {rerank:.1} us   record_exposure: {exposure:.1} us");
    Ok(())
}

/// Median wall time of `runs` calls after `runs / 5` warm-up calls, in microseconds.
fn median_us(
    runs: usize,
    mut call: impl FnMut(usize) -> Result<(), slowfast_ffi::SlowFastError>,
) -> Result<f64, slowfast_ffi::SlowFastError> {
    for i in 0..runs / 5 {
        call(i)?;
    }
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        let t = Instant::now();
        call(i)?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[runs / 2])
}

/// `n` candidates with deterministic vectors: the formula of android's `Fixtures.feed`.
fn feed(engine: &Engine, n: usize) -> FeedResponse {
    let dim = engine.neg_memory().0.len();
    let v = |i: usize, k: usize| -> Vector {
        Vector(
            (0..dim)
                .map(|j| (0.1 * (0.37 * i as f64 + 0.11 * j as f64 + 1.3 * k as f64).sin()) as f32)
                .collect(),
        )
    };
    FeedResponse {
        model_version: engine.model_version().unwrap_or_default(),
        items: (0..n)
            .map(|i| FeedItem {
                item: format!("item-{i}"),
                embedding: v(i, 0),
                r_t: v(i, 1),
                r_n: v(i, 2),
                slow_score: (n - i) as f32 / n as f32,
            })
            .collect(),
    }
}

fn exit(message: &str) -> ! {
    eprintln!("rerank: {message}");
    std::process::exit(2)
}
