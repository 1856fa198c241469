//! spkey-store side by side with what a user would otherwise pick: raw redb
//! with the same tables, SQLite (WAL, synchronous=FULL), LMDB (heed), and a
//! plain write + fdatasync file (the floor). Every engine writes the same
//! three things per record in one transaction — the log, the (user, version)
//! index and the unique email index — and rejects duplicate emails. Engines
//! take turns so machine noise hits them alike.
//!
//!   cargo bench --bench compare          (full size, writes benches/results/)
//!   cargo test --benches                 (a quick pass on tiny sizes: CI runs this)

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use heed::types::{Bytes, Str, U64};
use heed::{Database as LmdbDb, EnvOpenOptions};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use spkey_store::{CreateUser, Outcome, Store, UpdateUser};
use uuid::Uuid;

#[path = "common/ceiling.rs"]
mod ceiling;

/// The record every engine stores: a postcard UserCreated, ~90 bytes.
#[derive(Serialize, Deserialize)]
struct Rec {
    user: [u8; 16],
    email: String,
    first_name: Option<String>,
    last_name: Option<String>,
    phone: Option<String>,
}

struct Record {
    user: Uuid,
    email: String,
    bytes: Vec<u8>,
}

fn records(n: usize, rng: &mut fastrand::Rng) -> Vec<Record> {
    (0..n)
        .map(|_| {
            let user = Uuid::from_u128(rng.u128(..) & !(0xf << 76) | (4 << 76));
            let email = format!("{:016x}@example.com", rng.u64(..));
            let rec = Rec {
                user: user.into_bytes(),
                email: email.clone(),
                first_name: Some("John".into()),
                last_name: Some("Doe".into()),
                phone: Some("+1-555-0123".into()),
            };
            let bytes = postcard::to_allocvec(&rec).unwrap();
            Record { user, email, bytes }
        })
        .collect()
}

trait Engine {
    fn name(&self) -> &'static str;
    /// Appends `records` in one durable transaction.
    fn append(&mut self, records: &[Record]);
    /// Reads and decodes every record; returns how many.
    fn scan(&self) -> usize;
    /// Finds a user's record by id.
    fn lookup(&self, user: Uuid) -> bool;
    fn path(&self) -> PathBuf;
}

struct Spkey {
    store: Store,
    path: PathBuf,
}

impl Spkey {
    fn command(r: &Record) -> CreateUser {
        CreateUser::new(r.user.to_string(), r.email.clone())
            .first_name("John")
            .last_name("Doe")
            .phone_number("+1-555-0123")
    }
}

impl Engine for Spkey {
    fn name(&self) -> &'static str {
        "spkey-store"
    }
    fn append(&mut self, records: &[Record]) {
        let commands: Vec<CreateUser> = records.iter().map(Spkey::command).collect();
        let outcomes = if let [one] = commands.as_slice() {
            vec![self.store.create_user(one).unwrap()]
        } else {
            self.store.execute_batch(&commands).unwrap()
        };
        assert!(outcomes.iter().all(|o| matches!(o, Outcome::Recorded(_))));
    }
    fn scan(&self) -> usize {
        self.store.scan(1, |_| true).unwrap() as usize
    }
    fn lookup(&self, user: Uuid) -> bool {
        self.store.user(user).unwrap().is_some()
    }
    fn path(&self) -> PathBuf {
        self.path.clone()
    }
}

const R_EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const R_STREAMS: TableDefinition<(u128, u64), u64> = TableDefinition::new("streams");
const R_EMAILS: TableDefinition<&str, u128> = TableDefinition::new("emails");

struct RawRedb {
    db: redb::Database,
    head: u64,
    path: PathBuf,
}

