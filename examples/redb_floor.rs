//! What redb itself costs on the comparison's work, with nothing of
//! spkey-store's on top: the floors behind the README's "why the rest is
//! missed". Run on this machine's disk (in the current directory):
//!
//!   cargo run --release --example redb_floor
//!
//! The tables, records and cache are those of `benches/compare.rs`'s raw redb
//! engine (random v4 user ids, random emails, ~90-byte postcard records,
//! redb's default 1 GiB cache). Three floors, at 100,000 and at 1,000,000
//! records:
//!
//! 1. batched inserts, 1,000 records a transaction, every commit
//!    `Durability::None` (no fsync, no durable commit at all): redb's insert
//!    work alone (at 1M, the last 100,000);
//! 2. a full iteration of the log table that reads each row's value length
//!    and decodes nothing: redb's iteration alone;
//! 3. one `get` in one table on a read transaction opened once (no
//!    transaction or table opening per lookup): one tree descent, in the log
//!    by position and in the (user, version) index by user.
use std::time::Instant;

use redb::{Durability, ReadableDatabase, ReadableTable, TableDefinition};

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const STREAMS: TableDefinition<(u128, u64), u64> = TableDefinition::new("streams");
const EMAILS: TableDefinition<&str, u128> = TableDefinition::new("emails");

/// The comparison's record: a postcard `Rec` of the same field lengths (a
/// 16-byte id, then length-prefixed strings), written by hand so the probe
/// needs no serde.
fn record(user: u128, email: &str) -> Vec<u8> {
    let mut bytes = user.to_le_bytes().to_vec();
    for field in [email, "John", "Doe", "+1-555-0123"] {
        if field != email {
            bytes.push(1); // Some
        }
        bytes.push(field.len() as u8);
        bytes.extend_from_slice(field.as_bytes());
    }
    bytes
}

fn main() {
    let dir = tempfile::tempdir_in(".").unwrap();
    let db = redb::Database::create(dir.path().join("floor.redb")).unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut users = Vec::new();
    let mut head = 0u64;
    for target in [100_000u64, 1_000_000] {
        let timed_from = target - 100_000;
        let mut timed = 0.0;
        while head < target {
            let started = Instant::now();
            let mut txn = db.begin_write().unwrap();
            txn.set_durability(Durability::None).unwrap();
            {
                let mut events = txn.open_table(EVENTS).unwrap();
                let mut streams = txn.open_table(STREAMS).unwrap();
                let mut emails = txn.open_table(EMAILS).unwrap();
                for _ in 0..1_000 {
                    let user = rng.u128(..) & !(0xf << 76) | (4 << 76);
                    let email = format!("{:016x}@example.com", rng.u64(..));
                    assert!(emails.get(email.as_str()).unwrap().is_none());
                    head += 1;
                    events
                        .insert(head, record(user, &email).as_slice())
                        .unwrap();
                    streams.insert((user, 1), head).unwrap();
                    emails.insert(email.as_str(), user).unwrap();
                    users.push(user);
                }
            }
            txn.commit().unwrap();
            if head > timed_from {
                timed += started.elapsed().as_secs_f64();
            }
        }
        let txn = db.begin_read().unwrap();
        let events = txn.open_table(EVENTS).unwrap();
        let streams = txn.open_table(STREAMS).unwrap();
        let mut scans = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            let bytes: usize = events
                .iter()
                .unwrap()
                .map(|row| row.unwrap().1.value().len())
                .sum();
            assert!(bytes > 0);
            scans.push(started.elapsed().as_secs_f64() * 1e9 / head as f64);
        }
        scans.sort_by(f64::total_cmp);
        let lookups = 200_000;
        let started = Instant::now();
        for _ in 0..lookups {
            let position = rng.u64(1..=head);
            assert!(events.get(position).unwrap().is_some());
        }
        let by_position = started.elapsed().as_secs_f64() * 1e6 / lookups as f64;
        let started = Instant::now();
        for _ in 0..lookups {
            let user = users[rng.usize(..users.len())];
            assert!(streams.get((user, 1)).unwrap().is_some());
        }
        let by_user = started.elapsed().as_secs_f64() * 1e6 / lookups as f64;
        println!(
            "at {head} records: 1. batched, no durability: {:.2} µs/record; \
             2. bare iteration: {:.0} ns/row (median of 5); \
             3. one get: {by_position:.2} µs in the log, {by_user:.2} µs in the user index",
            timed * 1e6 / 100_000.0,
            scans[2],
        );
    }
}
