//! Criterion benchmarks of the device runtime on the fixture bundle (d = 32, windows 50/50):
//! `rerank` of 100 and 500 fresh candidates with full windows, and `record_exposure`.
//! `slowfast bench device --json` reports the same figures plus open time, memory and the
//! model's floor ([`slowfast_core::bench`]).

use criterion::{criterion_group, criterion_main, Criterion};
use slowfast_core::bench::candidates;
use slowfast_core::manifest::fixture_bundle;
use slowfast_core::manifest::{Manifest, MANIFEST_JSON};
use slowfast_core::{Config, SlowFast};

fn device(c: &mut Criterion) {
    let bundle = fixture_bundle();
    let Ok(manifest_bytes) = std::fs::read(bundle.join(MANIFEST_JSON)) else {
        eprintln!("no fixture bundle at {}; skipping", bundle.display());
        return;
    };
    let Ok(manifest) = Manifest::from_json(&manifest_bytes) else {
        eprintln!("fixture manifest does not parse; skipping");
        return;
    };
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let mut config = Config::new(dir.path(), "http://127.0.0.1:9", "bench", "bench");
    config.initial_bundle = Some(bundle);
    let Ok(sf) = SlowFast::open(config) else {
        eprintln!("cannot open an engine on the fixture bundle; skipping");
        return;
    };
    let history = candidates(&manifest, "h", 0, 100);
    if sf.rerank(&history).is_err() {
        return;
    }
    for (i, it) in history.items.iter().enumerate() {
        let _ = if i % 2 == 0 {
            sf.record_click(&it.item, i as i64)
        } else {
            sf.record_exposure(&it.item, i as i64)
        };
    }
    for n in [100usize, 500] {
        let mut round = 0u64;
        c.bench_function(&format!("rerank_{n}"), |b| {
            b.iter(|| {
                round += 1;
                let feed = candidates(&manifest, "c", round * n as u64, n);
                sf.rerank(&feed)
            })
        });
    }
    let mut ts = 1_000i64;
    c.bench_function("record_exposure", |b| {
        b.iter(|| {
            ts += 1;
            sf.record_exposure(&history.items[(ts % 100) as usize].item, ts)
        })
    });
}

criterion_group!(benches, device);
criterion_main!(benches);
