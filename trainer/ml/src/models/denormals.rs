//! Denormal floats flushed to zero on the CPU, as TensorFlow (the paper's framework) does by
//! default and PyTorch's `set_flush_denormal` offers: once training pushes some values below
//! `f32::MIN_POSITIVE` (≈ 1.2e-38), x86 CPUs take a microcode assist on every multiply-add
//! that reads or makes one. On this project's 2-core machine on 2026-12-03, a 4-epoch DIN fit
//! on the synthetic default slowed epoch by epoch (12 → 69 s) and the whole run took 405 s;
//! with FTZ/DAZ set it held at 9–12 s an epoch and took 70 s. Values that small carry nothing a
//! model can use, so flushing them changes no result beyond rounding.
//!
//! The CLI sets it for the whole process ([`flush_to_zero`]); [`fit`](super::train::fit) sets
//! it for the duration of a fit ([`FlushToZero`]), so that a library user's training (and the
//! integration tests, which have no `main` of ours) is as fast as the CLI's, and their own
//! threads keep the floating-point mode they had.

/// MXCSR bits: flush-to-zero (15) and denormals-are-zero (6).
#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = 0x8040;

/// This thread's MXCSR (x86-64's SSE/AVX control and status register).
#[cfg(target_arch = "x86_64")]
fn mxcsr() -> u32 {
    // SAFETY: reading MXCSR has no effect; every x86-64 CPU has it.
    #[allow(deprecated)]
    unsafe {
        std::arch::x86_64::_mm_getcsr()
    }
}

#[cfg(target_arch = "x86_64")]
fn set_mxcsr(value: u32) {
    // SAFETY: MXCSR only controls this thread's SSE/AVX rounding, exception masks and
    // denormal handling; callers only change FTZ and DAZ, which every x86-64 CPU has.
    #[allow(deprecated)]
    unsafe {
        std::arch::x86_64::_mm_setcsr(value)
    }
}

/// Sets FTZ (results that would be denormal are 0) and DAZ (denormal inputs read as 0) for
/// this thread and every thread it spawns afterwards (they inherit the control register).
/// The CLI calls it first thing. Elsewhere than x86-64 it does nothing.
pub fn flush_to_zero() {
    #[cfg(target_arch = "x86_64")]
    set_mxcsr(mxcsr() | FTZ_DAZ);
}

/// FTZ/DAZ set on this thread (and the threads it spawns) while the guard lives; dropping it
/// puts back the bits the thread had. Elsewhere than x86-64 it does nothing.
#[must_use = "the mode is restored when the guard is dropped"]
pub struct FlushToZero {
    #[cfg(target_arch = "x86_64")]
    before: u32,
}

impl FlushToZero {
    pub fn set() -> FlushToZero {
        #[cfg(target_arch = "x86_64")]
        {
            let before = mxcsr();
            set_mxcsr(before | FTZ_DAZ);
            FlushToZero { before }
        }
        #[cfg(not(target_arch = "x86_64"))]
        FlushToZero {}
    }
}

impl Drop for FlushToZero {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        set_mxcsr((mxcsr() & !FTZ_DAZ) | (self.before & FTZ_DAZ));
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use std::hint::black_box;

    use super::*;

    /// Half the smallest normal float: denormal by default, 0 once flushed.
    fn halve() -> f32 {
        black_box(f32::MIN_POSITIVE) * black_box(0.5f32)
    }

    /// In this thread and in a thread it spawns.
    #[test]
    fn denormal_results_become_zero_here_and_in_spawned_threads() {
        std::thread::spawn(move || {
            assert!(halve() > 0.0, "a fresh thread keeps denormals");
            flush_to_zero();
            assert_eq!(halve(), 0.0);
            std::thread::spawn(move || assert_eq!(halve(), 0.0))
                .join()
                .expect("the spawned thread");
        })
        .join()
        .expect("the test thread");
    }

    /// While the guard lives, in its thread and the threads spawned then; after, as before,
    /// including when the thread already flushed.
    #[test]
    fn the_guard_flushes_while_it_lives_and_restores_the_mode() {
        std::thread::spawn(move || {
            let guard = FlushToZero::set();
            assert_eq!(halve(), 0.0);
            std::thread::scope(|s| s.spawn(|| assert_eq!(halve(), 0.0)).join())
                .expect("the scoped thread");
            drop(guard);
            assert!(halve() > 0.0, "the thread's mode is back");
            flush_to_zero();
            drop(FlushToZero::set());
            assert_eq!(halve(), 0.0, "a thread that flushed before still does");
        })
        .join()
        .expect("the test thread");
    }
}
