//! Golden fixtures freeze the formats: envelope bytes of every released
//! format, and a store file written by a released version, must still decode
//! to exactly what they held. `SPKEY_BLESS=1` rewrites them — only ever for a
//! new format version, never to make a failing test pass.

use std::path::PathBuf;

use spkey_store::contract::event_json;
use spkey_store::{
    CreateUser, Event, Field, FieldError, ManualClock, RecordedEvent, Refusal, Store, UserCreated,
    UserUpdated, codec,
};
use uuid::Uuid;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn blessing() -> bool {
    std::env::var_os("SPKEY_BLESS").is_some()
}

fn envelope_cases() -> Vec<(&'static str, RecordedEvent)> {
    let full = RecordedEvent {
        event_id: Uuid::parse_str("019ac2a1-5f3b-7c10-8d2e-3f4a5b6c7d8e").unwrap(),
        version: 1,
        position: 42,
        recorded_at_ms: 1_795_734_000_123,
        origin: Uuid::parse_str("7d444840-9dc0-11d1-b245-5ffdce74fad2").unwrap(),
        event: Event::UserCreated(UserCreated {
            user_id: Uuid::parse_str("550e8400-e29b-41d4-a716-446655440000").unwrap(),
            email: "Zoë.Ångström@example.com".into(),
            first_name: Some("Zoë".into()),
            last_name: Some("Ångström".into()),
            phone_number: Some("+46 (8) 123-456.78".into()),
        }),
    };
    let minimal = RecordedEvent {
        event_id: Uuid::parse_str("019ac2a1-5f3b-7c10-8d2e-000000000001").unwrap(),
        version: 1,
        position: 1,
        recorded_at_ms: 0,
        origin: Uuid::from_u128(1),
        event: Event::UserCreated(UserCreated {
            user_id: Uuid::from_u128(2),
            email: "a@b.co".into(),
            first_name: None,
            last_name: None,
            phone_number: None,
        }),
    };
    let user = Uuid::parse_str("550e8400-e29b-41d4-a716-446655440000").unwrap();
    let updated = RecordedEvent {
        event_id: Uuid::parse_str("019ac2a1-5f3b-7c10-8d2e-3f4a5b6c7d8f").unwrap(),
        version: 2,
        position: 43,
        recorded_at_ms: 1_795_734_000_456,
        origin: Uuid::parse_str("7d444840-9dc0-11d1-b245-5ffdce74fad2").unwrap(),
        event: Event::UserUpdated(UserUpdated {
            user_id: user,
            email: Some("zoe@example.com".into()),
            first_name: None,
            last_name: Some(None),
            phone_number: Some(Some("+46 8 765 43 21".into())),
        }),
    };
    let update_rejected = RecordedEvent {
        event_id: Uuid::parse_str("019ac2a1-5f3b-7c10-8d2e-3f4a5b6c7d90").unwrap(),
        version: 3,
        position: 44,
        recorded_at_ms: 1_795_734_000_789,
        origin: Uuid::parse_str("7d444840-9dc0-11d1-b245-5ffdce74fad2").unwrap(),
        event: Event::UserUpdateRejected(Refusal {
            user_id: user,
            rejected_event_id: updated.event_id,
            code: 404,
            details: vec![FieldError::no_such_user()],
        }),
    };
    let erased = RecordedEvent {
        event_id: Uuid::parse_str("019ac2a1-5f3b-7c10-8d2e-3f4a5b6c7d91").unwrap(),
        version: 4,
        position: 45,
        recorded_at_ms: 1_795_734_001_000,
        origin: Uuid::parse_str("7d444840-9dc0-11d1-b245-5ffdce74fad2").unwrap(),
        event: Event::UserErased(user),
    };
    let erasure_rejected = RecordedEvent {
        event_id: Uuid::parse_str("019ac2a1-5f3b-7c10-8d2e-3f4a5b6c7d92").unwrap(),
        version: 5,
        position: 46,
        recorded_at_ms: 1_795_734_001_001,
        origin: Uuid::parse_str("7d444840-9dc0-11d1-b245-5ffdce74fad2").unwrap(),
        event: Event::UserErasureRejected(Refusal {
            user_id: user,
            rejected_event_id: erased.event_id,
            code: 403,
            details: vec![FieldError::not_yours(Field::UserId)],
        }),
    };
    let redacted = RecordedEvent {
        event: full.event.redacted().unwrap(),
        ..full.clone()
    };
    vec![
        ("envelope-v1-user-created-full.bin", full),
        ("envelope-v1-user-created-minimal.bin", minimal),
        ("envelope-v1-user-updated.bin", updated),
        ("envelope-v1-user-update-rejected.bin", update_rejected),
        ("envelope-v1-user-erased.bin", erased),
        ("envelope-v1-user-erasure-rejected.bin", erasure_rejected),
        ("envelope-v1-redacted.bin", redacted),
    ]
}