impl Engine for RawRedb {
    fn name(&self) -> &'static str {
        "raw redb"
    }
    fn append(&mut self, records: &[Record]) {
        let txn = self.db.begin_write().unwrap();
        {
            let mut events = txn.open_table(R_EVENTS).unwrap();
            let mut streams = txn.open_table(R_STREAMS).unwrap();
            let mut emails = txn.open_table(R_EMAILS).unwrap();
            for r in records {
                assert!(emails.get(r.email.as_str()).unwrap().is_none(), "duplicate");
                self.head += 1;
                events.insert(self.head, r.bytes.as_slice()).unwrap();
                streams.insert((r.user.as_u128(), 1), self.head).unwrap();
                emails.insert(r.email.as_str(), r.user.as_u128()).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    fn scan(&self) -> usize {
        let txn = self.db.begin_read().unwrap();
        let events = txn.open_table(R_EVENTS).unwrap();
        events
            .iter()
            .unwrap()
            .filter(|row| postcard::from_bytes::<Rec>(row.as_ref().unwrap().1.value()).is_ok())
            .count()
    }
    fn lookup(&self, user: Uuid) -> bool {
        let txn = self.db.begin_read().unwrap();
        let streams = txn.open_table(R_STREAMS).unwrap();
        let events = txn.open_table(R_EVENTS).unwrap();
        let Some(position) = streams.get((user.as_u128(), 1)).unwrap() else {
            return false;
        };
        let bytes = events.get(position.value()).unwrap().unwrap();
        postcard::from_bytes::<Rec>(bytes.value()).is_ok()
    }
    fn path(&self) -> PathBuf {
        self.path.clone()
    }
}

struct Sqlite {
    conn: rusqlite::Connection,
    head: u64,
    path: PathBuf,
}

impl Sqlite {
    fn open(path: PathBuf) -> Sqlite {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
             CREATE TABLE events(position INTEGER PRIMARY KEY, bytes BLOB NOT NULL);
             CREATE TABLE streams(user BLOB, version INTEGER, position INTEGER,
                                  PRIMARY KEY(user, version)) WITHOUT ROWID;
             CREATE TABLE emails(email TEXT PRIMARY KEY, user BLOB) WITHOUT ROWID;",
        )
        .unwrap();
        Sqlite {
            conn,
            head: 0,
            path,
        }
    }
}

impl Engine for Sqlite {
    fn name(&self) -> &'static str {
        "SQLite WAL FULL"
    }
    fn append(&mut self, records: &[Record]) {
        let txn = self.conn.transaction().unwrap();
        {
            let mut taken = txn
                .prepare_cached("SELECT 1 FROM emails WHERE email = ?1")
                .unwrap();
            let mut event = txn
                .prepare_cached("INSERT INTO events VALUES (?1, ?2)")
                .unwrap();
            let mut stream = txn
                .prepare_cached("INSERT INTO streams VALUES (?1, 1, ?2)")
                .unwrap();
            let mut email = txn
                .prepare_cached("INSERT INTO emails VALUES (?1, ?2)")
                .unwrap();
            for r in records {
                assert!(!taken.exists([&r.email]).unwrap(), "duplicate");
                self.head += 1;
                event
                    .execute(rusqlite::params![self.head as i64, r.bytes])
                    .unwrap();
                stream
                    .execute(rusqlite::params![r.user.as_bytes(), self.head as i64])
                    .unwrap();
                email
                    .execute(rusqlite::params![r.email, r.user.as_bytes()])
                    .unwrap();
            }
        }
        txn.commit().unwrap();
    }
    fn scan(&self) -> usize {
        let mut statement = self
            .conn
            .prepare("SELECT bytes FROM events ORDER BY position")
            .unwrap();
        let rows = statement
            .query_map([], |row| row.get::<_, Vec<u8>>(0))
            .unwrap();
        rows.filter(|b| postcard::from_bytes::<Rec>(b.as_ref().unwrap()).is_ok())
            .count()
    }
    fn lookup(&self, user: Uuid) -> bool {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT e.bytes FROM streams s JOIN events e ON e.position = s.position
                 WHERE s.user = ?1 AND s.version = 1",
            )
            .unwrap();
        statement
            .query_row([user.as_bytes()], |row| row.get::<_, Vec<u8>>(0))
            .map(|b| postcard::from_bytes::<Rec>(&b).is_ok())
            .unwrap_or(false)
    }
    fn path(&self) -> PathBuf {
        self.path.clone()
    }
}

struct Lmdb {
    env: heed::Env,
    events: LmdbDb<U64<heed::byteorder::BE>, Bytes>,
    streams: LmdbDb<Bytes, U64<heed::byteorder::BE>>,
    emails: LmdbDb<Str, Bytes>,
    head: u64,
    path: PathBuf,
}

impl Lmdb {
    fn open(path: PathBuf) -> Lmdb {
        std::fs::create_dir_all(&path).unwrap();
        // SAFETY: the directory is this benchmark's alone and opened once.
        let env = unsafe {
            EnvOpenOptions::new()
                .map_size(8 << 30)
                .max_dbs(3)
                .open(&path)
                .unwrap()
        };
        let mut txn = env.write_txn().unwrap();
        let events = env.create_database(&mut txn, Some("events")).unwrap();
        let streams = env.create_database(&mut txn, Some("streams")).unwrap();
        let emails = env.create_database(&mut txn, Some("emails")).unwrap();
        txn.commit().unwrap();
        Lmdb {
            env,
            events,
            streams,
            emails,
            head: 0,
            path,
        }
    }
}

impl Lmdb {
    /// Writes `r` at `position` in the three tables, as version 1 of its
    /// user, refusing a taken email.
    fn put(&self, txn: &mut heed::RwTxn, position: u64, r: &Record) {
        assert!(
            self.emails.get(txn, &r.email).unwrap().is_none(),
            "duplicate"
        );
        self.events.put(txn, &position, &r.bytes).unwrap();
        self.streams
            .put(txn, &stream_key(r.user, 1), &position)
            .unwrap();
        self.emails.put(txn, &r.email, r.user.as_bytes()).unwrap();
    }
}

fn stream_key(user: Uuid, version: u64) -> [u8; 24] {
    let mut key = [0; 24];
    key[..16].copy_from_slice(user.as_bytes());
    key[16..].copy_from_slice(&version.to_be_bytes());
    key
}

impl Engine for Lmdb {
    fn name(&self) -> &'static str {
        "LMDB"
    }
    fn append(&mut self, records: &[Record]) {
        let mut txn = self.env.write_txn().unwrap();
        for r in records {
            self.head += 1;
            self.put(&mut txn, self.head, r);
        }
        txn.commit().unwrap();
    }
    fn scan(&self) -> usize {
        let txn = self.env.read_txn().unwrap();
        self.events
            .iter(&txn)
            .unwrap()
            .filter(|row| postcard::from_bytes::<Rec>(row.as_ref().unwrap().1).is_ok())
            .count()
    }
    fn lookup(&self, user: Uuid) -> bool {
        let txn = self.env.read_txn().unwrap();
        let Some(position) = self.streams.get(&txn, &stream_key(user, 1)).unwrap() else {
            return false;
        };
        let bytes = self.events.get(&txn, &position).unwrap().unwrap();
        postcard::from_bytes::<Rec>(bytes).is_ok()
    }
    fn path(&self) -> PathBuf {
        self.path.clone()
    }
}

/// The floor: the record bytes appended to a file, then fdatasync.
struct Floor {
    file: File,
    path: PathBuf,
}

