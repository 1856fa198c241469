//! The hub under attack, as the hostile run found it, each attack shown
//! failing before its fix: sockets that never speak or stop mid-header,
//! silent TLS and HTTP/2 connections, a flood of sockets under a small
//! descriptor limit, one tenant's bodiless requests, 60 MiB pushes, forged
//! JWS headers, hung-up long-polls and creates, CORS across organizations,
//! refusals outside the API's shape, readable files. The connection and
//! memory attacks run against the `spkey-hub` binary on redb (the
//! connection layer is the same for both backends); the others against a
//! hub on each backend. Bounded in count and time; `SPKEY_LONG=1` holds
//! more sockets.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spkey_hub::listen::HEAD_TIMEOUT;
use support::*;

fn long_run() -> bool {
    std::env::var_os("SPKEY_LONG").is_some()
}

/// The binary, killed when dropped: a failing test leaves no hub behind.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary (under `prlimit` when `nofile` is given) on a config of
/// its own; returns it, its URL and the path of its log.
fn start(nofile: Option<u32>) -> (Running, String, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.toml");
    std::fs::write(&path, config_text(dir.path(), "")).unwrap();
    let log = dir.path().join("hub.log");
    let mut command = match nofile {
        Some(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}"))
                .arg(env!("CARGO_BIN_EXE_spkey-hub"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_spkey-hub")),
    };
    let mut child = command
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let line = first_line(&mut child);
    let url = line.trim().trim_start_matches("listening on ").to_owned();
    let hub = Running(child);
    assert!(url.starts_with("http://"), "{line}");
    (hub, url, log, dir)
}

fn addr(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// Whether the hub closed `socket` (EOF or reset) before `deadline`.
fn closed_by(socket: &mut TcpStream, deadline: Instant) -> bool {
    let mut byte = [0u8; 64];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        socket.set_read_timeout(Some(left)).unwrap();
        match socket.read(&mut byte) {
            Ok(0) => return true,
            // The read timed out: still open at the deadline.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            // Reset by the hub: closed.
            Err(_) => return true,
            // A 408 or 400 answer before the close is fine.
            Ok(_) => {}
        }
    }
}

fn health(url: &str) -> Option<u16> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    agent
        .get(&format!("{url}/health"))
        .call()
        .ok()
        .map(|r| r.status().as_u16())
}

/// Connections that send nothing, stop in the middle of their request head,
/// or sit idle after a keep-alive request are closed once `HEAD_TIMEOUT`
/// passes; the hub answers everyone else all along.
#[test]
fn sockets_that_never_finish_a_request_head_are_closed_in_bounded_time() {
    let (_hub, url, _, _dir) = start(None);
    let n = if long_run() { 200 } else { 20 };
    let mut idle: Vec<TcpStream> = (0..n)
        .map(|_| TcpStream::connect(addr(&url)).unwrap())
        .collect();
    let mut half: Vec<TcpStream> = (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr(&url)).unwrap();
            s.write_all(b"GET /health HTTP/1.1\r\nHost: hub\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    let mut kept = TcpStream::connect(addr(&url)).unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: hub\r\n\r\n")
        .unwrap();
    // One byte a second into one more head: still closed at the bound.
    let mut trickle = TcpStream::connect(addr(&url)).unwrap();
    let started = Instant::now();
    assert_eq!(health(&url), Some(200));
    for byte in b"GET /health HTTP/1.1\r\n".iter().take(5) {
        trickle.write_all(&[*byte]).unwrap();
        std::thread::sleep(Duration::from_secs(1));
    }
    let deadline = started + HEAD_TIMEOUT + Duration::from_secs(5);
    let sockets = idle
        .iter_mut()
        .chain(half.iter_mut())
        .chain([&mut kept, &mut trickle]);
    let still_open = sockets
        .map(|s| closed_by(s, deadline))
        .filter(|closed| !closed)
        .count();
    assert_eq!(
        still_open,
        0,
        "of {} sockets, open after {:?}",
        2 * n + 2,
        started.elapsed()
    );
    assert_eq!(health(&url), Some(200));
}

/// With its descriptors exhausted by idle sockets the hub says so in its log
/// once, not in a loop, and is reachable again as soon as the timeouts have
/// closed them.
#[test]
fn descriptors_exhausted_by_idle_sockets_come_back_and_are_logged_once() {
    let (_hub, url, log, _dir) = start(Some(64));
    let flood: Vec<TcpStream> = (0..if long_run() { 400 } else { 120 })
        .filter_map(|_| TcpStream::connect(addr(&url)).ok())
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    let mut answered = None;
    while started.elapsed() < HEAD_TIMEOUT + Duration::from_secs(10) {
        if health(&url) == Some(200) {
            answered = Some(started.elapsed());
            break;
        }
    }
    assert!(answered.is_some(), "the hub never answered again");
    drop(flood);
    let text = std::fs::read_to_string(&log).unwrap();
    let logged = text.matches("cannot accept connections").count();
    assert!((1..=2).contains(&logged), "logged {logged} times:\n{text}");
}

/// A JWS header with `crit` (an extension the hub does not understand, or
/// `b64: false`) and an `iss` given as an array are refused; the same claims
/// with a plain header and one `iss` string are accepted.
fn critical_header_extensions_and_an_issuer_array_are_refused(backend: Backend) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let hub = TestHub::start(backend);
    let claims = acme_claims();
    let encode = |header: serde_json::Value, claims: &serde_json::Value| {
        let unsigned = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let key = jsonwebtoken::EncodingKey::from_secret(ACME_SECRET.as_bytes());
        let signature =
            jsonwebtoken::crypto::sign(unsigned.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
                .unwrap();
        format!("{unsigned}.{signature}")
    };
    let pull = |token: &str| pull(&hub.url, "since=0", ACME_KEY, token);
    let plain = serde_json::json!({"alg": "HS256", "typ": "JWT"});
    assert_eq!(
        pull(&encode(plain.clone(), &claims)).status,
        200,
        "the control"
    );
    let mut issuers = claims.clone();
    issuers["iss"] = serde_json::json!([ISSUER, "https://other.example"]);
    for (what, token) in [
        (
            "crit unknown",
            encode(
                serde_json::json!({"alg": "HS256", "crit": ["urn:x-unknown"], "urn:x-unknown": 1}),
                &claims,
            ),
        ),
        (
            "crit b64",
            encode(
                serde_json::json!({"alg": "HS256", "crit": ["b64"], "b64": false}),
                &claims,
            ),
        ),
        ("iss array", encode(plain.clone(), &issuers)),
    ] {
        let refused = pull(&token);
        assert_eq!(refused.status, 401, "{what}");
        eprintln!("{what}: {}", refused.json()["message"]);
    }
}

/// Long-polls whose clients hang up leave the open long-polls gauge where it
/// was.
fn long_polls_whose_clients_hang_up_leave_the_gauge_at_zero(backend: Backend) {
    let hub = TestHub::start(backend);
    let token = acme_token();
    let polls: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut s = TcpStream::connect(addr(&hub.url)).unwrap();
            write!(
                s,
                "GET /sync/pull?since=0&wait=20 HTTP/1.1\r\nHost: hub\r\nx-spkey-batch-format: {}\r\nAuthorization: Bearer {token}\r\nX-API-Key: {ACME_KEY}\r\n\r\n",
                spkey_store::BATCH_FORMAT
            )
            .unwrap();
            s
        })
        .collect();
    let gauge = || {
        let text =
            String::from_utf8(answer(agent().get(&format!("{}/metrics", hub.url)).call()).body)
                .unwrap();
        text.lines()
            .find(|l| l.starts_with("spkey_hub_open_long_polls "))
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
            .unwrap()
    };
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(gauge(), "10");
    drop(polls);
    let deadline = Instant::now() + Duration::from_secs(5);
    while gauge() != "0" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(gauge(), "0");
}

