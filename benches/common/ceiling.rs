//! The ceiling of group commit on this machine: the store's own group-commit
//! algorithm (`spkey_store::group`, the store's and the PostgreSQL hub's)
//! sharing a 300-byte write + `fdatasync` of a preallocated file (the
//! journal's durable step) among callers, with commands that cost nothing
//! else or a fixed CPU time each. Shared by `examples/group_ceiling.rs` and
//! the comparison's concurrent-writers row.
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use spkey_store::group::Group;

/// The probe's file: 1 MiB preallocated and synced in `dir`, so that
/// every write lands on allocated blocks as the journal's do.
pub fn journal(dir: &Path) -> File {
    let file = File::create(dir.join("ceiling-journal")).unwrap();
    file.write_all_at(&vec![0; 1 << 20], 0).unwrap();
    file.sync_all().unwrap();
    file
}

/// One caller, then `threads` at once, each submitting `commands` commands
/// of `cost` CPU time each through one [`Group`]. Returns commands per
/// second (alone, all threads).
pub fn rates(file: &File, cost: Duration, commands: usize, threads: usize) -> (f64, f64) {
    let offset = Mutex::new(0u64);
    let group: Group<usize, usize> = Group::default();
    let run = |batch: Vec<usize>| {
        // The work of deciding and inserting: a busy wait, as a command's
        // CPU time is not shared by the group.
        let started = Instant::now();
        while started.elapsed() < cost * batch.len() as u32 {}
        let mut at = offset.lock().unwrap();
        file.write_all_at(&vec![7; 300 * batch.len()], *at % (1 << 19))
            .unwrap();
        file.sync_data().unwrap();
        *at += 300 * batch.len() as u64;
        batch
    };
    let started = Instant::now();
    for i in 0..commands {
        assert_eq!(group.submit(i, run).unwrap(), i);
    }
    let alone = commands as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for i in 0..commands {
                    assert_eq!(group.submit(i, run).unwrap(), i);
                }
            });
        }
    });
    let all = (threads * commands) as f64 / started.elapsed().as_secs_f64();
    (alone, all)
}
