//! The typed Rust API: persistence, batches, reads, verify, locking.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use spkey_store::{CreateUser, Field, Outcome, Rejection, Store, StoreError};
use uuid::Uuid;

use crate::support::*;

// The store's tables, declared again to reach under the API in tests.
const EVENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("events");
const EMAILS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("emails");
const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");

fn user_id(n: u128) -> String {
    Uuid::from_u128(0x1000 + n).to_string()
}

fn create(n: u128) -> CreateUser {
    CreateUser::new(user_id(n), format!("user{n}@example.com"))
}

#[test]
fn events_survive_reopening_with_contiguous_positions() {
    let given = given_store();
    for n in 0..5 {
        assert!(matches!(
            given.store.create_user(&create(n)),
            Ok(Outcome::Created(_))
        ));
    }
    let store_id = given.store.store_id();

    let given = given.reopen();

    let events = given.store.events(1, usize::MAX).unwrap();
    let positions: Vec<u64> = events.iter().map(|e| e.position).collect();
    assert_eq!(positions, [1, 2, 3, 4, 5]);
    assert!(
        events
            .iter()
            .all(|e| e.version == 1 && e.origin == store_id)
    );
    assert_eq!(given.store.store_id(), store_id);
    assert_eq!(given.store.head_position().unwrap(), 5);
    assert!(given.store.verify().unwrap().is_sound());
}

#[test]
fn reads_page_through_the_log_and_by_aggregate() {
    let given = given_store();
    for n in 0..10 {
        given.store.create_user(&create(n)).unwrap();
    }

    let page = given.store.events(4, 3).unwrap();
    let past_end = given.store.events(11, 5).unwrap();
    let one = given
        .store
        .aggregate_events(user_id(7).parse().unwrap())
        .unwrap();
    let none = given.store.aggregate_events(Uuid::from_u128(1)).unwrap();

    assert_eq!(
        page.iter().map(|e| e.position).collect::<Vec<_>>(),
        [4, 5, 6]
    );
    assert!(past_end.is_empty());
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].position, 8);
    assert!(none.is_empty());
    let user = given
        .store
        .user(user_id(7).parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(user.profile.email, "user7@example.com");
    assert_eq!(user.version, 1);
    assert_eq!(user.created_at_ms, NOW_MS);
    assert_eq!(given.store.user(Uuid::from_u128(1)).unwrap(), None);
    assert_eq!(
        given.store.user_id_by_email(" USER7@example.com").unwrap(),
        Some(user_id(7).parse().unwrap())
    );
    assert_eq!(
        given.store.user_id_by_email("nobody@example.com").unwrap(),
        None
    );
}

#[test]
fn a_batch_gives_an_outcome_per_command_and_later_commands_see_earlier_ones() {
    let given = given_store();
    let clash = CreateUser::new(user_id(9), "USER1@example.com");
    let invalid = CreateUser::new("nope", "a@b.co");

    let outcomes = given
        .store
        .execute_batch(&[create(1), create(2), create(1), clash, invalid])
        .unwrap();

    assert!(matches!(&outcomes[0], Outcome::Created(e) if e.position == 1));
    assert!(matches!(&outcomes[1], Outcome::Created(e) if e.position == 2));
    assert_eq!(
        outcomes[2],
        Outcome::Replayed(outcomes[0].event().unwrap().clone())
    );
    assert!(
        matches!(&outcomes[3], Outcome::Rejected(Rejection::Conflict(d)) if d[0].field == Field::Email)
    );
    assert!(
        matches!(&outcomes[4], Outcome::Rejected(Rejection::Invalid(d)) if d[0].field == Field::Id)
    );
    let given = given.reopen();
    assert_eq!(given.store.head_position().unwrap(), 2);
}

#[test]
fn a_batch_of_only_rejections_and_replays_writes_nothing() {
    let given = given_store();
    given.store.create_user(&create(1)).unwrap();
    let file_before = std::fs::read(given.path()).unwrap();

    let outcomes = given
        .store
        .execute_batch(&[create(1), CreateUser::new(user_id(2), "bad")])
        .unwrap();

    assert!(matches!(outcomes[0], Outcome::Replayed(_)));
    assert!(matches!(outcomes[1], Outcome::Rejected(_)));
    assert_eq!(std::fs::read(given.path()).unwrap(), file_before);
}

