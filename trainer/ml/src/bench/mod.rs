//! `slowfast bench`: the benchmarks of docs/architecture.md §10, one module per target. Each reports one
//! JSON object of figures; benchmarks are never tests and assert nothing about time.

pub mod device;
pub mod trainer;

/// The peak resident set size of this process in MiB (`VmHWM`), where the OS reports it.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