#[test]
fn envelope_v1_bytes_are_frozen() {
    for (name, event) in envelope_cases() {
        if blessing() {
            std::fs::write(fixture(name), codec::encode(&event)).unwrap();
        }
        let golden = std::fs::read(fixture(name)).unwrap();

        assert_eq!(codec::encode(&event), golden, "{name}: encoding drifted");
        assert_eq!(
            codec::decode(&golden),
            Ok(event),
            "{name}: decoding drifted"
        );
    }
}

const STORE_V1: &str = "store-v1.redb";
const STORE_V1_EVENTS: &str = "store-v1.events.jsonl";
const STORE_V2: &str = "store-v2.redb";
const STORE_V2_EVENTS: &str = "store-v2.events.jsonl";
const STORE_V3: &str = "store-v3.redb";
const STORE_V3_EVENTS: &str = "store-v3.events.jsonl";

/// The meta `format` row of the store file at `path`, read with redb without
/// changing a byte.
fn format_of(path: &std::path::Path) -> u32 {
    use redb::{ReadableDatabase, TableDefinition};
    const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");
    // Read-only: a writable open commits on close and would change the
    // frozen fixture it reads.
    let db = redb::ReadOnlyDatabase::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    let bytes = meta.get(&b"format"[..]).unwrap().unwrap().value().to_vec();
    u32::from_le_bytes(bytes.try_into().unwrap())
}

/// Writes the current format's fixture: users with non-ASCII emails, whose
/// index keys are what format 2 changed.
/// Format 3 (written now): users, an update, and an update refused by a
/// hub's reply (its compensation).
fn write_store_v3() {
    let path = fixture(STORE_V3);
    let _ = std::fs::remove_file(&path);
    let clock = ManualClock::new(1_795_734_000_000);
    let store = Store::builder().clock(clock.clone()).open(&path).unwrap();
    for (n, email) in [
        (1u128, "ñandú@bücher.de"),
        (2, "Straße@example.com"),
        (3, "plain@example.com"),
    ] {
        let id = Uuid::from_u128(0xabd0 + n).to_string();
        store
            .create_user(&CreateUser::new(id, email).first_name(format!("User {n}")))
            .unwrap();
        clock.advance(1_000);
    }
    let renamed = spkey_store::UpdateUser::new(Uuid::from_u128(0xabd3).to_string())
        .email("renamed@example.com")
        .clear(spkey_store::Field::FirstName);
    store.update_user(&renamed).unwrap();
    // A hub where two emails are someone else's: a creation and an update
    // with them are refused, and compensated here.
    let hub = Store::builder().clock(clock.clone()).in_memory().unwrap();
    for (n, email) in [(8u128, "taken@example.com"), (9, "taken2@example.com")] {
        hub.create_user(&CreateUser::new(
            Uuid::from_u128(0xabd0 + n).to_string(),
            email,
        ))
        .unwrap();
    }
    store
        .create_user(&CreateUser::new(
            Uuid::from_u128(0xabd4).to_string(),
            "taken@example.com",
        ))
        .unwrap();
    let moved = spkey_store::UpdateUser::new(Uuid::from_u128(0xabd2).to_string())
        .email("taken2@example.com");
    store.update_user(&moved).unwrap();
    clock.advance(1_000);
    store
        .apply_reply(&hub.accept(&store.push().unwrap()).unwrap())
        .unwrap();
    write_events(&store, STORE_V3_EVENTS);
    // Closed, the store file is whole alone: the fixture is that file.
    store.close().unwrap();
    for side in ["-journal", "-checksums"] {
        std::fs::remove_file(format!("{}{side}", path.display())).unwrap();
    }
}

fn write_events(store: &Store, name: &str) {
    let lines: Vec<String> = store
        .events(1, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| serde_json::to_string(&event_json(e)).unwrap() + "\n")
        .collect();
    std::fs::write(fixture(name), lines.concat()).unwrap();
}

