//! The trusted keys and what each may do: an OpenSSH `allowed_signers` file with two
//! more options.
//!
//! ```text
//! # principals  options                                                 key
//! alice@ops     permit="dump-spool,set-capture",tenants="pg-demo"       ssh-ed25519 AAAA…
//! oncall        permit="*",tenants="*",valid-before="20270101Z"         ssh-ed25519 AAAA…
//! ops-*         cert-authority,permit="level",tenants="pg-*"            ssh-ed25519 AAAA… ca
//! ```
//!
//! OpenSSH's options keep their meaning: `cert-authority` (the key is a CA: a request
//! signed with a user certificate it issued, naming a principal that matches this
//! line's principals, is trusted), `namespaces="…"` (must include `supervise-request`
//! when present), `valid-after`/`valid-before` (`YYYYMMDD[HHMM[SS]]Z`, UTC only). Ours:
//! `permit="op,…"` (the operations, or `*`) and `tenants="name,…"` (patterns, or
//! `*`). A line without `permit` or `tenants` grants nothing: the default is refusal.
//! An unknown option is an error, as in OpenSSH: a typo must not widen a grant.

use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PublicKey};

use crate::refusal::Refusal;
use crate::request::OPERATIONS;
use crate::sshsig::Signer;
use crate::time::parse_utc;

/// Largest signers file read.
pub const MAX_FILE: usize = 1024 * 1024;

/// One trusted key.
#[derive(Debug, Clone)]
pub struct Entry {
    /// 1-based line in the file (for errors and the audit).
    pub line: usize,
    /// Principal patterns (who this is; for a CA, which certificate principals).
    pub principals: Vec<String>,
    /// A certificate authority rather than a signing key.
    pub cert_authority: bool,
    namespaces: Option<Vec<String>>,
    valid_after: Option<u64>,
    valid_before: Option<u64>,
    permit: Vec<String>,
    tenants: Vec<String>,
    key: KeyData,
}

/// Who may sign what: the parsed file.
#[derive(Debug, Clone, Default)]
pub struct Signers {
    entries: Vec<Entry>,
}

/// A request's signer, found and permitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The principal: the line's (a plain key), or the certificate's (a CA).
    pub principal: String,
    /// The line that granted it.
    pub line: usize,
}

impl Signers {
    /// Parses the file's text; errors name `origin:line` and what was wrong.
    pub fn parse(text: &str, origin: &str) -> Result<Signers, String> {
        if text.len() > MAX_FILE {
            return Err(format!("{origin}: larger than {MAX_FILE} bytes"));
        }
        let mut entries = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let entry = parse_line(trimmed, index + 1)
                .map_err(|m| format!("{origin}:{}: {m}", index + 1))?;
            entries.push(entry);
        }
        Ok(Signers { entries })
    }

    /// The entries, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Whether `signer` may run `op` on `tenant` at `now`; the refusal names the first
    /// reason of the first line that trusts the key.
    pub fn authorize(
        &self,
        signer: &Signer,
        op: &str,
        tenant: &str,
        now: u64,
    ) -> Result<Grant, Refusal> {
        let fingerprint = signer.fingerprint();
        let mut first_refusal = None;
        let mut found = false;
        for entry in &self.entries {
            let principal = match signer {
                Signer::Key(key) if !entry.cert_authority && &entry.key == key => {
                    entry.principals.join(",")
                }
                Signer::Certificate(cert)
                    if entry.cert_authority && &entry.key == cert.signature_key() =>
                {
                    found = true;
                    let ca = entry.key.fingerprint(HashAlg::Sha256);
                    if cert.cert_type() != ssh_key::certificate::CertType::User {
                        first_refusal.get_or_insert(Refusal::new(
                            "bad_signature",
                            "the signing certificate is a host certificate",
                        ));
                        continue;
                    }
                    if cert.validate_at(now, [&ca]).is_err() {
                        first_refusal.get_or_insert(Refusal::new(
                            "bad_signature",
                            format!("the certificate of {fingerprint} (key id {:?}) is not valid now, or not signed by {ca}", cert.key_id()),
                        ));
                        continue;
                    }
                    match cert
                        .valid_principals()
                        .iter()
                        .find(|p| matches_list(&entry.principals, p))
                    {
                        Some(p) => p.clone(),
                        None => {
                            first_refusal.get_or_insert(Refusal::new(
                                "not_permitted",
                                format!(
                                    "the certificate's principals {:?} match none of line {}'s {:?}",
                                    cert.valid_principals(),
                                    entry.line,
                                    entry.principals
                                ),
                            ));
                            continue;
                        }
                    }
                }
                _ => continue,
            };
            found = true;
            match entry.permits(op, tenant, now) {
                Ok(()) => {
                    return Ok(Grant {
                        principal,
                        line: entry.line,
                    })
                }
                Err(refusal) => {
                    first_refusal.get_or_insert(refusal);
                }
            }
        }
        if !found {
            let what = match signer {
                Signer::Key(_) => format!("key {fingerprint} is not in allowed_signers"),
                Signer::Certificate(cert) => format!(
                    "key {fingerprint} holds a certificate from CA {}, which allowed_signers does not trust",
                    cert.signature_key().fingerprint(HashAlg::Sha256)
                ),
            };
            return Err(Refusal::new("unknown_key", what));
        }
        Err(first_refusal.unwrap_or_else(|| Refusal::new("not_permitted", "no line grants it")))
    }
}