impl Engine for Floor {
    fn name(&self) -> &'static str {
        "write+fdatasync"
    }
    fn append(&mut self, records: &[Record]) {
        let mut buffer = Vec::new();
        for r in records {
            buffer.extend_from_slice(&(r.bytes.len() as u32).to_le_bytes());
            buffer.extend_from_slice(&r.bytes);
        }
        self.file.write_all(&buffer).unwrap();
        self.file.sync_data().unwrap();
    }
    fn scan(&self) -> usize {
        let mut bytes = Vec::new();
        File::open(&self.path)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        let (mut at, mut count) = (0, 0);
        while at < bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            postcard::from_bytes::<Rec>(&bytes[at + 4..at + 4 + len]).unwrap();
            at += 4 + len;
            count += 1;
        }
        count
    }
    fn lookup(&self, _: Uuid) -> bool {
        false // no index: the floor only bounds writes and scans
    }
    fn path(&self) -> PathBuf {
        self.path.clone()
    }
}

fn disk_bytes(path: &Path) -> u64 {
    if path.is_dir() {
        std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    } else {
        // SQLite's WAL; the store's journal and block checksums.
        ["", "-wal", "-journal", "-checksums"]
            .iter()
            .map(|suffix| {
                std::fs::metadata(format!("{}{suffix}", path.display())).map_or(0, |m| m.len())
            })
            .sum()
    }
}

/// Median, min and max of samples.
fn stats(samples: &mut [f64]) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    (
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1],
    )
}

/// redb's default page cache, which raw redb runs with here.
const RAW_REDB_CACHE: usize = 1 << 30;

fn engines(dir: &Path) -> Vec<Box<dyn Engine>> {
    let spkey = dir.join("spkey.redb");
    let raw = dir.join("raw.redb");
    vec![
        Box::new(Spkey {
            // The same page cache as raw redb's default, engine against
            // engine; the store's own default (32 MiB, for phones and
            // browsers) is what the import-memory figure uses.
            store: Store::builder()
                .cache_bytes(RAW_REDB_CACHE)
                .open(&spkey)
                .unwrap(),
            path: spkey,
        }),
        Box::new(RawRedb {
            db: redb::Database::create(&raw).unwrap(),
            head: 0,
            path: raw,
        }),
        Box::new(Sqlite::open(dir.join("sqlite.db"))),
        Box::new(Lmdb::open(dir.join("lmdb"))),
        Box::new(Floor {
            file: OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("floor.log"))
                .unwrap(),
            path: dir.join("floor.log"),
        }),
    ]
}

/// Heap use, counted only while `COUNTING` is on: the peak memory of an
/// import is a figure of the issue, and a counting allocator sees every
/// allocation redb and the store make, its page cache included.
mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

    pub struct Counting;
    pub static COUNTING: AtomicBool = AtomicBool::new(false);
    static CURRENT: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);

    // SAFETY: every call is passed on to the system allocator unchanged;
    // the counters only observe sizes.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if COUNTING.load(Relaxed) {
                let now = CURRENT.fetch_add(layout.size(), Relaxed) + layout.size();
                PEAK.fetch_max(now, Relaxed);
            }
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            if COUNTING.load(Relaxed) {
                CURRENT.fetch_sub(layout.size(), Relaxed);
            }
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    /// Runs `f` and returns its peak heap in bytes above what was live when
    /// it started (frees of older blocks may make the count dip below zero,
    /// which only lowers the peak: the figure errs small by at most what
    /// `f` frees of memory it did not allocate, nothing here).
    pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
        CURRENT.store(0, Relaxed);
        PEAK.store(0, Relaxed);
        COUNTING.store(true, Relaxed);
        let value = f();
        COUNTING.store(false, Relaxed);
        (value, PEAK.load(Relaxed))
    }
}

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

/// What one engine measured at one store size.
#[derive(Clone, Copy, Default)]
struct Tier {
    batched: (f64, f64, f64),
    scan_ns: f64,
    lookup_us: f64,
}

struct Row {
    name: &'static str,
    single: (f64, f64, f64),
    small: Tier,
    large: Tier,
    bytes_per_record: f64,
}

/// Appends `count` records per engine in batches, the engines taking turns;
/// returns each engine's per-record times.
fn append_batches(
    engines: &mut [Box<dyn Engine>],
    count: usize,
    batch: usize,
    rng: &mut fastrand::Rng,
    users: &mut Vec<Uuid>,
) -> Vec<Vec<f64>> {
    let mut times = vec![Vec::new(); engines.len()];
    for round in 0..count / batch {
        let chunk = records(batch, rng);
        for k in 0..engines.len() {
            let i = (k + round) % engines.len();
            let start = Instant::now();
            engines[i].append(&chunk);
            times[i].push(start.elapsed().as_secs_f64() * 1e6 / batch as f64);
        }
        users.extend(chunk.iter().map(|r| r.user));
    }
    times
}

/// Scans and looks up on every engine; lookups pick users uniformly from
/// all stored, the same ones for every engine.
fn measure_reads(
    engines: &[Box<dyn Engine>],
    stored: usize,
    users: &[Uuid],
    lookups: usize,
    times: &mut [Vec<f64>],
) -> Vec<Tier> {
    let picks: Vec<Uuid> = {
        let mut rng = fastrand::Rng::with_seed(stored as u64);
        (0..lookups)
            .map(|_| users[rng.usize(..users.len())])
            .collect()
    };
    engines
        .iter()
        .zip(times)
        .map(|(engine, times)| {
            let mut scans: Vec<f64> = (0..3)
                .map(|_| {
                    let start = Instant::now();
                    assert_eq!(engine.scan(), stored, "{}", engine.name());
                    start.elapsed().as_secs_f64() * 1e9 / stored as f64
                })
                .collect();
            let mut looks: Vec<f64> = picks
                .iter()
                .map(|user| {
                    let start = Instant::now();
                    let found = engine.lookup(*user);
                    let us = start.elapsed().as_secs_f64() * 1e6;
                    assert!(found || engine.name() == "write+fdatasync");
                    us
                })
                .collect();
            Tier {
                batched: stats(times),
                scan_ns: stats(&mut scans).0,
                lookup_us: stats(&mut looks).0,
            }
        })
        .collect()
}

