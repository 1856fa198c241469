//! Defects a hostile run found (release build, CLI and library), each with
//! the test that failed before its fix. Each test opens with what broke,
//! why, and what the fix guarantees.

use std::path::Path;
use std::process::{Command, Output};

use spkey_store::{
    BatchError, CreateUser, Event, Finding, ManualClock, Outcome, RecordedEvent, Store, StoreError,
    UserCreated, codec,
};
use uuid::Uuid;

use crate::support::spkey_on as spkey;

use crate::alloc::peak_bytes_during;
use crate::support::NOW_MS;

use crate::support::memory_store as store;

fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x4a00 + n)
}

fn create(store: &Store, n: u128, email: &str) -> Outcome {
    store
        .create_user(&CreateUser::new(id(n).to_string(), email))
        .unwrap()
}

fn sync(device: &Store, hub: &Store) {
    device
        .apply_reply(&hub.accept(&device.push().unwrap()).unwrap())
        .unwrap();
    device
        .import(
            &hub.export(device.pull_cursor().unwrap(), usize::MAX)
                .unwrap(),
        )
        .unwrap();
}

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Seals a postcard body as a batch of `kind` (1 push, 2 reply, 3 pull)
/// in the current format exactly as the library frames one, so tests can
/// send what no store would.
fn seal(kind: u8, body: &[u8]) -> Vec<u8> {
    seal_as(spkey_store::BATCH_FORMAT, kind, body)
}

/// As [`seal`], in batch format `version`.
fn seal_as(version: u8, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![b'S', b'P', b'K', b'S', version, kind];
    bytes.extend_from_slice(body);
    let sum = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&sum.to_le_bytes());
    bytes
}

/// A push (or format 1 pull) body: the sender and the events.
fn events_body(sender: Uuid, events: &[Vec<u8>]) -> Vec<u8> {
    let mut body = sender.as_bytes().to_vec();
    push_events(events, &mut body);
    body
}

/// A format 2 pull body: the sender, whose events (`None`: everyone's), the
/// watermark and the events.
fn pull_body(sender: Uuid, scope: Option<Uuid>, complete_to: u64, events: &[Vec<u8>]) -> Vec<u8> {
    let mut body = sender.as_bytes().to_vec();
    match scope {
        None => body.push(0),
        Some(user) => {
            body.push(1);
            body.extend_from_slice(user.as_bytes());
        }
    }
    varint(complete_to, &mut body);
    push_events(events, &mut body);
    body
}

fn push_events(events: &[Vec<u8>], body: &mut Vec<u8>) {
    varint(events.len() as u64, body);
    for event in events {
        varint(event.len() as u64, body);
        body.extend_from_slice(event);
    }
}

fn user_created(n: u128, position: u64, origin: Uuid) -> RecordedEvent {
    RecordedEvent {
        event_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + n),
        version: 1,
        position,
        recorded_at_ms: NOW_MS,
        origin,
        event: Event::UserCreated(UserCreated {
            user_id: id(n),
            email: format!("u{n}@example.com"),
            first_name: None,
            last_name: None,
            phone_number: None,
        }),
    }
}

/// Defect 1. Racing first opens of a new path: `StoreBuilder::open` reset the
/// file after any redb error, "already open" included, so the loser of the
/// race truncated the file the winner was creating — later commands failed
/// with "DB corrupted", and with the winner's fsync delayed both answered
/// 201 at position 1 and the winner's user was lost. Creation is now atomic
/// (built under a temporary name, linked into place only if the path is
/// free) and nothing is ever reset: every racer ends up on one whole store,
/// or is told the store is locked, and every 201 is kept.
#[test]
fn racing_first_opens_keep_every_acknowledged_user_and_the_store_whole() {
    for round in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("p.redb");
        let racers: Vec<_> = (0..8u128)
            .map(|n| {
                let user = Uuid::from_u128((round << 8) + n + 1).to_string();
                let body = format!(r#"{{"userId":"{user}","email":"{user}@x.io"}}"#);
                let child = Command::new(env!("CARGO_BIN_EXE_spkey"))
                    .arg("--db")
                    .arg(&db)
                    .args(["create-user", &user, &body])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                (user, child)
            })
            .collect();
        let mut created = Vec::new();
        for (user, child) in racers {
            let output = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            match output.status.code() {
                Some(0) => created.push(user),
                Some(2) => assert!(stderr.contains("locked"), "round {round}: {stderr}"),
                other => panic!("round {round}: exit {other:?}: {stderr}"),
            }
        }

        let store = Store::open(&db).unwrap();
        assert!(store.verify().unwrap().is_sound(), "round {round}");
        assert!(
            !created.is_empty(),
            "round {round}: nobody created the store"
        );
        for user in &created {
            assert!(
                store.user(user.parse().unwrap()).unwrap().is_some(),
                "round {round}: acknowledged user {user} lost"
            );
        }
        assert_eq!(store.head_position().unwrap(), created.len() as u64);
    }
}

