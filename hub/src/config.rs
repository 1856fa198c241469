//! `hub.toml`: read, checked whole, and turned into what the server needs.
//! A bad config is refused at start with a message naming the key.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::jwks::Jwks;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: SocketAddr,
    data_dir: Option<PathBuf>,
    postgres: Option<String>,
    tls_cert_pem: Option<PathBuf>,
    tls_key_pem: Option<PathBuf>,
    #[serde(default)]
    limits: Limits,
    #[serde(default = "yes")]
    metrics: bool,
    organizations: Vec<OrgFile>,
}

fn yes() -> bool {
    true
}

/// What keeps one client from hurting the rest. Every key is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Requests served at once; more are answered 503 with `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Long-polls held open at once (`/sync/pull?wait=`); more are 503.
    pub max_long_polls: usize,
    /// The longest a request may take, long-polls included, in seconds.
    pub request_timeout_secs: u64,
    /// Connections each hub node keeps to PostgreSQL (with `postgres`).
    pub postgres_connections: usize,
    /// Requests one organization may have in flight; beyond, its requests
    /// are 503 while other organizations are served.
    pub max_requests_per_organization: usize,
    /// The longest a request's body may take to arrive, in seconds (a long
    /// poll's wait is not a body's): then 408.
    pub body_timeout_secs: u64,
    /// Bytes of push bodies held at once, across all requests; a push whose
    /// length would pass it is 503 before its body is read.
    pub max_push_bytes_in_flight: usize,
    /// The least time between two fetches of an organization's JWKS, in
    /// seconds: a flood of tokens naming unknown key ids fetches it once.
    pub jwks_refetch_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent_requests: 4096,
            max_long_polls: 2048,
            request_timeout_secs: 40,
            postgres_connections: 16,
            max_requests_per_organization: 1024,
            body_timeout_secs: 10,
            max_push_bytes_in_flight: 128 * 1024 * 1024,
            jwks_refetch_secs: 30,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrgFile {
    id: String,
    api_key_sha256: Vec<String>,
    jwt_secret: Option<String>,
    jwt_public_key_pem: Option<PathBuf>,
    jwt_issuer: Option<String>,
    jwt_audience: Option<String>,
    jwks_url: Option<String>,
    #[serde(default = "sub")]
    user_claim: String,
    #[serde(default = "service")]
    service_scope: String,
    #[serde(default)]
    cors_origins: Vec<String>,
}

fn sub() -> String {
    "sub".into()
}

fn service() -> String {
    "spkey:service".into()
}

/// One organization: its keys, its token check, its store.
#[derive(Clone)]
pub struct Organization {
    /// The organization's id: its store is `<data_dir>/<id>.redb`.
    pub id: String,
    /// SHA-256 digests of its API keys.
    pub api_keys: Vec<[u8; 32]>,
    /// The key material its tokens are checked with, each with the one
    /// algorithm it is for: a token in any other algorithm is refused.
    pub jwt_keys: Vec<(Algorithm, DecodingKey)>,
    /// The HS256 secret (`jwt_secret`), kept to sign tokens with
    /// `spkey-hub token`.
    pub jwt_secret: Option<String>,
    /// `iss` a token must carry, when configured.
    pub issuer: Option<String>,
    /// `aud` a token must carry, when configured.
    pub audience: Option<String>,
    /// The identity provider's published keys (`jwks_url`), chosen by a
    /// token's `kid`.
    pub jwks: Option<Arc<Jwks>>,
    /// The claim holding a user's id in a user's token (`user_claim`).
    pub user_claim: String,
    /// The `scope`/`scp` entry that makes a token a service's
    /// (`service_scope`).
    pub service_scope: String,
    /// Origins a browser may call from.
    pub cors_origins: Vec<String>,
    /// Its tokens that passed the check lately.
    pub verified: Arc<crate::auth::Verified>,
}

/// A certificate chain and its private key, both PEM, for serving HTTPS.
pub struct Tls {
    /// The certificate chain.
    pub cert_pem: Vec<u8>,
    /// The private key.
    pub key_pem: Vec<u8>,
}

/// Where the organizations' logs live: exactly one of the keys `data_dir`
/// and `postgres`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// `data_dir`: one redb store per organization, `<data_dir>/<id>.redb`,
    /// served by one hub process.
    Redb(PathBuf),
    /// `postgres`: a connection URL (`postgres://user@host:port/db`; the
    /// `PG*` environment variables fill what it leaves out), shared by any
    /// number of hub processes.
    Postgres(String),
}

/// The checked config.
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// HTTPS, when `tls_cert_pem` and `tls_key_pem` are set; plain HTTP (for
    /// a TLS-terminating proxy in front) otherwise.
    pub tls: Option<Tls>,
    /// Where the organizations' logs live.
    pub storage: Storage,
    /// Limits per client and overall.
    pub limits: Limits,
    /// Whether `/metrics` is served.
    pub metrics: bool,
    /// The organizations.
    pub organizations: Vec<Organization>,
}

