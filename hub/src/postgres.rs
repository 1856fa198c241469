//! The hub on PostgreSQL: any number of stateless hub nodes on one
//! database.
//!
//! Each organization has one log: `spkey_orgs.head` is its last position,
//! and every write locks that row first (`SELECT … FOR UPDATE`), loads what
//! the batch needs, decides it with the core's pipeline over a
//! [`Staged`] log, writes the new events, the email index and the new head
//! in one statement, and commits. The row lock makes positions gap-free and
//! in commit order: a writer takes position N+1 only after the writer of N
//! has committed, so a pull `since=N` never skips an event that commits
//! later with a smaller position (the `bigserial` log's failure). The
//! unique indexes on (org, email key) and (org, event id) are the rules'
//! last line under concurrency, not their statement: the rules are
//! `spkey_store`'s.
//!
//! Long-polls wake on `NOTIFY spkey_events` on one listening connection per
//! node, which re-reads every head whenever it reconnects. The notification
//! is sent after the write commits, by the node's announcer task, never
//! in the write's transaction: `NOTIFY` takes one database-wide lock from
//! its commit until its end, so a write that notified held every other
//! organization's commits behind its own fsync.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use spkey_store::pipeline::{Log, Needs, Pipeline, Staged, Stamper};
use spkey_store::{
    Intent, Outcome, Push, Response, Scope, StoreError, SystemClock, codec, contract, pull_batch,
    reply_batch, watermark,
};
use tokio::sync::watch;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

use crate::batcher::Batcher;

use crate::storage::{HubError, HubStorage, Observer, PULL_LIMIT, publish};

/// The versioned schema, applied in order, each once, under an advisory
/// lock so that nodes starting together migrate once. Never edit an entry:
/// add the next.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE TABLE spkey_orgs (
        org text PRIMARY KEY,
        hub_id uuid NOT NULL,
        head bigint NOT NULL DEFAULT 0 CHECK (head >= 0)
    );
    CREATE TABLE spkey_events (
        org text NOT NULL REFERENCES spkey_orgs (org),
        position bigint NOT NULL CHECK (position >= 1),
        event_id uuid NOT NULL,
        user_id uuid NOT NULL,
        version bigint NOT NULL CHECK (version >= 1),
        envelope bytea NOT NULL,
        PRIMARY KEY (org, position),
        UNIQUE (org, event_id),
        UNIQUE (org, user_id, version)
    );
    CREATE TABLE spkey_emails (
        org text NOT NULL REFERENCES spkey_orgs (org),
        email_key text NOT NULL,
        user_id uuid NOT NULL,
        PRIMARY KEY (org, email_key)
    );",
    ),
    // A user's pull (a user token's scope) reads its events by position.
    (
        2,
        "CREATE INDEX spkey_events_user_position ON spkey_events (org, user_id, position);",
    ),
    // Every event and email row checked its organization by a foreign key:
    // a trigger and a query per row, planned afresh for each row under the
    // sessions' custom plans — dropping them took a create from 161-168 to
    // 91-95 us of server CPU (docs/scaling.md). Rows are written only in
    // the transaction that holds their organization's head row locked
    // (`Shared::write`), and organizations are never deleted: that lock is
    // the check.
    (
        3,
        "ALTER TABLE spkey_events DROP CONSTRAINT spkey_events_org_fkey;
         ALTER TABLE spkey_emails DROP CONSTRAINT spkey_emails_org_fkey;",
    ),
];

/// The advisory lock key migrations run under ("spkey" in ASCII).
const MIGRATION_LOCK: i64 = 0x73_706b_6579;

/// The channel commits are announced on: payload `<org> <head>`.
const CHANNEL: &str = "spkey_events";

/// Parses a `postgres` URL and fills what it leaves out from the `PG*`
/// environment variables (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`,
/// `PGDATABASE`), as libpq does.
///
/// # Errors
///
/// Why the URL does not parse.
pub fn connection_config(url: &str) -> Result<tokio_postgres::Config, String> {
    let mut config = tokio_postgres::Config::from_str(url)
        .map_err(|e| format!("not a PostgreSQL connection URL: {e}"))?;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if config.get_hosts().is_empty() {
        match env("PGHOST") {
            Some(host) if host.starts_with('/') => config.host_path(host),
            Some(host) => config.host(&host),
            None => config.host("localhost"),
        };
    }
    if config.get_ports().is_empty()
        && let Some(port) = env("PGPORT")
    {
        config.port(
            port.parse()
                .map_err(|_| format!("PGPORT={port} is not a port"))?,
        );
    }
    if config.get_user().is_none() {
        config.user(env("PGUSER").or_else(|| env("USER")).unwrap_or_default());
    }
    if config.get_password().is_none()
        && let Some(password) = env("PGPASSWORD")
    {
        config.password(password);
    }
    if config.get_dbname().is_none()
        && let Some(db) = env("PGDATABASE")
    {
        config.dbname(db);
    }
    // Plans made for each execution, never a generic one: a generic plan
    // is cached after five runs, and made while the tables are still empty
    // (a new deployment) it reads the whole organization for each lookup
    // (`org = $1` alone in the index condition, the `ANY($2)` as a filter),
    // and stays until autovacuum's ANALYZE happens to replace it: creates/s
    // fell 2.8× within the first 40 s of a fresh database. A custom plan
    // sees the values and the composite index, at a planning cost per
    // statement that these short lookups can afford.
    let options = [
        config.get_options().unwrap_or_default(),
        "-c plan_cache_mode=force_custom_plan",
    ];
    config.options(options.join(" ").trim());
    // A dead server must turn into a prompt 503, not a hung request.
    config.connect_timeout(Duration::from_secs(5));
    config.keepalives_idle(Duration::from_secs(30));
    Ok(config)
}

