//! The hub on PostgreSQL under load, on this machine: `spkey-hub` processes
//! on one database of a throwaway cluster with `fsync = on` (durable
//! commits, as the redb figures), driven over keep-alive HTTP connections.
//!
//! - from an empty database, 1 node: creates per second in the first and
//!   the last 10 s of 40 (plans made on empty tables must not slow it),
//!   and the servers' CPU per create over the 40 s;
//! - seed-endpoint creates per second and p50 / p99 latency at 64
//!   concurrent clients against 1 node and against 3 nodes (clients spread
//!   round-robin), with the same organization log behind them, then with
//!   the clients spread over 16 organizations, each row with the servers'
//!   CPU per create, from `/proc`: on a database filled from empty for
//!   40 s (the figure above), its tables as the fill left them (analysed
//!   only if autovacuum came by, which the table says), then on a second
//!   database filled alike and analysed; the redb hub filled as long;
//! - `spkey_store::http::sync` of a device with 10,000 pending events
//!   through one node (one push, one transaction);
//! - how long a long-poll on node B takes to answer after a create is sent
//!   to node A (LISTEN/NOTIFY), beside that create's own round trip, over
//!   20 samples.
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
use std::time::{Duration, Instant};

use common::{
    HubProcess, KEY, SYNC_KEY, agent, cpu_secs, create_in, drive_creates, id, org_key, summary,
    token,
};
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

/// What a run of [`drive`] measured.
struct Run {
    /// Creates per second and p50 / p99 latency (ms).
    summary: (f64, f64, f64),
    /// Creates per second in the run's first and last `WINDOW` seconds.
    first: f64,
    last: f64,
    /// Those spans' length, s: `WINDOW`, or a third of a shorter run.
    window: f64,
    /// CPU µs per create of the servers (see [`server_cpu`]).
    cpu_us: f64,
}

/// CPU seconds used so far by `servers` (hub processes) and, `with_postgres`,
/// by every PostgreSQL process on the machine (the bench's cluster: nothing
/// else of PostgreSQL runs beside a benchmark).
fn server_cpu(servers: &[u32], with_postgres: bool) -> f64 {
    let postgres: Vec<String> = if !with_postgres {
        Vec::new()
    } else {
        postgres_pids()
    };
    servers
        .iter()
        .map(u32::to_string)
        .chain(postgres)
        .filter_map(|pid| cpu_secs(&pid))
        .sum()
}

/// Every process named `postgres` on the machine.
fn postgres_pids() -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let pid = entry.ok()?.file_name().into_string().ok()?;
            pid.parse::<u32>().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim() == "postgres").then_some(pid)
        })
        .collect()
}

/// Whether the log's tables have been analysed yet (by autovacuum, or by
/// the bench's own `ANALYZE`): the planner's statistics a row ran with.
fn analysed(cluster: &pg::PgCluster, db: &str) -> bool {
    cluster
        .psql(
            db,
            "SELECT count(*) FROM pg_stat_user_tables WHERE relname IN ('spkey_events', 'spkey_emails') \
             AND coalesce(last_analyze, last_autoanalyze) IS NOT NULL",
        )
        .trim()
        == "2"
}

/// The four PostgreSQL rows: 1 and 3 nodes, 1 and 16 organizations, and
/// the statistics each started with.
struct PgRows {
    one: (bool, Run),
    three: (bool, Run),
    many: (bool, Run),
    many_three: (bool, Run),
}

impl PgRows {
    /// Each row with its hub and organizations, in the table's order.
    fn labelled(&self) -> [(&'static str, usize, &(bool, Run)); 4] {
        [
            ("PostgreSQL, 1 node", 1, &self.one),
            ("PostgreSQL, 3 nodes", 1, &self.three),
            ("PostgreSQL, 1 node", ORGS, &self.many),
            ("PostgreSQL, 3 nodes", ORGS, &self.many_three),
        ]
    }
}

/// Organizations in the partitioned rows.
const ORGS: usize = 16;

/// The span at each end of a run from an empty database.
const WINDOW: f64 = 10.0;

/// The hub processes a run drives, and their URLs.
struct Servers<'a> {
    urls: &'a [String],
    pids: Vec<u32>,
    /// Whether PostgreSQL's processes count as theirs.
    postgres: bool,
}

