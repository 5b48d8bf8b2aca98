//! Fuzzes every parser of `keyring` that reads bytes from outside: requests, SSH
//! signatures, arguments, the signers file and the nonce cache.
//!
//! The whole input goes to each parser (the text ones read it as lossy UTF-8). Checked:
//! - nothing panics;
//! - a request `Request::parse` accepts is in canonical form: `encode()` gives back the
//!   input byte for byte, and parsing that again gives an equal request;
//! - arguments `parse_args` accepts are canonical too (`encode_args` gives the input
//!   back) and re-parse equal;
//! - a nonce cache `NonceCache::parse` accepts (capacity 16) survives `encode` then
//!   `parse` unchanged;
//! - a signature `parse_armored`/`parse_blob` accepts can be verified against the input
//!   and fingerprinted without a panic.
#![no_main]

use keyring::replay::NonceCache;
use keyring::request::{encode_args, parse_args, Recipient, Target};
use keyring::signers::Signers;
use keyring::sshsig::Signature;
use keyring::{Request, REQUEST_NAMESPACE};
use libfuzzer_sys::fuzz_target;

fn check_signature(signature: Signature, message: &[u8]) {
    let _ = signature.signer.fingerprint();
    let _ = signature.verify(REQUEST_NAMESPACE, message);
    let _ = signature.verify(&signature.namespace.clone(), message);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = Request::parse(data) {
        let encoded = request.encode();
        assert_eq!(
            encoded.as_bytes(),
            data,
            "an accepted request is not in canonical form"
        );
        let again = Request::parse(encoded.as_bytes()).expect("the encoding of a request parses");
        assert_eq!(
            again, request,
            "re-parsing the encoding changed the request"
        );
    }

    if let Ok(signature) = Signature::parse_armored(data) {
        check_signature(signature, data);
    }
    if let Ok(signature) = Signature::parse_blob(data) {
        check_signature(signature, data);
    }

    if let Ok(args) = parse_args(data) {
        let encoded = encode_args(&args);
        assert_eq!(
            encoded.as_bytes(),
            data,
            "accepted arguments are not canonical"
        );
        let again = parse_args(encoded.as_bytes()).expect("encoded arguments parse");
        assert_eq!(again, args, "re-parsing encoded arguments changed them");
    }

    let text = String::from_utf8_lossy(data);
    let _ = Signers::parse(&text, "fuzz").map(|s| s.entries().len());
    if let Ok(cache) = NonceCache::parse(&text, 16) {
        let encoded = cache.encode();
        let again = NonceCache::parse(&encoded, 16).expect("an encoded nonce cache parses");
        assert_eq!(again, cache, "encode then parse changed the nonce cache");
    }

    // The field parsers a request uses, on their own.
    let _ = Target::new(&text).map(|t| t.tenant().len());
    let _ = text.parse::<Recipient>();
});
