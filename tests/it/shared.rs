//! One store, two OS processes (an app and its widget, an app and its sync
//! service): this test process writes the store opened shared while the
//! `spkey` CLI reads it with `--shared` in a loop, and a second writer is
//! turned away.

use std::process::Output;

use serde_json::Value;
use spkey_store::{CreateUser, Outcome, Store, StoreError};
use uuid::Uuid;

use crate::support::spkey_on as spkey;

fn create(store: &Store, n: u128) {
    let id = Uuid::from_u128(0x5000 + n).to_string();
    let outcome = store
        .create_user(&CreateUser::new(&id, format!("shared{n}@example.com")))
        .unwrap();
    assert!(matches!(outcome, Outcome::Recorded(_)), "{outcome:?}");
}

/// The positions a `spkey --shared events` run printed, checked to be the
/// log's first ones with no gap: a whole commit or none of it.
fn prefix(output: &Output) -> u64 {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut n = 0;
    for line in String::from_utf8(output.stdout.clone()).unwrap().lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        n += 1;
        assert_eq!(event["position"], n, "a read that is not a prefix: {line}");
    }
    n
}

#[test]
fn a_reader_process_follows_a_writer_process_and_a_second_writer_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.redb");
    // A store written the usual way first: opening it shared replays and
    // removes its journal and checksums.
    let exclusive = Store::open(&db).unwrap();
    create(&exclusive, 0);
    drop(exclusive);
    assert!(db.with_file_name("shared.redb-journal").exists());

    let writer = Store::builder().shared(true).open(&db).unwrap();
    assert!(!db.with_file_name("shared.redb-journal").exists());
    assert!(!db.with_file_name("shared.redb-checksums").exists());
    // Not shared: the writer holds the file.
    assert!(matches!(Store::open(&db), Err(StoreError::Locked)));
    assert!(matches!(
        Store::builder().open_read_only(&db),
        Err(StoreError::Locked)
    ));
    // A second shared writer waits its patience out, then is turned away.
    let second = spkey(
        &db,
        &[
            "--shared",
            "create-user",
            &Uuid::from_u128(9).to_string(),
            "{}",
        ],
    );
    assert_eq!(second.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("locked"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    // The reader runs in a loop while this process writes: every read is
    // a whole prefix of the log, never shorter than the one before.
    let reader = {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..40 {
                seen.push(prefix(&spkey(&db, &["--shared", "events"])));
            }
            seen
        })
    };
    let mut written = 1;
    while !reader.is_finished() && written < 5_000 {
        create(&writer, written as u128);
        written += 1;
    }
    let seen = reader.join().unwrap();
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert!(seen[0] >= 1);
    // The reads came while the writes did.
    assert!(seen.windows(2).any(|w| w[0] < w[1]), "{seen:?}");
    // Each commit is visible to the reader process as soon as it is made.
    assert_eq!(prefix(&spkey(&db, &["--shared", "events"])), written);
    let verify = spkey(&db, &["--shared", "verify"]);
    assert_eq!(verify.status.code(), Some(0), "{verify:?}");
    // A reading command other than `events` sees a user the writer made.
    let user = spkey(
        &db,
        &["--shared", "user", &Uuid::from_u128(0x5001).to_string()],
    );
    assert_eq!(user.status.code(), Some(0));
    let user: Value = serde_json::from_slice(&user.stdout).unwrap();
    assert_eq!(user["email"], "shared1@example.com");

    // Closed, the store opens the usual way again, whole.
    writer.close().unwrap();
    let store = Store::open(&db).unwrap();
    assert_eq!(store.head_position().unwrap(), written);
    assert!(store.verify().unwrap().is_sound());
}

#[test]
fn a_reader_in_this_process_sees_the_writers_commits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.redb");
    let writer = Store::builder().shared(true).open(&db).unwrap();
    let reader = Store::builder().shared(true).open_read_only(&db).unwrap();
    assert_eq!(reader.store_id(), writer.store_id());
    for n in 1..=5 {
        create(&writer, n);
        assert_eq!(reader.head_position().unwrap(), n as u64);
    }
    assert!(matches!(
        reader.create_user(&CreateUser::new(Uuid::from_u128(1).to_string(), "a@b.co")),
        Err(StoreError::ReadOnly)
    ));
}