/// Importing a whole log on a device: spkey-store's export of the large
/// tier, in pull batches of `page` events written to files, imported one
/// file at a time into a fresh store with the default cache. Returns the
/// peak heap and events per second.
fn import_memory(hub: &Path, dir: &Path, page: usize) -> (usize, f64) {
    let hub = Store::open(hub).unwrap();
    let head = hub.head_position().unwrap();
    // Hub positions run without gaps, so page k holds positions k·page+1 ….
    let files: Vec<PathBuf> = (0..head.div_ceil(page as u64))
        .map(|k| {
            let path = dir.join(format!("pull-{k}.bin"));
            std::fs::write(&path, hub.export(k * page as u64, page).unwrap()).unwrap();
            path
        })
        .collect();
    let total = head;
    hub.close().unwrap();
    let start = Instant::now();
    let ((), peak) = heap::peak_during(|| {
        let device = Store::open(dir.join("device.redb")).unwrap();
        for path in &files {
            device.import(&std::fs::read(path).unwrap()).unwrap();
        }
        assert_eq!(device.head_position().unwrap(), total);
        device.close().unwrap();
    });
    (peak, total as f64 / start.elapsed().as_secs_f64())
}

/// What the concurrent-writers row measured: commands per second, medians
/// of the rounds.
struct Writers {
    /// spkey-store, 8 threads calling `create_user` on one store.
    eight: f64,
    /// spkey-store, one caller alone.
    alone: f64,
    /// SQLite (WAL, synchronous=FULL), 8 threads on 8 connections.
    sqlite: f64,
    /// LMDB, 8 threads on one environment.
    lmdb: f64,
    /// The group-commit probe at the store's cost per command, 8 threads.
    ceiling: f64,
    /// That cost, µs: a create's time in an in-memory store's batches.
    cost_us: f64,
    rounds: usize,
}

/// 8 writing threads, each write durable before it returns: spkey-store
/// (and one caller alone), SQLite, LMDB and the group-commit probe at the
/// store's own CPU cost per command, each round on fresh files, taking
/// turns so machine noise hits them alike.
fn writers(dir: &Path, rounds: usize, per_thread: usize) -> Writers {
    let cost = command_cost(per_thread * 8);
    let probe = ceiling::journal(dir);
    let mut rates: [Vec<f64>; 5] = Default::default();
    for round in 0..rounds {
        let batches: Vec<Vec<Record>> = (0..8)
            .map(|t| {
                records(
                    per_thread,
                    &mut fastrand::Rng::with_seed((round * 8 + t) as u64),
                )
            })
            .collect();
        let path = dir.join(format!("group-{round}.redb"));
        let store = Store::open(&path).unwrap();
        rates[0].push(eight_threads(&batches, |_, r| {
            store.create_user(&Spkey::command(r)).unwrap();
        }));
        store.close().unwrap();
        let path = dir.join(format!("alone-{round}.redb"));
        let store = Store::open(&path).unwrap();
        let start = Instant::now();
        for r in &batches[0] {
            store.create_user(&Spkey::command(r)).unwrap();
        }
        rates[1].push(per_thread as f64 / start.elapsed().as_secs_f64());
        store.close().unwrap();
        rates[2].push(sqlite_writers(
            &dir.join(format!("writers-{round}.db")),
            &batches,
        ));
        rates[3].push(lmdb_writers(
            &dir.join(format!("writers-{round}.lmdb")),
            &batches,
        ));
        rates[4].push(ceiling::rates(&probe, cost, per_thread, 8).1);
    }
    let [eight, alone, sqlite, lmdb, ceiling] = rates.map(|mut r| stats(&mut r).0);
    Writers {
        eight,
        alone,
        sqlite,
        lmdb,
        ceiling,
        cost_us: cost.as_secs_f64() * 1e6,
        rounds,
    }
}

/// Runs `write` over each thread's records, 8 threads at once; returns
/// writes per second.
fn eight_threads(batches: &[Vec<Record>], write: impl Fn(usize, &Record) + Sync) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for (thread, batch) in batches.iter().enumerate() {
            let write = &write;
            s.spawn(move || batch.iter().for_each(|r| write(thread, r)));
        }
    });
    batches.iter().map(Vec::len).sum::<usize>() as f64 / start.elapsed().as_secs_f64()
}

/// What a create costs the store besides its sync: the time per command
/// of 1,000-command batches in an in-memory store (the commit shared, as
/// in a group), the best of three passes.
fn command_cost(count: usize) -> std::time::Duration {
    let mut rng = fastrand::Rng::with_seed(7);
    let commands: Vec<CreateUser> = records(count.max(1_000), &mut rng)
        .iter()
        .map(Spkey::command)
        .collect();
    (0..3)
        .map(|_| {
            let store = Store::in_memory().unwrap();
            let start = Instant::now();
            for chunk in commands.chunks(1_000) {
                store.execute_batch(chunk).unwrap();
            }
            start.elapsed() / commands.len() as u32
        })
        .min()
        .unwrap()
}

