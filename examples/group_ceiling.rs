//! The ceiling of group commit on this machine: the store's own group-commit
//! algorithm (`spkey_store::group`, the store's and the PostgreSQL hub's) sharing a
//! 300-byte write + `fdatasync` of a preallocated file (the journal's
//! durable step) among 8 threads, with commands that cost nothing else or a
//! fixed CPU time each. The README's "why the rest is missed" quotes it: what
//! 8 callers can gain over one when nothing but the sync is shared.
//!
//!   cargo run --release --example group_ceiling
//!
//! Prints, for each cost per command, the rate of one caller alone, of 8
//! threads at once (medians of five rounds taking turns), and their ratio
//! (the comparison's group-commit row).
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use spkey_store::group::Group;

fn main() {
    let dir = tempfile::tempdir_in(".").unwrap();
    let file = std::fs::File::create(dir.path().join("journal")).unwrap();
    file.write_all_at(&vec![0; 1 << 20], 0).unwrap();
    file.sync_all().unwrap();
    let offset = Mutex::new(0u64);
    let commands = 1_000;
    for cost in [0, 2, 4, 8] {
        let group: Group<u64, u64> = Group::default();
        let run = |batch: Vec<u64>| {
            // The work of deciding and inserting, if any: a busy wait, as a
            // command's CPU time is not shared by the group.
            let started = Instant::now();
            while started.elapsed() < Duration::from_micros(cost * batch.len() as u64) {}
            let mut at = offset.lock().unwrap();
            file.write_all_at(&vec![7; 300 * batch.len()], *at % (1 << 19))
                .unwrap();
            file.sync_data().unwrap();
            *at += 300 * batch.len() as u64;
            batch
        };
        // One caller and 8 take turns, five rounds each, so that the disk's
        // and the machine's moods hit both alike; medians are printed.
        let (mut alone, mut eight) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let started = Instant::now();
            for i in 0..commands {
                assert_eq!(group.submit(i, run).unwrap(), i);
            }
            alone.push(commands as f64 / started.elapsed().as_secs_f64());
            let started = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..8 {
                    s.spawn(|| {
                        for i in 0..commands {
                            assert_eq!(group.submit(i, run).unwrap(), i);
                        }
                    });
                }
            });
            eight.push((8 * commands) as f64 / started.elapsed().as_secs_f64());
        }
        let (alone, eight) = (median(alone), median(eight));
        println!(
            "{cost} µs of work per command: alone {alone:.0}/s, 8 threads {eight:.0}/s, {:.1}× one caller",
            eight / alone
        );
    }
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}