impl Limits {
    /// The request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// The body deadline.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_secs)
    }
}

/// The most permits a count limit may ask for (a semaphore's bound is far
/// above; a hub holding a million requests at once is a mistake).
const MAX_COUNT_LIMIT: usize = 1_000_000;

/// SHA-256 of the empty string: what `printf %s "$KEY" | sha256sum` gives
/// when `$KEY` is unset.
const EMPTY_DIGEST: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// An origin a browser sends: `scheme://host[:port]`, nothing after, a
/// valid header value; not `*` (credentials are per organization).
fn check_origin(origin: &str) -> Result<(), &'static str> {
    if origin == "*" {
        return Err(
            "`*` would let every site call with an organization's credentials: list the origins",
        );
    }
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or("an origin starts with http:// or https://")?;
    if rest.is_empty()
        || rest.contains(['/', '?', '#', ' '])
        || axum::http::HeaderValue::from_str(origin).is_err()
    {
        return Err("an origin is scheme://host[:port], nothing after it");
    }
    Ok(())
}

/// Why a config was refused: the key at fault and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn refuse(key: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("config key `{key}`: {why}"))
}

impl Config {
    /// Reads and checks the config at `path`; relative paths in it (the data
    /// directory, PEM files) are taken from the config's directory.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the key for an unreadable file, TOML that
    /// does not parse, an unknown or missing key, a duplicate organization
    /// or API key, a malformed digest, an organization without key material,
    /// or a PEM that cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base)
    }

    /// Checks config text; relative paths are taken from `base`.
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load).
    pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigError(format!("{e}")))?;
        if file.organizations.is_empty() {
            return Err(refuse("organizations", "at least one is required"));
        }
        let mut ids = HashSet::new();
        let mut keys = HashSet::new();
        let mut organizations = Vec::new();
        for (n, org) in file.organizations.into_iter().enumerate() {
            let at = |key: &str| format!("organizations[{n}].{key}");
            let valid_id = !org.id.is_empty()
                && org.id.len() <= 64
                && org
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_id {
                return Err(refuse(
                    &at("id"),
                    "1 to 64 letters, digits, '-' or '_' (it names a file)",
                ));
            }
            if !ids.insert(org.id.clone()) {
                return Err(refuse(
                    &at("id"),
                    format!("duplicate organization {:?}", org.id),
                ));
            }
            if org.api_key_sha256.is_empty() {
                return Err(refuse(
                    &at("api_key_sha256"),
                    "at least one key digest is required",
                ));
            }
            let mut api_keys = Vec::new();
            for digest in &org.api_key_sha256 {
                let bytes: [u8; 32] = hex::decode(digest)
                    .ok()
                    .filter(|_| digest.bytes().all(|b| !b.is_ascii_uppercase()))
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| {
                        refuse(
                            &at("api_key_sha256"),
                            "each entry is 64 lowercase hex digits",
                        )
                    })?;
                if bytes == EMPTY_DIGEST {
                    return Err(refuse(
                        &at("api_key_sha256"),
                        "is the digest of the empty string (was the key's variable unset?)",
                    ));
                }
                if !keys.insert(bytes) {
                    return Err(refuse(&at("api_key_sha256"), "duplicate API key"));
                }
                api_keys.push(bytes);
            }
            let mut jwt_keys = Vec::new();
            if let Some(secret) = &org.jwt_secret {
                if secret.len() < 32 {
                    return Err(refuse(&at("jwt_secret"), "at least 32 bytes for HS256"));
                }
                jwt_keys.push((
                    Algorithm::HS256,
                    DecodingKey::from_secret(secret.as_bytes()),
                ));
            }
            if let Some(pem_path) = &org.jwt_public_key_pem {
                let full = base.join(pem_path);
                let pem = std::fs::read(&full).map_err(|e| {
                    refuse(
                        &at("jwt_public_key_pem"),
                        format!("cannot read {}: {e}", full.display()),
                    )
                })?;
                if String::from_utf8_lossy(&pem).contains("PRIVATE KEY") {
                    return Err(refuse(
                        &at("jwt_public_key_pem"),
                        format!(
                            "{} holds a private key: give the hub the public key only",
                            full.display()
                        ),
                    ));
                }
                jwt_keys.push(public_key(&pem).ok_or_else(|| {
                    refuse(
                        &at("jwt_public_key_pem"),
                        "not an RSA, P-256 or Ed25519 public key in PEM",
                    )
                })?);
            }
            let jwks = match org.jwks_url {
                Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                    Some(Arc::new(Jwks::new(
                        url,
                        Duration::from_secs(file.limits.jwks_refetch_secs),
                    )))
                }
                Some(_) => return Err(refuse(&at("jwks_url"), "an http:// or https:// URL")),
                None => None,
            };
            if jwt_keys.is_empty() && jwks.is_none() {
                return Err(refuse(
                    &at("jwt_secret"),
                    "jwt_secret, jwt_public_key_pem or jwks_url is required",
                ));
            }
            for origin in &org.cors_origins {
                check_origin(origin)
                    .map_err(|why| refuse(&at("cors_origins"), format!("{origin:?}: {why}")))?;
            }
            if org.user_claim.is_empty() {
                return Err(refuse(&at("user_claim"), "names a claim: not empty"));
            }
            if org.service_scope.is_empty() || org.service_scope.contains(char::is_whitespace) {
                return Err(refuse(
                    &at("service_scope"),
                    "one scope word: not empty, no spaces",
                ));
            }
            organizations.push(Organization {
                id: org.id,
                api_keys,
                jwt_keys,
                jwt_secret: org.jwt_secret,
                issuer: org.jwt_issuer,
                audience: org.jwt_audience,
                jwks,
                user_claim: org.user_claim,
                service_scope: org.service_scope,
                cors_origins: org.cors_origins,
                verified: Arc::default(),
            });
        }
        let tls = match (&file.tls_cert_pem, &file.tls_key_pem) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let read = |name: &str, path: &Path, marker: &str| {
                    let full = base.join(path);
                    let bytes = std::fs::read(&full).map_err(|e| {
                        refuse(name, format!("cannot read {}: {e}", full.display()))
                    })?;
                    if !String::from_utf8_lossy(&bytes).contains(marker) {
                        return Err(refuse(
                            name,
                            format!("{} holds no {marker}", full.display()),
                        ));
                    }
                    Ok(bytes)
                };
                Some(Tls {
                    cert_pem: read("tls_cert_pem", cert, "CERTIFICATE")?,
                    key_pem: read("tls_key_pem", key, "PRIVATE KEY")?,
                })
            }
            (Some(_), None) => return Err(refuse("tls_key_pem", "required with tls_cert_pem")),
            (None, Some(_)) => return Err(refuse("tls_cert_pem", "required with tls_key_pem")),
        };
        let storage = match (file.data_dir, file.postgres) {
            (Some(dir), None) => {
                let dir = base.join(dir);
                if dir.exists() && !dir.is_dir() {
                    return Err(refuse(
                        "data_dir",
                        format!("{} is not a directory", dir.display()),
                    ));
                }
                Storage::Redb(dir)
            }
            (None, Some(url)) => {
                crate::postgres::connection_config(&url).map_err(|e| refuse("postgres", e))?;
                Storage::Postgres(url)
            }
            (None, None) => {
                return Err(refuse(
                    "data_dir",
                    "one of `data_dir` (redb files) or `postgres` (a database URL) is required",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(refuse(
                    "postgres",
                    "either `data_dir` or `postgres`, not both",
                ));
            }
        };
        let limits = &file.limits;
        for (key, value) in [
            ("max_concurrent_requests", limits.max_concurrent_requests),
            ("max_long_polls", limits.max_long_polls),
            ("postgres_connections", limits.postgres_connections),
            (
                "max_requests_per_organization",
                limits.max_requests_per_organization,
            ),
        ] {
            if !(1..=MAX_COUNT_LIMIT).contains(&value) {
                return Err(refuse(
                    &format!("limits.{key}"),
                    format!("1 to {MAX_COUNT_LIMIT}"),
                ));
            }
        }
        if !(spkey_store::MAX_BATCH_BYTES..=1 << 40).contains(&limits.max_push_bytes_in_flight) {
            return Err(refuse(
                "limits.max_push_bytes_in_flight",
                format!(
                    "at least the largest push ({} bytes), at most 1 TiB",
                    spkey_store::MAX_BATCH_BYTES
                ),
            ));
        }
        if limits.body_timeout_secs == 0 || limits.body_timeout_secs >= limits.request_timeout_secs
        {
            return Err(refuse(
                "limits.body_timeout_secs",
                "at least 1, and shorter than request_timeout_secs",
            ));
        }
        if file.limits.request_timeout_secs <= crate::server::MAX_WAIT_SECS {
            return Err(refuse(
                "limits.request_timeout_secs",
                format!(
                    "must be longer than the longest long-poll ({} s)",
                    crate::server::MAX_WAIT_SECS
                ),
            ));
        }
        Ok(Config {
            listen: file.listen,
            tls,
            storage,
            limits: file.limits,
            metrics: file.metrics,
            organizations,
        })
    }
}

