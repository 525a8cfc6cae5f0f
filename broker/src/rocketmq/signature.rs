//! RocketMQ's request signature, checked when txmq's authentication is on.
//!
//! Every official client sends `authorization: MQv2-HMAC-SHA1 Credential=<access key>,
//! SignedHeaders=x-mq-date-time, Signature=<hex HMAC-SHA1 of that header's value, keyed with the
//! secret key>`. The access key is a txmq user's name and the secret key the one
//! `txmq user access-key NAME` made; the request then acts as that user, under its rights.
//!
//! What the scheme does not give: the signature covers only a timestamp (written by the client
//! in its local time zone, so txmq cannot bound its age), not the request; anyone who sees one
//! can replay it. Use TLS on the RocketMQ port wherever authentication matters.

use hmac::{Hmac, Mac};
use tonic::metadata::MetadataMap;
use txmq_raft_store::StateReader;

const SCHEME: &str = "MQv2-HMAC-SHA1";
const DATE_HEADER: &str = "x-mq-date-time";

/// The user a request's signature proves, or why it does not prove one.
pub fn verify(metadata: &MetadataMap, reader: &StateReader) -> Result<String, String> {
    let header = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("this request is not signed; give the client an access key and secret key")?;
    let (access_key, signature) = parse(header)?;
    let date = metadata
        .get(DATE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or("the signed x-mq-date-time header is missing")?;
    let unknown = || format!("access key '{access_key}': no such user with a secret key");
    let user = reader.user(&access_key).ok_or_else(unknown)?;
    let secret = user.access_secret.ok_or_else(unknown)?;
    let expected = hex::decode(signature).map_err(|_| "the signature is not hex".to_string())?;
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.0.as_bytes())
        .map_err(|e| format!("unusable secret key: {e}"))?;
    mac.update(date.as_bytes());
    // Constant time: a caller must not learn how much of a guess was right.
    mac.verify_slice(&expected)
        .map_err(|_| format!("the signature does not match access key '{access_key}'"))?;
    Ok(access_key)
}

/// The access key and the hex signature of an `authorization` value.
fn parse(header: &str) -> Result<(String, &str), String> {
    let fields = header
        .strip_prefix(SCHEME)
        .ok_or_else(|| format!("the authorization header is not {SCHEME}"))?;
    let mut access_key = None;
    let mut signature = None;
    for field in fields.split(',') {
        match field.trim().split_once('=') {
            // Some clients append a scope after the key (`AK/…`).
            Some(("Credential", v)) => access_key = v.split('/').next(),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    match (access_key, signature) {
        (Some(ak), Some(sig)) if !ak.is_empty() && !sig.is_empty() => Ok((ak.to_string(), sig)),
        _ => Err("this request is signed without an access key; give the client one".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_header_parses_and_an_empty_access_key_does_not() {
        let (ak, sig) =
            parse("MQv2-HMAC-SHA1 Credential=alice, SignedHeaders=x-mq-date-time, Signature=0a1b")
                .expect("parsed");
        assert_eq!((ak.as_str(), sig), ("alice", "0a1b"));
        // The Python client signs even without credentials.
        assert!(
            parse("MQv2-HMAC-SHA1 Credential=, SignedHeaders=x-mq-date-time, Signature=ab")
                .is_err()
        );
        assert!(parse("Basic YWxpY2U6cHc=").is_err());
    }

    #[test]
    fn the_signature_is_hmac_sha1_of_the_date_with_the_secret() {
        // RFC 2202 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"Jefe").expect("key");
        mac.update(b"what do ya want for nothing?");
        let expected = hex::decode("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79").expect("hex");
        assert!(mac.verify_slice(&expected).is_ok());
    }
}
