//! Offline-first sync: scenarios, refused batches, and convergence of
//! several devices and a hub under random interleavings.

use std::collections::BTreeMap;

use proptest::prelude::*;
use spkey_store::{
    BatchError, CreateUser, Event, Outcome, RecordedEvent, Store, StoreError, UserCreated, codec,
};
use uuid::Uuid;

use crate::support::NOW_MS;

use crate::support::memory_store as store;

fn id(n: u128) -> String {
    Uuid::from_u128(0xe000 + n).to_string()
}

fn create(device: &Store, n: u128, email: &str, name: &str) -> Outcome {
    let command = CreateUser::new(id(n), email).first_name(name);
    device.create_user(&command).unwrap()
}

/// Push, accept, apply the reply, then pull: one full sync of a device.
fn sync(device: &Store, hub: &Store) {
    let reply = hub.accept(&device.push().unwrap()).unwrap();
    device.apply_reply(&reply).unwrap();
    pull(device, hub);
}

fn pull(device: &Store, hub: &Store) {
    let batch = hub
        .export(device.pull_cursor().unwrap(), usize::MAX)
        .unwrap();
    device.import(&batch).unwrap();
}

fn user_of(store: &Store, n: u128) -> Option<spkey_store::User> {
    store.user(id(n).parse().unwrap()).unwrap()
}

fn rejection_codes(device: &Store) -> Vec<u16> {
    device
        .rejections()
        .unwrap()
        .iter()
        .map(|e| e.event.refusal().expect("a compensation").code)
        .collect()
}

#[test]
fn a_user_created_offline_reaches_the_hub_and_stops_being_pending() {
    let (device, hub) = (store(), store());
    let Outcome::Recorded(local) = create(&device, 1, "a@example.com", "Ann") else {
        panic!("created");
    };
    assert_eq!(device.pending().unwrap(), vec![local.clone()]);

    sync(&device, &hub);

    assert!(device.pending().unwrap().is_empty());
    let on_hub = hub.events(1, usize::MAX).unwrap();
    assert_eq!(on_hub.len(), 1);
    assert_eq!(on_hub[0].event_id, local.event_id);
    assert_eq!(on_hub[0].origin, device.store_id());
    assert_eq!(
        user_of(&hub, 1).unwrap().profile,
        user_of(&device, 1).unwrap().profile
    );
    // The device's own event came back in the pull and was recognised.
    assert_eq!(device.head_position().unwrap(), 1);
    assert_eq!(device.pull_cursor().unwrap(), 1);
}

#[test]
fn users_created_between_a_push_and_its_reply_stay_pending_until_their_own_push() {
    let (device, hub) = (store(), store());
    create(&device, 1, "a@example.com", "Ann");
    let push = device.push().unwrap();
    // Created after the push: not in it, and the reply must not settle it.
    create(&device, 2, "b@example.com", "Bob");
    device.apply_reply(&hub.accept(&push).unwrap()).unwrap();
    create(&device, 3, "c@example.com", "Cid");

    let pending: Vec<u64> = device
        .pending()
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(pending, [2, 3]);

    let summary = device
        .apply_reply(&hub.accept(&device.push().unwrap()).unwrap())
        .unwrap();
    assert_eq!(summary.accepted, 2);
    assert!(device.pending().unwrap().is_empty());
    assert_eq!(hub.head_position().unwrap(), 3);
}

#[test]
fn two_devices_create_one_user_id_differently_and_the_later_is_rejected_then_rebased() {
    let (one, two, hub) = (store(), store(), store());
    create(&one, 1, "ann@example.com", "Ann");
    create(&two, 1, "bob@example.com", "Bob");

    sync(&one, &hub);
    sync(&two, &hub);

    assert_eq!(rejection_codes(&two), [409]);
    let Event::UserCreationRejected(rejected) = &two.rejections().unwrap()[0].event else {
        unreachable!()
    };
    assert_eq!(rejected.details[0].field.as_str(), "userId");
    // After the pull the hub's user wins on the device too.
    let on_two = user_of(&two, 1).unwrap();
    assert!(!on_two.is_rejected());
    assert_eq!(on_two.profile.email, "ann@example.com");
    assert_eq!(on_two.profile, user_of(&hub, 1).unwrap().profile);
    assert!(two.verify().unwrap().is_sound());
}

