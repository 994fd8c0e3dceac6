//! When to send a request again, and how long to wait first.
//!
//! Only failures before any answer arrived are retried (a refused or reset connection, 408, 409,
//! 429, 5xx), so nothing is ever printed twice. The wait doubles each time, with jitter so a fan
//! of `xargs -P` clients does not retry in lockstep, and a server's `Retry-After` (seconds or an
//! HTTP date) wins, up to a cap. A server that asks for more than the cap is not retried at all:
//! waiting less than it asked would only earn another refusal, and the user should know.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{ApiError, NetworkError};

/// The longest wait we accept from `Retry-After`; past it, retrying is not worth the wait.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(60);
/// The first backoff; it doubles on each retry.
pub(crate) const BASE_DELAY: Duration = Duration::from_millis(500);

/// What the retry loop does after a failed attempt.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Wait this long, then send again; `err` is the failure, for the notice.
    Retry { err: anyhow::Error, wait: Duration },
    /// Stop and report this error.
    GiveUp(anyhow::Error),
}

/// Decides whether failed attempt number `attempt` (0-based) is tried again, with `retries`
/// allowed in all. A server that asks to wait longer than [`MAX_WAIT`] gets no retry: the error
/// is reported at once, saying how long the server asked for, so the user can decide.
pub(crate) fn plan(mut err: anyhow::Error, attempt: u32, retries: u32) -> Decision {
    let Some(server_wish) = retryable(&err).filter(|_| attempt < retries) else {
        return Decision::GiveUp(err);
    };
    if let Some(wish) = server_wish.filter(|&wish| wish > MAX_WAIT) {
        if let Some(api) = err.downcast_mut::<ApiError>() {
            api.message.push_str(&format!(
                " (the server asks to wait {} before a retry; gptstream waits at most {}s)",
                describe_wait(wish),
                MAX_WAIT.as_secs()
            ));
        }
        return Decision::GiveUp(err);
    }
    let wait = delay(attempt, server_wish);
    Decision::Retry { err, wait }
}

/// A long wait in words: seconds up to two days, then days, then years; beyond 10000 years the
/// exact figure means nothing (and may be an artefact of saturating arithmetic).
fn describe_wait(wait: Duration) -> String {
    const DAY: u64 = 86_400;
    const YEAR: u64 = 31_557_600; // 365.25 days
    match wait.as_secs() {
        secs if secs < 2 * DAY => format!("{secs}s"),
        secs if secs < 2 * YEAR => format!("{} days", secs / DAY),
        secs if secs < 10_000 * YEAR => format!("{} years", secs / YEAR),
        _ => "more than 10000 years".to_owned(),
    }
}

/// Whether `err` is worth another try, and the server's requested wait if it gave one.
pub(crate) fn retryable(err: &anyhow::Error) -> Option<Option<Duration>> {
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
pub(crate) fn rejects_stream_options(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<ApiError>())
        .any(|api| {
            api.status == Some(400) && api.message.to_ascii_lowercase().contains("stream_options")
        })
}

/// The wait before retry number `attempt` (0-based): the server's wish, else 0.5 s, 1 s, 2 s...
/// with up to 25% jitter either way; never more than [`MAX_WAIT`].
pub(crate) fn delay(attempt: u32, server_wish: Option<Duration>) -> Duration {
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
/// A value too large to represent is a very long wait (it saturates), not an error and not "no
/// header": the server clearly wants us gone for a while.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Some(seconds) = parse_digits(value) {
        return Some(Duration::from_secs(seconds));
    }
    let at = parse_http_date(value)?;
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    Some(Duration::from_secs(at).saturating_sub(since_epoch))
}

