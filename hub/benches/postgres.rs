//! The hub on PostgreSQL under load, on this machine: `spkey-hub` processes
//! on one database of a throwaway cluster with `fsync = on` (durable
//! commits, as the redb figures), driven over keep-alive HTTP connections.
//!
//! - from an empty database, 1 node: creates per second in the first and
//!   the last 10 s of 40 (plans made on empty tables must not slow it);
//! - seed-endpoint creates per second and p50 / p99 latency at 64
//!   concurrent clients against 1 node and against 3 nodes (clients spread
//!   round-robin), with the same organization log behind them, then with
//!   the clients spread over 16 organizations;
//! - `spkey_store::http::sync` of a device with 10,000 pending events
//!   through one node (one push, one transaction);
//! - how long a long-poll on node B takes to answer after node A
//!   acknowledged a create (LISTEN/NOTIFY), over 20 samples.
//!
//! `cargo bench -p spkey-hub --bench postgres` writes
//! `hub/benches/results/postgres.md`. `cargo test --benches` runs it once at
//! a tiny size; timings are never asserted.

#[path = "../tests/support/pg.rs"]
mod pg;

#[path = "common.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{HubProcess, KEY, SYNC_KEY, agent, id, org_key, summary, token};
use spkey_store::{CreateUser, Store};

struct Size {
    seconds: f64,
    /// The first run, 1 node from an empty database.
    fresh_seconds: f64,
    pending: usize,
    wakes: usize,
}

fn size() -> Size {
    if std::env::args().any(|a| a == "--bench") {
        Size {
            seconds: 5.0,
            fresh_seconds: 40.0,
            pending: 10_000,
            wakes: 20,
        }
    } else {
        Size {
            seconds: 0.3,
            fresh_seconds: 0.3,
            pending: 200,
            wakes: 2,
        }
    }
}

fn create(agent: &ureq::Agent, url: &str, token: &str, n: usize) -> u16 {
    create_in(agent, url, token, KEY, n)
}

