//! The JSON types of the sync protocol (docs/architecture.md §7), versioned under `/v1`. One definition
//! used by the device's sync client and by the server (`slowfast serve`).
//!
//! | call | request | response |
//! |---|---|---|
//! | `POST /v1/upload` | [`UploadRequest`] | [`UploadResponse`] |
//! | `GET /v1/feed?k=K` | — | [`FeedResponse`] |
//! | `GET /v1/model` | `If-None-Match` | the bundle's `manifest.json`, `ETag` |
//! | `GET /v1/model/{file}` | `If-None-Match` | the file's bytes, `ETag` |
//! | any 4xx/5xx | — | [`ErrorBody`] |
//!
//! Every request carries `Authorization: Bearer <token>`; the token names the user. A request
//! may also name the user it means (`user` in an upload, `?user=` on a feed): when that is not
//! the token's user the server answers 403 and stores nothing. Item ids are the app's own ids as strings. Timestamps are Unix
//! milliseconds.

use serde::{Deserialize, Serialize};

/// The API version prefix.
pub const API_PREFIX: &str = "/v1";
/// Largest request body the server reads.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Most events of one kind in one upload.
pub const MAX_EVENTS_PER_UPLOAD: usize = 2_000;
/// Largest `k` of a feed request.
pub const MAX_FEED_K: usize = 500;
/// Longest item id, idempotency key or model version, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// One click or exposure the device recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEvent {
    pub item: String,
    /// Unix milliseconds. Read from any JSON number with an integral value (`5` or `5.0`, as
    /// JSON Schema's `integer` allows); written as an integer.
    #[serde(deserialize_with = "integral")]
    pub ts: i64,
}

/// An `i64` from a JSON integer, or from a float with an integral value in range.
fn integral<'de, D: serde::Deserializer<'de>>(de: D) -> Result<i64, D::Error> {
    struct Integral;
    impl serde::de::Visitor<'_> for Integral {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i64, E> {
            // -2^63 ≤ v < 2^63: every such integral float is an i64.
            if v.fract() == 0.0
                && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&v)
            {
                Ok(v as i64)
            } else {
                Err(E::invalid_type(serde::de::Unexpected::Float(v), &self))
            }
        }
    }
    de.deserialize_any(Integral)
}

/// `POST /v1/upload` (F2S, paper §4.3): the device's negative memory `r̂2` and what it
/// recorded since its last acknowledged upload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UploadRequest {
    /// The user this upload belongs to; must be the token's user when given (else 403).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Chosen by the device per batch; a retried batch reuses it and the server stores it once.
    pub idempotency_key: String,
    /// The bundle version `neg_memory` was computed with.
    pub model_version: String,
    /// `r̂2`, `d` floats, all finite.
    pub neg_memory: Vec<f32>,
    pub clicks: Vec<WireEvent>,
    /// Real-time exposures, for training the next round's fast component (beyond the paper,
    /// which uploads only `r̂2`); may be empty.
    #[serde(default)]
    pub exposures: Vec<WireEvent>,
}

/// The answer to an upload. A repeated idempotency key returns the first answer again with
/// `duplicate = true` and stores nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadResponse {
    pub accepted_clicks: u32,
    pub accepted_exposures: u32,
    pub duplicate: bool,
}

/// One candidate with the slow component's prior knowledge (S2F, eq. 7).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeedItem {
    pub item: String,
    /// `e_i`, `d` floats.
    pub embedding: Vec<f32>,
    /// `r_t` of eq. 1, `d` floats.
    pub r_t: Vec<f32>,
    /// `r_n` of eq. 5, `d` floats.
    pub r_n: Vec<f32>,
    /// The slow model's logit (eq. 6); the server's own ranking.
    pub slow_score: f32,
}

/// `GET /v1/feed?k=K`: the top `k` of the user's candidate pool by the slow model, best first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeedResponse {
    pub model_version: String,
    pub items: Vec<FeedItem>,
}

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `invalid_field`, `unauthorized`, `not_found`.
    pub error: String,
    /// The request field at fault, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// A sentence for people.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_without_exposures_parses() {
        let json = r#"{"idempotency_key":"k","model_version":"v","neg_memory":[0.5],
                       "clicks":[{"item":"7","ts":1}]}"#;
        let u: UploadRequest = serde_json::from_str(json).unwrap();
        assert!(u.exposures.is_empty());
        assert_eq!(u.clicks[0].item, "7");
        let back: UploadRequest =
            serde_json::from_str(&serde_json::to_string(&u).unwrap()).unwrap();
        assert_eq!(back, u);
    }

    #[test]
    fn error_body_omits_absent_field() {
        let e = ErrorBody {
            error: "unauthorized".into(),
            field: None,
            message: "missing token".into(),
        };
        assert!(!serde_json::to_string(&e).unwrap().contains("field"));
    }

    #[test]
    fn a_timestamp_is_any_integral_json_number() {
        let ts = |json: &str| {
            serde_json::from_str::<WireEvent>(&format!(r#"{{"item":"a","ts":{json}}}"#))
                .map(|e| e.ts)
        };
        assert_eq!(ts("5").unwrap(), 5);
        assert_eq!(ts("-5").unwrap(), -5);
        assert_eq!(ts("3526597497140.0").unwrap(), 3_526_597_497_140);
        assert_eq!(ts("1e3").unwrap(), 1_000);
        assert_eq!(ts("9223372036854775807").unwrap(), i64::MAX);
        for bad in ["5.5", "9223372036854775808", "9.3e18", "\"5\"", "null"] {
            assert!(ts(bad).is_err(), "{bad}");
        }
        let e = WireEvent {
            item: "a".into(),
            ts: 7,
        };
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"item":"a","ts":7}"#);
    }
}

/// What a sync token says: `base64url(user "|" expiry) "." base64url(signature)`, base64url
/// without padding, `expiry` in Unix seconds, the user everything before the last `|` (so ids
/// may contain `|`). The server checks the signature (HMAC-SHA256 with its secret); the device,
/// which has no secret, reads the user to check that a token is for its store's user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    pub user: String,
    /// Unix seconds.
    pub expiry: i64,
}

/// A token split into its decoded payload and signature bytes.
pub struct SignedToken {
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

impl SignedToken {
    /// Splits and decodes `payload.signature`; the reason when the token is not of that form.
    pub fn parse(token: &str) -> Result<SignedToken, &'static str> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let (payload, signature) = token
            .split_once('.')
            .ok_or("malformed token: expected `payload.signature`")?;
        Ok(SignedToken {
            payload: URL_SAFE_NO_PAD
                .decode(payload)
                .map_err(|_| "malformed token: payload is not base64url")?,
            signature: URL_SAFE_NO_PAD
                .decode(signature)
                .map_err(|_| "malformed token: signature is not base64url")?,
        })
    }

    /// The claims of the payload (not verified: that needs the server's secret).
    pub fn claims(&self) -> Result<TokenClaims, &'static str> {
        let payload =
            std::str::from_utf8(&self.payload).map_err(|_| "malformed token: not UTF-8")?;
        let (user, expiry) = payload
            .rsplit_once('|')
            .ok_or("malformed token: no expiry")?;
        let expiry = expiry
            .parse()
            .map_err(|_| "malformed token: expiry is not a number")?;
        Ok(TokenClaims {
            user: user.to_string(),
            expiry,
        })
    }
}