#[test]
fn an_empty_batch_is_an_empty_answer() {
    let given = given_store();
    assert_eq!(given.store.execute_batch(&[]).unwrap(), []);
    assert_eq!(given.store.head_position().unwrap(), 0);
}

#[test]
fn an_in_memory_store_answers_like_a_file_store() {
    let store = Store::in_memory().unwrap();
    assert!(matches!(
        store.create_user(&create(1)),
        Ok(Outcome::Created(_))
    ));
    assert!(matches!(
        store.create_user(&create(1)),
        Ok(Outcome::Replayed(_))
    ));
    assert_eq!(store.head_position().unwrap(), 1);
}

#[test]
fn a_second_open_of_the_same_file_is_refused_as_locked() {
    let given = given_store();

    let second = Store::open(given.path());

    assert!(matches!(second, Err(StoreError::Locked)), "{second:?}");
    assert!(given.store.create_user(&create(1)).is_ok());
}

#[test]
fn stores_may_be_shared_between_threads() {
    let given = given_store();
    let store = &given.store;
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                for n in 0..5 {
                    store.create_user(&create(t * 100 + n)).unwrap();
                }
            });
        }
    });
    assert_eq!(store.head_position().unwrap(), 20);
    assert!(store.verify().unwrap().is_sound());
}