/// ASCII digits only (no sign, no space) as a number, saturating at `u64::MAX`.
fn parse_digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` as seconds since the Unix epoch, saturating at `u64::MAX`
/// for dates too far away to count.
fn parse_http_date(value: &str) -> Option<u64> {
    let mut parts = value.split_whitespace();
    let _weekday = parts.next()?;
    let day = parse_digits(parts.next()?)?;
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
    let year = parse_digits(parts.next()?)?;
    let mut clock = parts.next()?.split(':').map(parse_digits);
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if clock.next().is_some()
        || parts.next()? != "GMT"
        || !(1..=31).contains(&day)
        || year < 1970
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(seconds_since_epoch(year, month, day, hour, minute, second).unwrap_or(u64::MAX))
}

/// Days from the civil date (Howard Hinnant's algorithm, for years from 1970), then seconds;
/// `None` when the arithmetic overflows. Day, month and clock are already range-checked, so
/// only the year can make it overflow.
fn seconds_since_epoch(
    year: u64,
    month: u64,
    day: u64,
    hour: u64,
    minute: u64,
    second: u64,
) -> Option<u64> {
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let year_of_era = y % 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era
        .checked_mul(146_097)?
        .checked_add(day_of_era)?
        .checked_sub(719_468)?;
    days.checked_mul(86_400)?
        .checked_add(hour * 3600 + minute * 60 + second)
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

    /// Issue #12, defect 2: hostile `Retry-After` values. A date or a number too large to
    /// represent is a very long wait, never a panic and never "no header".
    #[test]
    fn defect2_hostile_retry_after_is_a_long_wait_not_an_overflow_panic() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let far = Duration::from_secs(100 * 365 * 86_400);
        for huge in [
            "Fri, 31 Dec 500000000000 23:59:59 GMT",
            "Fri, 31 Dec 18446744073709551615 23:59:59 GMT",
            "Fri, 31 Dec 99999999999999999999999 23:59:59 GMT",
            "99999999999999999999",
            "18446744073709551616",
        ] {
            let wait = parse_retry_after(huge, now);
            assert!(wait.is_some_and(|w| w > far), "{huge}: {wait:?}");
        }
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", UNIX_EPOCH),
            Some(Duration::from_secs(253_402_300_799))
        );
        for garbage in [
            "-5",
            "-1",
            "+5",
            "1.5",
            "",
            "5s",
            "Fri, 31 Dec -1 23:59:59 GMT",
        ] {
            assert_eq!(parse_retry_after(garbage, now), None, "{garbage:?}");
        }
    }

    /// Issue #12, defect 2: a wish past the cap is not retried (it used to wait the cap and
    /// retry anyway); the error says how long the server asked for.
    #[test]
    fn a_wish_past_the_cap_gives_up_at_once_and_names_the_wait() {
        let named = |retry_after: u64| match plan(api(429, Some(retry_after)), 0, 2) {
            Decision::GiveUp(err) => {
                assert_eq!(crate::error::exit_code(&err), crate::error::exit::API);
                err.to_string()
            }
            Decision::Retry { wait, .. } => panic!("{retry_after}: retried after {wait:?}"),
        };
        assert_eq!(
            named(86_400),
            "HTTP 429 Too Many Requests: x (the server asks to wait 86400s before a retry; \
             gptstream waits at most 60s)"
        );
        assert!(named(61).contains("wait 61s"));
        assert!(named(30 * 86_400).contains("wait 30 days"));
        assert!(named(3 * 31_557_600).contains("wait 3 years"));
        assert!(named(u64::MAX).contains("wait more than 10000 years"));

        match plan(api(429, Some(60)), 0, 2) {
            Decision::Retry { wait, err } => {
                assert_eq!(wait, MAX_WAIT);
                assert_eq!(err.to_string(), "HTTP 429 Too Many Requests: x");
            }
            Decision::GiveUp(err) => panic!("gave up: {err}"),
        }
        for (err, attempt) in [(api(429, Some(86_400)), 2), (api(400, None), 0)] {
            match plan(err, attempt, 2) {
                Decision::GiveUp(err) => assert_eq!(err.to_string().matches('(').count(), 0),
                Decision::Retry { .. } => panic!("retried"),
            }
        }
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
