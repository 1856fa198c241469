//! Where tokens come from: an identity provider's JWKS (served by the test on
//! 127.0.0.1) whose keys rotate, go down and carry entries that must not
//! count; a token the hub remembers as verified, refused once it expires
//! and under another organization; and `spkey-hub token`, which signs a
//! token to try the hub with.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::*;

const GAMMA_KEY: &str = "gamma-api-key-0123456789";

/// A JWKS endpoint: serves whatever document it holds now, counts fetches,
/// and can be stopped (then its port refuses connections).
struct JwksServer {
    addr: SocketAddr,
    document: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl JwksServer {
    fn start(document: Value) -> JwksServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let document = Arc::new(Mutex::new(document));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (document.clone(), fetches.clone());
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let (served, counted) = (served.clone(), counted.clone());
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    axum::Json(served.lock().unwrap().clone())
                }
            }),
        );
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move { axum::serve(listener, app).await });
        JwksServer {
            addr,
            document,
            fetches,
            runtime: Some(runtime),
        }
    }

    fn publish(&self, document: Value) {
        *self.document.lock().unwrap() = document;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// An Ed25519 key pair: its JWK (public, with `kid`) and its signing key.
fn ed25519(dir: &std::path::Path, kid: &str) -> (Value, EncodingKey) {
    let sub = dir.join(kid);
    std::fs::create_dir_all(&sub).unwrap();
    let (private, public) = ed25519_keys(&sub);
    let pem = std::fs::read_to_string(public).unwrap();
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(der).unwrap();
    // An Ed25519 SubjectPublicKeyInfo ends with the raw 32-byte key.
    let x = URL_SAFE_NO_PAD.encode(&der[der.len() - 32..]);
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "use": "sig", "kid": kid, "x": x});
    let signing = EncodingKey::from_ed_pem(&std::fs::read(private).unwrap()).unwrap();
    (jwk, signing)
}

fn service_claims() -> Value {
    json!({"scope": "spkey:service", "exp": now() + 3600})
}

fn signed(kid: &str, key: &EncodingKey) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.into());
    encode(&header, &service_claims(), key).unwrap()
}

fn pull_status(url: &str, token: &str) -> (u16, String) {
    pull_status_under(url, GAMMA_KEY, token)
}

/// A pull's status and, when refused, its message.
fn pull_status_under(url: &str, key: &str, token: &str) -> (u16, String) {
    let answer = pull(url, "since=0", key, token);
    let message = if answer.status == 200 {
        String::new()
    } else {
        answer.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    (answer.status, message)
}

fn past_the_refetch_interval() {
    std::thread::sleep(Duration::from_millis(1_100));
}

/// Rotation (a new `kid` appears, the old one still served, then removed),
/// an unknown `kid`, a flood of them (one fetch per interval), a JWKS with
/// a shared secret, `none` or a mismatched `alg` (refused, the rest kept),
/// and the endpoint down (the keys held keep serving).
#[test]
fn keys_from_a_jwks_rotate_and_the_hub_fetches_at_most_once_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let (jwk1, key1) = ed25519(dir.path(), "k1");
    let (jwk2, key2) = ed25519(dir.path(), "k2");
    let mut server = JwksServer::start(json!({"keys": [jwk1.clone()]}));
    let text = format!(
        r#"listen = "127.0.0.1:0"
data_dir = "data"
[limits]
jwks_refetch_secs = 1

[[organizations]]
id = "gamma"
api_key_sha256 = ["{}"]
jwks_url = "http://{}/jwks"
"#,
        hex::encode(Sha256::digest(GAMMA_KEY)),
        server.addr
    );
    let hub = TestHub::start_text(dir, &text);
    let url = hub.url.clone();
    assert_eq!(server.fetches(), 1, "fetched at start");
    // One token of k1 throughout: once it passed, the hub remembers it, and
    // must stop trusting it when k1 leaves the set.
    let k1_token = signed("k1", &key1);
    assert_eq!(pull_status(&url, &k1_token).0, 200);
    let (status, message) = pull_status(&url, &signed("k2", &key2));
    assert_eq!(status, 401);
    assert_eq!(
        message,
        "key id \"k2\" is not among the organization's keys"
    );

    // A new key appears beside the old one.
    server.publish(json!({"keys": [jwk1.clone(), jwk2.clone()]}));
    past_the_refetch_interval();
    assert_eq!(pull_status(&url, &signed("k2", &key2)).0, 200);
    assert_eq!(pull_status(&url, &k1_token).0, 200);

    // The old one is removed: the next fetch (asked by an unknown kid)
    // drops it.
    server.publish(json!({"keys": [jwk2.clone()]}));
    past_the_refetch_interval();
    assert_eq!(pull_status(&url, &signed("k9", &key2)).0, 401);
    assert_eq!(
        pull_status(&url, &k1_token),
        (
            401,
            "key id \"k1\" is not among the organization's keys".into()
        ),
        "a token remembered as verified under a key the set no longer holds"
    );
    assert_eq!(pull_status(&url, &signed("k2", &key2)).0, 200);

    // A flood of unknown kids: one fetch for all of them.
    past_the_refetch_interval();
    let before = server.fetches();
    let flood: Vec<_> = (0..40)
        .map(|n| {
            let (url, token) = (url.clone(), signed(&format!("unknown-{n}"), &key2));
            std::thread::spawn(move || pull_status(&url, &token).0)
        })
        .collect();
    for request in flood {
        assert_eq!(request.join().unwrap(), 401);
    }
    assert_eq!(server.fetches() - before, 1, "one fetch per interval");

    // Entries that must not count: a shared secret, alg none, an alg that
    // does not fit its key. The good key in the same document still works.
    let secret = b"a-secret-anyone-could-fetch-from-the-jwks";
    let mut with_bad = jwk2.clone();
    with_bad["kid"] = json!("k2-as-rs");
    with_bad["alg"] = json!("RS256");
    let mut none = jwk2.clone();
    none["kid"] = json!("none");
    none["alg"] = json!("none");
    server.publish(json!({"keys": [
        jwk2.clone(),
        {"kty": "oct", "kid": "hs", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(secret)},
        none,
        with_bad,
    ]}));
    past_the_refetch_interval();
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some("hs".into());
    let hs = encode(
        &hs_header,
        &service_claims(),
        &EncodingKey::from_secret(secret),
    )
    .unwrap();
    assert_eq!(pull_status(&url, &hs).0, 401, "a shared secret in a JWKS");
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"none"}"#),
        URL_SAFE_NO_PAD.encode(service_claims().to_string())
    );
    assert_eq!(pull_status(&url, &unsigned).0, 401, "alg none");
    assert_eq!(pull_status(&url, &signed("k2-as-rs", &key2)).0, 401);
    // HS/RS confusion: the public key's bytes as an HMAC secret, under its kid.
    let mut confused = Header::new(Algorithm::HS256);
    confused.kid = Some("k2".into());
    let public = std::fs::read(dir_of(&hub).join("k2/ed25519.pub.pem")).unwrap();
    let confused = encode(
        &confused,
        &service_claims(),
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    let (status, message) = pull_status(&url, &confused);
    assert_eq!(
        (status, message.contains("not the one of key")),
        (401, true),
        "{message}"
    );
    assert_eq!(pull_status(&url, &signed("k2", &key2)).0, 200);

    // The endpoint goes down: the keys held keep serving; unknown ones fail.
    server.stop();
    past_the_refetch_interval();
    assert_eq!(pull_status(&url, &signed("k8", &key2)).0, 401);
    assert_eq!(pull_status(&url, &signed("k2", &key2)).0, 200);
}

