//! Time formatting and parsing the way DevLake's Go backend does it (docs/devlake-api.md).

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

/// Go's `time.Time` JSON encoding: RFC 3339 with the fractional part trimmed of trailing zeros
/// (RFC3339Nano). Clients must accept 0 to 9 fractional digits, so we emit exactly what Go would.
pub(crate) fn go_time(t: &DateTime<Utc>) -> String {
    let full = t.to_rfc3339_opts(SecondsFormat::Nanos, true);
    // full = 2026-05-02T00:00:00.123000000Z
    match full.split_once('.') {
        Some((head, frac)) => {
            let digits = frac.trim_end_matches('Z').trim_end_matches('0');
            if digits.is_empty() {
                format!("{head}Z")
            } else {
                format!("{head}.{digits}Z")
            }
        }
        None => full,
    }
}

/// Input accepted on PATCH/plugin bodies (mapstructure string→time hook), falling back to RFC 3339.
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%z",
        "%Y-%m-%dT%H:%M:%S%.3f%z",
        "%Y-%m-%dT%H:%M:%S%.6f%z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    None
}

/// serde helpers so state structs serialise times exactly like Go.
pub(crate) mod ser {
    use super::go_time;
    use chrono::{DateTime, Utc};
    use serde::Serializer;

    pub(crate) fn time<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&go_time(t))
    }

    pub(crate) fn opt_time<S: Serializer>(
        t: &Option<DateTime<Utc>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&go_time(t)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn go_time_trims_trailing_zeros() {
        let t = Utc.with_ymd_and_hms(2026, 5, 2, 0, 0, 0).unwrap();
        assert_eq!(go_time(&t), "2026-05-02T00:00:00Z");
        let t = t + chrono::Duration::milliseconds(10);
        assert_eq!(go_time(&t), "2026-05-02T00:00:00.01Z");
    }

    #[test]
    fn parses_mapstructure_formats() {
        for s in [
            "2025-11-01T00:00:00Z",
            "2025-11-01T00:00:00+00:00",
            "2025-11-01T00:00:00+0000",
            "2025-11-01 00:00:00",
            "2025-11-01 00:00",
        ] {
            assert_eq!(
                parse_time(s),
                Some(Utc.with_ymd_and_hms(2025, 11, 1, 0, 0, 0).unwrap()),
                "{s}"
            );
        }
        assert_eq!(parse_time("yesterday"), None);
    }
}
