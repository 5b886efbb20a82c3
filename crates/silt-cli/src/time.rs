//! Times on the command line: milliseconds since the Unix epoch, or an RFC 3339 date-time
//! (`2026-12-01T08:30:00Z`, `2026-12-01T09:30:00.250+01:00`).

use crate::error::CliError;

/// Parses `MS_SINCE_EPOCH` or an RFC 3339 date-time into milliseconds since the Unix epoch.
pub fn parse_time(s: &str) -> Result<i64, CliError> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    parse_rfc3339(s).ok_or_else(|| {
        CliError::usage(format!(
            "{s:?} is neither milliseconds since the epoch nor an RFC 3339 date-time \
             (e.g. 2026-12-01T08:30:00Z)"
        ))
    })
}

fn digits(s: &str, at: usize, n: usize) -> Option<i64> {
    let part = s.get(at..at + n)?;
    if part.bytes().all(|b| b.is_ascii_digit()) { part.parse().ok() } else { None }
}

/// Days from 1970-01-01 to a civil date (proleptic Gregorian; H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count from 1970-01-01 (the inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Ms since the Unix epoch as an RFC 3339 UTC date-time with milliseconds.
pub fn format_rfc3339(ms: i64) -> String {
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, min, sec, milli) =
        (rest / 3_600_000, rest / 60_000 % 60, rest / 1000 % 60, rest % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{sec:02}.{milli:03}Z")
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (digits(s, 0, 4)?, digits(s, 5, 2)?, digits(s, 8, 2)?);
    let (hour, minute, second) = (digits(s, 11, 2)?, digits(s, 14, 2)?, digits(s, 17, 2)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let ms: String = frac[..n].chars().chain("000".chars()).take(3).collect();
        millis = ms.parse().ok()?;
        rest = &frac[n..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let (h, m) = (digits(rest, 1, 2)?, digits(rest, 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 60 + m)
        }
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_and_rfc3339_parse_to_the_same_instant() {
        assert_eq!(parse_time("1764547200000").unwrap(), 1_764_547_200_000);
        assert_eq!(parse_time("2025-12-01T00:00:00Z").unwrap(), 1_764_547_200_000);
        assert_eq!(parse_time("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_time("2025-12-01T01:00:00.5+01:00").unwrap(), 1_764_547_200_500);
        assert_eq!(parse_time("2025-11-30t19:00:00.123-05:00").unwrap(), 1_764_547_200_123);
        assert_eq!(parse_time("2024-02-29T12:00:00Z").unwrap(), 1_709_208_000_000);
    }

    #[test]
    fn formatted_times_parse_back() {
        assert_eq!(format_rfc3339(1_764_547_200_123), "2025-12-01T00:00:00.123Z");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        for ms in [1_709_208_000_000, 951_825_600_999, 4_102_444_799_000] {
            assert_eq!(parse_time(&format_rfc3339(ms)).unwrap(), ms);
        }
    }

    #[test]
    fn malformed_date_times_are_usage_errors() {
        for bad in [
            "yesterday",
            "2025-12-01",
            "2025-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2025-12-01T00:00:00",
            "2025-12-01T00:00:00+1",
            "2025-12-01T24:00:00Z",
        ] {
            assert_eq!(parse_time(bad).unwrap_err().exit, 2, "{bad}");
        }
    }
}
