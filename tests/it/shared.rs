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

/// Every file beside `db` (the store, any journal or checksums), read.
fn files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            (path.display().to_string(), std::fs::read(&path).unwrap())
        })
        .collect()
}

#[test]
fn a_store_written_shared_is_rewritten_after_an_erasure_once_no_reader_holds_it() {
    use crate::erase::{ERASED, KEPT, held};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.redb");
    let open = || Store::builder().shared(true).open(&db).unwrap();
    let writer = open();
    crate::erase::create(&writer, &ERASED);
    for person in &KEPT {
        crate::erase::create(&writer, person);
    }
    let erased = writer.delete_user(&spkey_store::DeleteUser::new(ERASED.id.to_string()));
    assert!(matches!(erased, Ok(Outcome::Recorded(_))));

    // A reader holds the file: the writer's close leaves the rewrite due.
    let reader = Store::builder().shared(true).open_read_only(&db).unwrap();
    writer.close().unwrap();
    let left: Vec<_> = files(dir.path())
        .into_iter()
        .flat_map(|(_, bytes)| held(&bytes, &ERASED))
        .collect();
    assert!(!left.is_empty(), "the search finds the free pages' values");
    assert!(reader.user(ERASED.id).unwrap().unwrap().is_erased());
    drop(reader);

    // Alone, the next writer's open rewrites it.
    let writer = open();
    for (file, bytes) in files(dir.path()) {
        assert_eq!(held(&bytes, &ERASED), Vec::<&str>::new(), "{file}");
    }
    for person in &KEPT {
        let user = writer.user(person.id).unwrap().unwrap();
        assert_eq!(user.profile.last_name.as_deref(), Some(person.last));
    }
    assert!(writer.verify().unwrap().is_sound());

    // And a writer alone rewrites it when it closes.
    crate::erase::create(&writer, &ERASED_AGAIN);
    writer
        .delete_user(&spkey_store::DeleteUser::new(ERASED_AGAIN.id.to_string()))
        .unwrap();
    writer.close().unwrap();
    for (file, bytes) in files(dir.path()) {
        assert_eq!(held(&bytes, &ERASED_AGAIN), Vec::<&str>::new(), "{file}");
    }
    // The exclusive open that rewrote it left a journal: a shared open
    // replays and removes it.
    let writer = open();
    assert!(!db.with_file_name("s.redb-journal").exists());
    assert!(writer.verify().unwrap().is_sound());
    assert!(writer.user(ERASED_AGAIN.id).unwrap().unwrap().is_erased());
}

const ERASED_AGAIN: crate::erase::Person = crate::erase::Person {
    id: Uuid::from_u128(0xe1a5_0009),
    email: "Ptolemaios.Vanishing@Erasable.example",
    first: "Ptolemaios",
    last: "Vanishwright",
    phone: "+33 1 09 75 83 51",
};