#[test]
fn two_devices_claim_one_email_and_the_loser_sees_why_and_frees_it() {
    let (one, two, hub) = (store(), store(), store());
    create(&one, 1, "same@example.com", "Ann");
    create(&two, 2, "SAME@example.com", "Bob");

    sync(&one, &hub);
    let reply = hub.accept(&two.push().unwrap()).unwrap();
    let summary = two.apply_reply(&reply).unwrap();

    assert_eq!((summary.accepted, summary.rejected), (0, 1));
    let loser = user_of(&two, 2).unwrap();
    let rejection = loser.rejection.clone().expect("rejected");
    assert_eq!(rejection.code, 409);
    assert_eq!(rejection.details[0].field.as_str(), "email");
    assert_eq!(two.user_id_by_email("same@example.com").unwrap(), None);
    pull(&two, &hub);
    assert_eq!(
        two.user_id_by_email("same@example.com").unwrap(),
        Some(id(1).parse().unwrap())
    );
    assert!(user_of(&hub, 2).is_none());
    // The freed id may be used again, and this time it goes through.
    create(&two, 2, "bob@example.com", "Bob");
    sync(&two, &hub);
    assert_eq!(user_of(&hub, 2).unwrap().profile.email, "bob@example.com");
    assert!(two.verify().unwrap().is_sound() && hub.verify().unwrap().is_sound());
    // Its log mixes creations and a rejection: a scan, reusing one event's
    // memory across both kinds, sees exactly what paging sees.
    let mut scanned = Vec::new();
    let visited = two
        .scan(1, |event| {
            scanned.push(event.clone());
            true
        })
        .unwrap();
    assert_eq!(scanned, two.events(1, usize::MAX).unwrap());
    assert_eq!(visited as usize, scanned.len());
    assert!(
        scanned
            .iter()
            .any(|e| matches!(e.event, Event::UserCreationRejected(_)))
    );
    let mut from_two = Vec::new();
    let visited = two
        .scan(2, |event| {
            from_two.push(event.position);
            from_two.len() < 2
        })
        .unwrap();
    assert_eq!((visited, from_two), (2, vec![2, 3]));
}

#[test]
fn a_batch_or_reply_delivered_twice_changes_nothing_the_second_time() {
    let (device, hub) = (store(), store());
    create(&device, 1, "a@example.com", "Ann");
    create(&device, 2, "b@example.com", "Bea");
    let push = device.push().unwrap();

    let reply = hub.accept(&push).unwrap();
    let again = hub.accept(&push).unwrap();
    let first = device.apply_reply(&reply).unwrap();
    let second = device.apply_reply(&again).unwrap();
    let pull_batch = hub.export(0, usize::MAX).unwrap();
    let imported = device.import(&pull_batch).unwrap();
    let reimported = device.import(&pull_batch).unwrap();

    assert_eq!(reply, again, "the hub answers a replayed push identically");
    assert_eq!(hub.head_position().unwrap(), 2);
    assert_eq!(first.accepted, 2);
    assert_eq!(second.already_applied, 2);
    assert_eq!((imported.own, imported.imported), (2, 0));
    assert_eq!(
        reimported,
        spkey_store::ImportSummary {
            cursor: 2,
            ..Default::default()
        }
    );
    assert_eq!(device.head_position().unwrap(), 2);
}

#[test]
fn a_reply_lost_in_a_crash_is_recovered_by_pushing_again() {
    let dir = tempfile::tempdir().unwrap();
    let hub_path = dir.path().join("hub.redb");
    let device = store();
    create(&device, 1, "a@example.com", "Ann");
    {
        let hub = Store::open(&hub_path).unwrap();
        hub.accept(&device.push().unwrap()).unwrap();
        // The hub crashes before its reply leaves: the reply is lost.
    }
    assert_eq!(device.pending().unwrap().len(), 1);

    let hub = Store::open(&hub_path).unwrap();
    let reply = hub.accept(&device.push().unwrap()).unwrap();
    device.apply_reply(&reply).unwrap();

    assert!(device.pending().unwrap().is_empty());
    assert_eq!(hub.head_position().unwrap(), 1);
    assert!(device.rejections().unwrap().is_empty());
}