impl<'a> Servers<'a> {
    fn of(nodes: &'a [HubProcess], urls: &'a [String], postgres: bool) -> Servers<'a> {
        Servers {
            urls,
            pids: nodes.iter().map(|n| n.child.id()).collect(),
            postgres,
        }
    }

    /// CPU seconds they have used so far (see [`server_cpu`]).
    fn cpu(&self) -> f64 {
        server_cpu(&self.pids, self.postgres)
    }
}

/// 64 clients, client `c` on node `c % urls.len()`, for `seconds`.
fn drive(servers: &Servers, token: &Arc<String>, base: usize, seconds: f64) -> Run {
    drive_orgs(servers, 1, token, base, seconds)
}

/// As [`drive`], client `c` writing to organization `c % orgs`.
fn drive_orgs(
    servers: &Servers,
    orgs: usize,
    token: &Arc<String>,
    base: usize,
    seconds: f64,
) -> Run {
    let urls = servers.urls;
    let cpu_before = servers.cpu();
    let (done, took) = drive_creates(64, seconds, token, base, |c| {
        (urls[c % urls.len()].clone(), org_key(c % orgs))
    });
    let cpu = servers.cpu() - cpu_before;
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
        cpu_us: cpu * 1e6 / done.len().max(1) as f64,
        summary: summary(done.iter().map(|(ms, _)| *ms).collect(), took),
    }
}

/// A new database served by three nodes (`name` tells their files apart),
/// filled from empty by the first for `size.fresh_seconds`, analysed
/// with `analyse`, then its four PostgreSQL rows, each noting whether the
/// planner had statistics when it started. Returns the nodes, still
/// serving, the fill's run and the rows.
fn pg_set(
    cluster: &pg::PgCluster,
    dir: &Path,
    name: &str,
    token: &Arc<String>,
    analyse: bool,
    base: usize,
    size: &Size,
) -> (Vec<HubProcess>, Run, PgRows) {
    let db_url = cluster.new_database();
    let storage = format!("postgres = \"{db_url}\"");
    let nodes: Vec<HubProcess> = (0..3)
        .map(|n| {
            HubProcess::start_with(
                dir,
                &format!("{name}-node{n}"),
                &storage,
                "postgres_connections = 32",
                ORGS - 1,
            )
        })
        .collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let (first, all) = (
        Servers::of(&nodes[..1], &urls[..1], true),
        Servers::of(&nodes, &urls, true),
    );
    // The database is empty: a new deployment's first minute.
    let fill = drive(&first, token, base, size.fresh_seconds);
    let db = db_url.rsplit('/').next().unwrap();
    if analyse {
        cluster.psql(db, "ANALYZE");
        // The rows' statistics column reads what this shows: it must see it.
        assert!(analysed(cluster, db), "the log's tables show no ANALYZE");
    }
    let stats = || analysed(cluster, db);
    let rows = PgRows {
        one: (
            stats(),
            drive(&first, token, base + 5_000_000, size.seconds),
        ),
        three: (stats(), drive(&all, token, base + 10_000_000, size.seconds)),
        // The same clients spread over 16 organizations: the partition
        // key, whose writes share no lock.
        many: (
            stats(),
            drive_orgs(&first, ORGS, token, base + 15_000_000, size.seconds),
        ),
        many_three: (
            stats(),
            drive_orgs(&all, ORGS, token, base + 20_000_000, size.seconds),
        ),
    };
    (nodes, fill, rows)
}