/// Why the PostgreSQL hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum PgStartError {
    /// The URL or the pool settings were refused.
    #[error("{0}")]
    Config(String),
    /// The database could not be reached or refused the schema.
    #[error("PostgreSQL: {0}")]
    Database(String),
}

struct Org {
    id: String,
    /// The organization's hub id, shared by every node: the sender of every
    /// reply and pull batch, which devices pin.
    hub_id: Uuid,
    /// The highest head this node has seen committed: long-polls wait here.
    head: watch::Sender<u64>,
}

/// Every organization's log in one PostgreSQL database.
pub struct PostgresHub {
    shared: Arc<Shared>,
    /// Each organization's group commit (see [`Shared::commit_group`]).
    batchers: Vec<Batcher<Intent, Outcome>>,
    listener: tokio::task::JoinHandle<()>,
    announcer: tokio::task::JoinHandle<()>,
}

/// What the requests and the group commits of every organization share.
struct Shared {
    pool: Pool,
    orgs: Arc<Vec<Org>>,
    stamper: Stamper,
    observe: Observer,
    unannounced: Arc<Unannounced>,
}

impl Drop for PostgresHub {
    fn drop(&mut self) {
        self.listener.abort();
        self.announcer.abort();
    }
}

/// Heads this node committed and has not yet announced to the others: one
/// slot per organization (0: nothing to say), so however far the
/// announcements fall behind, they hold one number per organization and
/// one notification carries them all.
struct Unannounced {
    heads: std::sync::Mutex<Vec<u64>>,
    ready: tokio::sync::Notify,
}

impl Unannounced {
    fn new(orgs: usize) -> Unannounced {
        Unannounced {
            heads: std::sync::Mutex::new(vec![0; orgs]),
            ready: tokio::sync::Notify::new(),
        }
    }

    /// Notes that `org`'s log reached `head` (heads only move up).
    fn add(&self, org: usize, head: u64) {
        let mut heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        heads[org] = heads[org].max(head);
        drop(heads);
        self.ready.notify_one();
    }

    /// Takes what is to be said: each organization whose head moved, and
    /// its head.
    fn take(&self) -> Vec<(usize, u64)> {
        let mut heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        heads
            .iter_mut()
            .enumerate()
            .filter(|(_, head)| **head > 0)
            .map(|(org, head)| (org, std::mem::take(head)))
            .collect()
    }
}

