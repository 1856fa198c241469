//! Many hub nodes on one PostgreSQL database: three `spkey-hub` processes
//! started at once on a fresh database (so they migrate it together), the
//! same email raced on every node, replays across nodes, a long-poll on one
//! node woken by a commit on another, 32 devices syncing through random
//! nodes; then SIGKILLs of random nodes and `pg_ctl restart -m immediate`
//! mid-load; then PostgreSQL down (503 with `Retry-After`, health says so)
//! and back (the node reconnects by itself). Every run ends with the log
//! checked in SQL: positions 1..N with no gap and no duplicate, each event
//! once, the head row at N.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spkey_store::{CreateUser, Store};
use support::pg::PgCluster;
use support::*;

fn long_run() -> bool {
    std::env::var_os("SPKEY_LONG").is_some()
}

/// `n` hub configs on fixed ports, all on the database `db_url`; returns
/// the config paths and the nodes' URLs.
fn node_configs(dir: &Path, db_url: &str, n: usize) -> (Vec<std::path::PathBuf>, Vec<String>) {
    (0..n)
        .map(|i| {
            let port = free_port();
            let config = dir.join(format!("node{i}.toml"));
            std::fs::write(
                &config,
                config_on(format!("postgres = \"{db_url}\""), dir, "")
                    .replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
            )
            .unwrap();
            (config, format!("http://127.0.0.1:{port}"))
        })
        .unzip()
}

/// The log of `org` as SQL sees it: (rows, highest position, distinct
/// event ids, the head row).
fn log_shape(cluster: &PgCluster, db: &str, org: &str) -> (u64, u64, u64, u64) {
    let out = cluster.psql(
        db,
        &format!(
            "SELECT count(*), coalesce(max(position), 0), count(DISTINCT event_id),
                    (SELECT head FROM spkey_orgs WHERE org = '{org}')
             FROM spkey_events WHERE org = '{org}'"
        ),
    );
    let n: Vec<u64> = out.trim().split('|').map(|v| v.parse().unwrap()).collect();
    (n[0], n[1], n[2], n[3])
}

/// Positions 1..N, no gap, no duplicate, each event once, head at N.
fn assert_gap_free(cluster: &PgCluster, db: &str, org: &str) -> u64 {
    let (rows, max, distinct, head) = log_shape(cluster, db, org);
    assert_eq!(
        (rows, distinct, head),
        (max, max, max),
        "{org}: {rows} rows, max position {max}, {distinct} distinct events, head {head}"
    );
    max
}

fn db_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

