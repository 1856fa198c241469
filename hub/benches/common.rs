//! What the hub benchmarks share: the hub process and its config, the
//! token, the HTTP client, user ids and the throughput / latency summary.
#![allow(dead_code, reason = "each benchmark uses a part")]

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};

/// The HS256 secret of the benchmark organizations.
pub const SECRET: &str = "bench-hs256-secret-bench-hs256-secret";

/// A service's token for the benchmark organizations, an hour to live.
pub fn token() -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    encode(
        &Header::new(Algorithm::HS256),
        &serde_json::json!({"sub": "bench", "scope": "spkey:service", "exp": exp}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A keep-alive client that returns every status as it is.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// The `n`th user id.
pub fn id(n: usize) -> String {
    uuid::Uuid::from_u128(n as u128 | 1 << 90).to_string()
}

/// Calls per second over `took_secs`, and p50 / p99 of the latencies (ms).
pub fn summary(mut latencies: Vec<f64>, took_secs: f64) -> (f64, f64, f64) {
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    (latencies.len() as f64 / took_secs, at(0.5), at(0.99))
}

/// CPU time (user + system) the process `pid` has used so far, seconds,
/// from `/proc/<pid>/stat`; `"self"` for this one. `None` once it is gone.
pub fn cpu_secs(pid: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may
    // hold spaces: the first is the state (field 3), utime is field 14.
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf reads a constant of the system, nothing else.
    Some(ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64)
}

/// `POST /users/{id}/CreateUser` of the `n`th benchmark user (id and
/// email made from `n`) to the organization of `key`; returns the status.
pub fn create_in(agent: &ureq::Agent, url: &str, token: &str, key: &str, n: usize) -> u16 {
    let user = id(n);
    let body = format!(r#"{{"userId":"{user}","email":"u{n}@example.com"}}"#);
    let mut response = agent
        .post(&format!("{url}/users/{user}/CreateUser"))
        .header("Content-Type", "application/json")
        .header("Authorization", &format!("Bearer {token}"))
        .header("X-API-Key", key)
        .send(&body)
        .unwrap();
    let _ = response.body_mut().read_to_vec();
    response.status().as_u16()
}

/// Drives `clients` keep-alive HTTP/1.1 connections from one thread
/// (hyper's client on a current-thread runtime, so that the load costs the
/// machine the servers share as little as a client can) for `seconds`:
/// client `c` posts creates to the hub at `targets(c)` = (URL, API key), one
/// after another, the users `base + n` for `n` counted across all of them.
/// Panics on any answer but 201. Returns each create's latency (ms) and
/// when it ended (s from the start), and how long the run took (s).
pub fn drive_creates(
    clients: usize,
    seconds: f64,
    token: &str,
    base: usize,
    targets: impl Fn(usize) -> (String, String),
) -> (Vec<(f64, f64)>, f64) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let bearer = Arc::new(format!("Bearer {token}"));
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let done = runtime.block_on(async {
        let mut clients: tokio::task::JoinSet<_> = (0..clients)
            .map(|c| {
                let (url, key) = targets(c);
                let (next, bearer) = (next.clone(), bearer.clone());
                async move {
                    let authority = url.strip_prefix("http://").unwrap().to_owned();
                    let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
                    stream.set_nodelay(true).unwrap();
                    let (mut sender, connection) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                            .await
                            .unwrap();
                    tokio::spawn(connection);
                    let mut done = Vec::new();
                    while Instant::now() < until {
                        let n = base + next.fetch_add(1, Ordering::Relaxed);
                        let user = id(n);
                        let request = hyper::Request::post(format!("/users/{user}/CreateUser"))
                            .header(HOST, &authority)
                            .header(CONTENT_TYPE, "application/json")
                            .header(AUTHORIZATION, bearer.as_str())
                            .header("X-API-Key", &key)
                            .body(Full::new(Bytes::from(format!(
                                r#"{{"userId":"{user}","email":"u{n}@example.com"}}"#
                            ))))
                            .unwrap();
                        let t = Instant::now();
                        let response = sender.send_request(request).await.unwrap();
                        let status = response.status();
                        response.into_body().collect().await.unwrap();
                        assert_eq!(status, 201);
                        done.push((
                            t.elapsed().as_secs_f64() * 1e3,
                            started.elapsed().as_secs_f64(),
                        ));
                    }
                    done
                }
            })
            .collect();
        let mut all = Vec::new();
        while let Some(done) = clients.join_next().await {
            all.extend(done.unwrap());
        }
        all
    });
    (done, started.elapsed().as_secs_f64())
}

/// The API key of the `n`th of the organizations
/// [`HubProcess::start_with`] adds; 0 is [`KEY`]'s.
pub fn org_key(n: usize) -> String {
    if n == 0 {
        KEY.to_owned()
    } else {
        format!("bench-api-key-{n}")
    }
}

/// The API key of the organization the creates go to.
pub const KEY: &str = "bench-api-key";
/// The key of a second, empty organization: the sync figure measures one
/// device's 10,000 events, not the creates of the tiers before it.
pub const SYNC_KEY: &str = "bench-sync-api-key";

/// An `spkey-hub` process of this build, killed when dropped.
pub struct HubProcess {
    pub child: std::process::Child,
    pub url: String,
}

impl HubProcess {
    /// Writes `<dir>/<name>.toml` for the two benchmark organizations with
    /// their logs where `storage` (a `data_dir` or `postgres` line) says
    /// and `limits` (lines of `[limits]`) added, starts the hub on it, and
    /// waits for its `listening on` line.
    pub fn start(dir: &std::path::Path, name: &str, storage: &str, limits: &str) -> HubProcess {
        HubProcess::start_with(dir, name, storage, limits, 0)
    }

    /// As [`start`](Self::start), with `more` organizations besides,
    /// reached with [`org_key`]`(1..=more)`.
    pub fn start_with(
        dir: &std::path::Path,
        name: &str,
        storage: &str,
        limits: &str,
        more: usize,
    ) -> HubProcess {
        use sha2::{Digest, Sha256};
        use std::io::BufRead;
        let config = dir.join(format!("{name}.toml"));
        let organization = |id: &str, key: &str| {
            format!(
                "\n[[organizations]]\nid = \"{id}\"\napi_key_sha256 = [\"{}\"]\njwt_secret = \"{SECRET}\"\n",
                hex::encode(Sha256::digest(key.as_bytes()))
            )
        };
        let mut text = format!(
            "listen = \"127.0.0.1:0\"\n{storage}\n[limits]\nmax_long_polls = 4096\nmax_concurrent_requests = 4096\n{limits}\n"
        );
        text += &organization("bench", KEY);
        text += &organization("sync", SYNC_KEY);
        for n in 1..=more {
            text += &organization(&format!("bench{n}"), &org_key(n));
        }
        std::fs::write(&config, text).unwrap();
        // Holds secrets: the hub warns about a config others may read.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_spkey-hub"))
            .arg("--config")
            .arg(&config)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the hub did not start: {line}"))
            .to_owned();
        HubProcess { child, url }
    }
}

impl HubProcess {
    /// A field of /proc/<pid>/status, in KiB.
    pub fn status_kib(&self, field: &str) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap()
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
