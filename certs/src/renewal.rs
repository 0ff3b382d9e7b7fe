//! When to renew a certificate: cert-manager's rule, as a pure function of the
//! certificate's validity and `renewBefore`.

use std::time::{Duration, SystemTime};

/// The moment a certificate valid from `not_before` to `not_after` is due for renewal:
/// `renew_before` ahead of expiry.
///
/// A `renew_before` as long as the lifetime or longer would make every new certificate due
/// at once, and renewal would loop; as cert-manager does, one third of the lifetime is
/// used instead. The issuer may shorten a lifetime (a leaf never outlives its CA), which
/// is how that case arises even when the configuration is valid.
pub fn renewal_time(
    not_before: SystemTime,
    not_after: SystemTime,
    renew_before: Duration,
) -> SystemTime {
    let Ok(lifetime) = not_after.duration_since(not_before) else {
        // Ends before it starts: nothing to wait for.
        return not_before;
    };
    let renew_before = if renew_before < lifetime {
        renew_before
    } else {
        lifetime / 3
    };
    not_after - renew_before
}

/// How long from `now` until renewal is due; zero when it already is.
pub fn renew_in(
    not_before: SystemTime,
    not_after: SystemTime,
    renew_before: Duration,
    now: SystemTime,
) -> Duration {
    renewal_time(not_before, not_after, renew_before)
        .duration_since(now)
        .unwrap_or(Duration::ZERO)
}

/// Whether renewal is due at `now`.
pub fn is_due(
    not_before: SystemTime,
    not_after: SystemTime,
    renew_before: Duration,
    now: SystemTime,
) -> bool {
    now >= renewal_time(not_before, not_after, renew_before)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(hours: u32) -> SystemTime {
        SystemTime::UNIX_EPOCH + HOUR * hours
    }

    #[test]
    fn renews_renew_before_ahead_of_expiry() {
        assert_eq!(renewal_time(at(0), at(2160), HOUR * 720), at(1440));
        assert_eq!(renew_in(at(0), at(2160), HOUR * 720, at(1000)), HOUR * 440);
        assert!(!is_due(at(0), at(2160), HOUR * 720, at(1439)));
        assert!(is_due(at(0), at(2160), HOUR * 720, at(1440)));
    }

    #[test]
    fn renew_before_not_shorter_than_the_lifetime_falls_back_to_a_third() {
        // A 90 h certificate (e.g. clamped to its CA's expiry) with renewBefore 720 h.
        assert_eq!(renewal_time(at(0), at(90), HOUR * 720), at(60));
        assert_eq!(renewal_time(at(0), at(90), HOUR * 90), at(60));
        // So a certificate issued just now is never due at once.
        assert!(!is_due(at(0), at(90), HOUR * 720, at(0)));
    }

    #[test]
    fn overdue_means_now() {
        assert_eq!(renew_in(at(0), at(10), HOUR, at(50)), Duration::ZERO);
        assert!(is_due(at(0), at(10), HOUR, at(50)));
    }

    #[test]
    fn a_certificate_ending_before_it_starts_is_due() {
        assert_eq!(renewal_time(at(10), at(5), HOUR), at(10));
    }
}