/// Sends a raw HTTP/1.1 request head (and `body`) and reads the answer:
/// its status and body, or `None` when the hub closed without one.
fn raw(url: &str, head: &str, body: &[u8], wait: Duration) -> Option<(u16, String)> {
    let mut socket = TcpStream::connect(addr(url)).unwrap();
    socket.set_read_timeout(Some(wait)).unwrap();
    socket.write_all(head.as_bytes()).ok()?;
    let _ = socket.write_all(body);
    let mut text = Vec::new();
    let _ = socket.read_to_end(&mut text);
    let text = String::from_utf8_lossy(&text).into_owned();
    let status = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

fn head(method: &str, path: &str, key: &str, token: &str, extra: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: hub\r\nConnection: close\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}\r\nX-API-Key: {key}\r\n{extra}\r\n"
    )
}

/// One organization's requests whose bodies never arrive hold only its own
/// share: beyond it its requests are 503 at once, other organizations and
/// /health are served, and the held requests end with a 408 at the body
/// deadline, not the request timeout.
fn one_organization_cannot_starve_the_others_and_bodies_have_a_deadline(backend: Backend) {
    let hub = TestHub::start_with(
        backend,
        "[limits]\nmax_requests_per_organization = 4\nbody_timeout_secs = 2",
    );
    let token = acme_token();
    let started = Instant::now();
    let held: Vec<_> = (0..8u128)
        .map(|n| {
            let (url, request) = (
                hub.url.clone(),
                head(
                    "POST",
                    &format!("/users/{}/CreateUser", user_id(n)),
                    ACME_KEY,
                    &token,
                    "Content-Length: 50\r\n",
                ),
            );
            std::thread::spawn(move || raw(&url, &request, b"", Duration::from_secs(20)))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let other = create(
        &hub.url,
        BETA_KEY,
        &beta_token(),
        &user_id(50),
        &body(&user_id(50), "b@example.com"),
    );
    assert_eq!(other.status, 201, "another organization is served");
    assert_eq!(health(&hub.url), Some(200));
    let answers: Vec<(u16, String)> = held
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    let count = |status| answers.iter().filter(|(s, _)| *s == status).count();
    assert_eq!((count(503), count(408)), (4, 4), "{answers:?}");
    for (status, body) in &answers {
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["code"], *status, "the API's error shape");
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "408 at the body deadline, not after {took:?}"
    );
}

/// Error answers keep the API's shape: a path that is not UTF-8, a wrong
/// method on /health and /metrics, a body shorter than its Content-Length.
fn every_refusal_is_in_the_api_error_shape(backend: Backend) {
    let hub = TestHub::start_with(backend, "[limits]\nbody_timeout_secs = 2");
    let token = acme_token();
    for (request, body, status) in [
        (
            head(
                "POST",
                "/users/%FF/CreateUser",
                ACME_KEY,
                &token,
                "Content-Length: 2\r\n",
            ),
            &b"{}"[..],
            400,
        ),
        (
            head("POST", "/health", ACME_KEY, &token, "Content-Length: 0\r\n"),
            &b""[..],
            405,
        ),
        (
            head("PUT", "/metrics", ACME_KEY, &token, "Content-Length: 0\r\n"),
            &b""[..],
            405,
        ),
        (
            head(
                "POST",
                &format!("/users/{}/CreateUser", user_id(1)),
                ACME_KEY,
                &token,
                "Content-Length: 40\r\n",
            ),
            &b"{\"userId\""[..],
            408,
        ),
    ] {
        let (got, text) = raw(&hub.url, &request, body, Duration::from_secs(10)).unwrap();
        assert_eq!(got, status, "{request}: {text}");
        let json: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        assert_eq!(json["code"], status);
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

/// CORS origins are per organization: acme's origin may read answers given
/// to acme's credentials, not to beta's.
fn an_organizations_origin_gets_cors_only_with_its_own_credentials(backend: Backend) {
    let hub = TestHub::start(backend);
    let origin = "http://localhost:5173";
    let with = |key: &str, token: &str| {
        answer(
            agent()
                .get(&format!("{}/sync/pull?since=0", hub.url))
                .header(
                    "x-spkey-batch-format",
                    spkey_store::BATCH_FORMAT.to_string(),
                )
                .header("Origin", origin)
                .header("Authorization", &format!("Bearer {token}"))
                .header("X-API-Key", key)
                .call(),
        )
    };
    let acme = with(ACME_KEY, &acme_token());
    let beta = with(BETA_KEY, &beta_token());
    assert_eq!((acme.status, beta.status), (200, 200));
    assert_eq!(acme.headers["access-control-allow-origin"], origin);
    assert!(
        !beta.headers.contains_key("access-control-allow-origin"),
        "{:?}",
        beta.headers
    );
    let preflight = answer(
        agent()
            .options(&format!("{}/sync/pull", hub.url))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .call(),
    );
    assert_eq!(preflight.headers["access-control-allow-origin"], origin);
}

/// The hub's files are its own: the data directory 0700, every store file
/// 0600; a config other users may read is warned about.
#[test]
fn the_hubs_files_are_private_and_a_readable_config_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let (hub, _url, log, dir) = start(None);
    drop(hub);
    let data = dir.path().join("data");
    assert_eq!(mode(&data), 0o700);
    let mut files = 0;
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        files += 1;
    }
    assert!(files >= 4, "two organizations' stores and their side files");
    let warned = std::fs::read_to_string(&log).unwrap();
    assert!(warned.contains("readable by other users"), "{warned}");
}

/// Large pushes are bounded in bytes, not only in count: 16 concurrent
/// 60 MiB pushes (a batch's head, then garbage) keep the hub's peak RSS
/// under 256 MiB (beyond the byte budget they are 503 before their body is
/// read), 16 more that are not batches at all are refused from their first
/// bytes, and memory returns near its baseline.
#[test]
fn concurrent_large_pushes_are_bounded_in_bytes() {
    let (hub, url, _, _dir) = start(None);
    let pid = hub.0.id();
    let status = |field: &str| -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap()
            .to_owned();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            / 1024
    };
    assert_eq!(health(&url), Some(200));
    let baseline = status("VmRSS:");
    let token = acme_token();
    const SIZE: usize = 60 << 20;
    let push = |valid_head: bool| {
        let (url, token) = (url.clone(), token.clone());
        std::thread::spawn(move || {
            let request = head(
                "POST",
                "/sync/push",
                ACME_KEY,
                &token,
                &format!("Content-Length: {SIZE}\r\n"),
            );
            let mut socket = TcpStream::connect(addr(&url)).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            socket.write_all(request.as_bytes()).unwrap();
            let mut chunk = vec![0x5a_u8; 1 << 20];
            if valid_head {
                chunk[..6].copy_from_slice(b"SPKS\x02\x01");
            }
            for n in 0..SIZE >> 20 {
                if socket.write_all(&chunk).is_err() {
                    break;
                }
                if n == 0 {
                    chunk[..6].copy_from_slice(&[0x5a; 6]);
                }
            }
            let mut answer = Vec::new();
            let _ = socket.read_to_end(&mut answer);
            String::from_utf8_lossy(&answer)
                .get(9..12)
                .map(str::to_owned)
        })
    };
    let pushes: Vec<_> = (0..16)
        .map(|_| push(true))
        .chain((0..16).map(|_| push(false)))
        .collect();
    let answers: Vec<Option<String>> = pushes.into_iter().map(|p| p.join().unwrap()).collect();
    let peak = status("VmHWM:");
    std::thread::sleep(Duration::from_secs(1));
    let after = status("VmRSS:");
    eprintln!("baseline {baseline} MiB, peak {peak} MiB, after {after} MiB; answers {answers:?}");
    assert!(peak <= 256, "peak RSS {peak} MiB");
    assert!(
        after <= baseline + 64,
        "RSS {after} MiB after, {baseline} MiB before"
    );
    assert!(
        answers
            .iter()
            .all(|a| matches!(a.as_deref(), None | Some("400" | "503")))
    );
    assert!(
        answers.iter().any(|a| a.as_deref() == Some("503")),
        "the budget refused some"
    );
    assert_eq!(health(&url), Some(200));
}