/// Defect 3. A user the hub refused may be created again on the device; a
/// replay of that second creation answered with the first, refused one
/// (version 1, its event id, the old email), because the replay took the
/// stream's first event. The writer now answers with the user's current
/// creation.
#[test]
fn the_replay_of_a_second_creation_answers_that_creation_not_the_refused_one() {
    let (device, hub) = (store(), store());
    create(&hub, 1, "taken@example.com");
    create(&device, 2, "taken@example.com");
    sync(&device, &hub);
    assert!(device.user(id(2)).unwrap().unwrap().is_rejected());

    let again = CreateUser::new(id(2).to_string(), "mine@example.com");
    let Outcome::Recorded(second) = device.create_user(&again).unwrap() else {
        panic!("a refused user may be created again");
    };
    let replay = device.create_user(&again).unwrap();

    assert_eq!(second.version, 3);
    assert_eq!(replay, Outcome::Replayed(second));
}

/// Defect 4. The 100,000-item cap was checked after the whole batch was
/// decoded: a 64 MiB push of 67 M empty entries peaked at 1.09 GB before it
/// was refused, and a reply's rejection `details` were not capped at all
/// (16.7 M details were applied and stored). Counts are now bounded while
/// decoding, before anything is allocated for them, and a rejection carries
/// at most a handful of details.
#[test]
fn hostile_counts_are_refused_while_decoding_in_memory_near_the_batch_size() {
    let device = store();
    create(&device, 1, "a@example.com");
    let hub = store();
    let pushed = device.push().unwrap();
    // A push of 64 M empty entries: each is one byte on the wire and 16 in
    // a decoded vector.
    let entries = 64 * 1024 * 1024 - 64;
    let mut body = device.store_id().as_bytes().to_vec();
    varint(entries as u64, &mut body);
    body.resize(body.len() + entries, 0);
    let push = seal(1, &body);

    let (refused, peak) = peak_bytes_during(|| hub.accept(&push));

    assert!(
        matches!(&refused, Err(StoreError::Batch(BatchError::Malformed(m))) if m.contains("over the limit")),
        "{refused:?}"
    );
    assert!(peak < 4 * 1024 * 1024, "decoding peaked at {peak} bytes");

    // A reply rejecting the real pending event with a million details.
    let event_id = device.pending().unwrap()[0].event_id;
    let mut body = hub.store_id().as_bytes().to_vec();
    varint(1, &mut body);
    body.extend_from_slice(event_id.as_bytes());
    body.push(1); // OutcomeV1::Rejected
    varint(409, &mut body);
    let details = 1_000_000;
    varint(details, &mut body);
    for _ in 0..details {
        body.extend_from_slice(&[5, b'e', b'm', b'a', b'i', b'l', 1, b'x']);
    }
    let reply = seal(2, &body);

    let (refused, peak) = peak_bytes_during(|| device.apply_reply(&reply));

    assert!(matches!(refused, Err(StoreError::Batch(_))), "{refused:?}");
    assert!(peak < 4 * 1024 * 1024, "decoding peaked at {peak} bytes");
    assert_eq!(device.pending().unwrap().len(), 1, "nothing was applied");
    assert!(device.rejections().unwrap().is_empty());
    // The genuine batch still goes through.
    hub.accept(&pushed).unwrap();
}