#[test]
fn a_pull_that_takes_a_pending_claims_email_leaves_the_claim_to_its_reply() {
    let (one, two, hub) = (store(), store(), store());
    create(&one, 1, "x@example.com", "Ann");
    sync(&one, &hub);
    create(&two, 2, "x@example.com", "Bob");

    let summary = two.import(&hub.export(0, usize::MAX).unwrap()).unwrap();

    // The hub's user holds the email here now; the local claim waits for
    // the hub's answer (the hub could still accept it, had a later event
    // freed the email).
    assert_eq!((summary.imported, summary.rebased), (1, 0));
    assert_eq!(two.pending().unwrap().len(), 1);
    assert_eq!(
        two.user_id_by_email("X@example.com").unwrap(),
        Some(id(1).parse().unwrap())
    );
    assert!(two.verify().unwrap().is_sound());
    sync(&two, &hub);
    assert!(two.pending().unwrap().is_empty());
    assert!(user_of(&two, 2).unwrap().is_rejected());
    assert_eq!(rejection_codes(&two), vec![409]);
    assert_eq!(hub.head_position().unwrap(), 1);
    assert!(two.verify().unwrap().is_sound());
}

#[test]
fn a_pending_claim_the_hub_accepts_after_the_email_was_freed_survives_the_pull() {
    let (one, two, hub) = (store(), store(), store());
    create(&one, 1, "x@example.com", "Ann");
    one.update_user(&spkey_store::UpdateUser::new(id(1)).email("y@example.com"))
        .unwrap();
    hub.accept(&one.push().unwrap()).unwrap();
    create(&two, 2, "x@example.com", "Bob");
    // The reply is lost; the pull brings user 1 taking x@ and giving it up.
    hub.accept(&two.push().unwrap()).unwrap();
    pull(&two, &hub);
    assert!(two.rejections().unwrap().is_empty());
    let mine = user_of(&two, 2).unwrap();
    assert!(!mine.is_rejected());
    assert_eq!(
        two.user_id_by_email("x@example.com").unwrap(),
        Some(id(2).parse().unwrap())
    );
    assert_eq!(user_of(&hub, 2).unwrap().profile, mine.profile);
    assert!(two.verify().unwrap().is_sound());
}

fn damaged(mut bytes: Vec<u8>, at: usize) -> Vec<u8> {
    bytes[at] ^= 0x40;
    bytes
}

#[test]
fn damaged_wrong_or_oversized_batches_are_refused_whole_and_change_nothing() {
    let (device, hub, other_hub) = (store(), store(), store());
    create(&device, 1, "a@example.com", "Ann");
    let push = device.push().unwrap();
    let reply = hub.accept(&push).unwrap();
    let hub_head = hub.head_position().unwrap();

    let refused = [
        hub.accept(&damaged(push.clone(), push.len() / 2)),
        hub.accept(&reply),
        hub.accept(&vec![0; spkey_store::MAX_BATCH_BYTES + 1]),
        hub.accept(b"SPKS"),
    ];
    for result in &refused {
        assert!(matches!(result, Err(StoreError::Batch(_))), "{result:?}");
    }
    assert!(matches!(
        device.apply_reply(&damaged(reply.clone(), 20)),
        Err(StoreError::Batch(BatchError::ChecksumMismatch))
    ));
    assert_eq!(hub.head_position().unwrap(), hub_head);
    assert_eq!(device.pending().unwrap().len(), 1);

    device.apply_reply(&reply).unwrap();
    device.import(&hub.export(0, 10).unwrap()).unwrap();
    let foreign = other_hub.export(0, 10).unwrap();
    assert!(matches!(
        device.import(&foreign),
        Err(StoreError::Batch(BatchError::WrongHub { .. }))
    ));
}

#[test]
fn an_event_that_fails_validation_makes_the_hub_refuse_the_batch() {
    let (device, hub) = (store(), store());
    let forged = RecordedEvent {
        event_id: Uuid::from_u128(99),
        version: 1,
        position: 1,
        recorded_at_ms: NOW_MS,
        origin: device.store_id(),
        event: Event::UserCreated(UserCreated {
            user_id: Uuid::from_u128(7),
            email: "not an email".into(),
            first_name: None,
            last_name: None,
            phone_number: None,
        }),
    };
    let batch = forge_push(device.store_id(), &[codec::encode(&forged)]);

    let refused = hub.accept(&batch);

    assert!(
        matches!(&refused, Err(StoreError::Batch(BatchError::BadEvent { index: 0, reason })) if reason.contains("Invalid email")),
        "{refused:?}"
    );
    assert_eq!(hub.head_position().unwrap(), 0);
}