/// Over TLS a connection silent after its handshake, and over plain HTTP an
/// HTTP/2 connection silent after its preface, are closed in bounded time
/// (the first by the first-byte deadline, the second by unanswered pings).
#[test]
fn silent_tls_and_http2_connections_are_closed_in_bounded_time() {
    let keys = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(keys.path());
    let tls = TestHub::start_with(
        Backend::Redb,
        &format!(
            "tls_cert_pem = \"{}\"\ntls_key_pem = \"{}\"",
            cert.display(),
            key.display()
        ),
    );
    let plain = TestHub::start(Backend::Redb);
    let started = Instant::now();
    // openssl finishes the handshake and then sends nothing; it exits when
    // the hub closes the connection.
    let mut client = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &addr(&tls.url)])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut h2 = TcpStream::connect(addr(&plain.url)).unwrap();
    // The HTTP/2 preface and an empty SETTINGS frame, then nothing.
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    let deadline = started + Duration::from_secs(25);
    assert!(
        closed_by(&mut h2, deadline),
        "the HTTP/2 connection is still open"
    );
    let h2_closed = started.elapsed();
    while client.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = client.kill();
            panic!(
                "the TLS connection is still open after {:?}",
                started.elapsed()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "HTTP/2 closed after {h2_closed:?}, TLS after {:?}",
        started.elapsed()
    );
}