/// A public key in PEM and the algorithm its kind is used with.
fn public_key(pem: &[u8]) -> Option<(Algorithm, DecodingKey)> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Some((Algorithm::RS256, key));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Some((Algorithm::ES256, key));
    }
    DecodingKey::from_ed_pem(pem)
        .ok()
        .map(|key| (Algorithm::EdDSA, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn config(orgs: &str) -> String {
        format!("listen = \"127.0.0.1:0\"\ndata_dir = \"d\"\n{orgs}")
    }

    fn org(id: &str, digest: &str) -> String {
        format!(
            "[[organizations]]\nid = \"{id}\"\napi_key_sha256 = [\"{digest}\"]\njwt_secret = \"{}\"\n",
            "s".repeat(32)
        )
    }

    fn refused(text: &str) -> String {
        match Config::parse(text, Path::new(".")) {
            Ok(_) => panic!("accepted: {text}"),
            Err(error) => error.0,
        }
    }

    #[test]
    fn a_bad_config_is_refused_naming_the_key() {
        let good = config(&org("acme", DIGEST));
        assert!(Config::parse(&good, Path::new(".")).is_ok());
        let on_postgres = good.replace(
            "data_dir = \"d\"",
            "postgres = \"postgres://spkey@db:5433/spkey\"",
        );
        assert_eq!(
            Config::parse(&on_postgres, Path::new(".")).unwrap().storage,
            Storage::Postgres("postgres://spkey@db:5433/spkey".into())
        );
        let other = DIGEST.replace('9', "8");
        for (text, key) in [
            (good.replace("listen", "lisen"), "lisen"),
            (
                config(&org("acme", DIGEST)).replace("data_dir = \"d\"\n", ""),
                "data_dir",
            ),
            (
                config(&format!("{}{}", org("acme", DIGEST), org("acme", &other))),
                "organizations[1].id",
            ),
            (
                config(&format!("{}{}", org("acme", DIGEST), org("beta", DIGEST))),
                "organizations[1].api_key_sha256",
            ),
            (
                config(&org("acme", &DIGEST.to_uppercase())),
                "api_key_sha256",
            ),
            (config(&org("ac/me", DIGEST)), "organizations[0].id"),
            (
                good.replace(
                    "data_dir = \"d\"",
                    "data_dir = \"d\"\npostgres = \"postgres://h/db\"",
                ),
                "`postgres`: either",
            ),
            (
                good.replace("data_dir = \"d\"", "postgres = \"mysql://h/db\""),
                "`postgres`: not a PostgreSQL connection URL",
            ),
            (
                good.replace(
                    "data_dir = \"d\"",
                    "postgres = \"postgres://h/db\"\n[limits]\npostgres_connections = 0",
                ),
                "limits",
            ),
            (
                config(&org("acme", DIGEST)).replace("jwt_secret", "jwt_public_key_pem"),
                "jwt_public_key_pem",
            ),
            (
                format!("{}cors_origins = [\"*\"]\n", config(&org("acme", DIGEST))),
                "organizations[0].cors_origins",
            ),
            (
                format!(
                    "{}cors_origins = [\"https://a.example/path\"]\n",
                    config(&org("acme", DIGEST))
                ),
                "nothing after it",
            ),
            (
                format!(
                    "{}cors_origins = [\"https://a\\u0001.example\"]\n",
                    config(&org("acme", DIGEST))
                ),
                "nothing after it",
            ),
            (
                good.replace(
                    "data_dir = \"d\"",
                    "data_dir = \"d\"\n[limits]\nmax_concurrent_requests = 18446744073709551615",
                ),
                "limits.max_concurrent_requests",
            ),
            (
                good.replace(
                    "data_dir = \"d\"",
                    "data_dir = \"d\"\n[limits]\nmax_push_bytes_in_flight = 1000",
                ),
                "limits.max_push_bytes_in_flight",
            ),
            (
                config(&org(
                    "acme",
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                )),
                "digest of the empty string",
            ),
        ] {
            let message = refused(&text);
            assert!(message.contains(key), "{key}: {message}");
        }
    }

    #[test]
    fn a_private_key_as_the_public_key_and_a_file_as_the_data_dir_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("d"), "a file").unwrap();
        assert!(
            refused_in(&config(&org("acme", DIGEST)), dir.path()).contains("is not a directory")
        );
        let made = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-out"])
            .arg(dir.path().join("private.pem"))
            .status()
            .unwrap();
        assert!(made.success());
        let text = config(&org("acme", DIGEST))
            .replace("data_dir = \"d\"", "data_dir = \"data\"")
            .replace(
                &format!("jwt_secret = \"{}\"", "s".repeat(32)),
                "jwt_public_key_pem = \"private.pem\"",
            );
        assert!(refused_in(&text, dir.path()).contains("holds a private key"));
    }

    fn refused_in(text: &str, base: &Path) -> String {
        match Config::parse(text, base) {
            Ok(_) => panic!("accepted: {text}"),
            Err(error) => error.0,
        }
    }
}