impl Entry {
    fn permits(&self, op: &str, tenant: &str, now: u64) -> Result<(), Refusal> {
        let line = self.line;
        if let Some(namespaces) = &self.namespaces {
            if !matches_list(namespaces, crate::REQUEST_NAMESPACE) {
                return Err(Refusal::new(
                    "not_permitted",
                    format!(
                        "line {line}: namespaces={namespaces:?} does not include {}",
                        crate::REQUEST_NAMESPACE
                    ),
                ));
            }
        }
        if let Some(after) = self.valid_after {
            if now < after {
                return Err(Refusal::new(
                    "key_not_yet_valid",
                    format!("line {line}: the key is valid after {after} (unix s); it is {now}"),
                ));
            }
        }
        if let Some(before) = self.valid_before {
            if now >= before {
                return Err(Refusal::new(
                    "key_expired",
                    format!("line {line}: the key was valid before {before} (unix s); it is {now}"),
                ));
            }
        }
        if !self.permit.iter().any(|p| p == "*" || p == op) {
            return Err(Refusal::new(
                "not_permitted",
                format!(
                    "line {line}: the key may not {op} (permit={:?})",
                    self.permit.join(",")
                ),
            ));
        }
        if !matches_list(&self.tenants, tenant) {
            return Err(Refusal::new(
                "not_permitted",
                format!(
                    "line {line}: the key may not act on tenant {tenant:?} (tenants={:?})",
                    self.tenants.join(",")
                ),
            ));
        }
        Ok(())
    }
}

fn parse_line(line: &str, number: usize) -> Result<Entry, String> {
    let (principals, rest) = split_token(line);
    if principals.is_empty() || rest.is_empty() {
        return Err("expected `principals [options] keytype base64-key [comment]`".into());
    }
    let (second, after) = split_token(rest);
    let (options, key_text) = if is_key_type(second) {
        ("", rest)
    } else {
        (second, after)
    };
    let mut entry = Entry {
        line: number,
        principals: split_list(principals),
        cert_authority: false,
        namespaces: None,
        valid_after: None,
        valid_before: None,
        permit: Vec::new(),
        tenants: Vec::new(),
        key: parse_key(key_text)?,
    };
    for option in split_options(options)? {
        let (name, value) = match option.split_once('=') {
            Some((n, v)) => (n, Some(unquote(v)?)),
            None => (option.as_str(), None),
        };
        let need =
            |v: Option<String>| v.ok_or_else(|| format!("option {name} needs a value (\"…\")"));
        match name.to_ascii_lowercase().as_str() {
            "cert-authority" if value.is_none() => entry.cert_authority = true,
            "namespaces" => entry.namespaces = Some(split_list(&need(value)?)),
            "valid-after" => entry.valid_after = Some(parse_utc(&need(value)?).map_err(|m| format!("valid-after: {m}"))?),
            "valid-before" => entry.valid_before = Some(parse_utc(&need(value)?).map_err(|m| format!("valid-before: {m}"))?),
            "permit" => {
                let ops = split_list(&need(value)?);
                if let Some(bad) = ops.iter().find(|o| *o != "*" && !OPERATIONS.contains(&o.as_str())) {
                    return Err(format!("permit: unknown operation {bad:?} (known: {}, or *)", OPERATIONS.join(", ")));
                }
                entry.permit = ops;
            }
            "tenants" => entry.tenants = split_list(&need(value)?),
            _ => return Err(format!("unknown option {option:?} (known: cert-authority, namespaces, valid-after, valid-before, permit, tenants)")),
        }
    }
    Ok(entry)
}

fn parse_key(text: &str) -> Result<KeyData, String> {
    let mut parts = text.split_whitespace();
    let (kind, b64) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let key = PublicKey::from_openssh(&format!("{kind} {b64}"))
        .map_err(|e| format!("key {kind:?}: {e} (ed25519 keys are supported)"))?;
    Ok(key.key_data().clone())
}

fn is_key_type(token: &str) -> bool {
    token.starts_with("ssh-") || token.starts_with("ecdsa-") || token.starts_with("sk-")
}

/// The first whitespace-separated token (an options token may hold quoted spaces).
fn split_token(text: &str) -> (&str, &str) {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return (&text[..i], text[i..].trim_start()),
            _ => {}
        }
    }
    (text, "")
}

fn split_options(options: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in options.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    if quoted {
        return Err("an option's quote is not closed".into());
    }
    if !current.is_empty() {
        out.push(current);
    }
    if out.iter().any(String::is_empty) {
        return Err("an empty option (two commas?)".into());
    }
    Ok(out)
}

fn unquote(value: &str) -> Result<String, String> {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .map(str::to_owned)
        .ok_or_else(|| format!("option value {value} must be in double quotes"))
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// OpenSSH's pattern lists: `*` and `?` wildcards, `!` negates (a negated match wins).
pub fn matches_list(patterns: &[String], name: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        if let Some(negated) = pattern.strip_prefix('!') {
            if glob(negated.as_bytes(), name.as_bytes()) {
                return false;
            }
        } else if glob(pattern.as_bytes(), name.as_bytes()) {
            matched = true;
        }
    }
    matched
}

fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = n;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            n = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests;