/// Sends a whole create request for `id` as acme and returns the socket,
/// unread: the caller decides when to hang up.
fn send_create(hub: &str, token: &str, id: String, email: &str) -> TcpStream {
    let content = body(&id, email);
    let mut socket = TcpStream::connect(addr(hub)).unwrap();
    let length = format!("Content-Length: {}\r\n", content.len());
    let request = head(
        "POST",
        &format!("/users/{id}/CreateUser"),
        ACME_KEY,
        token,
        &length,
    );
    socket.write_all(request.as_bytes()).unwrap();
    socket.write_all(content.as_bytes()).unwrap();
    socket
}

/// A create whose client hangs up before its answer still wakes the
/// long-polls waiting for it, and a pull started after it answers at once.
///
/// Whether a hung-up request runs at all depends on when the hub notices
/// the hang-up (before the write begins, the request is dropped, which is
/// allowed: nobody was told it committed). So the test steers the hang-up
/// into the window: later when a try did not commit, earlier when the
/// answer had already come, until three commits whose client was gone
/// (at most 40 tries).
fn a_commit_whose_client_hung_up_wakes_every_long_poll(backend: Backend) {
    const WAIT_SECS: u64 = 4;
    let hub = TestHub::start(backend);
    let token = acme_token();
    let pull = |since: u64, wait: u64| {
        let started = Instant::now();
        let answer = pull(
            &hub.url,
            &format!("since={since}&wait={wait}"),
            ACME_KEY,
            &token,
        );
        assert_eq!(answer.status, 200);
        started.elapsed()
    };
    let (mut since, mut hung_up_commits, mut delay_us) = (0, 0, 0u64);
    for n in 0..40u128 {
        if hung_up_commits == 3 {
            break;
        }
        let (waiting, answered) = {
            let pull = &pull;
            std::thread::scope(|scope| {
                let waiting = scope.spawn(move || pull(since, WAIT_SECS));
                std::thread::sleep(Duration::from_millis(200));
                let mut socket = send_create(
                    &hub.url,
                    &token,
                    user_id(700 + n),
                    &format!("gone{n}@example.com"),
                );
                std::thread::sleep(Duration::from_micros(delay_us));
                // Did the answer come before the hang-up?
                socket.set_nonblocking(true).unwrap();
                let answered = socket.read(&mut [0; 1]).is_ok_and(|read| read > 0);
                drop(socket);
                (waiting.join().unwrap(), answered)
            })
        };
        let head = hub.log("acme").head_position().unwrap();
        if head > since {
            // Every commit must wake the poll, whether or not its client
            // stayed.
            assert!(
                waiting < Duration::from_secs(2),
                "try {n}: the long-poll slept {waiting:?}"
            );
            assert!(
                pull(since, WAIT_SECS) < Duration::from_secs(1),
                "try {n}: a new pull waited"
            );
        }
        match (head > since, answered) {
            (true, false) => hung_up_commits += 1,
            (true, true) => delay_us /= 2,
            (false, _) => delay_us = (delay_us * 2).clamp(250, 200_000),
        }
        since = head;
    }
    eprintln!("{hung_up_commits} commits whose client had hung up");
    assert_eq!(
        hung_up_commits, 3,
        "in 40 tries, only {hung_up_commits} creates committed after their client hung up"
    );
}

