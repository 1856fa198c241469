//! A real hub for the tests: the `spkey-hub` library serving on 127.0.0.1
//! in a runtime of its own (or the binary, for the kill tests), two
//! organizations with their keys, and tokens signed for each — on either
//! backend: redb files, or a database of a throwaway PostgreSQL cluster.
#![allow(dead_code)]

pub mod pg;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use spkey_hub::Hub;
use spkey_hub::config::Config;
use std::collections::HashSet;

use spkey_store::{CreateUser, Store};
use tempfile::TempDir;

pub const ACME_KEY: &str = "acme-api-key-0123456789";
pub const BETA_KEY: &str = "beta-api-key-9876543210";
pub const ACME_SECRET: &str = "acme-hs256-secret-acme-hs256-secret!";
pub const BETA_SECRET: &str = "beta-hs256-secret-beta-hs256-secret!";
pub const ISSUER: &str = "https://auth.example";
pub const AUDIENCE: &str = "spkey-users";

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Where a test hub keeps its logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `data_dir`: redb files.
    Redb,
    /// `postgres`: a new database in the shared throwaway cluster.
    Postgres,
}

impl Backend {
    /// The config line that puts the logs on this backend.
    pub fn storage_line(self) -> String {
        match self {
            Backend::Redb => "data_dir = \"data\"".into(),
            Backend::Postgres => {
                format!("postgres = \"{}\"", pg::PgCluster::shared().new_database())
            }
        }
    }
}

/// Runs each named test (a `fn(Backend)`) once per backend: the same suite
/// against redb and against PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod redb {
            $(#[test]
            fn $name() {
                super::$name($crate::support::Backend::Redb)
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                super::$name($crate::support::Backend::Postgres)
            })*
        }
    };
}

/// A config for acme (HS256 with issuer and audience, and an Ed25519 key)
/// and beta (HS256 only) on redb files, with extra TOML appended at the top
/// level.
pub fn config_text(dir: &Path, extra: &str) -> String {
    config_on(Backend::Redb.storage_line(), dir, extra)
}

/// As [`config_text`], with the logs where `storage` (a `data_dir` or
/// `postgres` line) says.
pub fn config_on(storage: String, dir: &Path, extra: &str) -> String {
    let pem = ed25519_keys(dir).1;
    format!(
        r#"listen = "127.0.0.1:0"
{storage}
{extra}

[[organizations]]
id = "acme"
api_key_sha256 = ["{}"]
jwt_secret = "{ACME_SECRET}"
jwt_public_key_pem = "{}"
jwt_issuer = "{ISSUER}"
jwt_audience = "{AUDIENCE}"
cors_origins = ["http://localhost:5173"]

[[organizations]]
id = "beta"
api_key_sha256 = ["{}"]
jwt_secret = "{BETA_SECRET}"
"#,
        digest(ACME_KEY),
        pem.display(),
        digest(BETA_KEY),
    )
}

/// An Ed25519 key pair made with openssl: (private PEM, public PEM).
pub fn ed25519_keys(dir: &Path) -> (PathBuf, PathBuf) {
    let (private, public) = (dir.join("ed25519.pem"), dir.join("ed25519.pub.pem"));
    if !public.exists() {
        let made = Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&private)
            .status()
            .unwrap();
        assert!(made.success());
        let made = Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public)
            .status()
            .unwrap();
        assert!(made.success());
    }
    (private, public)
}

