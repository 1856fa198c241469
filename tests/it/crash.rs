//! Power cuts and I/O faults at every I/O operation of a reference workload,
//! on the modelled disk of `disk.rs`. After each: the store reopens, verify()
//! is sound, every acknowledged event is there exactly as acknowledged, and
//! nothing is there that was never sent.

use std::panic::{AssertUnwindSafe, catch_unwind};

use spkey_store::contract::{Body, EventJson, event_json};
use spkey_store::{CreateUser, Event, ManualClock, Outcome, Store, StoreError, UserCreated};
use uuid::Uuid;

use crate::disk::{Disk, Fault, Image, Keep};
use crate::support::{NOW_MS, long_run};

enum Step {
    One(CreateUser),
    Batch(Vec<CreateUser>),
    /// UpdateUser on the wire: the path id and the body.
    Update(u128, &'static str),
    /// DeleteUser on the wire: the user erased, its earlier events redacted
    /// in the same transaction.
    Delete(u128),
}

fn user(n: u128, email: &str) -> CreateUser {
    CreateUser::new(Uuid::from_u128(0x7000 + n).to_string(), email).first_name(format!("U{n}"))
}

/// Creates, a replay, a conflict, an invalid command, a batch with an
/// internal conflict, an update and an update refused: every path that
/// writes, and some that must not.
fn workload() -> Vec<Step> {
    vec![
        Step::One(user(1, "a@example.com")),
        Step::One(user(2, "b@example.com")),
        Step::One(user(1, "a@example.com")),
        Step::One(user(3, "A@example.com")),
        Step::One(CreateUser::new("nope", "x")),
        Step::Batch(vec![
            user(4, "c@example.com"),
            user(5, "d@example.com"),
            user(6, "c@example.com"),
        ]),
        Step::One(user(7, "e@example.com")),
        Step::Update(2, r#"{"email":"g@example.com","lastName":"Lee"}"#),
        Step::Update(1, r#"{"email":"G@example.com"}"#),
        Step::Delete(2),
        Step::Batch(vec![user(8, "f@example.com")]),
        Step::Delete(7),
    ]
}

fn updates() -> Vec<spkey_store::UserUpdated> {
    workload()
        .into_iter()
        .filter_map(|step| match step {
            Step::Update(n, body) => spkey_store::contract::parse_update_user(
                &Uuid::from_u128(0x7000 + n).to_string(),
                body.as_bytes(),
            )
            .ok()?
            .validate()
            .ok(),
            _ => None,
        })
        .collect()
}

/// The users the workload erases.
fn erased() -> Vec<Uuid> {
    workload()
        .into_iter()
        .filter_map(|step| match step {
            Step::Delete(n) => Some(Uuid::from_u128(0x7000 + n)),
            _ => None,
        })
        .collect()
}

fn attempted() -> Vec<UserCreated> {
    workload()
        .into_iter()
        .flat_map(|step| match step {
            Step::One(c) => vec![c],
            Step::Batch(cs) => cs,
            Step::Update(..) | Step::Delete(_) => vec![],
        })
        .filter_map(|c| c.validate().ok())
        .collect()
}

/// The store on `disk`, with its journal and block checksums there too:
/// every I/O point of the three files is a point of these harnesses,
/// checkpoints and the checksums written back at close included (one
/// checkpoint every 3 commits, so the workloads pass through several).
pub fn open(disk: &Disk) -> Result<Store, StoreError> {
    Store::builder()
        .clock(ManualClock::new(NOW_MS))
        .journal(disk.journal())
        .checksums(disk.checksums())
        .checkpoint_every(3)
        .backend(disk.backend())
}

/// Runs the workload, carrying on past failures, and returns what was
/// acknowledged, as the wire showed it. Single commands go through the wire,
/// so a failure must come back as the contract's 500 body.
fn run(store: &Store) -> Vec<EventJson> {
    let mut acked = Vec::new();
    for step in workload() {
        match step {
            Step::One(command) => {
                let body = format!(
                    r#"{{"userId":"{}","email":"{}","firstName":"{}"}}"#,
                    command.user_id,
                    command.email,
                    command.first_name.unwrap_or_default()
                );
                let response = store.create_user_wire(&command.id, body.as_bytes());
                match (response.status, response.body) {
                    (201, Body::Success(success)) => acked.push(success.event),
                    (200 | 400 | 409, _) => {}
                    (500, Body::Error(error)) => assert_eq!(error.code, 500),
                    other => panic!("unexpected response {other:?}"),
                }
            }
            Step::Update(n, body) => {
                let id = Uuid::from_u128(0x7000 + n).to_string();
                let response = store.update_user_wire(&id, body.as_bytes());
                match (response.status, response.body) {
                    (200, Body::Success(success)) => acked.push(success.event),
                    (404 | 409, _) => {}
                    (500, Body::Error(error)) => assert_eq!(error.code, 500),
                    other => panic!("unexpected response {other:?}"),
                }
            }
            Step::Delete(n) => {
                let id = Uuid::from_u128(0x7000 + n).to_string();
                let response = store.command_wire("DeleteUser", &id, b"{}");
                match (response.status, response.body) {
                    (200, Body::Success(success)) => acked.push(success.event),
                    (404, _) => {}
                    (500, Body::Error(error)) => assert_eq!(error.code, 500),
                    other => panic!("unexpected response {other:?}"),
                }
            }
            Step::Batch(commands) => {
                if let Ok(outcomes) = store.execute_batch(&commands) {
                    acked.extend(outcomes.iter().filter_map(|o| match o {
                        Outcome::Recorded(e) => Some(event_json(e)),
                        _ => None,
                    }));
                }
            }
        }
    }
    acked
}

/// Opens a store on `disk` and runs the workload; what was acknowledged
/// (nothing when the open itself failed), or `None` if anything panicked.
fn acked_on(disk: &Disk) -> Option<Vec<EventJson>> {
    catch_unwind(AssertUnwindSafe(|| match open(disk) {
        Ok(store) => run(&store),
        Err(_) => Vec::new(),
    }))
    .ok()
}

/// Reopens `image` and checks it against what was acknowledged; then, the
/// store closed, reopens it on the checksums that close wrote back.
fn check(image: Image, acked: &[EventJson]) -> Result<(), String> {
    let disk = Disk::with_image(image);
    check_store(&disk, acked)?;
    check_store(&disk, acked).map_err(|e| format!("after a clean close: {e}"))
}

fn check_store(disk: &Disk, acked: &[EventJson]) -> Result<(), String> {
    let store = open(disk).map_err(|e| format!("reopen failed: {e}"))?;
    let report = store.verify().map_err(|e| format!("verify failed: {e}"))?;
    if !report.is_sound() {
        return Err(format!("unsound: {:?}", report.findings));
    }
    let events = store.events(1, usize::MAX).map_err(|e| e.to_string())?;
    for ack in acked {
        let found = events.get(ack.position as usize - 1).map(event_json);
        // An erasure made after it (acknowledged or not: it was sent)
        // leaves what is left of the event, at its place; verify holds an
        // erased user to having no event with its fields.
        let erased_form = |ack: &EventJson| {
            found.as_ref().is_some_and(|f| {
                f.event_type == "Redacted"
                    && f.event_id == ack.event_id
                    && f.position == ack.position
            })
        };
        if found.as_ref() != Some(ack) && !erased_form(ack) {
            return Err(format!(
                "acknowledged event at position {} lost: found {found:?}",
                ack.position
            ));
        }
    }
    let (sent, updated) = (attempted(), updates());
    for event in &events {
        let was_sent = match &event.event {
            Event::UserCreated(created) => sent.contains(created),
            Event::UserUpdated(update) => updated.contains(update),
            Event::UserErased(user) => erased().contains(user),
            Event::Redacted(user, _) => erased().contains(user),
            _ => false,
        };
        if !was_sent {
            return Err(format!("event never sent: {event:?}"));
        }
    }
    Ok(())
}

/// Where the workload starts: an empty disk (the store is created), and a
/// store created and closed cleanly before (opened on the checksums its
/// close wrote back, which the first change must mark in use).
fn starts() -> [(&'static str, Image); 2] {
    let disk = Disk::default();
    drop(open(&disk).unwrap());
    [
        ("an empty disk", Image::default()),
        ("a closed store", disk.live()),
    ]
}

/// The I/O ops of the workload from `start`, store creation included.
fn total_ops(start: &Image) -> u64 {
    let disk = Disk::with_image(start.clone());
    let store = open(&disk).unwrap();
    assert_eq!(run(&store).len(), 9, "the workload itself must succeed");
    drop(store);
    disk.ops()
}

/// What a reboot after a cut at `at` finds, under each variant; some
/// variants lose power again part-way through recovery.
pub fn variants(seed: u64) -> Vec<(Keep, Option<Keep>)> {
    let mut out = vec![
        (Keep::Nothing, None),
        (Keep::Everything, None),
        (Keep::Prefix, None),
        (Keep::Some(seed), None),
        (Keep::Torn(seed), None),
        (Keep::Torn(seed + 1), None),
        (Keep::Some(seed + 2), Some(Keep::Torn(seed + 3))),
        (Keep::Torn(seed + 4), Some(Keep::Nothing)),
    ];
    if long_run() {
        for k in 0..12 {
            let s = seed + 100 + 3 * k;
            out.push((Keep::Torn(s), None));
            out.push((Keep::Some(s), Some(Keep::Torn(s + 1))));
        }
    }
    out
}

/// A reboot that loses power again at a random op of its recovery.
pub fn cut_during_recovery(image: Image, keep: Keep, seed: u64) -> Image {
    cut_while(open, image, keep, seed)
}

/// A reboot that loses power again at a random op of `open` (the store's
/// recovery, whatever it is).
pub fn cut_while(
    open: fn(&Disk) -> Result<Store, StoreError>,
    image: Image,
    keep: Keep,
    seed: u64,
) -> Image {
    let probe = Disk::with_image(image.clone());
    drop(open(&probe));
    if probe.ops() == 0 {
        return image;
    }
    let at = fastrand::Rng::with_seed(seed).u64(1..=probe.ops());
    let disk = Disk::with_image(image).with_fault(Fault::PowerCut(at));
    let result = catch_unwind(AssertUnwindSafe(|| drop(open(&disk))));
    assert!(
        result.is_ok(),
        "recovery panicked when power was cut at op {at}"
    );
    disk.image(keep)
}

#[test]
fn power_cut_at_every_io_op_loses_no_acknowledged_event() {
    for (from, start) in starts() {
        let total = total_ops(&start);
        let mut cases = 0;
        for at in 1..=total {
            let disk = Disk::with_image(start.clone()).with_fault(Fault::PowerCut(at));
            let acked =
                acked_on(&disk).unwrap_or_else(|| panic!("panic with power cut at op {at}"));
            for (i, (keep, again)) in variants(at * 1000).into_iter().enumerate() {
                let mut image = disk.image(keep);
                if let Some(keep_again) = again {
                    image = cut_during_recovery(image, keep_again, at * 1000 + i as u64);
                }
                if let Err(problem) = check(image, &acked) {
                    panic!(
                        "from {from}, power cut at op {at}/{total}, {keep:?} then {again:?}: \
                         {problem}"
                    );
                }
                cases += 1;
            }
        }
        eprintln!(
            "power cut from {from}: {total} I/O points, {cases} cases, 0 acknowledged events lost"
        );
    }
}

#[test]
fn an_io_fault_at_every_op_is_a_500_never_a_panic_and_loses_nothing() {
    for (from, start) in starts() {
        let total = total_ops(&start);
        let mut cases = 0;
        for at in 1..=total {
            for fault in [Fault::FailOnce(at), Fault::FailFrom(at)] {
                let disk = Disk::with_image(start.clone()).with_fault(fault);
                let acked = acked_on(&disk).unwrap_or_else(|| panic!("panic with {fault:?}"));
                // The process carries on (the file as the OS holds it), or
                // the machine then loses power (only what was synced).
                for (what, image) in [("live", disk.live()), ("synced", disk.image(Keep::Nothing))]
                {
                    if let Err(problem) = check(image, &acked) {
                        panic!("from {from}, {fault:?}, {what} file: {problem}");
                    }
                    cases += 1;
                }
            }
        }
        eprintln!(
            "I/O faults from {from}: {total} I/O points, {cases} cases, 0 acknowledged events lost"
        );
    }
}

#[test]
fn the_power_cut_harness_catches_a_sync_that_does_not_sync() {
    let disk = Disk::default().with_lying_sync();
    let store = open(&disk).unwrap();
    let acked = run(&store);
    drop(store);

    let found = check(disk.image(Keep::Nothing), &acked);

    assert!(found.is_err(), "a lying fsync went unnoticed");
}

#[test]
fn the_fault_harness_catches_a_write_the_disk_silently_lost() {
    let total = total_ops(&Image::default());
    let mut caught = 0;
    for at in 1..=total {
        let disk = Disk::default().with_fault(Fault::Lose(at));
        let acked = acked_on(&disk).unwrap_or_default();
        if check(disk.live(), &acked).is_err() {
            caught += 1;
        }
    }
    assert!(caught > 0, "no lost write among {total} was noticed");
    eprintln!("lost-write plant: caught at {caught} of {total} I/O points");
}
