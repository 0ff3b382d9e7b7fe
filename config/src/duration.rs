//! Durations in Go syntax (`2160h`, `45m`, `30s`, `1h30m`, `1.5h`, `500ms`).
//!
//! AIO (and cert-manager) write durations the way Go's `time.ParseDuration` reads them, so
//! Gatehouse does too: a sequence of decimal numbers, each with an optional fraction and a
//! unit (`h`, `m`, `s`, `ms`, `us`/`µs`, `ns`); a bare `0` is zero. Negative durations are
//! rejected (no setting means anything by them). The parser is integer-only, so `0.1s` is
//! exactly 100 ms.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{text}`: {reason} (Go syntax, e.g. 2160h, 45m, 1h30m, 500ms)")]
pub struct DurationError {
    /// The text as written.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Nanoseconds per unit (units are read whole, up to the next digit).
fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3_600 * NANOS_PER_SEC,
        _ => return None,
    })
}

/// Parses a Go duration string.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let fail = |reason: String| DurationError {
        text: text.to_owned(),
        reason,
    };
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.starts_with('-') {
        return Err(fail("must not be negative".into()));
    }
    if rest.is_empty() {
        return Err(fail("empty".into()));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }

    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_digits, after_int) = rest.split_at(int_len);
        let (frac_digits, after_number) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let len = after_dot
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after_dot.len());
                after_dot.split_at(len)
            }
            None => ("", after_int),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(fail(format!("expected a number at `{rest}`")));
        }
        let unit_len = after_number
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_len);
        if unit.is_empty() {
            return Err(fail(format!(
                "missing unit after `{}` (use h, m, s, ms, us or ns)",
                &rest[..rest.len() - after_number.len()]
            )));
        }
        let per_unit = unit_nanos(unit)
            .ok_or_else(|| fail(format!("unknown unit `{unit}` (use h, m, s, ms, us or ns)")))?;

        let too_long = || fail("too long".into());
        let int: u128 = if int_digits.is_empty() {
            0
        } else {
            int_digits.parse().map_err(|_| too_long())?
        };
        let mut part = int.checked_mul(per_unit).ok_or_else(too_long)?;
        // The fraction contributes frac * per_unit / 10^digits; digits beyond nanosecond
        // precision are dropped, as Go does.
        let mut scale = per_unit;
        for digit in frac_digits.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            part = part
                .checked_add(u128::from(digit - b'0') * scale)
                .ok_or_else(too_long)?;
        }
        total = total.checked_add(part).ok_or_else(too_long)?;
        rest = after_unit;
    }

    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| fail("too long".into()))?;
    // The remainder is below 10^9, so it fits.
    let nanos = (total % NANOS_PER_SEC) as u32;
    Ok(Duration::new(secs, nanos))
}

/// Formats a duration in Go syntax (`2160h`, `1h30m`, `500ms`), for messages and examples.
pub fn format(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".into();
    }
    if duration.subsec_nanos() != 0 && duration.as_secs() == 0 {
        let nanos = duration.subsec_nanos();
        return if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            format!("{}us", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let secs = duration.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    let nanos = duration.subsec_nanos();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push_str(&format!("{s}.{}s", frac.trim_end_matches('0')));
    } else if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// A [`Duration`] read from Go syntax; used where serde needs a type, e.g. `Option<GoDuration>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GoDuration(pub Duration);

impl<'de> serde::Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct GoVisitor;

        impl Visitor<'_> for GoVisitor {
            type Value = GoDuration;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration in Go syntax, e.g. 2160h, 45m, 30s, 500ms")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<GoDuration, E> {
                parse(text).map(GoDuration).map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<GoDuration, E> {
                if value == 0 {
                    Ok(GoDuration(Duration::ZERO))
                } else {
                    Err(E::custom(format_args!(
                        "invalid duration `{value}`: missing unit (write e.g. {value}s or {value}m)"
                    )))
                }
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<GoDuration, E> {
                match u64::try_from(value) {
                    Ok(value) => self.visit_u64(value),
                    Err(_) => Err(E::custom(format_args!(
                        "invalid duration `{value}`: must not be negative"
                    ))),
                }
            }
        }

        deserializer.deserialize_any(GoVisitor)
    }
}

/// `#[serde(deserialize_with = "crate::duration::deserialize")]` for `Duration` fields.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    <GoDuration as serde::Deserialize>::deserialize(deserializer).map(|d| d.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("2160h").unwrap(), secs(2160 * 3600));
        assert_eq!(parse("720h").unwrap(), secs(720 * 3600));
        assert_eq!(parse("45m").unwrap(), secs(45 * 60));
        assert_eq!(parse("30s").unwrap(), secs(30));
        assert_eq!(parse("1h30m").unwrap(), secs(5400));
        assert_eq!(parse("1h30m15s").unwrap(), secs(5415));
        assert_eq!(parse("1.5h").unwrap(), secs(5400));
        assert_eq!(parse(".5s").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("0.1s").unwrap(), Duration::from_millis(100));
        assert_eq!(parse("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse("250µs").unwrap(), Duration::from_micros(250));
        assert_eq!(parse("7ns").unwrap(), Duration::from_nanos(7));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse("+10s").unwrap(), secs(10));
    }

    #[test]
    fn rejects_bad_durations_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("10", "missing unit after `10`"),
            ("10x", "unknown unit `x`"),
            ("1d", "unknown unit `d`"),
            ("h", "expected a number at `h`"),
            ("-5s", "must not be negative"),
            ("1h 30m", "unknown unit `h `"),
            ("99999999999999999999999999999999999999999h", "too long"),
            ("9999999999999999999h", "too long"),
        ];
        for (text, reason) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.to_string().contains(reason), "{text}: {err}");
            assert!(err.to_string().contains("Go syntax"), "{text}: {err}");
        }
    }

    #[test]
    fn formats_in_go_syntax() {
        assert_eq!(format(secs(2160 * 3600)), "2160h");
        assert_eq!(format(secs(5415)), "1h30m15s");
        assert_eq!(format(Duration::from_millis(500)), "500ms");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::ZERO), "0s");
        for text in [
            "2160h", "45m", "1h30m", "500ms", "10s", "1.25s", "3us", "7ns",
        ] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }

    #[test]
    fn yaml_integers_need_a_unit_except_zero() {
        let zero: GoDuration = serde_norway::from_str("0").unwrap();
        assert_eq!(zero.0, Duration::ZERO);
        let err = serde_norway::from_str::<GoDuration>("30")
            .unwrap_err()
            .to_string();
        assert!(err.contains("write e.g. 30s"), "{err}");
    }
}