/// SQLite as a user would run 8 writers: WAL, synchronous=FULL, one
/// connection per thread with a busy timeout, each write its own
/// `BEGIN IMMEDIATE` transaction (the email checked, then the three rows).
fn sqlite_writers(path: &Path, batches: &[Vec<Record>]) -> f64 {
    Sqlite::open(path.to_path_buf());
    let connections: Vec<std::sync::Mutex<rusqlite::Connection>> = batches
        .iter()
        .map(|_| {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(30))
                .unwrap();
            conn.execute_batch("PRAGMA synchronous=FULL;").unwrap();
            std::sync::Mutex::new(conn)
        })
        .collect();
    eight_threads(batches, |thread, r| {
        // The thread's own connection: the lock is never contended.
        let mut conn = connections[thread].lock().unwrap();
        let txn = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        let taken: bool = txn
            .prepare_cached("SELECT 1 FROM emails WHERE email = ?1")
            .unwrap()
            .exists([&r.email])
            .unwrap();
        assert!(!taken, "duplicate");
        txn.prepare_cached("INSERT INTO events(bytes) VALUES (?1)")
            .unwrap()
            .execute([&r.bytes])
            .unwrap();
        let position = txn.last_insert_rowid();
        txn.prepare_cached("INSERT INTO streams VALUES (?1, 1, ?2)")
            .unwrap()
            .execute(rusqlite::params![r.user.as_bytes(), position])
            .unwrap();
        txn.prepare_cached("INSERT INTO emails VALUES (?1, ?2)")
            .unwrap()
            .execute(rusqlite::params![r.email, r.user.as_bytes()])
            .unwrap();
        txn.commit().unwrap();
    })
}

/// LMDB under 8 threads: each write its own transaction (LMDB lets one
/// writer in at a time), durable at commit.
fn lmdb_writers(path: &Path, batches: &[Vec<Record>]) -> f64 {
    let lmdb = Lmdb::open(path.to_path_buf());
    eight_threads(batches, |_, r| {
        let mut txn = lmdb.env.write_txn().unwrap();
        let head = lmdb.events.last(&txn).unwrap().map_or(0, |(k, _)| k) + 1;
        lmdb.put(&mut txn, head, r);
        txn.commit().unwrap();
    })
}

/// Lookups of users with `versions` events each (a create, then updates
/// of the first name): spkey-store reads its current-state row; LMDB, with
/// every version stored as a whole record, seeks the user's last version
/// and decodes it (the least a peer can do). `users` users, `lookups`
/// lookups of random ones, the two engines taking turns lookup by lookup.
/// Returns the medians, µs (spkey-store, LMDB).
fn versions_lookup(dir: &Path, users: usize, versions: u64, lookups: usize) -> (f64, f64) {
    let mut rng = fastrand::Rng::with_seed(versions);
    let created = records(users, &mut rng);
    let store = Store::builder()
        .cache_bytes(RAW_REDB_CACHE)
        .open(dir.join(format!("versions-{versions}.redb")))
        .unwrap();
    let lmdb = Lmdb::open(dir.join(format!("versions-{versions}.lmdb")));
    let mut head = 0u64;
    for chunk in created.chunks(1_000) {
        let commands: Vec<CreateUser> = chunk.iter().map(Spkey::command).collect();
        let outcomes = store.execute_batch(&commands).unwrap();
        assert!(outcomes.iter().all(|o| matches!(o, Outcome::Recorded(_))));
        let mut txn = lmdb.env.write_txn().unwrap();
        for r in chunk {
            head += 1;
            lmdb.put(&mut txn, head, r);
        }
        txn.commit().unwrap();
    }
    for version in 2..=versions {
        let name = format!("John {version}");
        for chunk in created.chunks(1_000) {
            let commands: Vec<UpdateUser> = chunk
                .iter()
                .map(|r| UpdateUser::new(r.user.to_string()).first_name(&name))
                .collect();
            let outcomes = store.execute_batch(&commands).unwrap();
            assert!(outcomes.iter().all(|o| matches!(o, Outcome::Recorded(_))));
            let mut txn = lmdb.env.write_txn().unwrap();
            for r in chunk {
                let mut rec: Rec = postcard::from_bytes(&r.bytes).unwrap();
                rec.first_name = Some(name.clone());
                head += 1;
                let bytes = postcard::to_allocvec(&rec).unwrap();
                lmdb.events.put(&mut txn, &head, &bytes).unwrap();
                lmdb.streams
                    .put(&mut txn, &stream_key(r.user, version), &head)
                    .unwrap();
            }
            txn.commit().unwrap();
        }
    }
    let last = format!("John {versions}");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..lookups {
        let user = created[rng.usize(..users)].user;
        let start = Instant::now();
        let found = store.user(user).unwrap().unwrap();
        ours.push(start.elapsed().as_secs_f64() * 1e6);
        assert_eq!(found.profile.first_name.as_deref(), Some(last.as_str()));
        let start = Instant::now();
        let rec = {
            let txn = lmdb.env.read_txn().unwrap();
            let (key, position) = lmdb
                .streams
                .get_lower_than_or_equal_to(&txn, &stream_key(user, u64::MAX))
                .unwrap()
                .unwrap();
            assert_eq!(&key[..16], user.as_bytes());
            let bytes = lmdb.events.get(&txn, &position).unwrap().unwrap();
            postcard::from_bytes::<Rec>(bytes).unwrap()
        };
        theirs.push(start.elapsed().as_secs_f64() * 1e6);
        assert_eq!(rec.first_name.as_deref(), Some(last.as_str()));
    }
    store.close().unwrap();
    (stats(&mut ours).0, stats(&mut theirs).0)
}