#[test]
fn three_nodes_on_one_database_race_one_email_replay_across_nodes_and_devices_converge() {
    let cluster = PgCluster::shared();
    let db_url = cluster.new_database();
    let dir = tempfile::tempdir().unwrap();
    let (configs, urls) = node_configs(dir.path(), &db_url, 3);
    // Started together: the migrations run once, under their lock.
    let starting: Vec<_> = configs
        .into_iter()
        .map(|config| std::thread::spawn(move || HubProcess::start(&config)))
        .collect();
    let _nodes: Vec<HubProcess> = starting.into_iter().map(|s| s.join().unwrap()).collect();
    // Each migration applied once, though three nodes started together.
    assert_eq!(
        cluster
            .psql(
                db_name(&db_url),
                "SELECT count(*) || ' ' || count(DISTINCT version) FROM spkey_migrations"
            )
            .trim(),
        "3 3"
    );

    // The same email raced on every node at once, five times.
    for round in 0..5u128 {
        let email = format!("race{round}@example.com");
        let answers: Vec<(u16, serde_json::Value)> = urls
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let (url, email) = (url.clone(), email.clone());
                let id = user_id(100 + round * 10 + i as u128);
                std::thread::spawn(move || {
                    let a = create(&url, ACME_KEY, &acme_token(), &id, &body(&id, &email));
                    (a.status, a.json())
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 201).count(),
            1,
            "exactly one owner: {statuses:?}"
        );
        assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 2);
        for (_, body) in answers.iter().filter(|a| a.0 == 409) {
            assert_eq!(body["details"][0]["field"], "email", "{body}");
        }
    }

    // The seed's replay rule across nodes: 200 with the original body.
    let id = user_id(200);
    let first = create(
        &urls[0],
        ACME_KEY,
        &acme_token(),
        &id,
        &body(&id, "replay@example.com"),
    );
    let again = create(
        &urls[1],
        ACME_KEY,
        &acme_token(),
        &id,
        &body(&id, "replay@example.com"),
    );
    assert_eq!((first.status, again.status), (201, 200));
    assert_eq!(first.json()["event"], again.json()["event"]);

    // A push replayed to another node gets the same reply, byte for byte.
    let device = Store::in_memory().unwrap();
    device
        .create_user(&CreateUser::new(user_id(201), "pushed@example.com"))
        .unwrap();
    let push = device.push().unwrap();
    let post = |url: &str| {
        answer(
            agent()
                .post(&format!("{url}/sync/push"))
                .header("Authorization", &format!("Bearer {}", acme_token()))
                .header("X-API-Key", ACME_KEY)
                .header("Content-Type", "application/octet-stream")
                .send(&push[..]),
        )
    };
    let (to_a, to_c) = (post(&urls[0]), post(&urls[2]));
    assert_eq!((to_a.status, to_c.status), (200, 200));
    assert_eq!(to_a.body, to_c.body, "the same reply from every node");

    // A long-poll on node B wakes on a commit on node A.
    let follower = mirror(&urls[0], "acme");
    let head = follower.head_position().unwrap();
    let (pulled, waited) = long_poll_woken_by(&urls[1], head, || {
        let id = user_id(202);
        let created = create(
            &urls[0],
            ACME_KEY,
            &acme_token(),
            &id,
            &body(&id, "wake@example.com"),
        );
        assert_eq!(created.status, 201);
    });
    assert_eq!(pulled.status, 200);
    assert_eq!(follower.import(&pulled.body).unwrap().imported, 1);
    assert!(
        waited < Duration::from_secs(20),
        "node B's long-poll slept through node A's commit ({waited:?})"
    );
    eprintln!("long-poll on node B woke {waited:?} after it began (commit on node A at ~300 ms)");

    // 32 devices, each syncing through a random node every round.
    let rounds = if long_run() { 25 } else { 4 };
    let deadline = Instant::now() + Duration::from_secs(if long_run() { 600 } else { 120 });
    let workers: Vec<_> = (0..32)
        .map(|d| {
            let urls = urls.clone();
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(d as u64);
                let device = Store::in_memory().unwrap();
                let mut created = Vec::new();
                for round in 0..rounds {
                    for n in [2 * round, 2 * round + 1] {
                        let command = command(d, n);
                        if device.create_user(&command).unwrap().event().is_some() {
                            created.push(command);
                        }
                    }
                    sync_until_done(&device, &urls[rng.usize(0..urls.len())], deadline);
                }
                (device, created)
            })
        })
        .collect();
    let (devices, created): (Vec<Store>, Vec<Vec<CreateUser>>) =
        workers.into_iter().map(|w| w.join().unwrap()).unzip();
    for (d, device) in devices.iter().enumerate() {
        sync_until_done(device, &urls[d % 3], deadline);
    }
    let n = assert_gap_free(cluster, db_name(&db_url), "acme");
    let log = mirror(&urls[2], "acme");
    assert_eq!(log.head_position().unwrap(), n);
    check_converged(&devices, &created, &log);

    // A user's pull reads that user's events by its index, not by a scan of
    // the organization's log: the inner read of the hub's scoped pull.
    let user = log.events(1, 1).unwrap()[0].aggregate_id();
    let plan = cluster.psql(
        db_name(&db_url),
        &format!(
            "ANALYZE spkey_events; EXPLAIN SELECT position, envelope FROM spkey_events
             WHERE org = 'acme' AND user_id = '{user}' AND position > 0
             ORDER BY position LIMIT 10000"
        ),
    );
    assert!(plan.contains("spkey_events_user_position"), "{plan}");
}

