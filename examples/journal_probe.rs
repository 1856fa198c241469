//! Probes behind the journal's design figures in the README and
//! ARCHITECTURE.md, on this machine's disk (in the current directory):
//!
//!   cargo run --release --example journal_probe
//!
//! 1. what a sync costs: 300 bytes appended + fdatasync against 300 bytes
//!    written over in a preallocated file + fdatasync (why the journal is
//!    written over in laps);
//! 2. a durable create alone (median latency) and 8 threads creating at once
//!    (group commit);
//! 3. 200,000 creates in batches of 1,000: time per event and the closed
//!    store's bytes per event, with the default checkpoints and with one
//!    after every commit.
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use spkey_store::{CreateUser, Store};
use uuid::Uuid;

fn command() -> CreateUser {
    CreateUser::new(
        Uuid::new_v4().to_string(),
        format!("{:016x}@example.com", fastrand::u64(..)),
    )
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir_in(".").unwrap();
    let n = 1_000;

    let mut append = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("append"))
        .unwrap();
    let appends = (0..n)
        .map(|_| {
            let start = Instant::now();
            append.write_all(&[7; 300]).unwrap();
            append.sync_data().unwrap();
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    let over = std::fs::File::create(dir.path().join("over")).unwrap();
    over.write_all_at(&vec![0; 1 << 20], 0).unwrap();
    over.sync_all().unwrap();
    let overwrites = (0..n)
        .map(|i| {
            let start = Instant::now();
            over.write_all_at(&[7; 300], (i * 300 % (1 << 20)) as u64)
                .unwrap();
            over.sync_data().unwrap();
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    println!(
        "1. 300 bytes + fdatasync: appended {:.0} µs, written over {:.0} µs (medians of {n})",
        median(appends),
        median(overwrites)
    );

    let store = Store::open(dir.path().join("single.redb")).unwrap();
    let singles = (0..n)
        .map(|_| {
            let command = command();
            let start = Instant::now();
            store.create_user(&command).unwrap();
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect::<Vec<_>>();
    let single = median(singles);
    let per_thread = n / 4;
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..per_thread {
                    store.create_user(&command()).unwrap();
                }
            });
        }
    });
    let group = (8 * per_thread) as f64 / start.elapsed().as_secs_f64();
    println!(
        "2. a durable create alone: {single:.0} µs median; 8 threads: {group:.0}/s, {:.1}× one caller",
        group * single / 1e6
    );

    for (what, every) in [
        ("default checkpoints", None),
        ("a checkpoint every commit", Some(1)),
    ] {
        let path = dir
            .path()
            .join(format!("batched-{}.redb", every.unwrap_or(0)));
        let mut builder = Store::builder();
        if let Some(every) = every {
            builder = builder.checkpoint_every(every);
        }
        let store = builder.open(&path).unwrap();
        let events = 200_000;
        let start = Instant::now();
        for _ in 0..events / 1_000 {
            let batch: Vec<_> = (0..1_000).map(|_| command()).collect();
            store.execute_batch(&batch).unwrap();
        }
        let took = start.elapsed().as_secs_f64();
        store.close().unwrap();
        let bytes = std::fs::metadata(&path).unwrap().len();
        println!(
            "3. {events} creates in batches of 1,000, {what}: {:.1} µs/event, closed {} bytes/event",
            took * 1e6 / events as f64,
            bytes / events as u64
        );
    }
}