/// Announces this node's commits to the other nodes, forever: whatever
/// committed while the last announcement was being sent goes in the next,
/// one notification per organization in one transaction. That transaction
/// does not wait for its WAL flush (`synchronous_commit = off`: it writes
/// no data), so the database-wide lock `NOTIFY` takes is held for
/// microseconds, by one announcer per node. An announcement lost with its
/// node is a long-poll on another node answered at its timeout instead of
/// at once; a failed one is retried with what has committed since.
async fn announce(pool: Pool, orgs: Arc<Vec<Org>>, unannounced: Arc<Unannounced>) {
    loop {
        unannounced.ready.notified().await;
        let moved = unannounced.take();
        if moved.is_empty() {
            continue;
        }
        let payloads: Vec<String> = moved
            .iter()
            .map(|&(org, head)| format!("{} {head}", orgs[org].id))
            .collect();
        let sent = async {
            let mut client = pool.get().await.map_err(pool_error)?;
            let txn = client.transaction().await.map_err(pg_error)?;
            txn.batch_execute("SET LOCAL synchronous_commit TO off")
                .await
                .map_err(pg_error)?;
            let notify = txn
                .prepare_cached(&format!(
                    "SELECT pg_notify('{CHANNEL}', p) FROM unnest($1::text[]) AS p"
                ))
                .await
                .map_err(pg_error)?;
            txn.execute(&notify, &[&payloads]).await.map_err(pg_error)?;
            txn.commit().await.map_err(pg_error)
        };
        if let Err(error) = sent.await {
            tracing::warn!(%error, "cannot announce commits to the other nodes");
            for (org, head) in moved {
                unannounced.add(org, head);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn database(error: impl std::fmt::Display) -> PgStartError {
    PgStartError::Database(error.to_string())
}

/// The erasure maintenance step: after a `DeleteUser`, the erased user's
/// values remain in the tables' dead tuples and index pages, in the
/// planner's statistics (`pg_statistic` samples column values) and in the
/// WAL until these run. `VACUUM FULL` writes each table and its indexes
/// anew (the old files are removed at the next checkpoint); `ANALYZE`
/// replaces the statistics, and `pg_statistic` is itself rewritten; the
/// WAL is switched and checkpointed so that the segments holding the old
/// rows are no longer needed — removed, not kept for reuse, only when the
/// server runs with `wal_recycle = off`. Run by `spkey-hub erase-maintenance`
/// as a role that may (a superuser, or the tables' owner with
/// `pg_checkpoint` and `pg_switch_wal` granted); WAL archives and backups
/// are outside its reach.
pub const ERASURE_MAINTENANCE: [&str; 6] = [
    "VACUUM (FULL, ANALYZE) spkey_events",
    "VACUUM (FULL, ANALYZE) spkey_emails",
    "VACUUM FULL pg_catalog.pg_statistic",
    "SELECT pg_switch_wal()",
    "CHECKPOINT",
    "CHECKPOINT",
];

/// Runs [`ERASURE_MAINTENANCE`] on the database at `url`, statement by
/// statement (`VACUUM` cannot run in a transaction).
///
/// # Errors
///
/// The statement that failed, and why.
pub async fn erase_maintenance(url: &str) -> Result<(), String> {
    let config = connection_config(url)?;
    let (client, connection) = config.connect(NoTls).await.map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    for statement in ERASURE_MAINTENANCE {
        client
            .simple_query(statement)
            .await
            .map_err(|e| format!("{statement}: {e}"))?;
    }
    drop(client);
    let _ = driver.await;
    Ok(())
}

impl PostgresHub {
    /// Connects, migrates the schema, registers each organization (its hub
    /// id is made once, by whichever node registers it first) and starts
    /// listening for commits and each organization's group commit (tasks on
    /// the current runtime).
    ///
    /// # Errors
    ///
    /// [`PgStartError::Config`] for a URL that does not parse;
    /// [`PgStartError::Database`] when the database cannot be reached or a
    /// migration fails.
    pub async fn open(
        url: &str,
        connections: usize,
        org_ids: &[String],
        observe: Observer,
    ) -> Result<PostgresHub, PgStartError> {
        let config = connection_config(url).map_err(PgStartError::Config)?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| PgStartError::Config(e.to_string()))?;
        let mut client = pool.get().await.map_err(database)?;
        migrate(&mut client).await.map_err(database)?;
        let mut orgs = Vec::new();
        for id in org_ids {
            client
                .execute(
                    "INSERT INTO spkey_orgs (org, hub_id) VALUES ($1, $2) ON CONFLICT (org) DO NOTHING",
                    &[id, &Uuid::new_v4()],
                )
                .await
                .map_err(database)?;
            let row = client
                .query_one("SELECT hub_id, head FROM spkey_orgs WHERE org = $1", &[id])
                .await
                .map_err(database)?;
            orgs.push(Org {
                id: id.clone(),
                hub_id: row.get(0),
                head: watch::Sender::new(u64::try_from(row.get::<_, i64>(1)).unwrap_or(0)),
            });
        }
        drop(client);
        let orgs = Arc::new(orgs);
        let listener = tokio::spawn(listen(config, orgs.clone()));
        let unannounced = Arc::new(Unannounced::new(orgs.len()));
        let announcer = tokio::spawn(announce(pool.clone(), orgs.clone(), unannounced.clone()));
        let shared = Arc::new(Shared {
            pool,
            orgs,
            stamper: Stamper::new(Arc::new(SystemClock)),
            observe,
            unannounced,
        });
        let combiner = {
            let shared = shared.clone();
            Arc::new(Batcher::start(move |groups| {
                let shared = shared.clone();
                async move { Ok(shared.combine(groups).await) }
            }))
        };
        let batchers = (0..shared.orgs.len())
            .map(|org| {
                let (shared, combiner) = (shared.clone(), combiner.clone());
                Batcher::start(move |intents| {
                    let (shared, combiner) = (shared.clone(), combiner.clone());
                    async move { shared.commit_group(&combiner, org, intents).await }
                })
            })
            .collect();
        Ok(PostgresHub {
            shared,
            batchers,
            listener,
            announcer,
        })
    }
}

/// How a write takes its organizations' head rows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Locking {
    /// Waits for each, in the order of their ids, as every node does: two
    /// writes never wait on each other in a cycle.
    Wait,
    /// Takes those no other transaction holds and leaves the others out
    /// (`SKIP LOCKED`): an organization's commands never wait on another
    /// organization's lock.
    SkipLocked,
}

impl Shared {
    /// Locks the heads of `orgs` (each once) as `locking` says, loads what
    /// each needs, runs `decide` on the staged logs of those it locked
    /// (their places in `orgs`, and their logs in that order), writes what
    /// they appended, and commits: one transaction, the same statements
    /// in two round trips, for any number of organizations.
    async fn write<T>(
        &self,
        orgs: &[(usize, Needs)],
        locking: Locking,
        decide: impl FnOnce(&[usize], &mut [Staged<'_>]) -> Result<T, StoreError>,
    ) -> Result<T, HubError> {
        let started = Instant::now();
        let asked: Vec<&str> = orgs
            .iter()
            .map(|(org, _)| self.orgs[*org].id.as_str())
            .collect();
        let client = self.pool.get().await.map_err(pool_error)?;
        // Prepared once per connection, then from its cache: after the
        // first write, this costs no round trip.
        let (lock, reads, write) = tokio::try_join!(
            client.prepare_cached(match locking {
                Locking::Wait =>
                    "SELECT org, head FROM spkey_orgs WHERE org = ANY($1) ORDER BY org FOR UPDATE",
                Locking::SkipLocked =>
                    "SELECT org, head FROM spkey_orgs WHERE org = ANY($1) FOR UPDATE SKIP LOCKED",
            }),
            load_statements(&client),
            client.prepare_cached(WRITE_STATEMENT),
        )
        .map_err(pg_error)?;
        let txn = InTransaction(Some(client));
        // The transaction's start, the lock and the loads in one round
        // trip: every statement is prepared, so each is sent on its first
        // poll, in this order, and the server runs them in it — the loads
        // once the lock is held, each reading what was committed when it
        // starts (READ COMMITTED), so they see the last holder's commit.
        // What they read of an organization left out is not used.
        let ((), heads, rows) = tokio::try_join!(
            async { txn.batch_execute("BEGIN").await.map_err(pg_error) },
            async { txn.query(&lock, &[&asked]).await.map_err(pg_error) },
            load(&txn, &reads, &asked, orgs),
        )?;
        let heads: HashMap<&str, i64> = heads.iter().map(|row| (row.get(0), row.get(1))).collect();
        let (mut locked, mut ids, mut staged) = (Vec::new(), Vec::new(), Vec::new());
        for (at, ((org, needs), id)) in orgs.iter().zip(&asked).enumerate() {
            let Some(head) = heads.get(id) else {
                if locking == Locking::Wait {
                    return Err(inconsistent(&format!("no head row for {id:?}")));
                }
                continue;
            };
            locked.push(at);
            ids.push(*id);
            staged.push(Staged::new(
                self.orgs[*org].hub_id,
                &self.stamper,
                u64::try_from(*head).map_err(|_| inconsistent("a negative head"))?,
                needs,
            ));
        }
        rows.stage(&asked, &ids, &mut staged)?;
        let value = decide(&locked, &mut staged)?;
        let written = Written::of(&ids, &staged);
        // An erasure: the user's earlier events, redacted, over theirs.
        // Their old versions stay in dead tuples until the erasure
        // maintenance step (ERASURE_MAINTENANCE) rewrites the tables.
        // Prepared before the round trip below, which it must not split.
        let rewrite = if written.rewritten_positions.is_empty() {
            None
        } else {
            Some(
                txn.prepare_cached(REWRITE_STATEMENT)
                    .await
                    .map_err(pg_error)?,
            )
        };
        // The write and the commit in one round trip: if the write fails,
        // the server turns the COMMIT after it into a rollback. The
        // rewrite (custom-planned: several indexes of the log lead with
        // the organization) goes before the write's plans are set.
        tokio::try_join!(
            async {
                let Some(rewrite) = &rewrite else {
                    return Ok(0);
                };
                let parameters: [&(dyn ToSql + Sync); 3] = [
                    &written.rewritten_orgs,
                    &written.rewritten_positions,
                    &written.rewritten_envelopes,
                ];
                txn.execute(rewrite, &parameters).await
            },
            async {
                if written.positions.is_empty() {
                    return Ok(0);
                }
                // Both sent on the first poll, before the COMMIT.
                let parameters = written.parameters();
                let ((), rows) = tokio::try_join!(
                    txn.batch_execute(WRITE_PLANS),
                    txn.execute(&write, &parameters),
                )?;
                Ok(rows)
            },
            txn.batch_execute("COMMIT"),
        )
        .map_err(pg_error)?;
        txn.committed();
        for (&at, log) in locked.iter().zip(&staged) {
            if !log.appended().is_empty() {
                let org = orgs[at].0;
                publish(&self.orgs[org].head, log.head());
                self.unannounced.add(org, log.head());
            }
        }
        (self.observe)(started.elapsed(), written.positions.len() as u64);
        Ok(value)
    }

    /// The envelopes of `scope` after `since`, at most [`PULL_LIMIT`], the
    /// last one's position, and the organization's head — all in one
    /// statement, so one snapshot: the head's transaction wrote every event
    /// up to it. One user's events are read by the index
    /// `spkey_events_user_position` (org, user_id, position), never by a
    /// scan of the organization's log.
    async fn events_after(
        &self,
        org: usize,
        scope: Scope,
        since: u64,
    ) -> Result<(Vec<Vec<u8>>, Option<u64>, u64), HubError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        // Two statements, so that each plan is made for its own index.
        let of = |filter: &str| {
            format!(
                "SELECT o.head, e.position, e.envelope FROM spkey_orgs o
                 LEFT JOIN LATERAL (
                     SELECT position, envelope FROM spkey_events
                     WHERE org = o.org {filter} AND position > $2
                     ORDER BY position LIMIT $3
                 ) e ON true
                 WHERE o.org = $1
                 ORDER BY e.position"
            )
        };
        let limit = PULL_LIMIT.min(spkey_store::MAX_BATCH_ITEMS) as i64;
        let (org_id, since) = (&self.orgs[org].id, as_i64(since));
        let rows = match scope {
            Scope::All => {
                let read = client.prepare_cached(&of("")).await.map_err(pg_error)?;
                client.query(&read, &[org_id, &since, &limit]).await
            }
            Scope::User(user) => {
                let read = client
                    .prepare_cached(&of("AND user_id = $4"))
                    .await
                    .map_err(pg_error)?;
                client.query(&read, &[org_id, &since, &limit, &user]).await
            }
        }
        .map_err(pg_error)?;
        let mut head = 0;
        let mut last = None;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            head =
                u64::try_from(row.get::<_, i64>(0)).map_err(|_| inconsistent("a negative head"))?;
            if let Some(position) = row.get::<_, Option<i64>>(1) {
                last =
                    Some(u64::try_from(position).map_err(|_| inconsistent("a negative position"))?);
                events.push(row.get(2));
            }
        }
        Ok((events, last, head))
    }
}

/// What the node's combiner answers an organization's group: its
/// outcomes, committed with other organizations' groups, or the commands
/// back, to be committed by the organization alone.
type Combined = Result<Vec<Outcome>, Vec<Intent>>;

impl Shared {
    /// Group commit: every organization's log takes one writer at a time
    /// (its head row is locked to commit), so concurrent commands for an
    /// organization queue in its [`Batcher`], which commits everything
    /// queued while its last group committed as one group, deciding each
    /// in arrival order (a later command sees an earlier one: the same
    /// email twice is a conflict, the same create twice a replay). Each
    /// request is answered once its group is durable.
    ///
    /// Groups of several organizations share a transaction: each goes
    /// first to the node's combiner, which commits together the groups
    /// that reached it while its last transaction ran, taking only the
    /// head rows no other transaction holds ([`Locking::SkipLocked`]), so
    /// that it never waits. A group it could not lock, or whose shared
    /// transaction failed, comes back and is committed here alone, waiting
    /// for its own organization's lock only: an organization never waits
    /// on another's lock or failure.
    async fn commit_group(
        &self,
        combiner: &Batcher<(usize, Vec<Intent>), Combined>,
        org: usize,
        intents: Vec<Intent>,
    ) -> Result<Vec<Outcome>, HubError> {
        let intents = match combiner.submit((org, intents)).await? {
            Ok(outcomes) => return Ok(outcomes),
            Err(intents) => intents,
        };
        let needs = Needs::of_intents(intents.iter());
        self.write(&[(org, needs)], Locking::Wait, |_, logs| {
            intents
                .into_iter()
                .map(|intent| logs[0].run(intent))
                .collect()
        })
        .await
    }

    /// The combiner's commit: the groups of several organizations (each
    /// organization once: its batcher waits for its group's answer) in one
    /// transaction, those whose heads are free; the others, and all of
    /// them if that transaction fails, sent back. A lone group is committed
    /// the same way: while it commits, the next groups gather.
    async fn combine(&self, groups: Vec<(usize, Vec<Intent>)>) -> Vec<Combined> {
        // Deciding consumes the commands, and the transaction can still
        // fail after (the write, the commit): a copy goes back then.
        let kept = groups.clone();
        let orgs: Vec<(usize, Needs)> = groups
            .iter()
            .map(|(org, intents)| (*org, Needs::of_intents(intents.iter())))
            .collect();
        let committed = self
            .write(&orgs, Locking::SkipLocked, |locked, logs| {
                let mut logs = logs.iter_mut();
                let mut answers = Vec::with_capacity(groups.len());
                for (at, (_, intents)) in groups.into_iter().enumerate() {
                    if !locked.contains(&at) {
                        answers.push(Err(intents));
                        continue;
                    }
                    let Some(log) = logs.next() else {
                        return Err(StoreError::Inconsistent(
                            "a locked organization without a log".into(),
                        ));
                    };
                    let outcomes = intents
                        .into_iter()
                        .map(|intent| log.run(intent))
                        .collect::<Result<Vec<_>, _>>()?;
                    answers.push(Ok(outcomes));
                }
                Ok(answers)
            })
            .await;
        committed.unwrap_or_else(|failure| {
            tracing::warn!(%failure, "organizations' shared commit failed: each alone");
            kept.into_iter().map(|(_, intents)| Err(intents)).collect()
        })
    }
}

/// Applies the migrations not yet applied, in one transaction under the
/// advisory lock.
async fn migrate(client: &mut deadpool_postgres::Client) -> Result<(), tokio_postgres::Error> {
    let txn = client.transaction().await?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    txn.batch_execute(
        "CREATE TABLE IF NOT EXISTS spkey_migrations (
            version integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let applied: i32 = txn
        .query_one(
            "SELECT coalesce(max(version), 0) FROM spkey_migrations",
            &[],
        )
        .await?
        .get(0);
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > applied) {
        txn.batch_execute(sql).await?;
        txn.execute(
            "INSERT INTO spkey_migrations (version) VALUES ($1)",
            &[version],
        )
        .await?;
    }
    txn.commit().await
}

/// Sent with a write transaction's write statement, before it: that
/// statement (the events, the email keys, the heads) is planned once per
/// connection and the plan kept (`force_generic_plan`, for the rest of
/// the transaction only), where planning it for each execution's values
/// took a fifth of the database's CPU. A plan kept must suit the tables at
/// every size, and may have been made while they were empty: each lookup
/// in it is by a whole key of a table that has one index, and with
/// sequential scans, hash and merge joins priced out, each is a nested
/// loop of lookups by that index or by row address, whatever the tables'
/// statistics say or said (the test
/// `writes_look_up_each_key_by_both_columns_before_any_statistics`). The
/// loads keep custom plans (see [`connection_config`]): on tables still
/// empty, a kept plan's lookup of an event id could as well pick another
/// index led by the organization (their costs tie) and filter.
pub const WRITE_PLANS: &str = "SET LOCAL plan_cache_mode = force_generic_plan; \
    SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; \
    SET LOCAL enable_mergejoin = off";

/// A pooled connection in a write transaction. Unless it is marked
/// committed, the transaction is rolled back before the connection goes
/// back to the pool — whether the write failed or its future was dropped
/// half-way — and a connection that cannot be rolled back is closed.
struct InTransaction(Option<deadpool_postgres::Object>);

impl InTransaction {
    /// The transaction committed: the connection goes back as it is.
    fn committed(mut self) {
        self.0.take();
    }
}

impl std::ops::Deref for InTransaction {
    type Target = deadpool_postgres::ClientWrapper;

    fn deref(&self) -> &Self::Target {
        self.0
            .as_ref()
            .expect("taken only when committed or dropped")
    }
}

impl Drop for InTransaction {
    fn drop(&mut self) {
        let Some(client) = self.0.take() else {
            return;
        };
        // Queued after whatever was sent: the rollback runs last, and the
        // connection returns to the pool only when it is out of the
        // transaction.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if client.batch_execute("ROLLBACK").await.is_err() {
                        drop(deadpool_postgres::Object::take(client));
                    }
                });
            }
            Err(_) => drop(deadpool_postgres::Object::take(client)),
        }
    }
}

