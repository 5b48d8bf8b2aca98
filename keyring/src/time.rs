//! Calendar arithmetic for `valid-after`/`valid-before` (UTC only: no clock, no zone
//! database here).

/// Unix seconds of `YYYYMMDD[HHMM[SS]]Z` (OpenSSH's allowed_signers time syntax), or
/// why not. A time without `Z` is refused: OpenSSH reads it in the local zone, which a
/// node and an operator need not share.
pub fn parse_utc(text: &str) -> Result<u64, String> {
    let digits = text.strip_suffix(['Z', 'z']).ok_or_else(|| {
        format!("{text:?}: write times in UTC with a trailing Z (YYYYMMDD[HHMM[SS]]Z)")
    })?;
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?}: expected YYYYMMDD[HHMM[SS]]Z"));
    }
    let n = |r: std::ops::Range<usize>| digits.get(r).map_or(0, |s| s.parse::<u64>().unwrap_or(0));
    let (year, month, day) = (n(0..4), n(4..6), n(6..8));
    let (hour, minute, second) = (n(8..10), n(10..12), n(12..14));
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(format!("{text:?}: not a valid date and time"));
    }
    let days = days_from_civil(year, month, day);
    Ok(days * 86_400 + hour * 3600 + minute * 60 + second)
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm, for years ≥ 1970).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse_utc;

    #[test]
    fn utc_times_parse_and_local_ones_are_refused() {
        assert_eq!(parse_utc("19700101Z"), Ok(0));
        assert_eq!(parse_utc("20261207Z"), Ok(1_796_601_600));
        assert_eq!(
            parse_utc("20261207183000Z"),
            Ok(1_796_601_600 + 18 * 3600 + 1800)
        );
        assert_eq!(parse_utc("200002291200Z"), Ok(951_825_600));
        assert!(parse_utc("20261207").unwrap_err().contains("trailing Z"));
        assert!(parse_utc("20260230Z").is_err());
        assert!(parse_utc("2026120Z").is_err());
        assert!(parse_utc("2026120712Z").is_err());
    }
}
