//! The optional per-token rate limit (`--rate-limit`, `--rate-burst`): each token's user may
//! make `burst` requests at once and `per_second` on average (GCRA, governor's keyed limiter).
//! A request past it gets 429 `rate_limited` with `Retry-After`, the whole seconds until the
//! user's next request would pass; the device's backoff waits at least that long.
//!
//! The limit is per instance: behind a load balancer with `n` instances a user gets up to `n`
//! times the rate unless the balancer keeps a user on one instance.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::error::{Result, ServerError};

/// Requests per second per user on average, and how many may come at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// Checks between two sweeps of users idle long enough to be at full burst again.
const SWEEP_EVERY: u64 = 4_096;

/// The limiter, one cell of state per user seen recently.
pub struct Limiter {
    users: DefaultKeyedRateLimiter<String>,
    checks: AtomicU64,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("users", &self.users.len())
            .finish()
    }
}

impl Limiter {
    /// A limiter for `limit`; refuses a rate that is not a positive finite number or a zero
    /// burst.
    pub fn new(limit: RateLimit) -> Result<Limiter> {
        let quota = Duration::try_from_secs_f64(1.0 / limit.per_second)
            .ok()
            .and_then(Quota::with_period)
            .zip(NonZeroU32::new(limit.burst))
            .map(|(quota, burst)| quota.allow_burst(burst));
        let Some(quota) = quota else {
            return Err(ServerError::InvalidArgument(format!(
                "a rate limit needs a positive rate and burst, got {} per second, burst {}",
                limit.per_second, limit.burst
            )));
        };
        Ok(Limiter {
            users: DefaultKeyedRateLimiter::keyed(quota),
            checks: AtomicU64::new(0),
        })
    }

    /// Counts one request of `user`: `Ok`, or `Err(wait)` until one would pass.
    pub fn check(&self, user: &str) -> std::result::Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.users.retain_recent();
            self.users.shrink_to_fit();
        }
        self.users
            .check_key(&user.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.users.clock().now()))
    }
}

/// `Retry-After` in whole seconds, rounded up and at least 1.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    u64::try_from(wait.as_nanos().div_ceil(1_000_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_has_its_own_burst_and_waits_after_it() {
        let limiter = Limiter::new(RateLimit {
            per_second: 0.5,
            burst: 3,
        })
        .unwrap();
        for _ in 0..3 {
            assert_eq!(limiter.check("alice"), Ok(()));
        }
        let wait = limiter.check("alice").unwrap_err();
        assert!(
            wait > Duration::from_millis(1_500) && wait <= Duration::from_secs(2),
            "one request per 2 s: {wait:?}"
        );
        assert_eq!(retry_after_seconds(wait), 2);
        assert_eq!(limiter.check("bob"), Ok(()), "bob has his own burst");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_seconds(Duration::from_millis(3_001)), 4);
    }

    #[test]
    fn a_rate_or_burst_of_zero_is_refused() {
        for (per_second, burst) in [(0.0, 1), (-1.0, 1), (f64::NAN, 1), (1.0, 0)] {
            assert!(Limiter::new(RateLimit { per_second, burst }).is_err());
        }
    }
}