/// The same body deserialized into a plain struct, nothing checked: the
/// floor parse + validate is measured against.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct PlainBody {
    user_id: String,
    email: String,
    first_name: Option<String>,
    last_name: Option<String>,
    phone_number: Option<String>,
}

/// Parse + validate CreateUser bodies, no I/O: spkey-store's wire path up
/// to the store, and `serde_json` deserializing the same bodies into
/// [`PlainBody`], each timed over the bodies again and again for at least
/// `for_at_least` (first-use costs do not decide the figure), taking turns.
/// Returns (spkey-store's bodies per second, serde_json's).
fn parse_rate(rng: &mut fastrand::Rng, for_at_least: std::time::Duration) -> (f64, f64) {
    let bodies: Vec<(String, String)> = records(20_000, rng)
        .iter()
        .map(|r| {
            let id = r.user.to_string();
            let body = format!(
                r#"{{"userId":"{id}","email":"{}","firstName":"John","lastName":"Doe","phoneNumber":"+1-555-0123"}}"#,
                r.email
            );
            (id, body)
        })
        .collect();
    let (mut ours, mut plain) = ((0usize, 0.0f64), (0usize, 0.0f64));
    while ours.1 < for_at_least.as_secs_f64() || plain.1 < for_at_least.as_secs_f64() {
        let start = Instant::now();
        for (id, body) in &bodies {
            let command =
                spkey_store::contract::read_command("CreateUser", id, body.as_bytes()).unwrap();
            std::hint::black_box(command.validate().unwrap());
        }
        ours = (
            ours.0 + bodies.len(),
            ours.1 + start.elapsed().as_secs_f64(),
        );
        let start = Instant::now();
        for (_, body) in &bodies {
            std::hint::black_box(serde_json::from_slice::<PlainBody>(body.as_bytes()).unwrap());
        }
        plain = (
            plain.0 + bodies.len(),
            plain.1 + start.elapsed().as_secs_f64(),
        );
    }
    (ours.0 as f64 / ours.1, plain.0 as f64 / plain.1)
}

/// Everything the run measured besides the per-engine rows.
struct Extra {
    small: usize,
    /// How many records the large tier's batched figure timed.
    timed: usize,
    large: usize,
    batch: usize,
    parse_rate: f64,
    /// serde_json's rate on the same bodies into a plain struct.
    plain_parse_rate: f64,
    writers: Writers,
    /// Lookups at 10 versions a user, µs: (users, spkey-store, LMDB).
    versions: (usize, f64, f64),
    import_peak: usize,
    import_rate: f64,
    /// Opening the large store, page cache dropped: (after a clean close,
    /// without its checksum file — what a crash leaves), ms.
    cold_open_ms: (f64, f64),
}

/// Milliseconds to open the store at `path` with its files evicted from the
/// page cache first (`posix_fadvise(DONTNEED)` on the closed, synced
/// files: a cold open without root's `drop_caches`); `crashed` removes its
/// checksum file first, so that the open checks the whole file, as after a
/// crash. Median of 3.
fn cold_open_ms(path: &Path, crashed: bool) -> f64 {
    use std::os::fd::AsRawFd;
    let mut samples = Vec::new();
    for _ in 0..3 {
        let checksums = PathBuf::from(format!("{}-checksums", path.display()));
        if crashed {
            std::fs::remove_file(&checksums).unwrap();
        }
        for file in [
            path.to_path_buf(),
            PathBuf::from(format!("{}-journal", path.display())),
            checksums,
        ] {
            if let Ok(f) = File::open(&file) {
                f.sync_all().unwrap();
                // SAFETY: a valid open descriptor; advice only, no memory.
                let rc =
                    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
                assert_eq!(rc, 0, "posix_fadvise");
            }
        }
        let start = Instant::now();
        let store = Store::open(path).unwrap();
        samples.push(start.elapsed().as_secs_f64() * 1e3);
        store.close().unwrap();
    }
    stats(&mut samples).0
}

fn main() {
    // cargo bench passes --bench; cargo test (the CI smoke run) does not.
    let tiny = !std::env::args().any(|a| a == "--bench");
    let (singles, small, large, batch, lookups, page) = if tiny {
        (5, 2_000, 4_000, 500, 50, 1_000)
    } else {
        (300, 100_000, 1_000_000, 1_000, 5_000, 10_000)
    };
    let dir = tempfile::tempdir().unwrap();
    let mut engines = engines(dir.path());
    let mut rng = fastrand::Rng::with_seed(42);
    let mut users = Vec::new();

    // Durable single appends, the engines taking turns.
    let mut single: Vec<Vec<f64>> = vec![Vec::new(); engines.len()];
    for round in 0..singles {
        let one = records(1, &mut rng);
        for k in 0..engines.len() {
            let i = (k + round) % engines.len();
            let start = Instant::now();
            engines[i].append(&one);
            single[i].push(start.elapsed().as_secs_f64() * 1e6);
        }
        users.push(one[0].user);
    }
    let mut times = append_batches(&mut engines, small, batch, &mut rng, &mut users);
    let small_tier = measure_reads(&engines, singles + small, &users, lookups, &mut times);
    // Up to the large tier; only the last `small` records are timed, so the
    // figure is the rate with the store already that full.
    append_batches(&mut engines, large - 2 * small, batch, &mut rng, &mut users);
    let mut times = append_batches(&mut engines, small, batch, &mut rng, &mut users);
    let stored = singles + large;
    let large_tier = measure_reads(&engines, stored, &users, lookups, &mut times);

    // Bytes on disk with every engine closed, as a file rests between runs.
    let names_paths: Vec<_> = engines.iter().map(|e| (e.name(), e.path())).collect();
    drop(engines);
    let rows: Vec<Row> = names_paths
        .iter()
        .enumerate()
        .map(|(i, (name, path))| Row {
            name,
            single: stats(&mut single[i]),
            small: small_tier[i],
            large: large_tier[i],
            bytes_per_record: disk_bytes(path) as f64 / stored as f64,
        })
        .collect();

    let cold_open = (
        cold_open_ms(&names_paths[0].1, false),
        cold_open_ms(&names_paths[0].1, true),
    );
    let (import_peak, import_rate) = import_memory(&names_paths[0].1, dir.path(), page);
    let writers = writers(
        dir.path(),
        if tiny { 1 } else { 5 },
        if tiny { 5 } else { 250 },
    );
    let versioned = if tiny { 200 } else { 10_000 };
    let (ours, lmdb) = versions_lookup(dir.path(), versioned, 10, lookups);
    let (parse_rate, plain_parse_rate) = parse_rate(
        &mut rng,
        std::time::Duration::from_millis(if tiny { 10 } else { 1_000 }),
    );
    let extra = Extra {
        small: singles + small,
        timed: small,
        large: stored,
        batch,
        parse_rate,
        plain_parse_rate,
        writers,
        versions: (versioned, ours, lmdb),
        import_peak,
        import_rate,
        cold_open_ms: cold_open,
    };
    let report = render(&rows, &extra);
    println!("{report}");
    if !tiny {
        let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/results");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("compare.md"), &report).unwrap();
        chart(&rows, &out.join("compare.svg"));
    }
}

