//! When to try a delivery again: pure classification and capped, jittered backoff.
//!
//! HTTP statuses: 2xx delivered; 429 and 503 wait for `Retry-After` (capped at
//! [`MAX_RETRY_AFTER`]) or back off; 408 and the other 5xx back off; every other status is
//! final. Connection errors and timeouts back off. The pipeline applies the delays and gives
//! up at its attempt limit or at its drain deadline, whichever comes first.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest `Retry-After` honoured; a server asking for more is retried after this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Whether and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Final: trying again will not help.
    Never,
    /// Try again after the backoff delay of the attempt.
    Backoff,
    /// Try again after this long (the server said so).
    After(Duration),
}

/// Classifies an HTTP response status: `None` when it is a success.
pub fn classify_status(status: u16, retry_after: Option<&str>, now: SystemTime) -> Option<Retry> {
    match status {
        200..=299 => None,
        429 | 503 => Some(
            retry_after
                .and_then(|v| parse_retry_after(v, now))
                .map_or(Retry::Backoff, |d| Retry::After(d.min(MAX_RETRY_AFTER))),
        ),
        408 | 500..=599 => Some(Retry::Backoff),
        _ => Some(Retry::Never),
    }
}

/// Parses `Retry-After`: delay-seconds, or an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn parse_http_date(value: &str) -> Option<SystemTime> {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let rest = value.split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':').map(|p| p.parse::<u64>());
    let (h, m, s) = (
        clock.next()?.ok()?,
        clock.next()?.ok()?,
        clock.next()?.ok()?,
    );
    if parts.next()? != "GMT" || day == 0 || day > 31 || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day as i64);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + m * 60 + s;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Exponential backoff with full jitter: attempt `n` waits a random time up to
/// `min(cap, base * 2^n)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first delay.
    pub base: Duration,
    /// Longest delay.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The ceiling of attempt `n`'s delay (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A jittered delay for attempt `n`, between half the ceiling and the ceiling (so a retry
    /// never hammers, and a crowd of them spreads out).
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        half + ceiling.saturating_sub(half).mul_f64(rand::random::<f64>())
    }

    /// The wait a classification asks for, for attempt `n`.
    pub fn wait(&self, retry: Retry, attempt: u32) -> Option<Duration> {
        match retry {
            Retry::Never => None,
            Retry::Backoff => Some(self.delay(attempt)),
            Retry::After(d) => Some(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let now = SystemTime::now();
        assert_eq!(classify_status(200, None, now), None);
        assert_eq!(classify_status(204, None, now), None);
        assert_eq!(classify_status(400, None, now), Some(Retry::Never));
        assert_eq!(classify_status(404, None, now), Some(Retry::Never));
        assert_eq!(classify_status(408, None, now), Some(Retry::Backoff));
        assert_eq!(classify_status(500, None, now), Some(Retry::Backoff));
        assert_eq!(classify_status(502, None, now), Some(Retry::Backoff));
        assert_eq!(classify_status(429, None, now), Some(Retry::Backoff));
        assert_eq!(
            classify_status(429, Some("3"), now),
            Some(Retry::After(Duration::from_secs(3)))
        );
        assert_eq!(
            classify_status(503, Some("3600"), now),
            Some(Retry::After(MAX_RETRY_AFTER))
        );
    }

    #[test]
    fn retry_after_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:30 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn backoff_grows_capped_and_jittered() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(0), Duration::from_millis(200));
        assert_eq!(b.ceiling(3), Duration::from_millis(1600));
        assert_eq!(b.ceiling(20), Duration::from_secs(10));
        for attempt in 0..8 {
            let d = b.delay(attempt);
            assert!(d >= b.ceiling(attempt) / 2 && d <= b.ceiling(attempt));
        }
        assert_eq!(b.wait(Retry::Never, 0), None);
        assert_eq!(
            b.wait(Retry::After(Duration::from_secs(2)), 5),
            Some(Duration::from_secs(2))
        );
    }
}