fn dir_of(hub: &TestHub) -> std::path::PathBuf {
    hub.dir.path().to_owned()
}

fn spkey_hub(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_spkey-hub"))
        .args(args)
        .output()
        .unwrap()
}

/// `spkey-hub token` signs a user's or a service's token with the
/// organization's secret, which the hub then takes as that user or service;
/// an organization with only public keys, a user id that is not one and an
/// unknown organization are refused with exit 2 and why.
#[test]
fn spkey_hub_token_signs_tokens_the_hub_takes_for_whom_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), "");
    let path = dir.path().join("hub.toml");
    std::fs::write(&path, &text).unwrap();
    let config = path.to_str().unwrap();
    let own = user_id(70);
    let token = |args: &[&str]| {
        let out = spkey_hub(&[&["token", "--config", config], args].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let user = token(&["--org", "acme", "--user", &own]);
    let service = token(&["--org", "acme", "--service", "--ttl", "5m"]);
    let hub = TestHub::start_text(
        tempfile::tempdir().unwrap(),
        &text.replace(
            "data_dir = \"data\"",
            &format!("data_dir = \"{}\"", dir.path().join("data").display()),
        ),
    );
    assert_eq!(
        create(
            &hub.url,
            ACME_KEY,
            &user,
            &own,
            &body(&own, "t@example.com")
        )
        .status,
        201
    );
    let other = user_id(71);
    assert_eq!(
        create(
            &hub.url,
            ACME_KEY,
            &user,
            &other,
            &body(&other, "o@example.com")
        )
        .status,
        403
    );
    assert_eq!(
        create(
            &hub.url,
            ACME_KEY,
            &service,
            &other,
            &body(&other, "o@example.com")
        )
        .status,
        201
    );

    let public_only = text.replace(&format!("jwt_secret = \"{ACME_SECRET}\"\n"), "");
    let path2 = dir.path().join("public.toml");
    std::fs::write(&path2, public_only).unwrap();
    for (args, why) in [
        (
            vec![
                "--config",
                path2.to_str().unwrap(),
                "--org",
                "acme",
                "--service",
            ],
            "has no jwt_secret",
        ),
        (
            vec!["--config", config, "--org", "acme", "--user", "nope"],
            "--user must be a UUID",
        ),
        (
            vec!["--config", config, "--org", "zeta", "--service"],
            "no organization \"zeta\"",
        ),
    ] {
        let out = spkey_hub(&[&["token"], &args[..]].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
}

/// A token that passed is remembered, but only as long as it would pass:
/// not under another organization's key, not past its `exp` and leeway.
#[test]
fn a_remembered_token_passes_only_where_and_while_it_would_pass_a_check() {
    let hub = TestHub::start(Backend::Redb);
    let leeway = spkey_hub::auth::LEEWAY_SECS as i64;
    // Accepted for two more seconds, with the leeway.
    let exp = now() - leeway + 2;
    let token = hs256(
        &json!({"sub": "svc", "scope": "spkey:service", "iss": ISSUER, "aud": AUDIENCE, "exp": exp}),
        ACME_SECRET,
    );
    let answer = |key: &str| pull_status_under(&hub.url, key, &token);
    // Passed, and so remembered: what follows is judged against that entry.
    assert_eq!(answer(ACME_KEY).0, 200);
    let (status, message) = answer(BETA_KEY);
    assert_eq!(status, 401, "acme's token under beta's key");
    assert!(message.contains("InvalidSignature"), "{message}");
    while now() <= exp + leeway {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, message) = answer(ACME_KEY);
    assert_eq!(status, 401, "remembered past its exp");
    assert!(message.contains("ExpiredSignature"), "{message}");
}