/// Defect 5, first half. A push whose sender was the hub's own id (it is in
/// every reply) was accepted; `verify` then failed ("event id row does not
/// point at event") and the same push replayed answered 409 instead of its
/// first reply. A store now refuses every batch it sent itself.
#[test]
fn a_store_refuses_batches_carrying_its_own_id() {
    let hub = store();
    create(&hub, 1, "a@example.com");
    let own_push = hub.push().unwrap();
    let own_export = hub.export(0, 10).unwrap();

    assert!(matches!(
        hub.accept(&own_push),
        Err(StoreError::Batch(BatchError::FromThisStore))
    ));
    assert!(matches!(
        hub.import(&own_export),
        Err(StoreError::Batch(BatchError::FromThisStore))
    ));
    assert_eq!(hub.head_position().unwrap(), 1);
    assert!(hub.verify().unwrap().is_sound());
}

/// Defect 5, second half. A device restored from a backup copy taken before
/// a user it created reached the hub then pulls that user back: an event
/// with the device's own id as origin, which the device does not have. It
/// was appended without its event-id row, and `verify` failed. Every event
/// a sync step appends is now indexed by id, whatever its origin, and the
/// restored device agrees with the hub.
#[test]
fn a_device_restored_from_a_backup_pulls_its_own_lost_events_and_stays_sound() {
    let dir = tempfile::tempdir().unwrap();
    let (path, backup) = (dir.path().join("dev"), dir.path().join("dev.bak"));
    let hub = store();
    let open = |p: &Path| {
        Store::builder()
            .clock(ManualClock::new(NOW_MS))
            .open(p)
            .unwrap()
    };
    drop(open(&path));
    std::fs::copy(&path, &backup).unwrap();
    let device = open(&path);
    create(&device, 1, "a@example.com");
    sync(&device, &hub);
    drop(device);
    std::fs::copy(&backup, &path).unwrap();

    let device = open(&path);
    let summary = device
        .import(
            &hub.export(device.pull_cursor().unwrap(), usize::MAX)
                .unwrap(),
        )
        .unwrap();

    assert_eq!(summary.imported, 1);
    let report = device.verify().unwrap();
    assert!(report.is_sound(), "{:?}", report.findings);
    assert_eq!(
        device.user(id(1)).unwrap().unwrap().profile,
        hub.user(id(1)).unwrap().unwrap().profile
    );
    assert!(device.pending().unwrap().is_empty());
    // A second sync changes nothing on either side.
    let hub_head = hub.head_position().unwrap();
    sync(&device, &hub);
    assert_eq!(hub.head_position().unwrap(), hub_head);
    assert!(device.verify().unwrap().is_sound());
}