fn create_in(agent: &ureq::Agent, url: &str, token: &str, key: &str, n: usize) -> u16 {
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

/// What a run of [`drive`] measured.
struct Run {
    /// Creates per second and p50 / p99 latency (ms).
    summary: (f64, f64, f64),
    /// Creates per second in the run's first and last `WINDOW` seconds.
    first: f64,
    last: f64,
    /// Those spans' length, s: `WINDOW`, or a third of a shorter run.
    window: f64,
}

/// Organizations in the partitioned rows.
const ORGS: usize = 16;

/// The span at each end of a run from an empty database.
const WINDOW: f64 = 10.0;

/// 64 clients, client `c` on node `c % urls.len()`, for `seconds`.
fn drive(urls: &[String], token: &Arc<String>, base: usize, seconds: f64) -> Run {
    drive_orgs(urls, 1, token, base, seconds)
}

/// As [`drive`], client `c` writing to organization `c % orgs`.
fn drive_orgs(urls: &[String], orgs: usize, token: &Arc<String>, base: usize, seconds: f64) -> Run {
    let next = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let threads: Vec<_> = (0..64)
        .map(|c| {
            let (url, token, next) = (urls[c % urls.len()].clone(), token.clone(), next.clone());
            let key = org_key(c % orgs);
            std::thread::spawn(move || {
                let agent = agent();
                let mut done = Vec::new();
                while Instant::now() < until {
                    let n = base + next.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    assert_eq!(create_in(&agent, &url, &token, &key, n), 201);
                    done.push((
                        t.elapsed().as_secs_f64() * 1e3,
                        started.elapsed().as_secs_f64(),
                    ));
                }
                done
            })
        })
        .collect();
    let done: Vec<(f64, f64)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let took = started.elapsed().as_secs_f64();
    let window = WINDOW.min(took / 3.0);
    let rate = |from: f64, to: f64| {
        done.iter()
            .filter(|(_, at)| (from..to).contains(at))
            .count() as f64
            / (to - from)
    };
    Run {
        first: rate(0.0, window),
        last: rate(took - window, took),
        window,
        summary: summary(done.iter().map(|(ms, _)| *ms).collect(), took),
    }
}

fn main() {
    let size = size();
    let cluster = pg::PgCluster::start_with(true);
    let db_url = cluster.new_database();
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("postgres = \"{db_url}\"");
    let nodes: Vec<HubProcess> = (0..3)
        .map(|n| {
            HubProcess::start_with(
                dir.path(),
                &format!("node{n}"),
                &storage,
                "postgres_connections = 32",
                ORGS - 1,
            )
        })
        .collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let token = Arc::new(token());

    // The database is empty: a new deployment's first minute.
    let fresh = drive(&urls[..1], &token, 0, size.fresh_seconds);
    let one = drive(&urls[..1], &token, 5_000_000, size.seconds);
    let three = drive(&urls, &token, 10_000_000, size.seconds);
    // The same clients spread over 16 organizations: the partition key,
    // whose writes share no lock.
    let many = drive_orgs(&urls[..1], ORGS, &token, 20_000_000, size.seconds);
    let many_three = drive_orgs(&urls, ORGS, &token, 30_000_000, size.seconds);

    let device = Store::in_memory().unwrap();
    let commands: Vec<CreateUser> = (0..size.pending)
        .map(|n| CreateUser::new(id(50_000_000 + n), format!("p{n}@example.com")))
        .collect();
    device.execute_batch(&commands).unwrap();
    let started = Instant::now();
    let summary = spkey_store::http::sync(&device, &urls[0], SYNC_KEY, token.as_str()).unwrap();
    let sync_took = started.elapsed();
    assert_eq!(summary.accepted, size.pending);

    // Wake latency: from node A's 201 to node B's long-poll answer.
    let mut wakes = Vec::new();
    let head = Store::in_memory().unwrap();
    spkey_store::http::sync(&head, &urls[1], KEY, token.as_str()).unwrap();
    let first = head.head_position().unwrap();
    for w in 0..size.wakes {
        let since = first + w as u64;
        let (url, token_) = (urls[1].clone(), token.clone());
        let poll = std::thread::spawn(move || {
            let mut response = agent()
                .get(&format!("{url}/sync/pull?since={since}&wait=10"))
                .header("x-spkey-batch-format", "2")
                .header("Authorization", &format!("Bearer {token_}"))
                .header("X-API-Key", KEY)
                .call()
                .unwrap();
            let _ = response.body_mut().read_to_vec();
            Instant::now()
        });
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(create(&agent(), &urls[0], &token, 90_000_000 + w), 201);
        let acknowledged = Instant::now();
        let answered = poll.join().unwrap();
        wakes.push(
            answered
                .saturating_duration_since(acknowledged)
                .as_secs_f64()
                * 1e3,
        );
    }
    wakes.sort_by(f64::total_cmp);

    let mut table = String::from(
        "| nodes | organizations | clients | creates/s | p50 ms | p99 ms |\n|---|---|---|---|---|---|\n",
    );
    for (nodes, orgs, run) in [
        (1, 1, &one),
        (3, 1, &three),
        (1, ORGS, &many),
        (3, ORGS, &many_three),
    ] {
        let row = run.summary;
        table += &format!(
            "| {nodes} | {orgs} | 64 | {:.0} | {:.2} | {:.2} |\n",
            row.0, row.1, row.2
        );
    }
    let ratio = fresh.first / fresh.last;
    table += &format!(
        "\n- from an empty database, 1 node, {:.0} s: {:.0} creates/s in the first {:.0} s, \
         {:.0} in the last ({ratio:.2}×, target ≥ 0.8×: {}; the table's runs follow it)\n",
        size.fresh_seconds,
        fresh.first,
        fresh.window,
        fresh.last,
        if ratio >= 0.8 { "met" } else { "missed" }
    );
    table += &format!(
        "\n- sync of a device's {} pending events through one node (push, reply, pull back): {:.0} ms\n",
        size.pending,
        sync_took.as_secs_f64() * 1e3
    );
    table += &format!(
        "- a long-poll on node B answers {:.1} ms (median; max {:.1} ms, {} samples) after node A acknowledged a create\n",
        wakes[wakes.len() / 2],
        wakes[wakes.len() - 1],
        wakes.len()
    );
    print!("{table}");
    if std::env::args().any(|a| a == "--bench") {
        let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
        std::fs::create_dir_all(&results).unwrap();
        std::fs::write(results.join("postgres.md"), &table).unwrap();
    }
}