/// Closes the store and edits its file with redb directly.
fn tamper(given: Given, edit: impl FnOnce(&redb::WriteTransaction)) -> Given {
    let Given { store, clock, dir } = given;
    drop(store);
    let db = redb::Database::open(dir.path().join("store.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    edit(&txn);
    txn.commit().unwrap();
    drop(db);
    let store = Store::builder()
        .clock(clock.clone())
        .open(dir.path().join("store.redb"))
        .unwrap();
    Given { store, clock, dir }
}

#[test]
fn a_damaged_envelope_is_found_by_verify_and_never_read_as_data() {
    let given = given_store();
    for n in 0..3 {
        given.store.create_user(&create(n)).unwrap();
    }

    let given = tamper(given, |txn| {
        let mut events = txn.open_table(EVENTS).unwrap();
        let mut bytes = events
            .get(&2u64.to_be_bytes()[..])
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        bytes[10] ^= 0x01;
        events
            .insert(&2u64.to_be_bytes()[..], bytes.as_slice())
            .unwrap();
    });

    let report = given.store.verify().unwrap();
    assert_eq!(report.findings.len(), 1, "{report:?}");
    assert!(report.findings[0].contains("position 2: envelope checksum mismatch"));
    assert!(matches!(
        given.store.events(1, 10),
        Err(StoreError::Corrupt { position: 2, .. })
    ));
    assert!(matches!(
        given.store.user(user_id(1).parse().unwrap()),
        Err(StoreError::Corrupt { position: 2, .. })
    ));
    assert!(
        given
            .store
            .user(user_id(0).parse().unwrap())
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_missing_or_extra_index_row_is_found_by_verify() {
    let given = given_store();
    given.store.create_user(&create(1)).unwrap();

    let given = tamper(given, |txn| {
        let mut emails = txn.open_table(EMAILS).unwrap();
        emails.remove(&b"user1@example.com"[..]).unwrap();
        emails
            .insert(
                &b"ghost@example.com"[..],
                &Uuid::from_u128(5).as_bytes()[..],
            )
            .unwrap();
    });

    let findings = given.store.verify().unwrap().findings;
    assert_eq!(findings.len(), 2, "{findings:?}");
    assert!(findings[0].contains("email row user1@example.com does not point at"));
    assert!(findings[1].contains("email row ghost@example.com points at"));
}

#[test]
fn a_store_from_a_newer_format_is_refused() {
    let given = given_store();
    let Given { store, dir, .. } = given;
    drop(store);
    let db = redb::Database::open(dir.path().join("store.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(META)
        .unwrap()
        .insert(&b"format"[..], 99u32.to_le_bytes().as_slice())
        .unwrap();
    txn.commit().unwrap();
    drop(db);

    let reopened = Store::open(dir.path().join("store.redb"));

    assert!(matches!(
        reopened,
        Err(StoreError::UnsupportedFormat {
            found: 99,
            supported: 1
        })
    ));
    let db = redb::Database::open(dir.path().join("store.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let events = txn.open_table(EVENTS).unwrap();
    assert!(
        events.get(&1u64.to_be_bytes()[..]).unwrap().is_none(),
        "refusal must not write"
    );
}

#[test]
fn a_file_left_by_a_creation_cut_short_is_created_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("half.redb");
    // What redb leaves when power fails before it writes its magic number.
    std::fs::write(&path, vec![0u8; 4096]).unwrap();

    let store = Store::open(&path).unwrap();

    assert!(matches!(
        store.create_user(&create(1)),
        Ok(Outcome::Created(_))
    ));
    assert!(store.verify().unwrap().is_sound());
}

#[test]
fn a_file_that_is_not_a_store_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let content = b"\0\0\0\0\0\0\0\0 a zero start, then someone's text".to_vec();
    std::fs::write(&path, &content).unwrap();

    let opened = Store::open(&path);

    assert!(matches!(opened, Err(StoreError::Storage(_))), "{opened:?}");
    assert_eq!(std::fs::read(&path).unwrap(), content);
}

#[test]
fn a_snapshot_between_commands_restores_every_command_before_it() {
    let backend = spkey_store::MemoryBackend::new();
    let store = Store::builder().backend(backend.clone()).unwrap();
    let mut snapshots = Vec::new();
    for n in 0..4 {
        store.create_user(&create(n)).unwrap();
        snapshots.push((n + 1, backend.snapshot()));
    }

    for (count, bytes) in snapshots {
        let restored = Store::builder()
            .backend(spkey_store::MemoryBackend::from_bytes(bytes))
            .unwrap();
        assert_eq!(restored.head_position().unwrap(), count as u64);
        assert_eq!(restored.store_id(), store.store_id());
        assert!(restored.verify().unwrap().is_sound());
    }
}

#[test]
fn a_read_after_a_commit_sees_it_though_an_earlier_read_was_cached() {
    let given = given_store();
    let id: Uuid = user_id(1).parse().unwrap();
    // These reads leave the shared snapshot in place…
    assert_eq!(given.store.user(id).unwrap(), None);
    assert_eq!(given.store.head_position().unwrap(), 0);

    given.store.create_user(&create(1)).unwrap();

    // …and the commit must have retired it.
    assert!(given.store.user(id).unwrap().is_some());
    assert_eq!(given.store.head_position().unwrap(), 1);
    assert_eq!(given.store.events(1, 10).unwrap().len(), 1);
    assert_eq!(
        given.store.user_id_by_email("user1@example.com").unwrap(),
        Some(id)
    );
}

#[test]
fn event_ids_increase_even_within_one_millisecond() {
    // The fixed clock puts every event in the same millisecond.
    let given = given_store();
    for n in 0..50 {
        given.store.create_user(&create(n)).unwrap();
    }
    let ids: Vec<Uuid> = given
        .store
        .events(1, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(ids.len(), 50);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    for id in &ids {
        let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
        assert_eq!(secs as i64 * 1000 + (nanos / 1_000_000) as i64, NOW_MS);
    }
}

#[test]
fn verify_holds_own_creations_to_their_event_id_rows_once_listed() {
    const EVENT_IDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("event_ids");
    let given = given_store();
    given.store.create_user(&create(1)).unwrap();
    let first = given.store.events(1, 1).unwrap().remove(0);
    // pending() lists creation 1 (indexing it by id); creation 2 is not yet.
    assert_eq!(given.store.pending().unwrap().len(), 1);
    given.store.create_user(&create(2)).unwrap();
    let second = given.store.events(2, 1).unwrap().remove(0);
    assert!(given.store.verify().unwrap().is_sound());

    let given = tamper(given, |txn| {
        let mut ids = txn.open_table(EVENT_IDS).unwrap();
        assert!(
            ids.remove(&first.event_id.as_bytes()[..])
                .unwrap()
                .is_some()
        );
        ids.insert(&second.event_id.as_bytes()[..], &2u64.to_be_bytes()[..])
            .unwrap();
    });

    let findings = given.store.verify().unwrap().findings;
    assert_eq!(findings.len(), 2, "{findings:?}");
    assert!(findings[0].contains("position 1: event id row does not point"));
    assert!(findings[1].contains("position 2: own event"));
}
