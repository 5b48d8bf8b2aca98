//! `$n` parameters compared with a rule's column: the refusal of the text-only API,
//! and the judgement of a parameter's value (text or binary) when it arrives in Bind.

use super::value::{verdict, Lit, Seen, Verdict};
use super::*;

/// The refusal of [`rewrite`](crate::pg::sql::rewrite()) for a plan with parameters: a
/// text-only rewrite cannot see their values.
pub(in crate::pg::sql) fn params_unprovable(plan: &RewritePlan, rules: &[Compiled]) -> SqlError {
    let (n, rule) = plan.params[0];
    let rule = &rules[rule];
    SqlError::Unprovable {
        reason: format!(
            "compares {} with parameter ${n}, whose value the rewrite rule cannot see in this text; write {} = <value>",
            rule.name(),
            rule.column
        ),
    }
}

/// See [`rewrite_param`].
pub(in crate::pg::sql) fn param(
    rule: &Compiled,
    value: &[u8],
    binary: bool,
) -> Result<Option<Vec<u8>>, SqlError> {
    let unprovable = |why: String| {
        SqlError::Unprovable {
        reason: format!(
            "a parameter compared with {} {why}, so the rewrite rule cannot prove what it selects; write {} = <value>",
            rule.name(),
            rule.column
        ),
    }
    };
    if !binary {
        let text =
            std::str::from_utf8(value).map_err(|_| unprovable("is not UTF-8 text".to_owned()))?;
        return match verdict(&rule.from, &Seen::Str(text), false) {
            Verdict::Equal => Ok(Some(rule.to_value.clone().into_bytes())),
            Verdict::Maybe(why) => Err(unprovable(format!(
                "may mean {} (it {why})",
                rule.from.describe()
            ))),
            Verdict::Different => Ok(None),
        };
    }
    let from = match &rule.from {
        Lit::Number(d) => d,
        Lit::Text(_) => {
            return Err(unprovable(format!(
                "is in binary format, which is not compared with the string {}",
                rule.from.describe()
            )))
        }
    };
    let Some(from_int) = from.to_i128() else {
        return Err(unprovable(format!(
            "is in binary format, which is not compared with the non-integer {}",
            rule.from.describe()
        )));
    };
    let (seen, float_equal) = match value.len() {
        2 => (i128::from(i16::from_be_bytes([value[0], value[1]])), false),
        4 => {
            let bytes = [value[0], value[1], value[2], value[3]];
            (
                i128::from(i32::from_be_bytes(bytes)),
                f32::from_be_bytes(bytes) == from.to_f32(),
            )
        }
        8 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(value);
            (
                i128::from(i64::from_be_bytes(bytes)),
                f64::from_be_bytes(bytes) == from.to_f64(),
            )
        }
        n => {
            return Err(unprovable(format!(
                "is a binary value of {n} bytes, not a 2-, 4- or 8-byte integer, and may mean {}",
                rule.from.describe()
            )))
        }
    };
    if seen != from_int {
        if float_equal {
            return Err(unprovable(format!(
                "is a binary value that may be the floating-point encoding of {}",
                rule.from.describe()
            )));
        }
        return Ok(None);
    }
    let to = rule.to_int.ok_or_else(|| {
        unprovable(format!(
            "means {} in binary format, but the replacement {} is not an integer",
            rule.from.describe(),
            rule.to
        ))
    })?;
    let overflow = || {
        unprovable(format!(
            "means {} as a {}-byte integer, but the replacement {} does not fit in it",
            rule.from.describe(),
            value.len(),
            rule.to
        ))
    };
    Ok(Some(match value.len() {
        2 => i16::try_from(to)
            .map_err(|_| overflow())?
            .to_be_bytes()
            .to_vec(),
        4 => i32::try_from(to)
            .map_err(|_| overflow())?
            .to_be_bytes()
            .to_vec(),
        _ => i64::try_from(to)
            .map_err(|_| overflow())?
            .to_be_bytes()
            .to_vec(),
    }))
}