/// An erasure's redacted envelopes over the earlier ones, `($1
/// organizations, $2 positions, $3 envelopes)`: a lookup by the primary
/// key per row.
pub const REWRITE_STATEMENT: &str = "UPDATE spkey_events SET envelope = r.envelope
    FROM unnest($1::text[], $2::bigint[], $3::bytea[]) AS r (org, position, envelope)
    WHERE spkey_events.org = r.org AND spkey_events.position = r.position";

/// The statements that load the streams, email owners and event positions
/// a group needs, each `($1 organizations, $2 keys)`, an organization for
/// each key, and each row led by its organization: one index lookup on
/// both columns per key, whatever the planner knows. Written as `org = $1
/// AND key = ANY($2)`, a plan made before the tables have statistics (a
/// new deployment: autovacuum's first ANALYZE comes a minute or more
/// later) read the organization's every row by the index's first column
/// and filtered them by the array — 4 ms a load at 17,000 rows, creates/s
/// at 0.6× the same hub a minute later. Here each key is an outer row and
/// the lookup a subquery the planner may not flatten into a join
/// (`OFFSET 0`): a nested loop over the keys with both columns in the
/// index condition, whatever the tables' statistics say.
pub const LOAD_STATEMENTS: [&str; 3] = [
    "SELECT k.org, e.position, e.envelope FROM unnest($1::text[], $2::uuid[]) AS k (org, user_id)
     CROSS JOIN LATERAL (
         SELECT position, envelope, version FROM spkey_events
         WHERE org = k.org AND user_id = k.user_id OFFSET 0
     ) e
     ORDER BY k.org, k.user_id, e.version",
    "SELECT k.org, k.email_key, m.user_id FROM unnest($1::text[], $2::text[]) AS k (org, email_key)
     CROSS JOIN LATERAL (
         SELECT user_id FROM spkey_emails
         WHERE org = k.org AND email_key = k.email_key OFFSET 0
     ) m",
    "SELECT k.org, k.event_id, e.position FROM unnest($1::text[], $2::uuid[]) AS k (org, event_id)
     CROSS JOIN LATERAL (
         SELECT position FROM spkey_events
         WHERE org = k.org AND event_id = k.event_id OFFSET 0
     ) e",
];