/// A hub serving in a runtime of its own until dropped.
pub struct TestHub {
    pub url: String,
    pub dir: TempDir,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestHub {
    pub fn start(backend: Backend) -> TestHub {
        TestHub::start_with(backend, "")
    }

    pub fn start_with(backend: Backend, extra: &str) -> TestHub {
        TestHub::start_on(backend.storage_line(), extra)
    }

    /// A hub whose logs are where `storage` (a `data_dir` or `postgres`
    /// line) says.
    pub fn start_on(storage: String, extra: &str) -> TestHub {
        let dir = tempfile::tempdir().unwrap();
        let text = config_on(storage, dir.path(), extra);
        TestHub::start_text(dir, &text)
    }

    /// A hub of the whole config `text`, with `dir` as its directory.
    pub fn start_text(dir: TempDir, text: &str) -> TestHub {
        let config = Config::parse(text, dir.path()).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let hub = runtime.block_on(Hub::bind(config)).unwrap();
        let url = hub.url();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        runtime.spawn(hub.serve(async move {
            let _ = stopped.await;
        }));
        TestHub {
            url,
            dir,
            runtime: Some(runtime),
            stop: Some(stop),
        }
    }

    /// Stops serving and closes the stores; returns the data directory.
    pub fn stop(mut self) -> TempDir {
        self.shutdown();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(std::time::Duration::from_secs(10));
        }
    }

    /// What the hub's log of `org` holds, whichever backend keeps it: a
    /// new in-memory store that pulled all of it over HTTP (positions as
    /// on the hub, since it records nothing of its own).
    pub fn log(&self, org: &str) -> Store {
        mirror(&self.url, org)
    }
}

/// The hub's log of `org` (`acme` or `beta`) pulled into a new store.
pub fn mirror(url: &str, org: &str) -> Store {
    let (key, token) = match org {
        "acme" => (ACME_KEY, acme_token()),
        "beta" => (BETA_KEY, beta_token()),
        other => panic!("no organization {other}"),
    };
    let store = Store::in_memory().unwrap();
    spkey_store::http::sync(&store, url, key, &token).unwrap();
    store
}

impl Drop for TestHub {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A service's claims valid for acme: its issuer and audience, the
/// service scope, an hour to live.
pub fn acme_claims() -> Value {
    json!({"sub": "svc", "scope": "openid spkey:service", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 3600})
}

/// A user's claims valid for acme: `sub` is the user id.
pub fn acme_user_claims(user: &str) -> Value {
    json!({"sub": user, "scope": "openid profile", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 3600})
}

/// A token of acme's user `user`.
pub fn acme_user_token(user: &str) -> String {
    hs256(&acme_user_claims(user), ACME_SECRET)
}

pub fn hs256(claims: &Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

pub fn acme_token() -> String {
    hs256(&acme_claims(), ACME_SECRET)
}

pub fn beta_token() -> String {
    hs256(
        &json!({"sub": "svc", "scp": ["spkey:service"], "exp": now() + 3600}),
        BETA_SECRET,
    )
}

/// A plain HTTP client that returns every status as it is.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into()
}

/// Status, headers and body text of a response.
pub struct Answer {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
}

pub fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut response = response.unwrap();
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response
            .body_mut()
            .with_config()
            .limit(128 << 20)
            .read_to_vec()
            .unwrap(),
    }
}

/// `GET /sync/pull?{query}` as a device of this batch format sends it.
pub fn pull(hub: &str, query: &str, key: &str, token: &str) -> Answer {
    answer(
        agent()
            .get(&format!("{hub}/sync/pull?{query}"))
            .header(
                "x-spkey-batch-format",
                spkey_store::BATCH_FORMAT.to_string(),
            )
            .header("Authorization", &format!("Bearer {token}"))
            .header("X-API-Key", key)
            .call(),
    )
}

/// `POST /users/{id}/CreateUser` exactly as the seed's curl sends it.
pub fn create(hub: &str, key: &str, token: &str, id: &str, body: &str) -> Answer {
    post_command(hub, key, token, "CreateUser", id, body)
}

/// `POST /users/{id}/{command}` as the seed's curl sends a command.
pub fn post_command(
    hub: &str,
    key: &str,
    token: &str,
    command: &str,
    id: &str,
    body: &str,
) -> Answer {
    answer(
        agent()
            .post(&format!("{hub}/users/{id}/{command}"))
            .header("Content-Type", "application/json")
            .header("Authorization", &format!("Bearer {token}"))
            .header("X-API-Key", key)
            .send(body),
    )
}

