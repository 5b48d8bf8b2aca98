//! Signed privileged requests and sealed results, sans-IO (seed 001).
//!
//! A privileged operation on a node (dump a connection's spool, read a tenant's memory,
//! change what the supervisor does to a tenant) is asked for with a [`request`]: a
//! small canonical text naming the operation, its target, the node it is bound to, a
//! time window, a nonce and the requester's *recipient* key. An operator signs that
//! text with `ssh-keygen -Y sign -n supervise-request` ([`sshsig`]). The node checks
//! the signature, the key's permissions in its [`signers`] file, the window, the
//! binding and the [`replay`] cache ([`check`] does all of it in one place and says
//! why it refuses), runs the operation, and [`seal`]s the result to the recipient with
//! age, signed by its own host key. Whoever holds the recipient's identity can read the
//! result; nobody on the way can swap the recipient, since it is inside the signed text.
//!
//! No syscalls and no clock: the caller passes the time and the bytes of files it read.
//! The one exception is randomness: age draws its file key and ephemeral share from the
//! operating system's CSPRNG inside `age::Encryptor`, which this crate cannot inject.
//! Host keys are made from a seed the caller supplies.

#![forbid(unsafe_code)]

pub mod check;
pub mod replay;
pub mod request;
pub mod seal;
pub mod signers;
pub mod sshsig;

mod refusal;
#[cfg(test)]
mod testkit;
mod time;

pub use check::{Accepted, Checker, Limits, Node};
pub use refusal::Refusal;
pub use request::{Request, Target};

/// The SSHSIG namespace of requests (`ssh-keygen -Y sign -n supervise-request`): a
/// signature made for anything else (git commits, files) is never a request.
pub const REQUEST_NAMESPACE: &str = "supervise-request";
/// The SSHSIG namespace of a node's signature over a sealed result.
pub const RESULT_NAMESPACE: &str = "supervise-result";
