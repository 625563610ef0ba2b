//! The threads training and evaluation run on: a process-wide budget ([`set_threads`]) shared
//! evenly by the [`Job`]s alive, and [`par_map`] over them. Results never depend on the thread
//! count.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::Result;

static THREADS: AtomicUsize = AtomicUsize::new(1);
static JOBS: AtomicUsize = AtomicUsize::new(0);

/// The threads training may use for the shards of a batch and for validation (default 1),
/// shared by the [`Job`]s running at once. The CLI sets it to the cores.
pub fn set_threads(threads: usize) {
    THREADS.store(threads.max(1), Ordering::Relaxed);
}

/// A training job (one evaluation seed) while it lives: the jobs alive share
/// [`set_threads`]'s threads evenly, read again at every batch, so a job left alone takes
/// every thread when the others finish. Results never depend on it (see the module doc).
pub struct Job(());

impl Job {
    pub fn start() -> Job {
        JOBS.fetch_add(1, Ordering::Relaxed);
        Job(())
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        JOBS.fetch_sub(1, Ordering::Relaxed);
    }
}

pub fn threads() -> usize {
    let jobs = JOBS.load(Ordering::Relaxed).max(1);
    (THREADS.load(Ordering::Relaxed) / jobs).max(1)
}

/// `f` over `items` on up to [`threads`] scoped threads, in order; the first error in item
/// order is returned. A panic on a thread is a bug, not an error: it continues on the caller's
/// thread.
pub fn par_map<T: Sync, R: Send, E: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let n = threads().min(items.len());
    if n <= 1 {
        return items.iter().map(f).collect();
    }
    let per = items.len().div_ceil(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(per)
            .map(|part| s.spawn(|| part.iter().map(&f).collect::<Result<Vec<R>, E>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            let part = h
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            out.extend(part);
        }
        Ok(out)
    })
}