/// Defect 6. Fields of sync batches were trusted: a `recorded_at_ms` of
/// −2^62 was stored and shown as a number instead of a time; a reply's
/// rejection code of 201 was stored and shown as a 500; a pull position of
/// 2^64−1 stalled the cursor so later pulls imported nothing, and positions
/// going backwards were skipped silently. Every field of an untrusted batch
/// is now checked like a wire body, and a pull must continue the hub's
/// gap-free positions from the device's cursor.
#[test]
fn every_field_of_an_untrusted_batch_is_checked() {
    let (device, hub) = (store(), store());
    let sender = Uuid::from_u128(0xd1);
    let mut ancient = user_created(1, 1, sender);
    ancient.recorded_at_ms = -(1 << 62);
    let mut nil_id = user_created(2, 1, sender);
    nil_id.event_id = Uuid::nil();
    let mut version_0 = user_created(3, 1, sender);
    version_0.version = 0;
    for (what, event) in [
        ("time", ancient),
        ("nil id", nil_id),
        ("version", version_0),
    ] {
        let push = seal(1, &events_body(sender, &[codec::encode(&event)]));
        let refused = hub.accept(&push);
        assert!(
            matches!(
                refused,
                Err(StoreError::Batch(BatchError::BadEvent { index: 0, .. }))
            ),
            "{what}: {refused:?}"
        );
    }
    assert_eq!(hub.head_position().unwrap(), 0);

    // A reply rejecting with 201, or with a field the API does not have.
    create(&device, 9, "d@example.com");
    let event_id = device.pending().unwrap()[0].event_id;
    for (code, field) in [(201u64, "email"), (409, "password")] {
        let mut body = hub.store_id().as_bytes().to_vec();
        varint(1, &mut body);
        body.extend_from_slice(event_id.as_bytes());
        body.push(1);
        varint(code, &mut body);
        varint(1, &mut body);
        varint(field.len() as u64, &mut body);
        body.extend_from_slice(field.as_bytes());
        varint(2, &mut body);
        body.extend_from_slice(b"no");
        let refused = device.apply_reply(&seal(2, &body));
        assert!(
            matches!(refused, Err(StoreError::Batch(_))),
            "{code} {field}: {refused:?}"
        );
    }
    assert_eq!(device.pending().unwrap().len(), 1);
    assert!(device.rejections().unwrap().is_empty());

    // Format 1 pulls (still read): a position far past the cursor, and
    // positions going backwards.
    let hub_id = Uuid::from_u128(0x4b);
    let v1 = |events: &[RecordedEvent]| {
        let events: Vec<_> = events.iter().map(codec::encode).collect();
        seal_as(1, 3, &events_body(hub_id, &events))
    };
    let far = v1(&[user_created(4, u64::MAX, sender)]);
    let backwards = v1(&[user_created(5, 2, sender), user_created(6, 1, sender)]);
    for (what, pull) in [("far", far), ("backwards", backwards)] {
        let refused = device.import(&pull);
        assert!(
            matches!(refused, Err(StoreError::Batch(BatchError::BadEvent { .. }))),
            "{what}: {refused:?}"
        );
    }
    assert_eq!(device.pull_cursor().unwrap(), 0);
    assert_eq!(
        device
            .import(&v1(&[user_created(7, 1, sender)]))
            .unwrap()
            .cursor,
        1
    );

    // Format 2 pulls: each way a batch could lose an event or carry
    // another user's is refused whole, and the cursor stays.
    let v2 = |scope: Option<Uuid>, to: u64, events: &[RecordedEvent]| {
        let events: Vec<_> = events.iter().map(codec::encode).collect();
        seal(3, &pull_body(hub_id, scope, to, &events))
    };
    let own = id(20);
    let mine = |n: u128, position: u64| {
        let mut event = user_created(n, position, sender);
        let Event::UserCreated(created) = &mut event.event else {
            unreachable!()
        };
        created.user_id = own;
        event.version = n as u64 - 19;
        event
    };
    for (what, pull) in [
        (
            "another user's event in a user's batch",
            v2(Some(own), 9, &[mine(20, 3), user_created(21, 4, sender)]),
        ),
        (
            "an event past the watermark",
            v2(Some(own), 3, &[mine(20, 4)]),
        ),
        (
            "positions going backwards in a user's batch",
            v2(Some(own), 9, &[mine(20, 5), mine(21, 3)]),
        ),
        (
            "a gap in the organization's batch",
            v2(
                None,
                4,
                &[user_created(22, 2, sender), user_created(23, 4, sender)],
            ),
        ),
        (
            "a watermark past the organization's last event",
            v2(None, 5, &[user_created(24, 2, sender)]),
        ),
    ] {
        let refused = device.import(&pull);
        assert!(
            matches!(refused, Err(StoreError::Batch(BatchError::BadEvent { .. }))),
            "{what}: {refused:?}"
        );
        assert_eq!(device.pull_cursor().unwrap(), 1, "{what}");
    }
    // A user's events lie between others' positions: the cursor moves to
    // the watermark, with or without events.
    let imported = device.import(&v2(Some(own), 9, &[mine(20, 3)])).unwrap();
    assert_eq!((imported.imported, imported.cursor), (1, 9));
    assert_eq!(device.import(&v2(Some(own), 12, &[])).unwrap().cursor, 12);
    assert!(device.user(own).unwrap().is_some());
}

