//! When to send a request again, and how long to wait first.
//!
//! Only failures before any answer arrived are retried (a refused or reset connection, 408, 409,
//! 429, 5xx), so nothing is ever printed twice. The wait doubles each time, with jitter so a fan
//! of `xargs -P` clients does not retry in lockstep, and a server's `Retry-After` (seconds or an
//! HTTP date) wins, up to a cap.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{ApiError, NetworkError};

/// The longest wait we accept from `Retry-After`; past it, retrying is not worth the wait.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// The first backoff; it doubles on each retry.
pub const BASE_DELAY: Duration = Duration::from_millis(500);

/// Whether `err` is worth another try, and the server's requested wait if it gave one.
pub fn retryable(err: &anyhow::Error) -> Option<Option<Duration>> {
    for cause in err.chain() {
        if let Some(api) = cause.downcast_ref::<ApiError>() {
            let status = api.status?;
            let worth = matches!(status, 408 | 409 | 429 | 500..=599);
            return worth.then_some(api.retry_after);
        }
        if let Some(network) = cause.downcast_ref::<NetworkError>() {
            return network.transient.then_some(None);
        }
    }
    None
}

/// True for a 400 whose message names `stream_options`: a server that rejects the usage option.
pub fn rejects_stream_options(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<ApiError>())
        .any(|api| {
            api.status == Some(400) && api.message.to_ascii_lowercase().contains("stream_options")
        })
}

/// The wait before retry number `attempt` (0-based): the server's wish, else 0.5 s, 1 s, 2 s...
/// with up to 25% jitter either way; never more than [`MAX_WAIT`].
pub fn delay(attempt: u32, server_wish: Option<Duration>) -> Duration {
    if let Some(wish) = server_wish {
        return wish.min(MAX_WAIT);
    }
    let backoff = BASE_DELAY.saturating_mul(1 << attempt.min(16));
    let jitter = 0.75 + 0.5 * random_unit();
    backoff.mul_f64(jitter).min(MAX_WAIT)
}

/// A number in [0, 1) from the process's random hash seed: enough for jitter, no crate needed.
fn random_unit() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Parses a `Retry-After` value: delta-seconds, or an HTTP date (IMF-fixdate) relative to `now`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_http_date(value: &str) -> Option<SystemTime> {
    let mut parts = value.split_whitespace();
    let _weekday = parts.next()?;
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
    let year: u64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':').map(|n| n.parse::<u64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if parts.next()? != "GMT"
        || !(1..=31).contains(&day)
        || year < 1970
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), for years from 1970.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = (era * 146_097 + day_of_era).checked_sub(719_468)?;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StreamError;

    fn api(status: u16, retry_after: Option<u64>) -> anyhow::Error {
        let mut err = ApiError::new(Some(status), None, "x");
        err.retry_after = retry_after.map(Duration::from_secs);
        err.into()
    }

    #[test]
    fn what_is_retried() {
        for status in [408, 409, 429, 500, 502, 503, 504] {
            assert!(retryable(&api(status, None)).is_some(), "{status}");
        }
        for status in [400, 401, 403, 404, 422] {
            assert!(retryable(&api(status, None)).is_none(), "{status}");
        }
        assert_eq!(
            retryable(&api(429, Some(3))),
            Some(Some(Duration::from_secs(3)))
        );
        assert!(retryable(&NetworkError::transient("refused".into()).into()).is_some());
        assert!(retryable(&NetworkError::new("timed out".into()).into()).is_none());
        assert!(retryable(&StreamError("cut".into()).into()).is_none());
        assert!(retryable(&ApiError::new(None, None, "in-stream").into()).is_none());
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter_and_the_server_wins() {
        for attempt in 0..4 {
            let nominal = BASE_DELAY * (1 << attempt);
            let wait = delay(attempt, None);
            assert!(
                wait >= nominal.mul_f64(0.75) && wait <= nominal.mul_f64(1.25),
                "{attempt}: {wait:?}"
            );
        }
        assert_eq!(
            delay(0, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(delay(0, Some(Duration::from_secs(3600))), MAX_WAIT);
        assert_eq!(delay(40, None), MAX_WAIT);
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Tue, 29 Feb 2000 00:00:00 GMT", UNIX_EPOCH),
            Some(Duration::from_secs(951_782_400))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(
            parse_retry_after("Sun, 06 Foo 1994 08:49:47 GMT", now),
            None
        );
    }

    #[test]
    fn the_stream_options_rejection_is_recognised() {
        let err: anyhow::Error = ApiError::new(
            Some(400),
            None,
            "Unrecognized request argument supplied: stream_options",
        )
        .into();
        assert!(rejects_stream_options(&err));
        assert!(!rejects_stream_options(&api(400, None)));
    }
}
