//! Sizes in bytes (`1GiB`, `10Gi`, `500M`, `1.5Ki`, `1048576`), for `persistence.maxSize`.
//!
//! AIO writes `maxSize` as a Kubernetes quantity (`10Gi`) and its docs also as `10GiB`, so
//! both are read: a decimal number (optionally with a fraction) and a unit, written in this
//! exact case:
//!
//! | unit | bytes |
//! | --- | --- |
//! | none, `B` | 1 |
//! | `k`, `K`, `kB`, `KB` | 1000 |
//! | `M`, `MB`, `G`, `GB`, `T`, `TB`, `P`, `PB`, `E`, `EB` | 1000², 1000³, ... |
//! | `Ki`, `KiB`, `Mi`, `MiB`, `Gi`, `GiB`, `Ti`, `TiB`, `Pi`, `PiB`, `Ei`, `EiB` | 1024, 1024², ... |
//!
//! Units are case-sensitive because case changes their meaning in Kubernetes quantities
//! (`m` is milli, so `500m` is half a byte there); a lowercase `m` or `g` is rejected with a
//! hint rather than guessed. A fraction is rounded down to whole bytes. A plain YAML
//! integer is a number of bytes.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// Why a size string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size `{text}`: {reason} (e.g. 1GiB, 10Gi, 500M, 1048576)")]
pub struct SizeError {
    /// The text as written.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

const UNITS: &str = "B, k, M, G, T, P, E (powers of 1000) or Ki, Mi, Gi, Ti, Pi, Ei (powers of \
                     1024), optionally followed by B";

/// Bytes per unit.
fn unit_bytes(unit: &str) -> Option<u128> {
    let (prefix, binary) = match unit.strip_suffix("iB").or_else(|| unit.strip_suffix('i')) {
        Some(prefix) => (prefix, true),
        None => (unit.strip_suffix('B').unwrap_or(unit), false),
    };
    let power = match prefix {
        "" if !binary => 0,
        "k" if !binary => 1,
        "K" => 1,
        "M" => 2,
        "G" => 3,
        "T" => 4,
        "P" => 5,
        "E" => 6,
        _ => return None,
    };
    let base: u128 = if binary { 1024 } else { 1000 };
    Some(base.pow(power))
}

/// Parses a size.
pub fn parse(text: &str) -> Result<u64, SizeError> {
    let fail = |reason: String| SizeError {
        text: text.to_owned(),
        reason,
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(fail("empty".into()));
    }
    if trimmed.starts_with('-') {
        return Err(fail("must not be negative".into()));
    }
    let number_len = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(number_len);
    let unit = unit.trim_start();
    let (int_digits, frac_digits) = number.split_once('.').unwrap_or((number, ""));
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(fail(format!("expected a number at `{trimmed}`")));
    }
    if frac_digits.contains('.') {
        return Err(fail(format!("`{number}` is not a number")));
    }
    let per_unit = unit_bytes(unit).ok_or_else(|| {
        let hint = match unit {
            "m" | "mb" | "mB" | "Mb" => " (`m` is milli in Kubernetes quantities; write M or Mi)",
            "g" | "gb" | "gB" | "Gb" => " (write G or Gi)",
            _ => "",
        };
        fail(format!("unknown unit `{unit}`{hint}; use {UNITS}"))
    })?;

    let too_large = || fail(format!("larger than {} bytes", u64::MAX));
    let int: u128 = if int_digits.is_empty() {
        0
    } else {
        int_digits.parse().map_err(|_| too_large())?
    };
    let mut bytes = int.checked_mul(per_unit).ok_or_else(too_large)?;
    // The fraction adds frac * per_unit / 10^digits, rounded down. Units are below 10^19
    // bytes, so digits past the 20th cannot add a whole byte (and 10^20 × unit fits u128).
    let mut numerator: u128 = 0;
    let mut denominator: u128 = 1;
    for digit in frac_digits.bytes().take(20) {
        numerator = numerator * 10 + u128::from(digit - b'0');
        denominator *= 10;
    }
    if numerator > 0 {
        let extra = per_unit.checked_mul(numerator).ok_or_else(too_large)? / denominator;
        bytes = bytes.checked_add(extra).ok_or_else(too_large)?;
    }
    u64::try_from(bytes).map_err(|_| too_large())
}