/// Defect 7. Reading commands rewrote the file (13 pwrites and 8 fdatasyncs
/// for one `spkey user`) and so failed on a file that could not be written,
/// and a FIFO given as `--db` hung forever. Reading commands now open the
/// store read-only: the file keeps every byte and its mtime, and they work
/// on a file the process may not write.
#[test]
fn reading_commands_change_no_byte_and_work_on_a_file_that_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ro.redb");
    let user = id(1).to_string();
    let body = format!(r#"{{"userId":"{user}","email":"ro@example.com"}}"#);
    assert!(spkey(&db, &["create-user", &user, &body]).status.success());
    let before = (
        std::fs::read(&db).unwrap(),
        std::fs::metadata(&db).unwrap().modified().unwrap(),
    );

    let runs: Vec<Output> = [
        &["user", user.as_str()][..],
        &["events"],
        &["verify"],
        &["pending"],
        &["cursor"],
    ]
    .into_iter()
    .map(|args| as_a_reader(&db, args))
    .collect();

    for (run, args) in runs
        .iter()
        .zip(["user", "events", "verify", "pending", "cursor"])
    {
        assert!(
            run.status.success(),
            "{args}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    assert!(String::from_utf8_lossy(&runs[0].stdout).contains("ro@example.com"));
    let after = (
        std::fs::read(&db).unwrap(),
        std::fs::metadata(&db).unwrap().modified().unwrap(),
    );
    assert!(before == after, "a reading command changed the file");
    // A writing command on the same file is refused, not silently dropped.
    let denied = as_a_reader(&db, &["create-user", &user, &body]);
    assert_eq!(denied.status.code(), Some(2));
}

/// Runs `spkey` with `db` unwritable to it: as root, as the `nobody` user
/// over a file only root may write; otherwise over a file made read-only.
fn as_a_reader(db: &Path, args: &[&str]) -> Output {
    use std::os::unix::fs::PermissionsExt;
    let dir = db.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(db, std::fs::Permissions::from_mode(0o444)).unwrap();
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let mut command = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_spkey"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_spkey"))
    };
    let output = command.arg("--db").arg(db).args(args).output().unwrap();
    std::fs::set_permissions(db, std::fs::Permissions::from_mode(0o644)).unwrap();
    output
}

#[test]
fn read_only_stores_share_the_file_with_each_other_but_not_with_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.redb");
    let writer = Store::open(&db).unwrap();
    create(&writer, 1, "a@example.com");

    assert!(matches!(
        Store::builder().open_read_only(&db),
        Err(StoreError::Locked)
    ));
    drop(writer);
    let (a, b) = (
        Store::builder().open_read_only(&db).unwrap(),
        Store::builder().open_read_only(&db).unwrap(),
    );
    assert_eq!(a.user(id(1)).unwrap(), b.user(id(1)).unwrap());
    assert!(matches!(Store::open(&db), Err(StoreError::Locked)));
    assert!(matches!(
        a.create_user(&CreateUser::new(id(2).to_string(), "b@example.com")),
        Err(StoreError::ReadOnly)
    ));
    // Validated before the write, an invalid command is refused the same
    // way, as a batch of it is.
    let invalid = CreateUser::new("not an id", "b@example.com");
    assert!(matches!(a.create_user(&invalid), Err(StoreError::ReadOnly)));
    assert!(matches!(
        a.execute_batch(std::slice::from_ref(&invalid)),
        Err(StoreError::ReadOnly)
    ));
    assert!(matches!(a.push(), Err(StoreError::ReadOnly)));
    assert!(a.verify().unwrap().is_sound());
}

/// `verify` claimed to check the sync tables and did not: a pending row at
/// someone else's event, past the listed position, or past the log, and a
/// rejections row at a creation, all went unseen.
#[test]
fn verify_catches_planted_damage_in_the_sync_tables() {
    const PENDING: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("pending");
    const REJECTIONS: redb::TableDefinition<&[u8], &[u8]> =
        redb::TableDefinition::new("rejections");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.redb");
    let (device, hub) = (Store::open(&path).unwrap(), store());
    create(&hub, 1, "h@example.com");
    create(&device, 2, "d@example.com");
    sync(&device, &hub); // position 1: own (accepted); 2: the hub's user
    create(&device, 3, "e@example.com");
    device.pending().unwrap();
    assert!(device.verify().unwrap().is_sound());
    drop(device);

    let db = redb::Database::open(&path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut pending = txn.open_table(PENDING).unwrap();
        for position in [2u64, 3, 99] {
            pending
                .insert(&position.to_be_bytes()[..], &[][..])
                .unwrap();
        }
        let mut rejections = txn.open_table(REJECTIONS).unwrap();
        rejections.insert(&1u64.to_be_bytes()[..], &[][..]).unwrap();
    }
    txn.commit().unwrap();
    drop(db);
    let findings = Store::open(&path).unwrap().verify().unwrap().findings;

    for expected in [
        Finding::RejectionRowMismatch { position: 1 },
        Finding::PendingNotOwnCreation { position: 2 },
        Finding::PendingUnlisted { position: 3 },
        Finding::PendingUnlisted { position: 99 },
        Finding::DanglingRow {
            table: "pending",
            position: 99,
        },
    ] {
        assert!(
            findings.contains(&expected),
            "{expected:?} missed: {findings:?}"
        );
    }
}
