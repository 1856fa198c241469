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
use spkey_store::{CreateUser, Outcome, Store};
use uuid::Uuid;

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
        assert!(outcomes.iter().all(|o| matches!(o, Outcome::Created(_))));
    }
    fn scan(&self) -> usize {
        let mut count = 0;
        let mut from = 1;
        loop {
            let page = self.store.events(from, 4096).unwrap();
            let Some(last) = page.last() else { break };
            from = last.position + 1;
            count += page.len();
        }
        count
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

fn stream_key(user: Uuid) -> [u8; 24] {
    let mut key = [0; 24];
    key[..16].copy_from_slice(user.as_bytes());
    key[16..].copy_from_slice(&1u64.to_be_bytes());
    key
}

impl Engine for Lmdb {
    fn name(&self) -> &'static str {
        "LMDB"
    }
    fn append(&mut self, records: &[Record]) {
        let mut txn = self.env.write_txn().unwrap();
        for r in records {
            assert!(
                self.emails.get(&txn, &r.email).unwrap().is_none(),
                "duplicate"
            );
            self.head += 1;
            self.events.put(&mut txn, &self.head, &r.bytes).unwrap();
            self.streams
                .put(&mut txn, &stream_key(r.user), &self.head)
                .unwrap();
            self.emails
                .put(&mut txn, &r.email, r.user.as_bytes())
                .unwrap();
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
        let Some(position) = self.streams.get(&txn, &stream_key(user)).unwrap() else {
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
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        std::fs::metadata(path).map_or(0, |m| m.len())
            + std::fs::metadata(wal).map_or(0, |m| m.len())
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

fn engines(dir: &Path) -> Vec<Box<dyn Engine>> {
    let spkey = dir.join("spkey.redb");
    let raw = dir.join("raw.redb");
    vec![
        Box::new(Spkey {
            store: Store::open(&spkey).unwrap(),
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

struct Row {
    name: &'static str,
    single: (f64, f64, f64),
    batched: (f64, f64, f64),
    scan_ns: f64,
    lookup_us: f64,
    bytes_per_record: f64,
}

fn main() {
    // cargo bench passes --bench; cargo test (the CI smoke run) does not.
    let tiny = !std::env::args().any(|a| a == "--bench");
    let (singles, total, batch, lookups) = if tiny {
        (5, 2_000, 500, 50)
    } else {
        (300, 100_000, 1_000, 2_000)
    };
    let dir = tempfile::tempdir().unwrap();
    let mut engines = engines(dir.path());
    let mut rng = fastrand::Rng::with_seed(42);

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
    }
    // Batched appends, per record.
    let mut batched: Vec<Vec<f64>> = vec![Vec::new(); engines.len()];
    let mut kept = Vec::new();
    for round in 0..total / batch {
        let chunk = records(batch, &mut rng);
        for k in 0..engines.len() {
            let i = (k + round) % engines.len();
            let start = Instant::now();
            engines[i].append(&chunk);
            batched[i].push(start.elapsed().as_secs_f64() * 1e6 / batch as f64);
        }
        kept.extend(chunk.iter().take(2).map(|r| r.user));
    }
    let stored = singles + total;
    let mut rows = Vec::new();
    for (i, engine) in engines.iter().enumerate() {
        let mut scans: Vec<f64> = (0..3)
            .map(|_| {
                let start = Instant::now();
                assert_eq!(engine.scan(), stored, "{}", engine.name());
                start.elapsed().as_secs_f64() * 1e9 / stored as f64
            })
            .collect();
        let mut looks: Vec<f64> = (0..lookups)
            .map(|n| {
                let user = kept[n % kept.len()];
                let start = Instant::now();
                let found = engine.lookup(user);
                let us = start.elapsed().as_secs_f64() * 1e6;
                assert!(found || engine.name() == "write+fdatasync");
                us
            })
            .collect();
        rows.push(Row {
            name: engine.name(),
            single: stats(&mut single[i]),
            batched: stats(&mut batched[i]),
            scan_ns: stats(&mut scans).0,
            lookup_us: stats(&mut looks).0,
            bytes_per_record: disk_bytes(&engine.path()) as f64 / stored as f64,
        });
    }

    // Parse + validate, no I/O: spkey-store's wire path up to the store.
    let bodies: Vec<(String, String)> = records(20_000, &mut rng)
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
    let start = Instant::now();
    for (id, body) in &bodies {
        let command = spkey_store::contract::parse_create_user(id, body.as_bytes()).unwrap();
        command.validate().unwrap();
    }
    let parse_rate = bodies.len() as f64 / start.elapsed().as_secs_f64();

    // Many callers at once: group commit, 8 threads.
    let group_store = Store::open(dir.path().join("group.redb")).unwrap();
    let per_thread = if tiny { 5 } else { 50 };
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let store = &group_store;
            s.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(1000 + t);
                for r in records(per_thread, &mut rng) {
                    store.create_user(&Spkey::command(&r)).unwrap();
                }
            });
        }
    });
    let group_rate = (8 * per_thread) as f64 / start.elapsed().as_secs_f64();
    let single_rate = 1e6 / rows[0].single.0;

    let report = render(&rows, parse_rate, group_rate, single_rate, stored, batch);
    println!("{report}");
    if !tiny {
        let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/results");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("compare.md"), &report).unwrap();
        chart(&rows, &out.join("compare.svg"));
    }
}

fn render(
    rows: &[Row],
    parse_rate: f64,
    group_rate: f64,
    single_rate: f64,
    stored: usize,
    batch: usize,
) -> String {
    let base = &rows[0];
    let ratio = |x: f64, y: f64| format!("{:.2}×", x / y);
    let mut out = format!(
        "| engine | durable single append, median (min–max) | batched ({batch}/commit), µs/record, median (min–max) | full scan + decode, ns/record | lookup by user id, µs | bytes/record on disk |\n|---|---|---|---|---|---|\n"
    );
    for r in rows {
        out += &format!(
            "| {} | {:.0} µs ({:.0}–{:.0}) {} | {:.2} ({:.2}–{:.2}) {} | {:.0} {} | {:.1} {} | {:.0} {} |\n",
            r.name,
            r.single.0,
            r.single.1,
            r.single.2,
            ratio(r.single.0, base.single.0),
            r.batched.0,
            r.batched.1,
            r.batched.2,
            ratio(r.batched.0, base.batched.0),
            r.scan_ns,
            ratio(r.scan_ns, base.scan_ns),
            r.lookup_us,
            ratio(r.lookup_us, base.lookup_us),
            r.bytes_per_record,
            ratio(r.bytes_per_record, base.bytes_per_record),
        );
    }
    out += &format!(
        "\nRatios are each engine's figure over spkey-store's (below 1× means faster or smaller than spkey-store). {stored} records stored.\n\nParse + validate a CreateUser body (no I/O): {:.0} per second on one core.\n\nGroup commit: 8 threads calling create_user at once: {:.0} acknowledged commands/s, {:.1}× the single caller's {:.0}/s.\n",
        parse_rate,
        group_rate,
        group_rate / single_rate,
        single_rate
    );
    out
}

/// Picks one figure of a row, for a chart panel.
type Figure = fn(&Row) -> f64;

fn chart(rows: &[Row], path: &Path) {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let panels = root.split_evenly((1, 2));
    let series: [(&str, Figure); 2] = [
        ("durable single append, µs (median)", |r| r.single.0),
        ("batched append, µs per record (median)", |r| r.batched.0),
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
