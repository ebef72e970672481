//! The client-side rate limit every client holds.

use std::time::Duration;

/// At most `calls` calls in any window of length `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub calls: u32,
    pub per: Duration,
}

impl Quota {
    pub const fn new(calls: u32, per: Duration) -> Self {
        Self { calls, per }
    }
}

/// A client-side limit of one or more stacked quotas (Nexudus: 1 per 100 ms, 120 a minute and
/// 5 000 an hour), held over a sliding log of the calls made, so no window of any alignment
/// sees more than its quota and nothing bursts. Shared by everything in the process that calls
/// one system for one tenant (webhook reads and resync listings alike), so Portier stays under
/// the system's limit instead of bouncing off it. Time is tokio's, which tests pause.
///
/// Not `governor`: its GCRA limiters each allow a burst as large as their quota (or, with a
/// burst of one, space calls by the longest period), so "1 per 100 ms *and* 120 in any minute"
/// needs several chained limiters that can each admit a call the others then refuse; a log of
/// the last calls checks all quotas at once in a few lines.
#[derive(Debug)]
pub struct RateLimit {
    quotas: Vec<Quota>,
    /// Start times of the calls inside the longest window, oldest first.
    log: tokio::sync::Mutex<std::collections::VecDeque<tokio::time::Instant>>,
}

impl RateLimit {
    /// A limit of these quotas (empty ones, with no calls or no period, are ignored).
    pub fn new(quotas: &[Quota]) -> Self {
        let quotas = quotas.iter().copied().filter(|q| q.calls > 0 && !q.per.is_zero()).collect();
        Self { quotas, log: tokio::sync::Mutex::default() }
    }

    /// A provider's configured `calls_per_second`: evenly spaced calls, no bursts; `None`
    /// (or a rate that is not a positive number) means no limit.
    pub fn spaced(per_second: Option<f64>) -> Option<Self> {
        per_second
            .filter(|r| r.is_finite() && *r > 0.0)
            .and_then(|r| Duration::try_from_secs_f64(1.0 / r).ok())
            .map(|gap| Self::new(&[Quota::new(1, gap)]))
    }

    pub fn quotas(&self) -> &[Quota] {
        &self.quotas
    }

    /// Waits until a call may be made under every quota. The lock is held while waiting, so
    /// callers are served in turn.
    pub async fn acquire(&self) {
        let mut log = self.log.lock().await;
        let longest = self.quotas.iter().map(|q| q.per).max().unwrap_or_default();
        let keep = self.quotas.iter().map(|q| q.calls as usize).max().unwrap_or(0);
        loop {
            let now = tokio::time::Instant::now();
            while log.front().is_some_and(|t| now.duration_since(*t) >= longest) || log.len() > keep {
                log.pop_front();
            }
            // A quota of n is full while its n-th latest call is younger than its window.
            let wait = self
                .quotas
                .iter()
                .filter_map(|q| {
                    let n = q.calls as usize;
                    let nth = log.len().checked_sub(n).and_then(|i| log.get(i))?;
                    (*nth + q.per).checked_duration_since(now).filter(|w| !w.is_zero())
                })
                .max();
            match wait {
                None => {
                    if keep > 0 {
                        log.push_back(now);
                    }
                    return;
                }
                Some(w) => tokio::time::sleep(w).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaced_calls_never_burst() {
        let limit = RateLimit::spaced(Some(2.0)).expect("a limit");
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            limit.acquire().await;
        }
        // The first at once, four more half a second apart.
        let waited = start.elapsed().as_secs_f64();
        assert!((1.99..2.01).contains(&waited), "{waited}");
    }

    #[tokio::test(start_paused = true)]
    async fn stacked_quotas_hold_in_every_window() {
        let ms = Duration::from_millis;
        let limit =
            RateLimit::new(&[Quota::new(1, ms(100)), Quota::new(5, ms(1000)), Quota::new(8, ms(3000))]);
        let start = tokio::time::Instant::now();
        let mut at = Vec::new();
        for _ in 0..12 {
            limit.acquire().await;
            at.push(start.elapsed());
        }
        for q in limit.quotas() {
            for (i, t) in at.iter().enumerate() {
                let inside = at[i..].iter().take_while(|u| **u - *t < q.per).count();
                assert!(inside <= q.calls as usize, "{q:?}: {inside} calls from {t:?} ({at:?})");
            }
        }
        // 5 calls 100 ms apart, the next 5 a second after each, then the 3-second quota.
        assert_eq!(at[1], ms(100));
        assert_eq!(at[5], ms(1000));
        assert_eq!(at[8], ms(3000));
    }
}
