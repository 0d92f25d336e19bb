//! The time stamps an import writes: the XOF header's creation time and the default order
//! id, both in UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC time in the two forms the import writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// `YYYY-MM-DDTHH:MM:SSZ` (ISO 8601 extended): the XOF header's `created`.
    pub(crate) extended: String,
    /// `YYYYMMDDTHHMMSSZ` (ISO 8601 basic): the default order id's time stamp.
    pub(super) basic: String,
}

/// Now, in UTC (a clock before 1970 reads as 1970-01-01T00:00:00Z).
pub(crate) fn now() -> Stamp {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    from_unix(secs)
}

/// The UTC time `secs` seconds after 1970-01-01T00:00:00Z.
fn from_unix(secs: u64) -> Stamp {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm, public domain): count
    // from 0000-03-01 so that the leap day ends the year, in 400-year eras.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    Stamp {
        extended: format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z"),
        basic: format!("{y:04}{mo:02}{d:02}T{h:02}{m:02}{s:02}Z"),
    }
}

#[cfg(test)]
mod tests {
    use super::from_unix;

    #[test]
    fn unix_seconds_become_civil_utc_dates() {
        // Expected values from GNU coreutils: `date -u -d @SECS +%Y-%m-%dT%H:%M:%SZ`.
        for (secs, want) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_709_251_199, "2024-02-29T23:59:59Z"),
            (4_102_444_800, "2100-01-01T00:00:00Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
        ] {
            let s = from_unix(secs);
            assert_eq!(s.extended, want, "{secs}");
            assert_eq!(s.basic, want.replace(['-', ':'], ""), "{secs}");
        }
    }
}