/// What a write stores, in one statement, for any number of
/// organizations, each row with its organization: the events `($1…$6)`,
/// the email keys taken `($7…$9)` and freed `($10, $11)`, and the new heads
/// `($12, $13)`.
pub const WRITE_STATEMENT: &str = "WITH new_events AS (
        INSERT INTO spkey_events (org, position, event_id, user_id, version, envelope)
        SELECT * FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::uuid[], $5::bigint[], $6::bytea[])
    ), taken AS (
        INSERT INTO spkey_emails (org, email_key, user_id)
        SELECT * FROM unnest($7::text[], $8::text[], $9::uuid[])
        ON CONFLICT (org, email_key) DO UPDATE SET user_id = excluded.user_id
    ), freed AS (
        DELETE FROM spkey_emails WHERE ctid = ANY (ARRAY(
            SELECT m.ctid FROM unnest($10::text[], $11::text[]) AS f (org, email_key)
            CROSS JOIN LATERAL (
                SELECT ctid FROM spkey_emails
                WHERE org = f.org AND email_key = f.email_key OFFSET 0
            ) m
        ))
    )
    UPDATE spkey_orgs o SET head = h.head
    FROM (
        SELECT r.tid, k.head FROM unnest($12::text[], $13::bigint[]) AS k (org, head)
        CROSS JOIN LATERAL (SELECT ctid AS tid FROM spkey_orgs WHERE org = k.org OFFSET 0) r
    ) h
    WHERE o.ctid = h.tid";