fn main() {
    let size = size();
    let cluster = pg::PgCluster::start_with(true);
    let dir = tempfile::tempdir().unwrap();
    let token = Arc::new(token());
    // Two databases, each filled from empty by one node for the same time
    // before its rows, so that both sets of rows run on logs of about the
    // same length (PostgreSQL's rate falls as the log grows, so rows run
    // one after another on one database would differ by that too): the
    // first set on the tables as the fill left them, the second after an
    // `ANALYZE`. The first fill is also the empty-database figure.
    let (first_nodes, fresh, as_left) = pg_set(&cluster, dir.path(), "a", &token, false, 0, &size);
    drop(first_nodes);
    let (nodes, _, analysed_rows) =
        pg_set(&cluster, dir.path(), "b", &token, true, 100_000_000, &size);
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    // The redb hub on the same machine in the same run, 1 and 16
    // organizations, filled as long first: what the PostgreSQL figures are
    // judged against.
    let redb = HubProcess::start_with(dir.path(), "redb", "data_dir = \"redb\"", "", ORGS - 1);
    let redb_url = [redb.url.clone()];
    let redb_servers = Servers::of(std::slice::from_ref(&redb), &redb_url, false);
    drive(&redb_servers, &token, 200_000_000, size.fresh_seconds);
    let redb_one = drive(&redb_servers, &token, 40_000_000, size.seconds);
    let redb_many = drive_orgs(&redb_servers, ORGS, &token, 45_000_000, size.seconds);
    drop(redb);

    let device = Store::in_memory().unwrap();
    let commands: Vec<CreateUser> = (0..size.pending)
        .map(|n| CreateUser::new(id(50_000_000 + n), format!("p{n}@example.com")))
        .collect();
    device.execute_batch(&commands).unwrap();
    let started = Instant::now();
    let summary = spkey_store::http::sync(&device, &urls[0], SYNC_KEY, token.as_str()).unwrap();
    let sync_took = started.elapsed();
    assert_eq!(summary.accepted, size.pending);

    // Wake latency: from a create sent to node A to node B's long-poll
    // answer, beside the create's own round trip.
    let (mut wakes, mut acks) = (Vec::new(), Vec::new());
    // The hub's head, as node B's pull cursor says (the device's own
    // positions need not be the hub's).
    let head = Store::in_memory().unwrap();
    let first = spkey_store::http::sync(&head, &urls[1], KEY, token.as_str())
        .unwrap()
        .cursor;
    for w in 0..size.wakes {
        let since = first + w as u64;
        let (url, token_) = (urls[1].clone(), token.clone());
        let poll = std::thread::spawn(move || {
            let mut response = agent()
                .get(&format!("{url}/sync/pull?since={since}&wait=10"))
                .header(
                    spkey_store::BATCH_FORMAT_HEADER,
                    spkey_store::BATCH_FORMAT.to_string(),
                )
                .header("Authorization", &format!("Bearer {token_}"))
                .header("X-API-Key", KEY)
                .call()
                .unwrap();
            assert_eq!(response.status(), 200);
            let _ = response.body_mut().read_to_vec();
            Instant::now()
        });
        std::thread::sleep(Duration::from_millis(200));
        // Timed from the create's sending: node B often answers before
        // node A's 201 has reached this client.
        let sent = Instant::now();
        assert_eq!(create(&agent(), &urls[0], &token, 90_000_000 + w), 201);
        let acknowledged = sent.elapsed().as_secs_f64() * 1e3;
        let answered = poll.join().unwrap();
        wakes.push(answered.saturating_duration_since(sent).as_secs_f64() * 1e3);
        acks.push(acknowledged);
    }
    wakes.sort_by(f64::total_cmp);
    acks.sort_by(f64::total_cmp);

    let mut table = String::from(
        "| hub | organizations | clients | planner statistics | creates/s | p50 ms | p99 ms | server CPU µs/create |\n|---|---|---|---|---|---|---|---|\n",
    );
    let statistics = |analysed: bool| if analysed { "analysed" } else { "none yet" };
    let pg_rows = [&as_left, &analysed_rows]
        .into_iter()
        .flat_map(PgRows::labelled)
        .map(|(hub, orgs, (analysed, run))| (hub, orgs, statistics(*analysed), run));
    for (hub, orgs, statistics, run) in
        pg_rows.chain([("redb", 1, "—", &redb_one), ("redb", ORGS, "—", &redb_many)])
    {
        let row = run.summary;
        table += &format!(
            "| {hub} | {orgs} | 64 | {statistics} | {:.0} | {:.2} | {:.2} | {:.0} |\n",
            row.0, row.1, row.2, run.cpu_us
        );
    }
    table += &format!(
        "\nEach set of four PostgreSQL rows runs on a database of its own, filled from empty by one node for {:.0} s first (the first fill is the empty-database figure below): the first set on the tables as the fill left them (analysed only if autovacuum had come by when the row started), the second after an `ANALYZE`. The redb hub is filled as long before its rows. Server CPU: the hub processes' and (PostgreSQL rows) every PostgreSQL process's, from /proc, over the creates of the row; the 64 clients run on the same 2 cores.\n",
        size.fresh_seconds
    );
    let verdict = |met: bool| if met { "met" } else { "missed" };
    let rate = |run: &Run| run.summary.0;
    // Each target a ratio, judged on both sets of rows: met only where
    // both meet it.
    let judge = |ratio: &dyn Fn(&PgRows) -> f64, meets: fn(f64) -> bool| {
        let (left, analysed) = (ratio(&as_left), ratio(&analysed_rows));
        (
            format!("{left:.2}× (analysed: {analysed:.2}×)"),
            meets(left) && meets(analysed),
        )
    };
    let one = |r: &PgRows| rate(&r.one.1);
    let (vs_redb, vs_redb_met) = judge(&|r| one(r) / rate(&redb_one), |x| x >= 0.7);
    let (cpu, cpu_met) = judge(&|r| r.one.1.cpu_us / redb_one.cpu_us, |x| x <= 1.5);
    let (nodes, nodes_met) = judge(&|r| rate(&r.three.1) / one(r), |x| x >= 1.0);
    let (orgs_one, orgs_one_met) = judge(&|r| rate(&r.many.1) / one(r), |x| x >= 1.0);
    let (orgs_three, orgs_three_met) =
        judge(&|r| rate(&r.many_three.1) / rate(&r.three.1), |x| x >= 1.0);
    let targets = [
        (
            format!("1 node ≥ 0.7× the redb hub: {vs_redb}"),
            vs_redb_met,
        ),
        (
            format!("1 node's CPU per create ≤ 1.5× the redb hub's: {cpu}"),
            cpu_met,
        ),
        (format!("3 nodes ≥ 1 node: {nodes}"), nodes_met),
        (
            format!(
                "16 organizations ≥ 1: PostgreSQL 1 node {orgs_one}, 3 nodes {orgs_three}; redb {:.2}×",
                rate(&redb_many) / rate(&redb_one)
            ),
            orgs_one_met && orgs_three_met && rate(&redb_many) >= rate(&redb_one),
        ),
    ];
    table += "\n| target (this run) | verdict |\n|---|---|\n";
    for (text, met) in targets {
        table += &format!("| {text} | {} |\n", verdict(met));
    }
    // "Within 20 % of the last", either way: slower at first, or slowing.
    let ratio = fresh.first / fresh.last;
    table += &format!(
        "\n- from an empty database, 1 node, {:.0} s: {:.0} creates/s in the first {:.0} s, \
         {:.0} in the last ({ratio:.2}×, target 0.8–1.2×: {}; {fill_cpu:.0} µs of server CPU a create over the run; the first set of rows follows it)\n",
        size.fresh_seconds,
        fresh.first,
        fresh.window,
        fresh.last,
        verdict((0.8..=1.2).contains(&ratio)),
        fill_cpu = fresh.cpu_us,
    );
    table += &format!(
        "\n- sync of a device's {} pending events through one node (push, reply, pull back): {:.0} ms\n",
        size.pending,
        sync_took.as_secs_f64() * 1e3
    );
    table += &format!(
        "- a long-poll on node B answers {:.1} ms (median; max {:.1} ms, {} samples) after a create was sent to node A, whose own answer took {:.1} ms (median)\n",
        wakes[wakes.len() / 2],
        wakes[wakes.len() - 1],
        wakes.len(),
        acks[acks.len() / 2]
    );
    print!("{table}");
    if std::env::args().any(|a| a == "--bench") {
        let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
        std::fs::create_dir_all(&results).unwrap();
        std::fs::write(results.join("postgres.md"), &table).unwrap();
    }
}