/// Opens a copy of a fixture store and checks its events against the
/// fixture's JSON lines.
fn open_copy(store: &str, events: &str) -> (Store, tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.redb");
    std::fs::copy(fixture(store), &copy).unwrap();
    let expected = std::fs::read_to_string(fixture(events)).unwrap();
    let opened = Store::open(&copy).unwrap();
    let lines: Vec<String> = opened
        .events(1, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| serde_json::to_string(&event_json(e)).unwrap())
        .collect();
    assert_eq!(lines, expected.lines().collect::<Vec<_>>(), "{store}");
    (opened, dir, copy)
}

#[test]
fn a_store_written_by_format_v1_is_migrated_and_still_reads_and_accepts_writes() {
    assert_eq!(
        format_of(&fixture(STORE_V1)),
        1,
        "the fixture is frozen at format 1"
    );

    let (store, _dir, copy) = open_copy(STORE_V1, STORE_V1_EVENTS);

    assert!(store.verify().unwrap().is_sound());
    // The three creations were never pushed: each is pending exactly once.
    let pending: Vec<u64> = store
        .pending()
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(pending, [1, 2, 3]);
    // The email index answers under the new rule.
    assert_eq!(
        store.user_id_by_email("USER2@Example.com").unwrap(),
        Some(Uuid::from_u128(0xabc2))
    );
    let taken = CreateUser::new(Uuid::from_u128(0xabce).to_string(), "User1@EXAMPLE.com");
    assert!(matches!(
        store.create_user(&taken).unwrap(),
        spkey_store::Outcome::Rejected(_)
    ));
    let next = CreateUser::new(Uuid::from_u128(0xabcd).to_string(), "new@example.com");
    assert_eq!(
        store.create_user(&next).unwrap().event().unwrap().position,
        4
    );
    drop(store);
    assert_eq!(
        format_of(&copy),
        spkey_store::STORE_FORMAT,
        "migrated on open"
    );
}

#[test]
fn a_store_written_by_format_v2_is_migrated_and_finds_its_emails() {
    assert_eq!(
        format_of(&fixture(STORE_V2)),
        2,
        "the fixture is frozen at format 2"
    );
    let (store, _dir, copy) = open_copy(STORE_V2, STORE_V2_EVENTS);

    assert!(store.verify().unwrap().is_sound());
    for (email, n) in [
        ("ÑANDÚ@xn--bcher-kva.de", 1u128),
        ("STRASSE@example.com", 2),
        ("Plain@Example.com", 3),
    ] {
        assert_eq!(
            store.user_id_by_email(email).unwrap(),
            Some(Uuid::from_u128(0xabd0 + n)),
            "{email}"
        );
    }
    drop(store);
    assert_eq!(
        format_of(&copy),
        spkey_store::STORE_FORMAT,
        "migrated on open"
    );
}

#[test]
fn a_store_written_by_format_v3_still_reads_its_users_and_emails() {
    if blessing() {
        write_store_v3();
    }
    assert_eq!(
        format_of(&fixture(STORE_V3)),
        3,
        "the fixture is frozen at format 3"
    );
    let (store, _dir, _) = open_copy(STORE_V3, STORE_V3_EVENTS);

    assert!(store.verify().unwrap().is_sound());
    let renamed = store.user(Uuid::from_u128(0xabd3)).unwrap().unwrap();
    assert_eq!(
        (
            renamed.profile.email.as_str(),
            renamed.profile.first_name.as_deref(),
            renamed.version
        ),
        ("renamed@example.com", None, 2)
    );
    assert_eq!(store.user_id_by_email("plain@example.com").unwrap(), None);
    assert_eq!(
        store.user_id_by_email("RENAMED@example.com").unwrap(),
        Some(Uuid::from_u128(0xabd3))
    );
    let rejections = store.rejections().unwrap();
    let refused: Vec<(&str, u16)> = rejections
        .iter()
        .map(|e| (e.event.event_type(), e.event.refusal().unwrap().code))
        .collect();
    assert_eq!(
        refused,
        [("UserCreationRejected", 409), ("UserUpdateRejected", 409)]
    );
    assert!(store.pending().unwrap().is_empty());
    // The refused update is void: user 2 keeps its email.
    assert_eq!(
        store.user_id_by_email("straße@example.com").unwrap(),
        Some(Uuid::from_u128(0xabd2))
    );
}