fn render(rows: &[Row], x: &Extra) -> String {
    let base = &rows[0];
    let ratio = |v: f64, b: f64| format!("{:.2}×", v / b);
    let mut out = format!(
        "At {} records stored:\n\n| engine | durable single append, µs, median (min–max) | batched ({}/commit), µs/record, median (min–max) | full scan + decode, ns/record | lookup by user id, µs |\n|---|---|---|---|---|\n",
        x.small, x.batch
    );
    for r in rows {
        out += &format!(
            "| {} | {:.0} ({:.0}–{:.0}) {} | {:.2} ({:.2}–{:.2}) {} | {:.0} {} | {:.2} {} |\n",
            r.name,
            r.single.0,
            r.single.1,
            r.single.2,
            ratio(r.single.0, base.single.0),
            r.small.batched.0,
            r.small.batched.1,
            r.small.batched.2,
            ratio(r.small.batched.0, base.small.batched.0),
            r.small.scan_ns,
            ratio(r.small.scan_ns, base.small.scan_ns),
            r.small.lookup_us,
            ratio(r.small.lookup_us, base.small.lookup_us),
        );
    }
    out += &format!(
        "\nAt {} records stored (batched: the last {} appended):\n\n| engine | batched, µs/record, median (min–max) | full scan + decode, ns/record | lookup by user id, µs | bytes/record on disk, closed |\n|---|---|---|---|---|\n",
        x.large, x.timed,
    );
    for r in rows {
        out += &format!(
            "| {} | {:.2} ({:.2}–{:.2}) {} | {:.0} {} | {:.2} {} | {:.0} {} |\n",
            r.name,
            r.large.batched.0,
            r.large.batched.1,
            r.large.batched.2,
            ratio(r.large.batched.0, base.large.batched.0),
            r.large.scan_ns,
            ratio(r.large.scan_ns, base.large.scan_ns),
            r.large.lookup_us,
            ratio(r.large.lookup_us, base.large.lookup_us),
            r.bytes_per_record,
            ratio(r.bytes_per_record, base.bytes_per_record),
        );
    }
    out += "\nRatios are each engine's figure over spkey-store's (below 1× means faster or smaller than spkey-store).\n";
    out += &format!(
        "\nParse + validate a CreateUser body (no I/O): {:.0} per second on one core; serde_json deserializing the same bodies into a plain struct, nothing checked: {:.0} per second (each over at least 1 s, taking turns).\n\n8 writing threads, each write durable before it returns (medians of {} rounds on fresh files, taking turns):\n\n| writers | durable creates/s |\n|---|---|\n| spkey-store, 8 threads | {:.0} |\n| spkey-store, one caller alone | {:.0} |\n| SQLite WAL FULL, 8 connections | {:.0} |\n| LMDB, 8 threads | {:.0} |\n| the group-commit probe at the store's cost per command ({:.1} µs), 8 threads | {:.0} |\n\nLookup by user id with {} users of 10 versions each: spkey-store {:.2} µs, LMDB {:.2} µs (its last version's record).\n\nImport of all {} events into a fresh store, one pull batch file at a time: peak heap {:.1} MiB (default cache {} MiB), {:.0} events/s.\n",
        x.parse_rate,
        x.plain_parse_rate,
        x.writers.rounds,
        x.writers.eight,
        x.writers.alone,
        x.writers.sqlite,
        x.writers.lmdb,
        x.writers.cost_us,
        x.writers.ceiling,
        x.versions.0,
        x.versions.1,
        x.versions.2,
        x.large,
        x.import_peak as f64 / (1024.0 * 1024.0),
        spkey_store::DEFAULT_CACHE_BYTES >> 20,
        x.import_rate,
    );
    out += &targets(rows, x);
    out
}