/// A hub on a new database of the shared PostgreSQL cluster, with the
/// cluster and the database's name.
fn hub_on_a_new_database() -> (&'static support::pg::PgCluster, String, TestHub) {
    let cluster = support::pg::PgCluster::shared();
    let url = cluster.new_database();
    let db = url.rsplit('/').next().unwrap().to_owned();
    let hub = TestHub::start_on(format!("postgres = \"{url}\""), "");
    (cluster, db, hub)
}

/// The same, made certain on PostgreSQL: the test holds acme's row lock,
/// so the hub's write is begun and waiting when its client hangs up. The
/// write must commit once the lock is released, and wake the long-poll.
#[test]
fn a_write_waiting_in_postgres_commits_after_its_client_hangs_up() {
    let (cluster, db, hub) = hub_on_a_new_database();
    let token = acme_token();
    let first = user_id(800);
    assert_eq!(
        create(
            &hub.url,
            ACME_KEY,
            &token,
            &first,
            &body(&first, "first@example.com")
        )
        .status,
        201
    );
    let since = hub.log("acme").head_position().unwrap();
    let mut lock = cluster.session(&db);
    let mut sql = lock.stdin.take().unwrap();
    sql.write_all(b"BEGIN; SELECT head FROM spkey_orgs WHERE org = 'acme' FOR UPDATE;\n")
        .unwrap();
    let count = |filter: &str| {
        let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE {filter}");
        cluster.psql(&db, &sql).trim().parse::<u32>().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while count("state = 'idle in transaction'") == 0 {
        assert!(Instant::now() < deadline, "psql never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let waiting_on_lock = || count("wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'") > 0;
    std::thread::scope(|scope| {
        let poll = scope.spawn(|| {
            let answer = pull(
                &hub.url,
                &format!("since={since}&wait=20"),
                ACME_KEY,
                &token,
            );
            assert_eq!(answer.status, 200);
            Instant::now()
        });
        let socket = send_create(&hub.url, &token, user_id(801), "left@example.com");
        let deadline = Instant::now() + Duration::from_secs(15);
        while !waiting_on_lock() {
            assert!(Instant::now() < deadline, "the hub's write never began");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(socket);
        // Long enough for the hub to see the hang-up before the lock goes.
        std::thread::sleep(Duration::from_millis(500));
        sql.write_all(b"COMMIT;\n").unwrap();
        drop(sql);
        let released = Instant::now();
        assert!(lock.wait().unwrap().success());
        let woke = poll.join().unwrap();
        assert!(
            woke.saturating_duration_since(released) < Duration::from_secs(3),
            "the long-poll slept {:?} after the commit",
            woke.saturating_duration_since(released)
        );
    });
    let log = hub.log("acme");
    assert_eq!(
        log.head_position().unwrap(),
        since + 1,
        "the create whose client hung up mid-write was not committed"
    );
}

/// A node commits several organizations' groups in one PostgreSQL
/// transaction; when one organization's part fails (here its log holds a
/// damaged event), the others are committed alone all the same: under
/// concurrent creates to beta and to acme's damaged user, every beta
/// create succeeds and every create of the damaged user fails.
#[test]
fn one_organizations_failure_in_a_shared_postgres_commit_stays_its_own() {
    let (cluster, db, hub) = hub_on_a_new_database();
    let (acme, beta) = (acme_token(), beta_token());
    let damaged = user_id(900);
    let made = create(
        &hub.url,
        ACME_KEY,
        &acme,
        &damaged,
        &body(&damaged, "d@example.com"),
    );
    assert_eq!(made.status, 201);
    cluster.psql(
        &db,
        &format!("UPDATE spkey_events SET envelope = '\\x00' WHERE user_id = '{damaged}'"),
    );
    let statuses: Vec<(bool, u16)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (hub, acme, beta, damaged) = (&hub, &acme, &beta, &damaged);
                scope.spawn(move || {
                    (0..25)
                        .map(|n| {
                            if t % 2 == 0 {
                                let id = user_id(1000 + t * 100 + n);
                                let email = format!("b{t}-{n}@example.com");
                                (
                                    true,
                                    create(&hub.url, BETA_KEY, beta, &id, &body(&id, &email))
                                        .status,
                                )
                            } else {
                                let body = body(damaged, "d@example.com");
                                (
                                    false,
                                    create(&hub.url, ACME_KEY, acme, damaged, &body).status,
                                )
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    let beta_failed = statuses
        .iter()
        .filter(|(beta, s)| *beta && *s != 201)
        .count();
    let damaged_answered = statuses
        .iter()
        .filter(|(beta, s)| !*beta && *s != 500)
        .count();
    assert_eq!(
        beta_failed, 0,
        "beta's creates failed with acme's damaged log"
    );
    assert_eq!(
        damaged_answered, 0,
        "a create of the damaged user did not fail"
    );
}

on_both_backends!(
    critical_header_extensions_and_an_issuer_array_are_refused,
    long_polls_whose_clients_hang_up_leave_the_gauge_at_zero,
    one_organization_cannot_starve_the_others_and_bodies_have_a_deadline,
    every_refusal_is_in_the_api_error_shape,
    an_organizations_origin_gets_cors_only_with_its_own_credentials,
    a_commit_whose_client_hung_up_wakes_every_long_poll,
);