pub fn body(id: &str, email: &str) -> String {
    format!(
        r#"{{"userId":"{id}","email":"{email}","firstName":"John Doe","lastName":"John Doe","phoneNumber":"+1-555-0123"}}"#
    )
}

pub fn user_id(n: u128) -> String {
    uuid::Uuid::from_u128(0x0b00_0000 + n).to_string()
}

/// The hub binary on a fixed port, restarted on the same data.
/// The first line a started `spkey-hub` prints (`listening on URL`), or
/// empty when it exited first.
pub fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line
}

pub struct HubProcess {
    config: PathBuf,
    child: Option<Child>,
}

impl HubProcess {
    pub fn start(config: &Path) -> HubProcess {
        let mut hub = HubProcess {
            config: config.to_owned(),
            child: None,
        };
        hub.restart();
        hub
    }

    pub fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut child = Command::new(env!("CARGO_BIN_EXE_spkey-hub"))
                .arg("--config")
                .arg(&self.config)
                .stdout(Stdio::piped())
                // A file, not a pipe nobody reads: a full pipe would block
                // the hub.
                .stderr(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(self.config.with_extension("log"))
                        .unwrap(),
                )
                .spawn()
                .unwrap();
            let line = first_line(&mut child);
            if line.starts_with("listening on http://") {
                self.child = Some(child);
                return;
            }
            // The port may still be held by the killed process's socket.
            let _ = child.wait();
            assert!(Instant::now() < deadline, "the hub did not restart");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
    }

    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let stopped = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(stopped.success());
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "SIGTERM must stop the hub cleanly: {status}"
            );
        }
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Device `d`'s `n`th user: every third takes an email from a pool of
/// eight that all devices draw from.
pub fn command(d: usize, n: usize) -> CreateUser {
    let id = uuid::Uuid::from_u128(((d as u128) << 32) | n as u128 | 1 << 100).to_string();
    let email = if n.is_multiple_of(3) {
        format!("shared{}@example.com", (d + n) % 8)
    } else {
        format!("d{d}n{n}@example.com")
    };
    CreateUser::new(id, email).first_name(format!("Device {d}"))
}

/// Syncs until it succeeds or `deadline` passes.
pub fn sync_until_done(device: &Store, url: &str, deadline: Instant) {
    let token = acme_token();
    loop {
        match spkey_store::http::sync(device, url, ACME_KEY, &token) {
            Ok(_) => return,
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(error) => panic!("sync never succeeded: {error}"),
        }
    }
}

/// The end state every run must reach; `hub` is the hub's log (see
/// `support::mirror`).
pub fn check_converged(devices: &[Store], created: &[Vec<CreateUser>], hub: &Store) {
    let report = hub.verify().unwrap();
    assert!(report.is_sound(), "hub unsound: {:?}", report.findings);
    let events = hub.events(1, usize::MAX).unwrap();
    let ids: HashSet<_> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), events.len(), "an event is on the hub twice");
    for (d, device) in devices.iter().enumerate() {
        assert!(
            device.pending().unwrap().is_empty(),
            "device {d} still has pending events"
        );
        for event in &events {
            let id = event.aggregate_id();
            let mine = device
                .user(id)
                .unwrap()
                .expect("every hub user is on every device");
            assert_eq!(Some(mine.profile), hub.user(id).unwrap().map(|u| u.profile));
        }
        for command in &created[d] {
            let id = command.user_id.parse().unwrap();
            let on_hub = hub.user(id).unwrap();
            let local = device
                .user(id)
                .unwrap()
                .expect("a created user stays recorded");
            assert!(
                local.is_rejected() || on_hub.is_some(),
                "device {d}: {id} is neither on the hub nor refused"
            );
        }
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost, made by openssl:
/// (certificate PEM, key PEM).
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
        .args([
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (cert, key)
}