/// What the organizations' staged logs changed, as [`WRITE_STATEMENT`]'s
/// columns.
struct Written<'a> {
    orgs: Vec<&'a str>,
    positions: Vec<i64>,
    event_ids: Vec<Uuid>,
    users: Vec<Uuid>,
    versions: Vec<i64>,
    envelopes: Vec<Vec<u8>>,
    taken_orgs: Vec<&'a str>,
    taken_keys: Vec<&'a str>,
    owners: Vec<Uuid>,
    freed_orgs: Vec<&'a str>,
    freed_keys: Vec<&'a str>,
    head_orgs: Vec<&'a str>,
    heads: Vec<i64>,
    rewritten_orgs: Vec<&'a str>,
    rewritten_positions: Vec<i64>,
    rewritten_envelopes: Vec<Vec<u8>>,
}

impl<'a> Written<'a> {
    /// The changes of `staged`, whose organizations' ids are `ids`.
    fn of(ids: &[&'a str], staged: &'a [Staged<'_>]) -> Written<'a> {
        let mut w = Written {
            orgs: Vec::new(),
            positions: Vec::new(),
            event_ids: Vec::new(),
            users: Vec::new(),
            versions: Vec::new(),
            envelopes: Vec::new(),
            taken_orgs: Vec::new(),
            taken_keys: Vec::new(),
            owners: Vec::new(),
            freed_orgs: Vec::new(),
            freed_keys: Vec::new(),
            head_orgs: Vec::new(),
            heads: Vec::new(),
            rewritten_orgs: Vec::new(),
            rewritten_positions: Vec::new(),
            rewritten_envelopes: Vec::new(),
        };
        for (&org, log) in ids.iter().zip(staged) {
            for event in log.appended() {
                w.orgs.push(org);
                w.positions.push(as_i64(event.position));
                w.event_ids.push(event.event_id);
                w.users.push(event.aggregate_id());
                w.versions.push(as_i64(event.version));
                w.envelopes.push(codec::encode(event));
            }
            for (key, owner) in log.email_changes() {
                match owner {
                    Some(owner) => {
                        w.taken_orgs.push(org);
                        w.taken_keys.push(key);
                        w.owners.push(owner);
                    }
                    None => {
                        w.freed_orgs.push(org);
                        w.freed_keys.push(key);
                    }
                }
            }
            if !log.appended().is_empty() {
                w.head_orgs.push(org);
                w.heads.push(as_i64(log.head()));
            }
            for event in log.rewritten() {
                w.rewritten_orgs.push(org);
                w.rewritten_positions.push(as_i64(event.position));
                w.rewritten_envelopes.push(codec::encode(event));
            }
        }
        w
    }

    /// [`WRITE_STATEMENT`]'s parameters.
    fn parameters(&self) -> [&(dyn ToSql + Sync); 13] {
        [
            &self.orgs,
            &self.positions,
            &self.event_ids,
            &self.users,
            &self.versions,
            &self.envelopes,
            &self.taken_orgs,
            &self.taken_keys,
            &self.owners,
            &self.freed_orgs,
            &self.freed_keys,
            &self.head_orgs,
            &self.heads,
        ]
    }
}

/// [`LOAD_STATEMENTS`], prepared once per connection, then from its cache.
async fn load_statements(
    client: &deadpool_postgres::ClientWrapper,
) -> Result<[tokio_postgres::Statement; 3], tokio_postgres::Error> {
    let [streams, emails, ids] = LOAD_STATEMENTS;
    let (streams, emails, ids) = tokio::try_join!(
        client.prepare_cached(streams),
        client.prepare_cached(emails),
        client.prepare_cached(ids),
    )?;
    Ok([streams, emails, ids])
}

/// Reads what each organization of `orgs` (whose ids are `ids`) needs,
/// with the statements of [`load_statements`], in one round trip.
async fn load(
    txn: &deadpool_postgres::ClientWrapper,
    [streams, emails, ids_statement]: &[tokio_postgres::Statement; 3],
    ids: &[&str],
    orgs: &[(usize, Needs)],
) -> Result<Loaded, HubError> {
    let (mut user_orgs, mut users) = (Vec::new(), Vec::new());
    let (mut email_orgs, mut email_keys) = (Vec::new(), Vec::new());
    let (mut event_orgs, mut event_ids) = (Vec::new(), Vec::new());
    for (&org, (_, needs)) in ids.iter().zip(orgs) {
        for user in &needs.users {
            user_orgs.push(org);
            users.push(*user);
        }
        for key in &needs.email_keys {
            email_orgs.push(org);
            email_keys.push(key.as_str());
        }
        for id in &needs.event_ids {
            event_orgs.push(org);
            event_ids.push(*id);
        }
    }
    let by_user: [&(dyn ToSql + Sync); 2] = [&user_orgs, &users];
    let by_email: [&(dyn ToSql + Sync); 2] = [&email_orgs, &email_keys];
    let by_id: [&(dyn ToSql + Sync); 2] = [&event_orgs, &event_ids];
    let (streams, emails, ids) = tokio::try_join!(
        txn.query(streams, &by_user),
        txn.query(emails, &by_email),
        txn.query(ids_statement, &by_id),
    )
    .map_err(pg_error)?;
    Ok(Loaded {
        streams,
        emails,
        ids,
    })
}

/// The rows [`load`] read: the streams of the batch's users, the holders
/// of its email keys, the positions of its event ids.
struct Loaded {
    streams: Vec<tokio_postgres::Row>,
    emails: Vec<tokio_postgres::Row>,
    ids: Vec<tokio_postgres::Row>,
}

impl Loaded {
    /// Puts the rows into the staged log of their organization (`staged`,
    /// whose ids are `ids`), checking each event's position; the rows of
    /// organizations `asked` for but not locked are left out.
    fn stage(
        self,
        asked: &[&str],
        ids: &[&str],
        staged: &mut [Staged<'_>],
    ) -> Result<(), HubError> {
        let slot = |row: &tokio_postgres::Row| -> Result<Option<usize>, HubError> {
            let org: &str = row.get(0);
            match ids.iter().position(|id| *id == org) {
                Some(at) => Ok(Some(at)),
                None if asked.contains(&org) => Ok(None),
                None => Err(inconsistent(&format!(
                    "a row of {org:?}, which was not asked for"
                ))),
            }
        };
        for row in self.streams {
            let Some(at) = slot(&row)? else {
                continue;
            };
            let position = u64::try_from(row.get::<_, i64>(1))
                .map_err(|_| inconsistent("a negative position"))?;
            let recorded = codec::decode(row.get::<_, &[u8]>(2))
                .map_err(|source| HubError::Failed(StoreError::Corrupt { position, source }))?;
            if recorded.position != position {
                return Err(inconsistent(&format!(
                    "row {position} holds the event of position {}",
                    recorded.position
                )));
            }
            staged[at].load_event(recorded)?;
        }
        for row in self.emails {
            if let Some(at) = slot(&row)? {
                staged[at].load_email(row.get(1), row.get(2))?;
            }
        }
        for row in self.ids {
            let position = u64::try_from(row.get::<_, i64>(2))
                .map_err(|_| inconsistent("a negative position"))?;
            if let Some(at) = slot(&row)? {
                staged[at].load_event_id(row.get(1), position)?;
            }
        }
        Ok(())
    }
}

/// Listens for commits on one connection, forever: on every (re)connect it
/// re-reads each head, so notifications sent while it was away are not
/// missed.
async fn listen(config: tokio_postgres::Config, orgs: Arc<Vec<Org>>) {
    let index: HashMap<String, usize> = orgs
        .iter()
        .enumerate()
        .map(|(i, org)| (org.id.clone(), i))
        .collect();
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (orgs_, index_) = (orgs.clone(), index.clone());
                let driver = tokio::spawn(async move {
                    while let Some(message) =
                        std::future::poll_fn(|cx| connection.poll_message(cx)).await
                    {
                        let Ok(AsyncMessage::Notification(note)) = message else {
                            if message.is_err() {
                                break;
                            }
                            continue;
                        };
                        if let Some((org, head)) = note.payload().rsplit_once(' ')
                            && let (Some(&i), Ok(head)) = (index_.get(org), head.parse())
                        {
                            publish(&orgs_[i].head, head);
                        }
                    }
                });
                let listening = async {
                    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
                    for row in client
                        .query("SELECT org, head FROM spkey_orgs", &[])
                        .await?
                    {
                        if let (Some(&i), Ok(head)) = (
                            index.get(row.get::<_, &str>(0)),
                            u64::try_from(row.get::<_, i64>(1)),
                        ) {
                            publish(&orgs[i].head, head);
                        }
                    }
                    Ok::<_, tokio_postgres::Error>(())
                };
                match listening.await {
                    Ok(()) => {
                        let _ = driver.await;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot listen for commits");
                        driver.abort();
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot connect to listen for commits"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn as_i64(n: u64) -> i64 {
    // Positions and versions count events: far below i64::MAX.
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn inconsistent(what: &str) -> HubError {
    HubError::Failed(StoreError::Inconsistent(format!(
        "the PostgreSQL log holds {what}"
    )))
}

/// A database error: the server gone, restarting, out of connections or
/// resources, or a transaction it aborted to keep the rules is worth a
/// retry (503); anything else is a failure (500). Either way the
/// transaction did not commit.
fn pg_error(error: tokio_postgres::Error) -> HubError {
    let retry = match error.code() {
        None => true,
        Some(code) => {
            let code = code.code();
            ["08", "53", "57", "40"]
                .iter()
                .any(|class| code.starts_with(class))
        }
    };
    if retry {
        HubError::Unavailable(format!("PostgreSQL: {error}"))
    } else {
        HubError::Database(format!("{error}: {:?}", error.as_db_error()))
    }
}

fn pool_error(error: PoolError) -> HubError {
    match error {
        PoolError::Backend(error) => pg_error(error),
        other => HubError::Unavailable(format!("no PostgreSQL connection: {other}")),
    }
}

impl HubStorage for PostgresHub {
    async fn execute(
        &self,
        org: usize,
        command: &'static str,
        id: String,
        body: Vec<u8>,
    ) -> Result<Response, HubError> {
        let command = match contract::read_command(command, &id, &body) {
            Ok(command) => command,
            Err(response) => return Ok(response),
        };
        let intent = match command.validate() {
            Ok(intent) => intent,
            Err(rejection) => return Ok(Response::from_outcome(&Outcome::Rejected(rejection))),
        };
        Ok(Response::from_outcome(
            &self.batchers[org].submit(intent).await?,
        ))
    }

    async fn accept(&self, org: usize, scope: Scope, push: Vec<u8>) -> Result<Vec<u8>, HubError> {
        let hub_id = self.shared.orgs[org].hub_id;
        // Checking every event (the email rule included) is CPU work: off
        // the async workers.
        let push = tokio::task::spawn_blocking(move || Push::open(hub_id, &push))
            .await
            .map_err(|e| HubError::Unavailable(format!("worker failed: {e}")))??;
        let needs = Needs::of_push(&push.events, scope);
        let items = self
            .shared
            .write(&[(org, needs)], Locking::Wait, |_, logs| {
                logs[0].accept_push(&push.events, scope)
            })
            .await?;
        Ok(reply_batch(hub_id, &items))
    }

    async fn pull(
        &self,
        org: usize,
        scope: Scope,
        since: u64,
        wait: Duration,
    ) -> Result<Vec<u8>, HubError> {
        let (mut events, mut last, mut head) = self.shared.events_after(org, scope, since).await?;
        if events.is_empty() && head <= since && !wait.is_zero() {
            // Woken by this node's commits and by NOTIFY from the others; a
            // commit since the read above is already in the watched head.
            let mut watched = self.shared.orgs[org].head.subscribe();
            let _ = tokio::time::timeout(wait, watched.wait_for(|head| *head > since)).await;
            (events, last, head) = self.shared.events_after(org, scope, since).await?;
        }
        let complete_to = watermark(scope, since, PULL_LIMIT, events.len(), last, || Ok(head))
            .map_err(HubError::Failed)?;
        Ok(pull_batch(
            self.shared.orgs[org].hub_id,
            scope,
            complete_to,
            &events,
        ))
    }

    async fn health(&self) -> Result<(), HubError> {
        let client = self.shared.pool.get().await.map_err(pool_error)?;
        client.query_one("SELECT 1", &[]).await.map_err(pg_error)?;
        Ok(())
    }
}
