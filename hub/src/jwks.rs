//! Signing keys an identity provider publishes as a JWKS (`jwks_url`): fetched
//! at start and again when a token names a `kid` the hub does not hold, at
//! most once per `limits.jwks_refetch_secs` (30 s) per organization, whoever
//! asks; kept when the endpoint is down. Each key stays tied to the one
//! algorithm its `alg` (or, without one, its `kty` and curve) names: the
//! no-`none`, no-HS/RS-confusion rules of static keys hold, and a shared
//! secret (`kty: oct`) in a JWKS is refused — a key anyone can fetch cannot
//! sign.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Verifying keys by `kid`, each with the one algorithm it is for.
pub type Keys = HashMap<String, (Algorithm, DecodingKey)>;

/// The largest JWKS document read, in bytes.
const MAX_JWKS_BYTES: u64 = 1024 * 1024;

/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// One organization's JWKS: its URL, the keys last fetched, and when.
pub struct Jwks {
    url: String,
    refetch: Duration,
    keys: RwLock<Keys>,
    /// When a fetch last started; held while one runs, so concurrent
    /// requests for an unknown `kid` share it.
    fetched: tokio::sync::Mutex<Option<Instant>>,
    fetches: std::sync::atomic::AtomicU64,
    /// Counts the key sets taken: a token checked under an older one is
    /// checked again.
    generation: std::sync::atomic::AtomicU64,
}

impl Jwks {
    /// A key set at `url`, empty until [`refresh`](Self::refresh) fetches it;
    /// fetched at most once per `refetch`.
    pub fn new(url: String, refetch: Duration) -> Jwks {
        Jwks {
            url,
            refetch,
            keys: RwLock::new(HashMap::new()),
            fetched: tokio::sync::Mutex::new(None),
            fetches: std::sync::atomic::AtomicU64::new(0),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The URL it is fetched from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many fetches were started (for the tests and the metrics).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Which key set is held: it changes whenever a fetch replaces it.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The key with id `kid`, with its algorithm.
    pub fn get(&self, kid: &str) -> Option<(Algorithm, DecodingKey)> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(kid)
            .cloned()
    }

    /// The key `kid`, fetching the set again first when it is unknown and
    /// the last fetch is older than the refetch interval.
    pub async fn find(&self, kid: &str) -> Option<(Algorithm, DecodingKey)> {
        if let Some(key) = self.get(kid) {
            return Some(key);
        }
        let mut fetched = self.fetched.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(key) = self.get(kid) {
            return Some(key);
        }
        if fetched.is_some_and(|at| at.elapsed() < self.refetch) {
            return None;
        }
        *fetched = Some(Instant::now());
        if let Err(why) = self.fetch().await {
            tracing::warn!(url = %self.url, %why, "cannot fetch the JWKS; keeping the keys held");
        }
        drop(fetched);
        self.get(kid)
    }

    /// Fetches the set now, whatever the interval (at start).
    ///
    /// # Errors
    ///
    /// Why the set could not be fetched or read; the keys held are kept.
    pub async fn refresh(&self) -> Result<usize, String> {
        let mut fetched = self.fetched.lock().await;
        *fetched = Some(Instant::now());
        self.fetch().await
    }

    async fn fetch(&self) -> Result<usize, String> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let url = self.url.clone();
        let text = tokio::task::spawn_blocking(move || download(&url))
            .await
            .map_err(|e| format!("fetch failed: {e}"))??;
        let (keys, refused) = parse(&text)?;
        for (kid, why) in &refused {
            tracing::warn!(url = %self.url, kid, why, "JWKS entry refused");
        }
        let count = keys.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        // After the keys: whoever sees the new generation finds them.
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(count)
    }
}

fn download(url: &str) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    response
        .body_mut()
        .with_config()
        .limit(MAX_JWKS_BYTES)
        .read_to_string()
        .map_err(|e| e.to_string())
}

/// The usable keys of a JWKS document by `kid`, and each entry refused with
/// why. A document that is not a JWKS at all is an error (the keys held are
/// then kept).
///
/// # Errors
///
/// When the text is not a JSON object with a `keys` array.
pub fn parse(text: &str) -> Result<(Keys, Vec<(String, String)>), String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_str(text).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = HashMap::new();
    let mut refused = Vec::new();
    for entry in set.keys {
        let kid = entry
            .get("kid")
            .and_then(|k| k.as_str())
            .unwrap_or("")
            .to_owned();
        match key(&entry) {
            Ok(_) if kid.is_empty() => refused.push((kid, "no kid".into())),
            Ok(pair) => {
                if keys.insert(kid.clone(), pair).is_some() {
                    refused.push((kid, "a second key with this kid".into()));
                }
            }
            Err(why) => refused.push((kid, why)),
        }
    }
    Ok((keys, refused))
}

/// One JWK as a verifying key and the one algorithm it is for.
fn key(entry: &serde_json::Value) -> Result<(Algorithm, DecodingKey), String> {
    // An `alg` jsonwebtoken has no name for (`none` among them) fails here.
    let jwk: Jwk = serde_json::from_value(entry.clone()).map_err(|e| format!("not a JWK: {e}"))?;
    let from_kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return Err("an unsupported curve".into()),
        },
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        AlgorithmParameters::OctetKey(_) => {
            return Err("a shared secret (kty oct) cannot be a published key".into());
        }
        _ => return Err("an unsupported key type".into()),
    };
    let algorithm = match jwk.common.key_algorithm {
        None => from_kind,
        Some(named) => {
            let named = match named {
                KeyAlgorithm::RS256 => Algorithm::RS256,
                KeyAlgorithm::RS384 => Algorithm::RS384,
                KeyAlgorithm::RS512 => Algorithm::RS512,
                KeyAlgorithm::PS256 => Algorithm::PS256,
                KeyAlgorithm::PS384 => Algorithm::PS384,
                KeyAlgorithm::PS512 => Algorithm::PS512,
                KeyAlgorithm::ES256 => Algorithm::ES256,
                KeyAlgorithm::ES384 => Algorithm::ES384,
                KeyAlgorithm::EdDSA => Algorithm::EdDSA,
                other => return Err(format!("alg {other:?} does not sign tokens here")),
            };
            let same_kind = match named {
                Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512 => from_kind == Algorithm::RS256,
                other => other == from_kind,
            };
            if !same_kind {
                return Err(format!("alg {named:?} does not fit its key type"));
            }
            named
        }
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable key: {e}"))?;
    Ok((algorithm, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_secrets_none_and_mismatched_algorithms_are_refused_and_the_rest_kept() {
        let text = r#"{"keys":[
            {"kty":"oct","kid":"hs","alg":"HS256","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
            {"kty":"OKP","kid":"none","alg":"none","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"OKP","kid":"ed","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"OKP","kid":"ed-as-rs","alg":"RS256","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        ]}"#;
        let (keys, refused) = parse(text).unwrap();
        assert_eq!(keys.len(), 1, "{refused:?}");
        assert_eq!(keys["ed"].0, Algorithm::EdDSA);
        let refused: Vec<&str> = refused.iter().map(|(kid, _)| kid.as_str()).collect();
        assert_eq!(refused, ["hs", "none", "ed-as-rs", ""]);
        assert!(parse("[]").is_err());
        assert!(parse("{\"keys\": 3}").is_err());
    }
}
