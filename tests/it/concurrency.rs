//! Many writers at once: threads sharing a store, processes sharing a file.

use std::collections::{HashMap, HashSet};
use std::process::Command;

use spkey_store::{CreateUser, Outcome, Rejection, Store, email_key};
use uuid::Uuid;

use crate::support::{body, given_store, long_run};

#[test]
fn threads_racing_for_ids_and_emails_get_exactly_one_winner_each() {
    let given = given_store();
    let (threads, per_thread) = if long_run() { (8, 500) } else { (8, 60) };
    let store = &given.store;

    let outcomes: Vec<(CreateUser, Outcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(t);
                    (0..per_thread)
                        .map(|_| {
                            // 16 ids and 16 emails: collisions on both are common.
                            let id = Uuid::from_u128(0x9000 + rng.u128(0..16)).to_string();
                            let email = format!("racer{}@example.com", rng.u8(0..16));
                            let command = CreateUser::new(id, email);
                            let outcome = store.create_user(&command).unwrap();
                            (command, outcome)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });

    let mut winners_by_id = HashMap::new();
    let mut winners_by_email = HashMap::new();
    for (command, outcome) in &outcomes {
        match outcome {
            Outcome::Recorded(event) => {
                assert!(
                    winners_by_id
                        .insert(command.user_id.clone(), event.position)
                        .is_none()
                );
                assert!(
                    winners_by_email
                        .insert(email_key(&command.email), event.position)
                        .is_none()
                );
            }
            // A replay must be of the winner's exact command.
            Outcome::Replayed(event) => {
                assert_eq!(event.aggregate_id().to_string(), command.user_id)
            }
            Outcome::Rejected(Rejection::Conflict(_)) => {}
            Outcome::Rejected(other) => panic!("valid command rejected: {other:?}"),
        }
    }
    let events = store.events(1, usize::MAX).unwrap();
    assert_eq!(events.len(), winners_by_id.len());
    let positions: HashSet<u64> = winners_by_id.values().copied().collect();
    assert_eq!(positions, (1..=events.len() as u64).collect());
    assert!(store.verify().unwrap().is_sound());
}

#[test]
fn concurrent_callers_share_commits_and_each_is_answered_when_durable() {
    let disk = crate::disk::Disk::default().with_slow_sync(std::time::Duration::from_millis(3));
    let store = Store::builder()
        .journal(disk.journal())
        .backend(disk.backend())
        .unwrap();
    let before = disk.syncs();
    let (threads, per_thread) = (8u128, 10u128);

    std::thread::scope(|s| {
        for t in 0..threads {
            let store = &store;
            s.spawn(move || {
                for n in 0..per_thread {
                    let id = Uuid::from_u128(0xb000 + t * 100 + n).to_string();
                    let outcome = store
                        .create_user(&CreateUser::new(id, format!("g{t}-{n}@example.com")))
                        .unwrap();
                    assert!(matches!(outcome, Outcome::Recorded(_)));
                }
            });
        }
    });

    let commands = (threads * per_thread) as u64;
    let syncs = disk.syncs() - before;
    assert_eq!(store.head_position().unwrap(), commands);
    assert!(store.verify().unwrap().is_sound());
    // Alone, every command costs its own syncs; grouped, far fewer.
    assert!(
        syncs < commands,
        "{syncs} syncs for {commands} commands: no grouping"
    );
    // Everything acknowledged was synced: a power cut now loses nothing.
    let image = disk.image(crate::disk::Keep::Nothing);
    let disk = crate::disk::Disk::with_image(image);
    let reopened = Store::builder()
        .journal(disk.journal())
        .backend(disk.backend())
        .unwrap();
    assert_eq!(reopened.head_position().unwrap(), commands);
}

#[test]
fn processes_racing_for_one_file_either_write_or_are_told_it_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.redb");
    drop(Store::open(&db).unwrap());
    let processes = if long_run() { 64 } else { 12 };

    let children: Vec<_> = (0..processes)
        .map(|n| {
            let id = Uuid::from_u128(0xa000 + n).to_string();
            Command::new(env!("CARGO_BIN_EXE_spkey"))
                .arg("--db")
                .arg(&db)
                .args(["create-user", &id, &body(&id, &format!("p{n}@example.com"))])
                .output_async()
        })
        .collect();

    let mut written = 0;
    for child in children {
        let output = child.wait_with_output().unwrap();
        match output.status.code() {
            Some(0) => written += 1,
            Some(2) => assert!(
                String::from_utf8_lossy(&output.stderr).contains("locked"),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            ),
            other => panic!(
                "exit {other:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }
    let store = Store::open(&db).unwrap();
    assert!(written >= 1);
    assert_eq!(store.head_position().unwrap(), written);
    assert!(store.verify().unwrap().is_sound());
}

trait SpawnPiped {
    fn output_async(&mut self) -> std::process::Child;
}

impl SpawnPiped for Command {
    fn output_async(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

#[test]
fn a_read_that_starts_after_a_write_returned_sees_it() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let given = given_store();
    let acknowledged = AtomicU64::new(0);
    let commands = if long_run() { 2_000 } else { 300 };

    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let seen = acknowledged.load(Ordering::Acquire);
                    let head = given.store.head_position().unwrap();
                    assert!(
                        head >= seen,
                        "read head {head} after {seen} were acknowledged"
                    );
                    if seen == commands {
                        break;
                    }
                }
            });
        }
        for n in 0..commands {
            let id = Uuid::from_u128(0xc000 + n as u128).to_string();
            given
                .store
                .create_user(&CreateUser::new(id, format!("r{n}@example.com")))
                .unwrap();
            acknowledged.store(n + 1, Ordering::Release);
        }
    });
}
