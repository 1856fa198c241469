//! Who is calling: `X-API-Key` names the organization, the Bearer JWT must
//! be valid under that organization's key material, and its claims say who
//! it is for. Checked in this order, before any body is read:
//!
//! 1. 401 when `Authorization` is missing or not `Bearer <token>`;
//! 2. 403 when `X-API-Key` is missing or matches no organization;
//! 3. 401 when the token fails under the organization's keys: a bad
//!    signature, malformed, an `alg` not configured for it (no `none`, no
//!    HS/RS confusion: each key is tied to its one algorithm), a `kid` in
//!    none of the organization's keys (its JWKS fetched again first, at most
//!    once per interval), expired (`exp` is required), `nbf` in the future,
//!    or the wrong `iss` / `aud` where configured; 60 s of clock leeway;
//! 4. the caller's [`Scope`]: a token whose `scope` or `scp` holds the
//!    organization's `service_scope` (as a whole word) is a service's, for
//!    every user; any other is a user's, whose `user_claim` must hold a
//!    user id by the API's UUID rule (401 otherwise).
//!
//! A client sends the same token with every request until it expires, and
//! checking it (base64, two JSON documents, the signature) was a tenth of
//! the hub's CPU a create under load. So a token that passed is remembered
//! by its SHA-256 ([`Verified`], per organization, as Envoy's `jwt_authn`
//! caches verified tokens): until its `exp` (with the leeway), and only
//! while the organization's JWKS holds the keys it held when the token was
//! checked. A digest, not the token, is the key: a lookup compares digests,
//! so its timing says nothing about a remembered token's bytes.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::Value;
use sha2::{Digest, Sha256};
use spkey_store::Scope;

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
    /// The token fails under the organization's key material, or says of
    /// no one who it is (401).
    BadToken(String),
}

/// An authenticated caller: its organization (an index into the config's)
/// and whom it may act for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The organization, by index.
    pub org: usize,
    /// The users it may act on and see.
    pub scope: Scope,
}

/// The caller `headers` authenticate as.
///
/// # Errors
///
/// The [`Denied`] reason, in the order of the module docs.
pub async fn authenticate(headers: &HeaderMap, orgs: &[Organization]) -> Result<Caller, Denied> {
    // The scheme is case-insensitive (RFC 9110 §11.1); the token is not.
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
        .ok_or(Denied::NoBearer)?;
    let org = organization_of(headers, orgs).ok_or(Denied::UnknownKey)?;
    let organization = &orgs[org];
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    // Read before the check: a key set fetched during it leaves the entry
    // of an older set, which the next lookup does not trust.
    let keys = organization
        .jwks
        .as_ref()
        .map_or(0, |jwks| jwks.generation());
    let now = jsonwebtoken::get_current_timestamp();
    if let Some(scope) = organization.verified.get(&digest, now, keys) {
        return Ok(Caller { org, scope });
    }
    let claims = check_token(token, organization)
        .await
        .map_err(Denied::BadToken)?;
    let scope = scope_of(&claims, organization).map_err(Denied::BadToken)?;
    // `exp` is required; one that is not a whole number is not remembered.
    if let Some(exp) = claims.get("exp").and_then(Value::as_u64) {
        organization.verified.put(
            digest,
            Remembered {
                scope,
                until: exp.saturating_add(LEEWAY_SECS),
                keys,
            },
            now,
        );
    }
    Ok(Caller { org, scope })
}

/// The most tokens an organization remembers as verified.
pub const VERIFIED_PER_ORGANIZATION: usize = 4096;

/// Tokens of one organization that passed the check, by their SHA-256, with
/// whom each is for. Bounded by [`VERIFIED_PER_ORGANIZATION`]: when full,
/// the expired entries go, and if none had, all of them.
#[derive(Default)]
pub struct Verified {
    tokens: Mutex<HashMap<[u8; 32], Remembered>>,
}

/// What a token's check concluded, and for how long it stands.
struct Remembered {
    scope: Scope,
    /// The last second (since the epoch) the token is accepted: its `exp`
    /// plus the leeway, as jsonwebtoken judges it.
    until: u64,
    /// The generation of the organization's JWKS it was checked under.
    keys: u64,
}

impl Verified {
    fn get(&self, digest: &[u8; 32], now: u64, keys: u64) -> Option<Scope> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(digest)
            .filter(|r| now <= r.until && r.keys == keys)
            .map(|r| r.scope)
    }

    fn put(&self, digest: [u8; 32], remembered: Remembered, now: u64) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if tokens.len() >= VERIFIED_PER_ORGANIZATION {
            tokens.retain(|_, r| now <= r.until);
            if tokens.len() >= VERIFIED_PER_ORGANIZATION {
                tokens.clear();
            }
        }
        tokens.insert(digest, remembered);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The organization whose API key `X-API-Key` holds, by index.
pub fn organization_of(headers: &HeaderMap, orgs: &[Organization]) -> Option<usize> {
    let digest: [u8; 32] = Sha256::digest(headers.get("x-api-key")?.as_bytes()).into();
    orgs.iter().position(|org| org.api_keys.contains(&digest))
}

/// The key a token's header asks for: by `kid` among the JWKS's keys when
/// it names one the organization publishes, else the static key of its
/// `alg`.
async fn key_for(
    header: &jsonwebtoken::Header,
    org: &Organization,
) -> Result<(Algorithm, DecodingKey), String> {
    if let (Some(kid), Some(jwks)) = (&header.kid, &org.jwks) {
        if let Some(found) = jwks.find(kid).await {
            return Ok(found);
        }
        if org.jwt_keys.is_empty() {
            return Err(format!(
                "key id {kid:?} is not among the organization's keys"
            ));
        }
    }
    org.jwt_keys
        .iter()
        .find(|(algorithm, _)| *algorithm == header.alg)
        .cloned()
        .ok_or_else(|| format!("algorithm {:?} is not accepted here", header.alg))
}

