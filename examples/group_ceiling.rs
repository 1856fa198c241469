//! The ceiling of group commit on this machine: the store's own group-commit
//! algorithm (`spkey_store::group`, the store's and the PostgreSQL hub's) sharing a
//! 300-byte write + `fdatasync` of a preallocated file (the journal's
//! durable step) among 8 threads, with commands that cost nothing else or a
//! fixed CPU time each: what 8 callers can gain over one when nothing but
//! the sync is shared. `cargo bench --bench compare` runs the same probe
//! (`benches/common/ceiling.rs`) at the store's own cost per command.
//!
//!   cargo run --release --example group_ceiling
//!
//! Prints, for each cost per command, the rate of one caller alone, of 8
//! threads at once (medians of five rounds taking turns), and their ratio
//! (the comparison's group-commit row).
use std::time::Duration;

#[path = "../benches/common/ceiling.rs"]
mod ceiling;

fn main() {
    let dir = tempfile::tempdir_in(".").unwrap();
    let file = ceiling::journal(dir.path());
    for cost in [0, 2, 4, 8] {
        // One caller and 8 take turns, five rounds each, so that the disk's
        // and the machine's moods hit both alike; medians are printed.
        let (mut alone, mut eight) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let (one, all) = ceiling::rates(&file, Duration::from_micros(cost), 1_000, 8);
            alone.push(one);
            eight.push(all);
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