#[test]
fn nodes_killed_and_postgres_restarted_mid_load_lose_nothing_and_devices_converge() {
    let (kills, restarts) = if long_run() { (100, 10) } else { (20, 3) };
    let cluster = PgCluster::start();
    let db_url = cluster.new_database();
    let dir = tempfile::tempdir().unwrap();
    let (configs, urls) = node_configs(dir.path(), &db_url, 3);
    let mut nodes: Vec<HubProcess> = configs.iter().map(|c| HubProcess::start(c)).collect();

    let stop = Arc::new(AtomicBool::new(false));
    // Every create a node acknowledged (201 or 200): user id → event id.
    let acknowledged = Arc::new(Mutex::new(HashMap::<String, String>::new()));
    let creators: Vec<_> = (0..2)
        .map(|c| {
            let (urls, stop, acked) = (urls.clone(), stop.clone(), acknowledged.clone());
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(0xc0 + c);
                let mut n = 0u128;
                while !stop.load(Ordering::Relaxed) {
                    let id = user_id(1_000_000 * (c as u128 + 1) + n);
                    let url = &urls[rng.usize(0..urls.len())];
                    let a = answer_or_none(url, &id);
                    if let Some((200 | 201, event_id)) = a {
                        acked.lock().unwrap().insert(id, event_id);
                        n += 1;
                    }
                    // Anything else (the node or the database is down) is
                    // retried with the same id: a replay, if it had landed.
                }
            })
        })
        .collect();
    let devices: Vec<_> = (0..8)
        .map(|d| {
            let (urls, stop) = (urls.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(d as u64);
                let device = Store::in_memory().unwrap();
                let token = acme_token();
                let mut created = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let command = command(d, n);
                    if device.create_user(&command).unwrap().event().is_some() {
                        created.push(command);
                    }
                    n += 1;
                    let url = &urls[rng.usize(0..urls.len())];
                    let _ = spkey_store::http::sync(&device, url, ACME_KEY, &token);
                }
                (device, created)
            })
        })
        .collect();

    let mut rng = fastrand::Rng::with_seed(0x9e11);
    let restart_at: Vec<usize> = (1..=restarts).map(|r| r * kills / (restarts + 1)).collect();
    for k in 0..kills {
        std::thread::sleep(Duration::from_millis(rng.u64(50..300)));
        if restart_at.contains(&k) {
            cluster.restart_immediate();
        }
        let node = &mut nodes[rng.usize(0..3)];
        node.kill();
        node.restart();
    }
    stop.store(true, Ordering::Relaxed);
    for creator in creators {
        creator.join().unwrap();
    }
    let (devices, created): (Vec<Store>, Vec<Vec<CreateUser>>) =
        devices.into_iter().map(|w| w.join().unwrap()).unzip();
    let deadline = Instant::now() + Duration::from_secs(60);
    for _ in 0..2 {
        for (d, device) in devices.iter().enumerate() {
            sync_until_done(device, &urls[d % 3], deadline);
        }
    }

    let n = assert_gap_free(&cluster, db_name(&db_url), "acme");
    let log = mirror(&urls[0], "acme");
    assert_eq!(log.head_position().unwrap(), n);
    let acknowledged = acknowledged.lock().unwrap();
    for (id, event_id) in acknowledged.iter() {
        let user = log
            .user(id.parse().unwrap())
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged user {id} is lost"));
        let creation = log
            .aggregate_events(user.profile.user_id)
            .unwrap()
            .into_iter()
            .next()
            .unwrap();
        assert_eq!(&creation.event_id.to_string(), event_id, "{id}");
    }
    check_converged(&devices, &created, &log);
    for node in &mut nodes {
        node.terminate();
    }
    eprintln!(
        "{kills} node SIGKILLs, {restarts} PostgreSQL restarts: {} acknowledged creates and {} device users, {n} events, none lost or doubled",
        acknowledged.len(),
        created.iter().map(Vec::len).sum::<usize>()
    );
}

