//! Bearer tokens bound to one user, signed with the server's secret.
//!
//! Format ([`slowfast_core::wire::TokenClaims`]): `base64url(user "|" expiry) "."
//! base64url(HMAC-SHA256(secret, user "|" expiry))`. Minted by
//! `slowfast token --user U --ttl SECS`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use slowfast_core::wire::{SignedToken, TokenClaims};
use slowfast_data::FileError;

use crate::error::{Result, ServerError};

type HmacSha256 = Hmac<Sha256>;

/// Shortest accepted secret, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// The server's signing key.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// A secret of at least [`MIN_SECRET_BYTES`] bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Secret> {
        let bytes = bytes.into();
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(ServerError::InvalidArgument(format!(
                "the server secret must have at least {MIN_SECRET_BYTES} bytes, got {}",
                bytes.len()
            )));
        }
        Ok(Secret(bytes))
    }

    /// `--secret` when given, else `SLOWFAST_SECRET`, else the contents of `secret_file`
    /// (trailing newline trimmed).
    pub fn resolve(flag: Option<&str>, secret_file: Option<&std::path::Path>) -> Result<Secret> {
        if let Some(s) = flag {
            return Secret::new(s.as_bytes());
        }
        if let Ok(s) = std::env::var("SLOWFAST_SECRET") {
            return Secret::new(s.into_bytes());
        }
        if let Some(path) = secret_file {
            let s = std::fs::read(path).map_err(|e| FileError::new(path, e))?;
            let trimmed = s.trim_ascii_end();
            return Secret::new(trimmed);
        }
        Err(ServerError::InvalidArgument(
            "no server secret: pass --secret, set SLOWFAST_SECRET or pass --secret-file".into(),
        ))
    }

    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        mac.update(payload);
        mac
    }

    /// A token for `user` valid until `expiry` (Unix seconds).
    pub fn mint(&self, user: &str, expiry: i64) -> Result<String> {
        if user.is_empty() || user.len() > slowfast_core::wire::MAX_ID_BYTES {
            return Err(ServerError::InvalidArgument(format!(
                "user id must have 1..={} bytes",
                slowfast_core::wire::MAX_ID_BYTES
            )));
        }
        let payload = format!("{user}|{expiry}");
        let sig = self.mac(payload.as_bytes()).finalize().into_bytes();
        Ok(format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(sig)
        ))
    }

    /// The user a token names, if its signature is this server's and it has not expired at
    /// `now` (Unix seconds). The signature is compared in constant time.
    pub fn verify(&self, token: &str, now: i64) -> Result<String> {
        let bad = |why: &str| ServerError::Token(why.to_string());
        let signed = SignedToken::parse(token).map_err(bad)?;
        self.mac(&signed.payload)
            .verify_slice(&signed.signature)
            .map_err(|_| bad("invalid token signature"))?;
        let TokenClaims { user, expiry } = signed.claims().map_err(bad)?;
        if expiry <= now {
            return Err(bad("token expired"));
        }
        Ok(user)
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::new(b"0123456789abcdef0123".to_vec()).unwrap()
    }

    #[test]
    fn minted_token_names_its_user_until_expiry() {
        let s = secret();
        let t = s.mint("u|42", 1_000).unwrap();
        assert_eq!(s.verify(&t, 999).unwrap(), "u|42");
        let err = s.verify(&t, 1_000).unwrap_err().to_string();
        assert!(err.contains("expired"), "{err}");
    }

    #[test]
    fn forged_or_foreign_tokens_are_refused() {
        let s = secret();
        let t = s.mint("alice", 2_000).unwrap();
        let (_, sig) = t.split_once('.').unwrap();
        let forged = format!("{}.{sig}", URL_SAFE_NO_PAD.encode("mallory|2000"));
        assert!(s
            .verify(&forged, 0)
            .unwrap_err()
            .to_string()
            .contains("signature"));
        let other = Secret::new(b"another secret of 16+".to_vec()).unwrap();
        assert!(other.verify(&t, 0).is_err());
        for junk in ["", ".", "abc", "a.b.c", "!!.??"] {
            assert!(s.verify(junk, 0).is_err(), "{junk}");
        }
    }

    #[test]
    fn short_secrets_and_bad_users_are_refused() {
        assert!(Secret::new(b"short".to_vec()).is_err());
        assert!(secret().mint("", 1).is_err());
        assert!(secret().mint(&"x".repeat(200), 1).is_err());
    }
}