/// Sync batches: format 4 (written now) frozen byte for byte — a pull of
/// one erased user's events (what erasure left of its creation, then the
/// erasure) with its watermark, and a reply with a 404 — and the formats
/// older devices and hubs wrote: their pulls and replies still read, their
/// pushes refused by a hub naming the format, since the device behind one
/// could not read the reply.
#[test]
fn batch_formats_are_frozen_and_older_ones_are_read_or_refused_by_name() {
    use spkey_store::{
        BatchError, FieldError, Rejection, Scope, StoreError, pull_batch, reply_batch,
    };
    let hub_id = Uuid::parse_str("7d444840-9dc0-11d1-b245-5ffdce74fad2").unwrap();
    let cases = envelope_cases();
    let (updated, erased, redacted) = (&cases[2].1, &cases[4].1, &cases[6].1);
    let user = redacted.aggregate_id();
    let erased = RecordedEvent {
        version: 2,
        ..erased.clone()
    };
    let pull = pull_batch(
        hub_id,
        Scope::User(user),
        57,
        &[codec::encode(redacted), codec::encode(&erased)],
    );
    let reply = reply_batch(
        hub_id,
        &[(
            erased.event_id,
            Err(Rejection::NotFound(vec![FieldError::no_such_user()])),
        )],
    );
    for (name, bytes) in [
        ("batch-v4-pull-erased.bin", &pull),
        ("batch-v4-reply-404.bin", &reply),
    ] {
        if blessing() {
            std::fs::write(fixture(name), bytes).unwrap();
        }
        assert_eq!(&std::fs::read(fixture(name)).unwrap(), bytes, "{name}");
    }
    let device = Store::in_memory().unwrap();
    let pulled = device.import(&pull).unwrap();
    assert_eq!((pulled.imported, pulled.cursor), (2, 57));
    let state = device.user(user).unwrap().unwrap();
    assert!(state.is_erased());
    assert_eq!((state.profile.email.as_str(), state.version), ("", 2));

    // Format 3: a pull of one user's events, an update among them.
    let old_pull = std::fs::read(fixture("batch-v3-pull-user.bin")).unwrap();
    let device = Store::in_memory().unwrap();
    let pulled = device.import(&old_pull).unwrap();
    assert_eq!((pulled.imported, pulled.cursor), (2, 57));
    let state = device.user(user).unwrap().unwrap();
    assert_eq!(state.profile.email, "zoe@example.com");
    assert_eq!(state.profile.last_name, None);
    assert_eq!(updated.version, 2);
    let old_push = std::fs::read(fixture("batch-v2-push.bin")).unwrap();
    let mut v3_push = old_push.clone();
    v3_push[4] = 3;
    let len = v3_push.len();
    let sum = crc32fast::hash(&v3_push[..len - 4]);
    v3_push[len - 4..].copy_from_slice(&sum.to_le_bytes());
    assert!(matches!(
        Store::in_memory().unwrap().accept(&v3_push),
        Err(StoreError::Batch(BatchError::UnsupportedVersion(3)))
    ));

    // Format 2: a pull of one user's events and a reply with a 403.
    let old_pull = std::fs::read(fixture("batch-v2-pull-user.bin")).unwrap();
    let pulled = Store::in_memory().unwrap().import(&old_pull).unwrap();
    assert_eq!((pulled.imported, pulled.cursor), (1, 57));
    let old_reply = std::fs::read(fixture("batch-v2-reply-403.bin")).unwrap();
    assert!(
        matches!(
            Store::in_memory().unwrap().apply_reply(&old_reply),
            Err(StoreError::Batch(BatchError::BadEvent { .. }))
        ),
        "a reply naming an event this store never pushed is refused, not misread"
    );
    let hub = Store::in_memory().unwrap();
    let old_push = std::fs::read(fixture("batch-v2-push.bin")).unwrap();
    assert!(matches!(
        hub.accept(&old_push),
        Err(StoreError::Batch(BatchError::UnsupportedVersion(2)))
    ));
    let old_push = std::fs::read(fixture("batch-v1-push.bin")).unwrap();
    assert!(matches!(
        hub.accept(&old_push),
        Err(StoreError::Batch(BatchError::UnsupportedVersion(1)))
    ));
    let old_pull = std::fs::read(fixture("batch-v1-pull.bin")).unwrap();
    let pulled = Store::in_memory().unwrap().import(&old_pull).unwrap();
    assert_eq!((pulled.imported, pulled.cursor), (1, 1));
}
