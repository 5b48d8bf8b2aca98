//! Literal values as PostgreSQL reads them: exact decimals (so `20`, `2e1` and `'20'`
//! are one value and `20.000000000000001` another), booleans and strings, and how a
//! literal compares with a rule's value, down to "maybe", which is refused.

/// An exact decimal `digits × 10^exp`, without leading or trailing zeros in `digits`
/// (empty for zero, which is never negative).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Dec {
    negative: bool,
    digits: String,
    exp: i64,
}

impl Dec {
    fn new(negative: bool, digits: &str, exp: i64) -> Dec {
        let trimmed = digits.trim_start_matches('0');
        let kept = trimmed.trim_end_matches('0');
        if kept.is_empty() {
            return Dec {
                negative: false,
                digits: String::new(),
                exp: 0,
            };
        }
        let zeros = i64::try_from(trimmed.len() - kept.len()).unwrap_or(i64::MAX);
        Dec {
            negative,
            digits: kept.to_owned(),
            exp: exp.saturating_add(zeros),
        }
    }

    pub(super) fn negated(mut self) -> Dec {
        if !self.digits.is_empty() {
            self.negative = !self.negative;
        }
        self
    }

    fn is_integer(&self) -> bool {
        self.exp >= 0
    }

    fn sci(&self) -> String {
        let digits = if self.digits.is_empty() {
            "0"
        } else {
            &self.digits
        };
        let sign = if self.negative { "-" } else { "" };
        format!("{sign}{digits}e{}", self.exp)
    }

    /// The nearest `f64` (infinite when out of range).
    pub(super) fn to_f64(&self) -> f64 {
        self.sci().parse().unwrap_or(f64::NAN)
    }

    /// The nearest `f32` (infinite when out of range).
    pub(super) fn to_f32(&self) -> f32 {
        self.sci().parse().unwrap_or(f32::NAN)
    }

    pub(super) fn to_i128(&self) -> Option<i128> {
        if self.digits.is_empty() {
            return Some(0);
        }
        let exp = u32::try_from(self.exp).ok()?;
        let mut value: i128 = self.digits.parse().ok()?;
        value = value.checked_mul(10i128.checked_pow(exp)?)?;
        Some(if self.negative { -value } else { value })
    }
}

/// What a numeric text means to PostgreSQL's number input (and its numeric literals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Num {
    Dec(Dec),
    /// Not a number: `abc`, `NaN`, `Infinity`, malformed digits.
    NotANumber,
    /// An integer too large to evaluate here (non-decimal with more than 128 bits).
    Unbounded,
}

impl Num {
    pub(super) fn negated(self) -> Num {
        match self {
            Num::Dec(d) => Num::Dec(d.negated()),
            other => other,
        }
    }
}

/// Digits of `radix` from `bytes[*i..]`, with single underscores between digits
/// (PostgreSQL 16), underscores removed. Stops at the first other character.
fn digit_run(bytes: &[u8], i: &mut usize, radix: u32) -> String {
    let mut out = String::new();
    while let Some(&b) = bytes.get(*i) {
        let c = char::from(b);
        if c.is_digit(radix) {
            out.push(c);
            *i += 1;
        } else if c == '_'
            && !out.is_empty()
            && bytes
                .get(*i + 1)
                .is_some_and(|&n| char::from(n).is_digit(radix))
        {
            *i += 1;
        } else {
            break;
        }
    }
    out
}

/// Parses a number as PostgreSQL's numeric and integer input does (the text already
/// trimmed): an optional sign, then decimal digits with an optional fraction and
/// exponent, or `0x`/`0o`/`0b` integers; single underscores between digits.
pub(super) fn parse_number(text: &str) -> Num {
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let bytes = rest.as_bytes();
    let radix = match (bytes.first(), bytes.get(1)) {
        (Some(b'0'), Some(b'x' | b'X')) => Some(16),
        (Some(b'0'), Some(b'o' | b'O')) => Some(8),
        (Some(b'0'), Some(b'b' | b'B')) => Some(2),
        _ => None,
    };
    if let Some(radix) = radix {
        let mut i = 2;
        if bytes.get(i) == Some(&b'_') {
            i += 1;
        }
        let digits = digit_run(bytes, &mut i, radix);
        if digits.is_empty() || i != bytes.len() {
            return Num::NotANumber;
        }
        return match u128::from_str_radix(&digits, radix) {
            Ok(v) => Num::Dec(Dec::new(negative, &v.to_string(), 0)),
            Err(_) => Num::Unbounded,
        };
    }
    let mut i = 0;
    let int = digit_run(bytes, &mut i, 10);
    let mut frac = String::new();
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        frac = digit_run(bytes, &mut i, 10);
    }
    if int.is_empty() && frac.is_empty() {
        return Num::NotANumber;
    }
    let mut exp: i64 = 0;
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        let exp_negative = match bytes.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let digits = digit_run(bytes, &mut i, 10);
        if digits.is_empty() {
            return Num::NotANumber;
        }
        // An exponent beyond i64 saturates: such a value equals no rule's value.
        exp = digits.parse().unwrap_or(i64::MAX);
        if exp_negative {
            exp = -exp;
        }
    }
    if i != bytes.len() {
        return Num::NotANumber;
    }
    let frac_len = i64::try_from(frac.len()).unwrap_or(i64::MAX);
    Num::Dec(Dec::new(
        negative,
        &format!("{int}{frac}"),
        exp.saturating_sub(frac_len),
    ))
}