/// Frames envelopes as a push batch exactly as a device would, so a test
/// can send events no device would record.
fn forge_push(sender: Uuid, events: &[Vec<u8>]) -> Vec<u8> {
    // Magic, the batch format, kind push; then postcard: the sender's 16
    // bytes, a varint count, and each event as a varint length and its bytes.
    let mut bytes = b"SPKS".to_vec();
    bytes.extend_from_slice(&[spkey_store::BATCH_FORMAT, 1]);
    bytes.extend_from_slice(sender.as_bytes());
    bytes.push(events.len() as u8);
    for event in events {
        let mut len = event.len();
        while len >= 0x80 {
            bytes.push((len as u8) | 0x80);
            len >>= 7;
        }
        bytes.push(len as u8);
        bytes.extend_from_slice(event);
    }
    let sum = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&sum.to_le_bytes());
    bytes
}

/// One step of the convergence property.
#[derive(Debug, Clone)]
enum Step {
    Create {
        device: usize,
        user: u128,
        email: usize,
        name: usize,
    },
    Update {
        device: usize,
        user: u128,
        /// An email to move to (an index of `EMAILS`), or a new name alone.
        email: Option<usize>,
        name: usize,
    },
    Sync(usize),
    PushLostReply(usize),
    Pull(usize),
}

const DEVICES: usize = 3;
const EMAILS: [&str; 3] = ["p@example.com", "q@example.com", "P@example.com"];
const NAMES: [&str; 2] = ["Ann", "Bob"];

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..DEVICES, 0..4u128, 0..EMAILS.len(), 0..NAMES.len())
            .prop_map(|(device, user, email, name)| Step::Create { device, user, email, name }),
        3 => (0..DEVICES, 0..4u128, proptest::option::of(0..EMAILS.len()), 0..NAMES.len())
            .prop_map(|(device, user, email, name)| Step::Update { device, user, email, name }),
        2 => (0..DEVICES).prop_map(Step::Sync),
        1 => (0..DEVICES).prop_map(Step::PushLostReply),
        1 => (0..DEVICES).prop_map(Step::Pull),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn devices_and_the_hub_converge_whatever_the_order(steps in proptest::collection::vec(step(), 1..30)) {
        let hub = store();
        let devices: Vec<Store> = (0..DEVICES).map(|_| store()).collect();
        let mut created: Vec<(usize, Uuid)> = Vec::new();
        for step in steps {
            match step {
                Step::Create { device, user, email, name } => {
                    if let Outcome::Recorded(event) = create(&devices[device], user, EMAILS[email], NAMES[name]) {
                        created.push((device, event.event_id));
                    }
                }
                Step::Update { device, user, email, name } => {
                    let mut update = spkey_store::UpdateUser::new(id(user)).last_name(NAMES[name]);
                    if let Some(email) = email {
                        update = update.email(EMAILS[email]);
                    }
                    if let Outcome::Recorded(event) = devices[device].update_user(&update).unwrap() {
                        created.push((device, event.event_id));
                    }
                }
                Step::Sync(device) => sync(&devices[device], &hub),
                Step::PushLostReply(device) => {
                    hub.accept(&devices[device].push().unwrap()).unwrap();
                }
                Step::Pull(device) => pull(&devices[device], &hub),
            }
        }
        // Everyone syncs until nothing moves: twice is enough, since a
        // second round only carries what the first round's pulls rebased.
        for _ in 0..2 {
            for device in &devices {
                sync(device, &hub);
            }
        }

        let hub_users: BTreeMap<Uuid, UserCreated> = (0..4u128)
            .filter_map(|user| hub.user(self::id(user).parse().unwrap()).unwrap())
            .map(|u| (u.profile.user_id, u.profile))
            .collect();
        prop_assert!(hub.events(1, usize::MAX).unwrap().iter().all(|e| e.event.is_command()), "the hub holds a compensation");
        let hub_ids: Vec<Uuid> = hub.events(1, usize::MAX).unwrap().iter().map(|e| e.event_id).collect();
        prop_assert!(hub.verify().unwrap().is_sound());
        for (n, device) in devices.iter().enumerate() {
            let report = device.verify().unwrap();
            prop_assert!(report.is_sound(), "device {}: {:?}", n, report.findings);
            prop_assert!(device.pending().unwrap().is_empty());
            for user in 0..4u128 {
                let id: Uuid = self::id(user).parse().unwrap();
                let here = device.user(id).unwrap().filter(|u| !u.is_rejected());
                prop_assert_eq!(here.map(|u| u.profile), hub_users.get(&id).cloned(), "device {} user {}", n, user);
            }
            // Every command this device created is on the hub, or visibly rejected here.
            let rejected: Vec<Uuid> = device.rejections().unwrap().iter()
                .map(|e| e.event.refusal().expect("a compensation").rejected_event_id)
                .collect();
            for (_, event_id) in created.iter().filter(|(d, _)| *d == n) {
                prop_assert!(hub_ids.contains(event_id) != rejected.contains(event_id),
                    "event {} of device {} is neither accepted nor rejected (or both)", event_id, n);
            }
        }
        let mut unique = hub_ids.clone();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(unique.len(), hub_ids.len(), "an event accepted twice");
    }
}