async fn check_token(token: &str, org: &Organization) -> Result<Value, String> {
    let header = decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
    // RFC 7515 §4.1.11: extensions marked critical must be understood; this
    // hub understands none (`b64: false` among them).
    if let Some(critical) = &header.crit {
        return Err(format!(
            "the token's header marks {critical:?} critical, which this hub does not understand"
        ));
    }
    let (algorithm, key) = key_for(&header, org).await?;
    if algorithm != header.alg {
        return Err(format!(
            "algorithm {:?} is not the one of key {:?}",
            header.alg,
            header.kid.as_deref().unwrap_or("")
        ));
    }
    let mut validation = Validation::new(algorithm);
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
    let claims = decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| format!("invalid token: {e}"))?;
    // RFC 7519 §4.1.1: `iss` is one string (jsonwebtoken takes an array).
    if org.issuer.is_some() && !claims.get("iss").is_some_and(Value::is_string) {
        return Err("invalid token: `iss` must be one string".into());
    }
    Ok(claims)
}

/// Whether a `scope`/`scp` claim — a space-separated string or an array of
/// strings — holds `wanted` as one whole entry.
fn grants(claim: Option<&Value>, wanted: &str) -> bool {
    match claim {
        Some(Value::String(text)) => text.split_whitespace().any(|s| s == wanted),
        Some(Value::Array(items)) => items.iter().any(|item| item.as_str() == Some(wanted)),
        _ => false,
    }
}

/// Whom a valid token's claims let it act for.
fn scope_of(claims: &Value, org: &Organization) -> Result<Scope, String> {
    if grants(claims.get("scope"), &org.service_scope)
        || grants(claims.get("scp"), &org.service_scope)
    {
        return Ok(Scope::All);
    }
    let claim = &org.user_claim;
    let id = claims
        .get(claim)
        .ok_or_else(|| format!("a user's token must carry its user id in `{claim}`"))?
        .as_str()
        .ok_or_else(|| format!("`{claim}` must be a string holding a user id"))?;
    Scope::user(id).map_err(|why| format!("`{claim}` {why}"))
}

/// A token for `scope` in `org`, valid for `ttl` from `now` (seconds since
/// the epoch), signed with the organization's HS256 secret and carrying its
/// configured `iss` and `aud`: what `spkey-hub token` prints, to try the hub
/// with. A user's token holds the id in `user_claim`; a service's holds
/// `service_scope` in `scope`.
///
/// # Errors
///
/// When the organization has no `jwt_secret` (only public keys or a JWKS:
/// its tokens are signed by whoever holds the private key).
pub fn sign(org: &Organization, scope: Scope, ttl_secs: u64, now: u64) -> Result<String, String> {
    let secret = org.jwt_secret.as_ref().ok_or_else(|| {
        format!(
            "organization {} has no jwt_secret: its tokens are signed by the holder of its private key or identity provider, not by the hub",
            org.id
        )
    })?;
    let mut claims = serde_json::Map::new();
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), now.saturating_add(ttl_secs).into());
    if let Some(issuer) = &org.issuer {
        claims.insert("iss".into(), issuer.clone().into());
    }
    if let Some(audience) = &org.audience {
        claims.insert("aud".into(), audience.clone().into());
    }
    match scope {
        Scope::All => {
            claims.insert("scope".into(), org.service_scope.clone().into());
        }
        Scope::User(user) => {
            claims.insert(org.user_claim.clone(), user.to_string().into());
        }
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &Value::Object(claims),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| format!("cannot sign: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remembered(until: u64) -> Remembered {
        Remembered {
            scope: Scope::All,
            until,
            keys: 0,
        }
    }

    fn digest(n: usize) -> [u8; 32] {
        Sha256::digest(n.to_le_bytes()).into()
    }

    #[test]
    fn remembered_tokens_are_bounded_the_expired_going_first() {
        let verified = Verified::default();
        let now = 1_000;
        // Half expired, half not, filling it.
        for n in 0..VERIFIED_PER_ORGANIZATION {
            let until = if n % 2 == 0 { now - 1 } else { now + 60 };
            verified.put(digest(n), remembered(until), now - 10);
        }
        assert_eq!(verified.len(), VERIFIED_PER_ORGANIZATION);
        verified.put(digest(usize::MAX), remembered(now + 60), now);
        assert_eq!(verified.len(), VERIFIED_PER_ORGANIZATION / 2 + 1);
        assert!(verified.get(&digest(1), now, 0).is_some());
        assert!(verified.get(&digest(0), now, 0).is_none());
        // Full of live ones: all go, the newest stays.
        for n in 0..2 * VERIFIED_PER_ORGANIZATION {
            verified.put(digest(n), remembered(now + 60), now);
            assert!(verified.len() <= VERIFIED_PER_ORGANIZATION);
        }
        let last = digest(2 * VERIFIED_PER_ORGANIZATION - 1);
        assert!(verified.get(&last, now, 0).is_some());
    }

    #[test]
    fn a_remembered_token_stands_until_its_last_second_and_under_its_key_set() {
        let verified = Verified::default();
        verified.put(digest(7), remembered(100), 50);
        assert_eq!(verified.get(&digest(7), 100, 0), Some(Scope::All));
        assert_eq!(verified.get(&digest(7), 101, 0), None, "expired");
        assert_eq!(verified.get(&digest(7), 100, 1), None, "another key set");
        assert_eq!(verified.get(&digest(8), 50, 0), None, "another token");
    }
}