/// The issue's targets, each judged on this run's figures.
fn targets(rows: &[Row], x: &Extra) -> String {
    let find = |name: &str| rows.iter().find(|r| r.name == name).unwrap();
    let (us, raw, sqlite, lmdb) = (
        &rows[0],
        find("raw redb"),
        find("SQLite WAL FULL"),
        find("LMDB"),
    );
    let verdict = |met: bool| if met { "met" } else { "missed" };
    let mut lines = Vec::new();
    let mut line = |text: String, met: bool| lines.push(format!("| {text} | {} |", verdict(met)));
    let floor = find("write+fdatasync");
    line(
        format!(
            "1. durable single append ≤ 0.6× SQLite's time and ≤ 1.3× write+fdatasync: {:.2}× SQLite, {:.2}× write+fdatasync",
            us.single.0 / sqlite.single.0,
            us.single.0 / floor.single.0
        ),
        us.single.0 <= 0.6 * sqlite.single.0 && us.single.0 <= 1.3 * floor.single.0,
    );
    let w = &x.writers;
    let best_peer = w.sqlite.max(w.lmdb);
    line(
        format!(
            "2. 8 writing threads ≥ 6× the best peer's durable writes/s and ≥ 0.9× the group-commit probe's at the same cost: {:.1}× the best peer ({}), {:.2}× the probe",
            w.eight / best_peer,
            if w.sqlite >= w.lmdb { "SQLite" } else { "LMDB" },
            w.eight / w.ceiling
        ),
        w.eight >= 6.0 * best_peer && w.eight >= 0.9 * w.ceiling,
    );
    // Our time over a reference time, at each tier; its inverse is our rate
    // over the reference rate.
    let times = |figure: fn(&Tier) -> f64, small: f64, large: f64| {
        [figure(&us.small) / small, figure(&us.large) / large]
    };
    let at_tiers =
        |r: [f64; 2]| format!("{:.2}× at {}, {:.2}× at {}", r[0], x.small, r[1], x.large);
    let batched = times(|t| t.batched.0, lmdb.small.batched.0, lmdb.large.batched.0);
    line(
        format!(
            "3. batched ≥ 1.2× LMDB's rate: {}",
            at_tiers(batched.map(|t| 1.0 / t))
        ),
        batched.iter().all(|t| t * 1.2 <= 1.0),
    );
    let scan = times(|t| t.scan_ns, raw.small.scan_ns, raw.large.scan_ns);
    let scan_lmdb = times(|t| t.scan_ns, lmdb.small.scan_ns, lmdb.large.scan_ns);
    line(
        format!(
            "4. scan ≥ 1.2× raw redb's rate and ≥ LMDB's: {} raw redb's; {} LMDB's",
            at_tiers(scan.map(|t| 1.0 / t)),
            at_tiers(scan_lmdb.map(|t| 1.0 / t))
        ),
        scan.iter().all(|t| t * 1.2 <= 1.0) && scan_lmdb.iter().all(|t| *t <= 1.0),
    );
    let lookup = times(|t| t.lookup_us, lmdb.small.lookup_us, lmdb.large.lookup_us);
    let ten = x.versions.1 / x.versions.2;
    line(
        format!(
            "5. lookup ≤ LMDB's time: {}; {ten:.2}× with 10 versions a user",
            at_tiers(lookup)
        ),
        lookup.iter().all(|t| *t <= 1.0) && ten <= 1.0,
    );
    line(
        format!(
            "6. parse + validate ≥ 0.5× serde_json's plain deserialize of the same bodies: {:.2}× ({:.2} M/s against {:.2} M/s)",
            x.parse_rate / x.plain_parse_rate,
            x.parse_rate / 1e6,
            x.plain_parse_rate / 1e6
        ),
        x.parse_rate >= 0.5 * x.plain_parse_rate,
    );
    line(
        format!(
            "7a. bytes/record ≤ SQLite's: {:.2}× SQLite",
            us.bytes_per_record / sqlite.bytes_per_record
        ),
        us.bytes_per_record <= sqlite.bytes_per_record,
    );
    line(
        format!(
            "7b. peak memory importing {} events < 64 MiB: {:.1} MiB",
            x.large,
            x.import_peak as f64 / (1024.0 * 1024.0)
        ),
        x.import_peak < 64 << 20,
    );
    line(
        format!(
            "8. cold open of {} events after a clean close ≤ 50 ms: {:.1} ms ({:.0} ms without its checksum file, as after a crash: the whole file checked)",
            x.large, x.cold_open_ms.0, x.cold_open_ms.1
        ),
        x.cold_open_ms.0 <= 50.0,
    );
    format!(
        "\n| target (this run) | verdict |\n|---|---|\n{}\n",
        lines.join("\n")
    )
}

/// Picks one figure of a row, for a chart panel.
type Figure = fn(&Row) -> f64;

fn chart(rows: &[Row], path: &Path) {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1200, 420)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let panels = root.split_evenly((1, 3));
    let series: [(&str, Figure); 3] = [
        ("single durable append, µs", |r| r.single.0),
        ("batched, µs/record, 100k stored", |r| r.small.batched.0),
        ("batched, µs/record, 1M stored", |r| r.large.batched.0),
    ];
    for (panel, (title, value)) in panels.iter().zip(series) {
        let max = rows.iter().map(value).fold(0.0, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(70)
            .y_label_area_size(50)
            .build_cartesian_2d((0..rows.len()).into_segmented(), 0.0..max)
            .unwrap();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => rows.get(*i).map_or(String::new(), |r| r.name.into()),
                _ => String::new(),
            })
            .draw()
            .unwrap();
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                let color = if i == 0 {
                    RGBColor(200, 60, 40)
                } else {
                    RGBColor(90, 110, 160)
                };
                Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), value(r)),
                    ],
                    color.filled(),
                )
            }))
            .unwrap();
    }
    root.present().unwrap();
}