/// Formats a byte count the way it is most likely written: the largest binary unit that
/// divides it (`1GiB`, `1536KiB`, `100B`), for messages.
pub fn format(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes;
    let mut unit = "B";
    for next in UNITS {
        if value == 0 || !value.is_multiple_of(1024) {
            break;
        }
        value /= 1024;
        unit = next;
    }
    format!("{value}{unit}")
}

/// `#[serde(deserialize_with = "crate::size::deserialize")]` for byte counts: a size
/// string or a plain number of bytes.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    struct SizeVisitor;

    impl Visitor<'_> for SizeVisitor {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a size, e.g. 1GiB, 10Gi, 500M or a number of bytes")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<u64, E> {
            parse(text).map_err(E::custom)
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<u64, E> {
            Ok(value)
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<u64, E> {
            u64::try_from(value).map_err(|_| {
                E::custom(format_args!("invalid size `{value}`: must not be negative"))
            })
        }
    }

    deserializer.deserialize_any(SizeVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KI: u64 = 1024;
    const MI: u64 = KI * KI;
    const GI: u64 = MI * KI;

    #[test]
    fn parses_binary_and_decimal_units() {
        for (text, bytes) in [
            ("1GiB", GI),
            ("10Gi", 10 * GI),
            ("1 GiB", GI),
            ("512MiB", 512 * MI),
            ("512Mi", 512 * MI),
            ("1.5Ki", 1536),
            ("1KiB", KI),
            ("2TiB", 2 * GI * KI),
            ("1Ei", 1 << 60),
            ("10M", 10_000_000),
            ("10MB", 10_000_000),
            ("500k", 500_000),
            ("500K", 500_000),
            ("500kB", 500_000),
            ("1G", 1_000_000_000),
            ("1GB", 1_000_000_000),
            ("100", 100),
            ("100B", 100),
            (".5k", 500),
            ("0.1k", 100),
            ("1.0001k", 1000),
            ("  1Gi ", GI),
        ] {
            assert_eq!(parse(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn rejects_bad_sizes_with_a_reason() {
        for (text, reason) in [
            ("", "empty"),
            ("Gi", "expected a number at `Gi`"),
            ("-1Gi", "must not be negative"),
            ("1.2.3Gi", "not a number"),
            ("500m", "`m` is milli"),
            ("1gb", "write G or Gi"),
            ("1Xi", "unknown unit `Xi`"),
            ("1ki", "unknown unit `ki`"),
            ("1 GiB extra", "unknown unit `GiB extra`"),
            ("20EiB", "larger than"),
            ("99999999999999999999999999999999999999999", "larger than"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.to_string().contains(reason), "{text}: {err}");
            assert!(err.to_string().contains("e.g. 1GiB"), "{text}: {err}");
        }
    }

    #[test]
    fn formats_with_the_largest_binary_unit() {
        assert_eq!(format(GI), "1GiB");
        assert_eq!(format(1536 * KI), "1536KiB");
        assert_eq!(format(100), "100B");
        assert_eq!(format(0), "0B");
        assert_eq!(format(10_000_000), "10000000B");
    }

    #[test]
    fn yaml_numbers_are_bytes() {
        #[derive(serde::Deserialize)]
        struct S {
            #[serde(deserialize_with = "deserialize")]
            size: u64,
        }
        let s: S = serde_norway::from_str("size: 1048576").unwrap();
        assert_eq!(s.size, MI);
        let s: S = serde_norway::from_str("size: 1GiB").unwrap();
        assert_eq!(s.size, GI);
        let err = serde_norway::from_str::<S>("size: -5").err().unwrap();
        assert!(err.to_string().contains("must not be negative"), "{err}");
        let err = serde_norway::from_str::<S>("size: [1]").err().unwrap();
        assert!(err.to_string().contains("a size, e.g. 1GiB"), "{err}");
    }
}
