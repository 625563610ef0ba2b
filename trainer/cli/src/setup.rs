//! Process-wide set-up, once, before any thread exists: the training threads, denormals, the
//! allocator's purging and the log filter.

/// Training allocates and frees large tensors every step; glibc's malloc serves them with
/// fresh mmaps (page faults were a quarter of the run time), mimalloc reuses them (see
/// [`keep_freed_memory`]).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps the memory mimalloc frees instead of purging it back to the OS after its default
/// 10 ms: each training step frees and reallocates the same large tensors, and with purging
/// every step faulted in and zeroed fresh (huge) pages again: `slowfast bench trainer` (one
/// thread, two runs each) took 108–116k page faults and 32.9–33.2 s of CPU, against 0.9k and
/// 25.2–27.7 s with this; peak RSS 542–544 → 558 MB.
fn keep_freed_memory() {
    /// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (libmimalloc-sys 0.1.49, pinned
    /// in Cargo.lock, builds v3 and names no constant for it); -1 means never purge.
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets a process-wide option; mimalloc options may be set at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// Training runs its batch shards on the cores itself (`models::train`), so each candle op runs
/// inline on its caller's thread: candle's per-op pool serialises concurrent callers behind
/// one lock and its threads spin at a barrier (over half the CPU time, perf), and with
/// `RAYON_NUM_THREADS` unset candle re-reads `/proc/cpuinfo` for every matrix product.
/// `CANDLE_NUM_THREADS`, when set, is the number of training threads.
fn single_threaded_ops() {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let threads = std::env::var("CANDLE_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(cores);
    slowfast_data::parallel::set_threads(threads);
    // Before any thread or candle op exists: nothing reads the environment concurrently.
    std::env::set_var("CANDLE_NUM_THREADS", "1");
    std::env::set_var("RAYON_NUM_THREADS", "1");
}

/// Everything above, then the log filter (`RUST_LOG`, else `default_log`) on stderr.
/// `serving`: a long-running server gives freed memory back; everything else trains or runs
/// briefly and keeps it.
pub fn process(serving: bool, default_log: &str) {
    single_threaded_ops();
    // Before any thread exists, so that every thread inherits it.
    slowfast_trainer::models::denormals::flush_to_zero();
    if !serving {
        keep_freed_memory();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_log.into()),
        )
        .with_writer(std::io::stderr)
        // Colours on a terminal only: a log piped to a file or CI keeps no escape codes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