/// PostgreSQL's boolean input (`t`, `yes`, `on`, `1`, unique prefixes, any case).
fn parse_bool(text: &str) -> Option<bool> {
    let s = text.trim().to_ascii_lowercase();
    if s.is_empty() {
        return None;
    }
    if s == "1" || s == "on" || "true".starts_with(&s) || "yes".starts_with(&s) {
        Some(true)
    } else if s == "0" || s == "off" || s == "of" || "false".starts_with(&s) || "no".starts_with(&s)
    {
        Some(false)
    } else {
        None
    }
}

/// A rule's literal value: a number (exact) or a string's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Lit {
    Number(Dec),
    Text(String),
}

impl Lit {
    /// The value as SQL text, for messages.
    pub(super) fn describe(&self) -> String {
        match self {
            Lit::Number(d) => {
                if d.digits.is_empty() {
                    return "0".to_owned();
                }
                let sign = if d.negative { "-" } else { "" };
                let len = i64::try_from(d.digits.len()).unwrap_or(i64::MAX);
                match d.exp {
                    0..=30 => format!("{sign}{}{}", d.digits, "0".repeat(d.exp as usize)),
                    e if e < 0 && -e < len => {
                        let point = (len + e) as usize;
                        format!("{sign}{}.{}", &d.digits[..point], &d.digits[point..])
                    }
                    e if e < 0 && -e - len <= 30 => {
                        format!("{sign}0.{}{}", "0".repeat((-e - len) as usize), d.digits)
                    }
                    _ => d.sci(),
                }
            }
            Lit::Text(s) => format!("'{}'", s.replace('\'', "''")),
        }
    }
}

/// A literal as found in a statement.
pub(super) enum Seen<'a> {
    Num(Num),
    Str(&'a str),
    Bool(bool),
    Null,
    /// A literal kind not evaluated here (bit strings, …).
    Opaque,
}

/// How a literal compares with a rule's value.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Equal,
    /// Not provably different: refuse, saying why.
    Maybe(&'static str),
    Different,
}

fn num_verdict(from: &Dec, seen: &Num, integer_cast: bool) -> Verdict {
    let seen = match seen {
        Num::NotANumber => return Verdict::Different,
        Num::Unbounded => return Verdict::Maybe("is a number too large to evaluate"),
        Num::Dec(d) => d,
    };
    if integer_cast && !seen.is_integer() {
        return Verdict::Maybe("is rounded by its cast to an integer type");
    }
    if seen == from {
        Verdict::Equal
    } else if seen.to_f64() == from.to_f64() || seen.to_f32() == from.to_f32() {
        Verdict::Maybe("rounds to the same floating-point value")
    } else {
        Verdict::Different
    }
}

pub(super) fn verdict(from: &Lit, seen: &Seen<'_>, integer_cast: bool) -> Verdict {
    match (from, seen) {
        (_, Seen::Opaque) => Verdict::Maybe("is a literal of a kind the rewrite does not evaluate"),
        (_, Seen::Null) | (Lit::Number(_), Seen::Bool(_)) => Verdict::Different,
        (Lit::Number(f), Seen::Num(n)) => num_verdict(f, n, integer_cast),
        (Lit::Number(f), Seen::Str(s)) => num_verdict(f, &parse_number(s.trim()), integer_cast),
        (Lit::Text(t), Seen::Str(s)) => {
            if s == t {
                Verdict::Equal
            } else if s.trim_end_matches(' ') == t.trim_end_matches(' ') {
                Verdict::Maybe("differs only in trailing spaces, which a char(n) column ignores")
            } else if let (Num::Dec(a), Num::Dec(b)) =
                (parse_number(t.trim()), parse_number(s.trim()))
            {
                match num_verdict(&a, &Num::Dec(b), integer_cast) {
                    Verdict::Different => Verdict::Different,
                    _ => Verdict::Maybe("is the same number in a numeric column"),
                }
            } else {
                Verdict::Different
            }
        }
        (Lit::Text(t), Seen::Num(n)) => match parse_number(t.trim()) {
            Num::Dec(a) => num_verdict(&a, n, integer_cast),
            _ => Verdict::Different,
        },
        (Lit::Text(t), Seen::Bool(b)) => match parse_bool(t) {
            Some(v) if v == *b => Verdict::Maybe("is the same boolean"),
            _ => Verdict::Different,
        },
    }
}
