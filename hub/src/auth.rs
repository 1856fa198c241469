//! Who is calling: `X-API-Key` names the organization, the Bearer JWT must
//! be valid under that organization's key material. Checked in this order,
//! before any body is read:
//!
//! 1. 401 when `Authorization` is missing or not `Bearer <token>`;
//! 2. 403 when `X-API-Key` is missing or matches no organization;
//! 3. 401 when the token fails under the organization's keys: a bad
//!    signature, malformed, an `alg` not configured for it (no `none`, no
//!    HS/RS confusion: each key is tied to its one algorithm), expired
//!    (`exp` is required), `nbf` in the future, or the wrong `iss` / `aud`
//!    where configured; 60 s of clock leeway.

use axum::http::HeaderMap;
use jsonwebtoken::{Validation, decode, decode_header};
use sha2::{Digest, Sha256};

use crate::config::Organization;

/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 60;

/// Why a request was refused before its body was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization: Bearer <token>` (401).
    NoBearer,
    /// No `X-API-Key`, or one of no organization (403).
    UnknownKey,
    /// The token fails under the organization's key material (401).
    BadToken(String),
}

/// The organization `headers` authenticate as, by index into `orgs`.
///
/// # Errors
///
/// The [`Denied`] reason, in the order of the module docs.
pub fn authenticate(headers: &HeaderMap, orgs: &[Organization]) -> Result<usize, Denied> {
    // The scheme is case-insensitive (RFC 9110 §11.1); the token is not.
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
        .ok_or(Denied::NoBearer)?;
    let key = headers
        .get("x-api-key")
        .map(|v| v.as_bytes())
        .ok_or(Denied::UnknownKey)?;
    let digest: [u8; 32] = Sha256::digest(key).into();
    let index = orgs
        .iter()
        .position(|org| org.api_keys.contains(&digest))
        .ok_or(Denied::UnknownKey)?;
    check_token(token, &orgs[index]).map_err(Denied::BadToken)?;
    Ok(index)
}

fn check_token(token: &str, org: &Organization) -> Result<(), String> {
    let header = decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
    let (algorithm, key) = org
        .jwt_keys
        .iter()
        .find(|(algorithm, _)| *algorithm == header.alg)
        .ok_or_else(|| format!("algorithm {:?} is not accepted here", header.alg))?;
    let mut validation = Validation::new(*algorithm);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    let mut required = vec!["exp"];
    required.extend(org.issuer.as_ref().map(|_| "iss"));
    required.extend(org.audience.as_ref().map(|_| "aud"));
    validation.set_required_spec_claims(&required);
    match &org.issuer {
        Some(issuer) => validation.set_issuer(&[issuer]),
        None => validation.iss = None,
    }
    match &org.audience {
        Some(audience) => validation.set_audience(&[audience]),
        None => validation.validate_aud = false,
    }
    decode::<serde_json::Value>(token, key, &validation)
        .map(drop)
        .map_err(|e| format!("invalid token: {e}"))
}
