//! Durations as operators write them, in profiles and on the command line.

use std::time::Duration;

/// `500ms`, `2s`, `10m`, `1h`: a positive whole number and a unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("bad duration {text:?}: {why} (examples: 500ms, 2s, 10m, 1h)");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| bad("expected a number, then ms, s, m or h"))?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => return Err(bad("missing the unit (ms, s, m or h)")),
        other => return Err(bad(&format!("unknown unit {other:?}"))),
    };
    match n.checked_mul(unit_ms) {
        Some(0) => Err(bad("must be more than zero")),
        Some(ms) => Ok(Duration::from_millis(ms)),
        None => Err(bad("too long")),
    }
}
