//! Exponential backoff with jitter for the sync client.
//!
//! The `n`-th retry (from 0) waits `d/2 + U(0, d/2)` with `d = min(cap, base · 2ⁿ)` ("equal
//! jitter"): devices that failed together spread out, and no wait is shorter than half its
//! step. Within one `sync_now` a transient failure is retried [`RETRIES`] times; after the
//! call still failed, threshold-driven syncs are skipped until the next step's delay passed.
//!
//! A server's `Retry-After` (429) is a floor on every wait: a retry inside the call waits at
//! least that long when it is at most [`MAX_WAIT_IN_CALL_MS`] (else the call gives up at
//! once rather than block its thread), and later threshold-driven syncs are skipped until it
//! has passed.

use rand::Rng;

/// First step.
pub const BASE_MS: u64 = 100;
/// Longest wait.
pub const CAP_MS: u64 = 60_000;
/// Retries of a transient failure inside one call (so at most `RETRIES + 1` attempts).
pub const RETRIES: u32 = 2;
/// The longest `Retry-After` a call sleeps through before it retries.
pub const MAX_WAIT_IN_CALL_MS: u64 = 5_000;

/// The delay before retry `attempt` (0-based), given `unit` ∈ [0, 1) drawn uniformly.
pub fn delay_ms(attempt: u32, unit: f64) -> u64 {
    let step = BASE_MS.saturating_mul(1u64 << attempt.min(32)).min(CAP_MS);
    step / 2 + ((step - step / 2) as f64 * unit.clamp(0.0, 1.0)) as u64
}

/// [`delay_ms`] with a random `unit`.
pub fn jittered_ms(attempt: u32) -> u64 {
    delay_ms(attempt, rand::rng().random::<f64>())
}

/// Consecutive failed syncs and the earliest time the next threshold-driven one may run.
#[derive(Clone, Debug, Default)]
pub struct Backoff {
    failures: u32,
    not_before_ms: i64,
}

impl Backoff {
    /// Records a failed sync at `now_ms`; the server asked to wait at least `floor_ms` (its
    /// `Retry-After`, 0 when none).
    pub fn failed(&mut self, now_ms: i64, floor_ms: u64) {
        let wait = jittered_ms(self.failures).max(floor_ms);
        self.not_before_ms = now_ms.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX));
        self.failures = self.failures.saturating_add(1);
    }

    /// Records a successful sync.
    pub fn succeeded(&mut self) {
        *self = Backoff::default();
    }

    /// Milliseconds left to wait at `now_ms` (0 when a sync may run).
    pub fn wait_ms(&self, now_ms: i64) -> u64 {
        self.not_before_ms.saturating_sub(now_ms).max(0) as u64
    }

    #[cfg(test)]
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_jitter_bounds_and_cap() {
        assert_eq!(delay_ms(0, 0.0), 50);
        assert_eq!(delay_ms(0, 0.999_999), 99);
        assert_eq!(delay_ms(3, 0.0), 400);
        assert_eq!(delay_ms(40, 0.5), 45_000);
        for a in 0..20 {
            let d = jittered_ms(a);
            let step = (BASE_MS << a).min(CAP_MS);
            assert!(d >= step / 2 && d <= step, "attempt {a}: {d}");
        }
    }

    #[test]
    fn a_failure_defers_the_next_sync_and_success_resets() {
        let mut b = Backoff::default();
        assert_eq!(b.wait_ms(1_000), 0);
        b.failed(1_000, 0);
        let w = b.wait_ms(1_000);
        assert!((50..=100).contains(&w), "{w}");
        b.failed(1_000, 0);
        assert!(b.wait_ms(1_000) >= 100);
        assert_eq!(b.failures(), 2);
        b.succeeded();
        assert_eq!(b.wait_ms(1_000), 0);
    }

    #[test]
    fn a_retry_after_is_a_floor_on_the_wait() {
        let mut b = Backoff::default();
        b.failed(1_000, 30_000);
        assert_eq!(b.wait_ms(1_000), 30_000);
        assert_eq!(b.wait_ms(31_000), 0);
        // A floor below the jittered step changes nothing.
        b.failed(1_000, 1);
        assert!((100..=200).contains(&b.wait_ms(1_000)));
    }
}