/// One create at `url`: its status and event id, or `None` when the node
/// could not be reached.
fn answer_or_none(url: &str, id: &str) -> Option<(u16, String)> {
    let response = agent()
        .post(&format!("{url}/users/{id}/CreateUser"))
        .header("Content-Type", "application/json")
        .header("Authorization", &format!("Bearer {}", acme_token()))
        .header("X-API-Key", ACME_KEY)
        .send(body(id, &format!("{id}@example.com")))
        .ok()?;
    let status = response.status().as_u16();
    let text = response.into_body().read_to_string().ok()?;
    let body: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some((
        status,
        body["event"]["eventId"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    ))
}

#[test]
fn with_postgres_down_requests_are_503_with_retry_after_and_the_node_recovers_by_itself() {
    let cluster = PgCluster::start();
    let db_url = cluster.new_database();
    let a = TestHub::start_on(format!("postgres = \"{db_url}\""), "");
    let b = TestHub::start_on(format!("postgres = \"{db_url}\""), "");
    let id = user_id(300);
    assert_eq!(
        create(
            &a.url,
            ACME_KEY,
            &acme_token(),
            &id,
            &body(&id, "up@example.com")
        )
        .status,
        201
    );

    cluster.stop_immediate();
    let id = user_id(301);
    let down = create(
        &a.url,
        ACME_KEY,
        &acme_token(),
        &id,
        &body(&id, "down@example.com"),
    );
    let health = answer(agent().get(&format!("{}/health", a.url)).call());
    let push = answer(
        agent()
            .get(&format!("{}/sync/pull?since=0", b.url))
            .header(
                "x-spkey-batch-format",
                spkey_store::BATCH_FORMAT.to_string(),
            )
            .header("Authorization", &format!("Bearer {}", acme_token()))
            .header("X-API-Key", ACME_KEY)
            .call(),
    );
    for answer in [&down, &health, &push] {
        assert_eq!(answer.status, 503);
        assert_eq!(answer.headers["retry-after"], "1");
        let body = answer.json();
        assert_eq!(body["error"], "Service Unavailable");
        assert_eq!(body["code"], 503);
        assert!(
            body["message"].as_str().unwrap().contains("PostgreSQL"),
            "{body}"
        );
    }

    cluster.start_again();
    // Neither node is restarted: each reconnects by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    let again = loop {
        let again = create(
            &a.url,
            ACME_KEY,
            &acme_token(),
            &id,
            &body(&id, "down@example.com"),
        );
        if again.status != 503 || Instant::now() > deadline {
            break again;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        again.status, 201,
        "nothing of the refused request was applied"
    );
    assert_eq!(
        answer(agent().get(&format!("{}/health", b.url)).call()).status,
        200
    );
    // Node B's listener is back too: its long-poll wakes on node A's commit.
    let head = mirror(&b.url, "acme").head_position().unwrap();
    assert_eq!(head, 2);
    let (pulled, waited) = long_poll_woken_by(&b.url, head, || {
        let id = user_id(302);
        let created = create(
            &a.url,
            ACME_KEY,
            &acme_token(),
            &id,
            &body(&id, "back@example.com"),
        );
        assert_eq!(created.status, 201);
    });
    let status = pulled.status;
    assert_eq!(status, 200);
    assert!(
        waited < Duration::from_secs(20),
        "slept through: {waited:?}"
    );
    assert_gap_free(&cluster, db_name(&db_url), "acme");
}

#[test]
fn the_pg_environment_variables_fill_what_the_url_leaves_out() {
    let cluster = PgCluster::shared();
    let db_url = cluster.new_database();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        config_on("postgres = \"postgres://\"".into(), dir.path(), ""),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_spkey-hub"))
        .arg("--config")
        .arg(&config)
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", cluster.port.to_string())
        .env("PGUSER", "spkey")
        .env("PGDATABASE", db_name(&db_url))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line.trim().strip_prefix("listening on ").map(str::to_owned);
    let id = user_id(500);
    let created = url.as_ref().map(|url| {
        create(
            url,
            ACME_KEY,
            &acme_token(),
            &id,
            &body(&id, "env@example.com"),
        )
        .status
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(created, Some(201), "the hub did not start: {line}");
    assert_eq!(
        cluster
            .psql(db_name(&db_url), "SELECT count(*) FROM spkey_events")
            .trim(),
        "1"
    );
}

/// Long-polls `url` for events after `head` (waiting up to 25 s), runs
/// `commit` 300 ms into the wait, and returns the pull's answer and how
/// long it took: well under the wait when the commit woke it.
fn long_poll_woken_by(url: &str, head: u64, commit: impl FnOnce()) -> (Answer, Duration) {
    let waiting = {
        let url = url.to_owned();
        std::thread::spawn(move || {
            let started = Instant::now();
            let pulled = answer(
                agent()
                    .get(&format!("{url}/sync/pull?since={head}&wait=25"))
                    .header(
                        "x-spkey-batch-format",
                        spkey_store::BATCH_FORMAT.to_string(),
                    )
                    .header("Authorization", &format!("Bearer {}", acme_token()))
                    .header("X-API-Key", ACME_KEY)
                    .call(),
            );
            (pulled, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    commit();
    waiting.join().unwrap()
}

/// The hub's sessions plan each statement for its values: a generic plan
/// cached on a new deployment's empty tables read a whole organization per
/// lookup (`hub/benches/postgres.rs`: creates/s fell 2.8× in the first
/// 40 s). Options in the URL are kept beside it.
/// A database of the schema before the last migration, holding users, is
/// migrated by the next start and keeps serving them: the foreign keys the
/// last migration drops are gone, every migration is recorded once, the
/// users answer a replay and a new user a 201, and the log has no gap.
#[test]
fn a_database_of_the_schema_before_migrates_with_its_users() {
    let cluster = PgCluster::shared();
    let db_url = cluster.new_database();
    let db = db_name(&db_url);
    let dir = tempfile::tempdir().unwrap();
    let (configs, urls) = node_configs(dir.path(), &db_url, 1);
    let mut hub = HubProcess::start(&configs[0]);
    let token = acme_token();
    let users: Vec<(String, String)> = (0..3u128)
        .map(|n| (user_id(n), body(&user_id(n), &format!("m{n}@example.com"))))
        .collect();
    for (id, body) in &users {
        assert_eq!(create(&urls[0], ACME_KEY, &token, id, body).status, 201);
    }
    hub.terminate();
    // Back to version 2, as a hub of the release before left it.
    cluster.psql(
        db,
        "ALTER TABLE spkey_events ADD FOREIGN KEY (org) REFERENCES spkey_orgs (org);
         ALTER TABLE spkey_emails ADD FOREIGN KEY (org) REFERENCES spkey_orgs (org);
         DELETE FROM spkey_migrations WHERE version = 3;",
    );
    let foreign_keys = "SELECT count(*) FROM pg_constraint WHERE contype = 'f'
         AND conrelid IN ('spkey_events'::regclass, 'spkey_emails'::regclass)";
    assert_eq!(cluster.psql(db, foreign_keys).trim(), "2");
    hub.restart();
    assert_eq!(cluster.psql(db, foreign_keys).trim(), "0");
    assert_eq!(
        cluster
            .psql(
                db,
                "SELECT count(*) || ' ' || max(version) FROM spkey_migrations"
            )
            .trim(),
        "3 3"
    );
    for (id, body) in &users {
        assert_eq!(create(&urls[0], ACME_KEY, &token, id, body).status, 200);
    }
    let (id, body) = (user_id(9), body(&user_id(9), "m9@example.com"));
    assert_eq!(create(&urls[0], ACME_KEY, &token, &id, &body).status, 201);
    assert_eq!(assert_gap_free(cluster, db, "acme"), 4);
}

/// A write that fails half-way answers a failure and leaves nothing, and
/// its transaction is over before its connection serves the next write —
/// the hub's only connection here — which commits: one the database
/// refuses at its write statement (a trigger planted on the email index;
/// the COMMIT sent behind it rolls it back), and one the hub gives up
/// between its round trips (a damaged envelope among what it loaded; the
/// hub rolls it back).
#[test]
fn a_write_that_fails_half_way_leaves_nothing_and_its_connection_serves_the_next() {
    let cluster = PgCluster::shared();
    let db_url = cluster.new_database();
    let db = db_name(&db_url);
    let hub = TestHub::start_on(
        format!("postgres = \"{db_url}\""),
        "[limits]\npostgres_connections = 1",
    );
    let token = acme_token();
    let create_user = |n: u128, email: &str| {
        create(
            &hub.url,
            ACME_KEY,
            &token,
            &user_id(n),
            &body(&user_id(n), email),
        )
    };
    // No connection is left in its transaction, holding the head row, and
    // the next three writes (users `from..`) commit.
    let in_transaction = format!(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = '{db}' AND state LIKE 'idle in transaction%'"
    );
    let the_next_commit = |from: u128| {
        let until = Instant::now() + Duration::from_secs(5);
        while cluster.psql(db, &in_transaction).trim() != "0" {
            assert!(
                Instant::now() < until,
                "a connection idles in its transaction"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for n in from..from + 3 {
            let next = create_user(n, &format!("next{n}@example.com"));
            assert_eq!(next.status, 201, "{:?}", next.json());
        }
    };
    assert_eq!(create_user(1, "first@example.com").status, 201);
    cluster.psql(
        db,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.email_key LIKE '%refused%' THEN RAISE EXCEPTION 'planted'; END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON spkey_emails
         FOR EACH ROW EXECUTE FUNCTION refuse();",
    );
    let refused = create_user(2, "refused@example.com");
    assert_eq!(refused.status, 500, "{:?}", refused.json());
    the_next_commit(3);
    // The first user's event damaged: a write that loads it fails after
    // the lock and the loads, before anything is written.
    cluster.psql(
        db,
        &format!(
            "UPDATE spkey_events SET envelope = '\\x00' WHERE user_id = '{}'",
            user_id(1)
        ),
    );
    let damaged = create_user(1, "first@example.com");
    assert_eq!(damaged.status, 500, "{:?}", damaged.json());
    the_next_commit(6);
    // The refused user was never written: seven users, positions 1..7.
    assert_eq!(assert_gap_free(cluster, db, "acme"), 7);
    let refused_rows = cluster.psql(
        db,
        &format!(
            "SELECT count(*) FROM spkey_events WHERE user_id = '{}'",
            user_id(2)
        ),
    );
    assert_eq!(refused_rows.trim(), "0");
}

#[test]
fn the_hubs_sessions_plan_each_statement_for_its_values() {
    let cluster = PgCluster::shared();
    let db_url = cluster.new_database();
    let url = format!("{db_url}?options=-c%20work_mem%3D7MB");
    let config = spkey_hub::postgres::connection_config(&url).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let settings = runtime.block_on(async {
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let mut settings = Vec::new();
        for name in ["plan_cache_mode", "work_mem"] {
            let row = client
                .query_one(&format!("SHOW {name}"), &[])
                .await
                .unwrap();
            settings.push(row.get::<_, String>(0));
        }
        settings
    });
    assert_eq!(settings, ["force_custom_plan", "7MB"]);
}

/// Each load of a write, and the write's own lookups of the email keys it
/// frees, the heads it moves and the events an erasure rewrites, is one
/// index lookup on both columns per key, planned as a write transaction
/// plans it — the write's plan kept (`WRITE_PLANS`) from tables that were
/// empty: never analysed (a new deployment's first minute, before
/// autovacuum's first ANALYZE), or vacuumed and analysed empty — and run
/// once they hold 20,000 users: no plan reads an organization's rows by
/// the index's first column and filters them, or scans a table, and each
/// finds its 64 rows.
#[test]
fn writes_look_up_each_key_by_both_columns_before_any_statistics() {
    let cluster = PgCluster::shared();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // A database the hub has made its schema in, with nothing written.
    let empty_database = |vacuumed: bool| {
        let db_url = cluster.new_database();
        runtime.block_on(async {
            // Migrates the schema and registers the organization.
            spkey_hub::postgres::PostgresHub::open(
                &db_url,
                1,
                &["bench".into()],
                Arc::new(|_, _| {}),
            )
            .await
            .unwrap();
        });
        let db = db_name(&db_url).to_owned();
        cluster.psql(
            &db,
            "ALTER TABLE spkey_events SET (autovacuum_enabled = false);
             ALTER TABLE spkey_emails SET (autovacuum_enabled = false);",
        );
        if vacuumed {
            for table in ["spkey_events", "spkey_emails", "spkey_orgs"] {
                cluster.psql(&db, &format!("VACUUM ANALYZE {table}"));
            }
        }
        db
    };
    let db = &empty_database(false);
    // 20,000 users, inserted (and rolled back) in each session below.
    let fill = "INSERT INTO spkey_events (org, position, event_id, user_id, version, envelope)
         SELECT 'bench', n, md5('e' || n)::uuid, md5('u' || n)::uuid, 1, '\\x00'
         FROM generate_series(1, 20000) n;
         INSERT INTO spkey_emails (org, email_key, user_id)
         SELECT 'bench', 'u' || n || '@example.com', md5('u' || n)::uuid
         FROM generate_series(1, 20000) n;";
    // 64 of them, as array literals; and 64 new events. Each statement
    // leaves this many email rows.
    let array = |of: &str| {
        let array = cluster.psql(
            db,
            &format!("SELECT array_agg({of}) FROM generate_series(1, 64) n"),
        );
        format!("'{}'", array.trim())
    };
    let (users, emails) = (
        array("md5('u' || n)::uuid"),
        array("'u' || n || '@example.com'"),
    );
    let (new_ids, positions, ones, envelopes) = (
        array("md5('new' || n)::uuid"),
        array("20000 + n"),
        array("1::bigint"),
        array("'\\x00'::bytea"),
    );
    let bench = array("'bench'::text");
    let [streams, owners, ids] = spkey_hub::postgres::LOAD_STATEMENTS;
    // How a write transaction plans each: the loads and the rewrite for
    // each execution's values (the sessions' setting); the write once,
    // here on the empty tables (by the first EXPLAIN), its plan kept.
    const CUSTOM: &str = "SET LOCAL plan_cache_mode = force_custom_plan";
    const KEPT: &str = spkey_hub::postgres::WRITE_PLANS;
    let statements = [
        (
            CUSTOM,
            streams,
            "text[], uuid[]",
            format!("{bench}, {users}"),
            "20000",
        ),
        (
            CUSTOM,
            owners,
            "text[], text[]",
            format!("{bench}, {emails}"),
            "20000",
        ),
        (
            CUSTOM,
            ids,
            "text[], uuid[]",
            format!("{bench}, {}", array("md5('e' || n)::uuid")),
            "20000",
        ),
        (
            KEPT,
            spkey_hub::postgres::WRITE_STATEMENT,
            "text[], bigint[], uuid[], uuid[], bigint[], bytea[], text[], text[], uuid[], \
             text[], text[], text[], bigint[]",
            format!(
                "{bench}, {positions}, {new_ids}, {new_ids}, {ones}, {envelopes}, \
                 '{{}}', '{{}}', '{{}}', {bench}, {emails}, '{{bench}}', '{{20064}}'"
            ),
            // The 64 emails freed.
            "19936",
        ),
        (
            CUSTOM,
            spkey_hub::postgres::REWRITE_STATEMENT,
            "text[], bigint[], bytea[]",
            format!("{bench}, {}, {envelopes}", array("n::bigint")),
            "20000",
        ),
    ];
    for (state, vacuumed) in [
        ("never analysed", false),
        ("vacuumed and analysed empty", true),
    ] {
        for (plans, sql, types, arguments, left) in &statements {
            // Each plan made on tables nothing was ever written to.
            let db = &empty_database(vacuumed);
            let out = cluster.psql(
                db,
                &format!(
                    "BEGIN;
                 {plans};
                 PREPARE s ({types}) AS {sql};
                 EXPLAIN EXECUTE s ({arguments});
                 {fill}
                 EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE s ({arguments});
                 SELECT count(*) FROM spkey_emails;
                 ROLLBACK;"
                ),
            );
            // Every scan of the log or the email index reads at most its 64
            // keys' rows: `rows` × `loops` of its `actual` figures.
            let read: Vec<u64> = out
                .lines()
                .filter(|l| l.contains(" on spkey_e") && l.contains("(actual "))
                .map(|l| {
                    let figure = |name: &str| -> u64 {
                        let at = l.rfind(name).unwrap() + name.len();
                        l[at..].split([' ', ')']).next().unwrap().parse().unwrap()
                    };
                    figure("rows=") * figure("loops=")
                })
                .collect();
            assert!(
                !out.contains("Rows Removed by")
                    && !out
                        .lines()
                        .any(|l| l.contains("Seq Scan") && l.contains("(actual "))
                    && !read.is_empty()
                    && read.iter().all(|r| *r <= 64),
                "{state}: a lookup reads the organization, not its keys:\n{sql}\n{out}"
            );
            // The rows left (the line before ROLLBACK's).
            let left_now = out.lines().rev().nth(1).map(str::trim);
            assert_eq!(left_now, Some(*left), "{state}: {sql}\n{out}");
        }
    }
}
