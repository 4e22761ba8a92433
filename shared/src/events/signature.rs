//! DevLake's signature of a pipeline notification, checked in constant time.
//!
//! DevLake (`DefaultPipelineNotificationService.sendNotification` and `signature` in
//! `backend/server/services/pipeline_notification_impl.go`) posts the notification to
//! `<NOTIFICATION_ENDPOINT>?nouce=<notification id>-<16 random letters>&sign=<hex>`, where the
//! query key is spelled `nouce` and `sign` is the lowercase hex SHA-256 of the body, then
//! `NOTIFICATION_SECRET`, then the `nouce` value, concatenated. Nothing else authenticates the
//! request: the function URL has no IAM auth, so this check comes before anything else.

use percent_encoding::percent_decode_str;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::ConfigError;

/// The query key DevLake puts the nonce under (its own spelling).
pub const NONCE_KEY: &str = "nouce";
/// The query key of the signature.
pub const SIGN_KEY: &str = "sign";

/// `NOTIFICATION_SECRET`: never printed (`Debug` is redacted, no `Display`).
#[derive(Clone)]
pub struct NotificationSecret(String);

impl NotificationSecret {
    /// Surrounding white space is dropped, as DevLake's `.env` reader drops it, so a secret
    /// pasted with a trailing newline still matches. An empty secret would make the signature a
    /// hash anyone can compute, so it is refused.
    pub fn new(secret: impl Into<String>) -> Result<Self, ConfigError> {
        let secret = secret.into();
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(ConfigError::new(
                super::SECRET_VAR,
                "the notification secret is empty; DevLake's signature would then prove nothing",
            ));
        }
        Ok(NotificationSecret(secret.to_string()))
    }

    /// The hex signature DevLake computes for `body` and `nonce` (the whole `nouce` value).
    pub fn sign(&self, body: &[u8], nonce: &str) -> String {
        let digest = self.digest(body, nonce);
        let mut out = String::with_capacity(64);
        for byte in digest {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        out
    }

    fn digest(&self, body: &[u8], nonce: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(body);
        hasher.update(self.0.as_bytes());
        hasher.update(nonce.as_bytes());
        hasher.finalize().into()
    }

    /// Whether `sign` is this secret's signature of `body` and `nonce`. The comparison takes the
    /// same time wherever the first differing byte is; only a malformed `sign` (not 64 hex
    /// digits, which says nothing about the secret) is refused early.
    pub fn verifies(&self, body: &[u8], nonce: &str, sign: &str) -> bool {
        let Some(presented) = decode_hex_32(sign) else {
            return false;
        };
        self.digest(body, nonce).ct_eq(&presented).into()
    }
}

impl std::fmt::Debug for NotificationSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NotificationSecret(<redacted>)")
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// 64 hex digits (either case) as 32 bytes.
fn decode_hex_32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// The `nouce` and `sign` values of a query string, percent-decoded. `None` when either is
/// missing, empty or given more than once (DevLake sends each exactly once).
pub fn signed_query(query: Option<&str>) -> Option<SignedQuery> {
    let (mut nonce, mut sign) = (None::<String>, None::<String>);
    for pair in query.unwrap_or_default().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match decode(key).as_deref() {
            Some(NONCE_KEY) => &mut nonce,
            Some(SIGN_KEY) => &mut sign,
            _ => continue,
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(decode(value)?);
    }
    let (nonce, sign) = (nonce?, sign?);
    (!nonce.is_empty() && !sign.is_empty()).then_some(SignedQuery { nonce, sign })
}

/// What a notification's query string carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedQuery {
    /// `<notification id>-<nonce>`, signed as is.
    pub nonce: String,
    pub sign: String,
}

impl SignedQuery {
    /// The id of DevLake's `_devlake_notifications` row (the part before the dash), which
    /// DevLake logs too: what to quote when matching the two sides up.
    pub fn notification_id(&self) -> Option<u64> {
        self.nonce.split_once('-')?.0.parse().ok()
    }
}

fn decode(text: &str) -> Option<String> {
    percent_decode_str(&text.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devlake_signature_vector() {
        // sha256("{}" + "s3cret" + "1-abcdefghijklmnop"), computed with Python's hashlib.
        let secret = NotificationSecret::new("s3cret\n").unwrap();
        let expected = "8695ac80493cd15fb3b5c4339667de5df7112c5c756444b4ac8e930762821331";
        assert_eq!(secret.sign(b"{}", "1-abcdefghijklmnop"), expected);
        assert!(secret.verifies(b"{}", "1-abcdefghijklmnop", expected));
        assert!(secret.verifies(b"{}", "1-abcdefghijklmnop", &expected.to_uppercase()));
        assert!(!secret.verifies(b"{} ", "1-abcdefghijklmnop", expected));
        assert!(!secret.verifies(b"{}", "2-abcdefghijklmnop", expected));
        assert!(!secret.verifies(b"{}", "1-abcdefghijklmnop", &expected[..63]));
        assert!(!secret.verifies(
            b"{}",
            "1-abcdefghijklmnop",
            &format!("{}g", &expected[..63])
        ));
        assert!(!NotificationSecret::new("other").unwrap().verifies(
            b"{}",
            "1-abcdefghijklmnop",
            expected
        ));
        assert!(!format!("{secret:?}").contains("s3cret"));
        assert!(NotificationSecret::new(" \n").is_err());
    }

    #[test]
    fn query_parsing() {
        let q = signed_query(Some("nouce=12-AbCdEfGhIjKlMn01&sign=ab%63d")).unwrap();
        assert_eq!(q.nonce, "12-AbCdEfGhIjKlMn01");
        assert_eq!(q.sign, "abcd");
        assert_eq!(q.notification_id(), Some(12));
        assert_eq!(signed_query(Some("nouce=1-x")), None);
        assert_eq!(signed_query(Some("sign=ab")), None);
        assert_eq!(signed_query(Some("nouce=&sign=ab")), None);
        assert_eq!(signed_query(Some("nouce=1-x&sign=ab&sign=cd")), None);
        assert_eq!(signed_query(None), None);
        assert_eq!(
            signed_query(Some("x=1&nouce=1-x&sign=ab")).map(|q| q.sign),
            Some("ab".to_string())
        );
    }
}