/// Writes real push, reply and pull batches as fuzz seeds
/// (`SPKEY_BLESS=1`), and checks the seeds still parse as what they were.
#[test]
fn fuzz_seed_batches_are_real_batches() {
    let seeds = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/batch");
    if std::env::var_os("SPKEY_BLESS").is_some() {
        let (device, hub) = (store(), store());
        create(&device, 1, "a@example.com", "Ann");
        let push = device.push().unwrap();
        let reply = hub.accept(&push).unwrap();
        std::fs::write(seeds.join("push"), &push).unwrap();
        std::fs::write(seeds.join("reply"), &reply).unwrap();
        std::fs::write(seeds.join("pull"), hub.export(0, 10).unwrap()).unwrap();
        let user = Uuid::parse_str(&id(1)).unwrap();
        let scoped = hub
            .export_as(0, 10, spkey_store::Scope::User(user))
            .unwrap();
        std::fs::write(seeds.join("pull-user"), scoped).unwrap();
    }
    let hub = store();
    let reply = hub
        .accept(&std::fs::read(seeds.join("push")).unwrap())
        .unwrap();
    assert_eq!(hub.head_position().unwrap(), 1);
    assert_eq!(
        reply.len(),
        std::fs::read(seeds.join("reply")).unwrap().len()
    );
    for pull in ["pull", "pull-user"] {
        let pulled = store()
            .import(&std::fs::read(seeds.join(pull)).unwrap())
            .unwrap();
        assert_eq!((pulled.imported, pulled.cursor), (1, 1), "{pull}");
    }
}

/// A sync given a deadline stops at it even when the hub never answers
/// (a listener that accepts and stays silent), and a cancelled sync sends
/// nothing; both say which, and neither is mistaken for an unreachable hub.
#[test]
fn a_sync_stops_at_its_deadline_and_a_cancelled_one_sends_nothing() {
    use spkey_store::http::{SyncError, Until, sync_until};
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};

    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hub = format!("http://{}", silent.local_addr().unwrap());
    let device = store();
    let started = Instant::now();
    let until = Until {
        deadline: Some(started + Duration::from_millis(500)),
        cancelled: None,
    };
    let stopped = sync_until(&device, &hub, "key", "token", until);
    assert!(
        matches!(stopped, Err(SyncError::DeadlineExceeded)),
        "{stopped:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(stopped.unwrap_err().is_transient());

    silent.set_nonblocking(true).unwrap();
    while silent.accept().is_ok() {}
    let cancelled = AtomicBool::new(true);
    let until = Until {
        deadline: None,
        cancelled: Some(&cancelled),
    };
    let stopped = sync_until(&device, &hub, "key", "token", until);
    assert!(matches!(stopped, Err(SyncError::Cancelled)), "{stopped:?}");
    assert!(
        silent.accept().is_err(),
        "a cancelled sync connected to the hub"
    );
}
