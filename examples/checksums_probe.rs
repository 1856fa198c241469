//! What checking every block read against its checksum costs a scan:
//! 100,000 creates in batches of 1,000 into a store with and without the
//! block checksums (the latter a store opened on a plain file backend),
//! then five full scans on the same handle, as `benches/compare.rs` does.
//!
//! `cargo run --release --example checksums_probe`

use std::time::Instant;

use redb::backends::FileBackend;
use spkey_store::{CreateUser, Store};
use uuid::Uuid;

fn file(path: &std::path::Path) -> FileBackend {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("open");
    FileBackend::new(file).expect("backend")
}

fn main() {
    const CACHE: usize = 1 << 30;
    for round in 0..2 {
        for checked in [true, false] {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("probe.redb");
            let store = if checked {
                Store::builder().cache_bytes(CACHE).open(&path)
            } else {
                let journal = dir.path().join("probe.redb-journal");
                Store::builder()
                    .cache_bytes(CACHE)
                    .journal(file(&journal))
                    .backend(file(&path))
            }
            .expect("store");
            let commands: Vec<CreateUser> = (0..100_000u128)
                .map(|n| {
                    CreateUser::new(
                        Uuid::from_u128(n + 1).to_string(),
                        format!("u{n}@example.com"),
                    )
                    .first_name("Ann")
                })
                .collect();
            for batch in commands.chunks(1000) {
                store.execute_batch(batch).expect("batch");
            }
            let scans: Vec<u64> = (0..5)
                .map(|_| {
                    let start = Instant::now();
                    let n = store.scan(1, |_| true).expect("scan");
                    (start.elapsed().as_nanos() / u128::from(n)) as u64
                })
                .collect();
            let what = if checked { "with" } else { "without" };
            println!("round {round}, {what} block checksums: full scans {scans:?} ns/event");
            store.close().expect("close");
        }
    }
}
