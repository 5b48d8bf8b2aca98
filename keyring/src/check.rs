//! The whole decision on one request, in one place: parse, signature, trust and
//! permission, binding to this node, time window, arguments, replay. It either accepts
//! (and records the nonce) or refuses with the first reason; nothing runs before it
//! accepts. The verdict keeps what the audit needs either way.

use crate::refusal::Refusal;
use crate::replay::NonceCache;
use crate::request::{parse_args, Args, Request};
use crate::seal::NodeKeys;
use crate::signers::Signers;
use crate::sshsig::Signature;

/// Time bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How far in the future `issued` may be (clock skew between operator and node), s.
    pub max_skew: u64,
    /// Longest `expires - issued`, s.
    pub max_lifetime: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_skew: 60,
            max_lifetime: 15 * 60,
        }
    }
}

/// What a request must be bound to here.
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    /// This node's keys (its id is the host key's fingerprint).
    pub keys: &'a NodeKeys,
    /// The tenant this supervising process serves.
    pub tenant: &'a str,
    /// This run of it.
    pub instance: &'a str,
}

/// Everything a decision needs besides the request.
#[derive(Debug)]
pub struct Checker<'a> {
    /// Who is trusted for what.
    pub signers: &'a Signers,
    /// Time bounds.
    pub limits: Limits,
    /// This node.
    pub node: Node<'a>,
}

/// An accepted request.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The request.
    pub request: Request,
    /// Its arguments (opened, when they were sealed).
    pub args: Vec<(String, String)>,
    /// The principal the signers file knows the key as.
    pub principal: String,
    /// The signers file line that granted it.
    pub line: usize,
}

impl Accepted {
    /// An argument's value.
    pub fn arg(&self, name: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The decision and what the audit records about it.
#[derive(Debug)]
pub struct Verdict {
    /// `SHA256:…` of the signing key, once the signature parsed.
    pub fingerprint: Option<String>,
    /// The operation, once the request parsed.
    pub op: Option<String>,
    /// The target, once the request parsed.
    pub target: Option<String>,
    /// The outcome.
    pub outcome: Result<Accepted, Refusal>,
}

impl Checker<'_> {
    /// Decides on `request` (its exact signed bytes) with `signature` (armored) at
    /// `now` (unix s); on acceptance its nonce is recorded in `nonces`.
    pub fn check(
        &self,
        request: &[u8],
        signature: &[u8],
        now: u64,
        nonces: &mut NonceCache,
    ) -> Verdict {
        let mut verdict = Verdict {
            fingerprint: None,
            op: None,
            target: None,
            outcome: Err(Refusal::new("malformed", "not checked")),
        };
        verdict.outcome = self.decide(request, signature, now, nonces, &mut verdict);
        verdict
    }

    fn decide(
        &self,
        bytes: &[u8],
        signature: &[u8],
        now: u64,
        nonces: &mut NonceCache,
        verdict: &mut Verdict,
    ) -> Result<Accepted, Refusal> {
        let request = Request::parse(bytes)?;
        verdict.op = Some(request.op.clone());
        verdict.target = Some(request.target.as_str().to_owned());
        let signature = Signature::parse_armored(signature)?;
        verdict.fingerprint = Some(signature.signer.fingerprint());
        signature.verify(crate::REQUEST_NAMESPACE, bytes)?;
        let tenant = request.target.tenant();
        let grant = self
            .signers
            .authorize(&signature.signer, &request.op, tenant, now)?;
        self.check_binding(&request)?;
        self.check_time(&request, now)?;
        let args = match &request.args {
            Args::Clear(args) => args.clone(),
            // A bad plaintext is refused without echoing it: the arguments were sealed
            // so that nobody on the way reads them.
            Args::Sealed(sealed) => {
                parse_args(&self.node.keys.unseal_args(sealed)?).map_err(|_| {
                    Refusal::new(
                        "sealed_args",
                        "the sealed arguments are not canonical `arg NAME VALUE` lines",
                    )
                })?
            }
        };
        nonces.admit(request.nonce, request.expires, now)?;
        Ok(Accepted {
            request,
            args,
            principal: grant.principal,
            line: grant.line,
        })
    }

    fn check_binding(&self, request: &Request) -> Result<(), Refusal> {
        let id = self.node.keys.id();
        if request.node != id {
            return Err(Refusal::new(
                "wrong_node",
                format!(
                    "the request is bound to node {}, and this is node {id}",
                    request.node
                ),
            ));
        }
        if let Some(instance) = &request.instance {
            if instance != self.node.instance {
                return Err(Refusal::new(
                    "wrong_instance",
                    format!(
                        "the request is bound to run {instance} of tenant {}, and this is run {}",
                        self.node.tenant, self.node.instance
                    ),
                ));
            }
        }
        let tenant = request.target.tenant();
        if tenant != self.node.tenant {
            return Err(Refusal::new(
                "wrong_tenant",
                format!(
                    "the request targets tenant {tenant:?}; this supervisor serves {:?}",
                    self.node.tenant
                ),
            ));
        }
        Ok(())
    }

    fn check_time(&self, request: &Request, now: u64) -> Result<(), Refusal> {
        let Limits {
            max_skew,
            max_lifetime,
        } = self.limits;
        if request.expires <= request.issued {
            return Err(Refusal::new("malformed", "expires is not after issued"));
        }
        if request.issued > now.saturating_add(max_skew) {
            return Err(Refusal::new(
                "not_yet_valid",
                format!(
                    "the request is dated {} s in the future (the node allows {max_skew} s of clock skew)",
                    request.issued - now
                ),
            ));
        }
        if now >= request.expires {
            return Err(Refusal::new(
                "expired",
                format!("the request expired {} s ago", now - request.expires + 1),
            ));
        }
        let lifetime = request.expires - request.issued;
        if lifetime > max_lifetime {
            return Err(Refusal::new(
                "too_long",
                format!("the request is valid for {lifetime} s; this node accepts at most {max_lifetime} s"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
