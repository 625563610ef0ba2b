//! Criterion benchmarks of the device runtime live in `benches/` (`cargo bench -p
//! slowfast-bench`); `slowfast bench` reports the same figures as JSON.
