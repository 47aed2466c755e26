//! Per-connection rate limiting: a token bucket. Pure: the caller passes the
//! time in, so every limit is unit-tested without sleeping. The original hub
//! shared one bucket between all connections (about 20 calls/s in total);
//! here each connection owns its bucket, so one busy agent cannot starve the rest.

use std::time::{Duration, Instant};

/// Calls per second a connection may sustain by default. An assistant makes a
/// handful of calls per turn; this leaves room for scripts without letting one
/// connection monopolise the hub.
pub const DEFAULT_RATE_PER_SEC: f64 = 200.0;
/// Calls a connection may make at once after being idle.
pub const DEFAULT_BURST: u32 = 400;

/// Why a call was refused; says the limit so the caller can adapt.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "rate limit exceeded: {rate_per_sec} calls/s per connection (burst {burst}); retry in {} ms",
    retry_after.as_millis().max(1)
)]
pub(crate) struct RateLimited {
    pub rate_per_sec: f64,
    pub burst: u32,
    pub retry_after: Duration,
}

#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate_per_sec: f64,
    burst: u32,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate_per_sec <= 0` means unlimited.
    pub(crate) fn new(rate_per_sec: f64, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            rate_per_sec,
            burst: burst.max(1),
            tokens: f64::from(burst.max(1)),
            last: now,
        }
    }

    /// Takes one token, or says how long until one is available.
    pub(crate) fn try_take(&mut self, now: Instant) -> Result<(), RateLimited> {
        if self.rate_per_sec <= 0.0 {
            return Ok(());
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(f64::from(self.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - self.tokens;
            Err(RateLimited {
                rate_per_sec: self.rate_per_sec,
                burst: self.burst,
                retry_after: Duration::from_secs_f64(missing / self.rate_per_sec),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3, t0);
        for _ in 0..3 {
            b.try_take(t0).unwrap();
        }
        let err = b.try_take(t0).unwrap_err();
        assert_eq!(err.retry_after, Duration::from_millis(100));
        assert!(err.to_string().contains("10 calls/s"), "{err}");
        assert!(err.to_string().contains("burst 3"), "{err}");
        // 100 ms later exactly one token is back.
        let t1 = t0 + Duration::from_millis(100);
        b.try_take(t1).unwrap();
        assert!(b.try_take(t1).is_err());
        // Idle for a long time: refills to the burst, never beyond.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            b.try_take(t2).unwrap();
        }
        assert!(b.try_take(t2).is_err());
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0.0, 1, t0);
        for _ in 0..10_000 {
            b.try_take(t0).unwrap();
        }
    }

    #[test]
    fn buckets_are_independent() {
        let t0 = Instant::now();
        let mut a = TokenBucket::new(1.0, 1, t0);
        let mut b = TokenBucket::new(1.0, 1, t0);
        a.try_take(t0).unwrap();
        assert!(a.try_take(t0).is_err());
        b.try_take(t0).unwrap();
    }
}
