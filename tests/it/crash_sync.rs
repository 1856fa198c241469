//! Sync under the crash harnesses: a device and a hub run push, accept,
//! apply-reply, export and import (with a rejection and a rebase among
//! them), one of the two on the modelled disk of `disk.rs`, the other in
//! memory. A power cut or an I/O fault strikes at every I/O operation of
//! the store on the disk. After each, that store reopens, `verify()` is
//! sound, its log begins with every event it had when its last step was
//! acknowledged, its cursor is no older, and a sync run to the end makes
//! device and hub agree on every user.

use std::panic::{AssertUnwindSafe, catch_unwind};

use spkey_store::{CreateUser, ManualClock, MemoryBackend, RecordedEvent, Store, StoreError};
use uuid::Uuid;

use crate::crash::{cut_during_recovery, open, variants};
use crate::disk::{Disk, Fault, Image, Keep};
use crate::support::NOW_MS;

/// Which side of sync is on the faulty disk.
#[derive(Debug, Clone, Copy)]
enum Role {
    Device,
    Hub,
}

/// What the store on the disk had when its last step returned `Ok`.
#[derive(Debug, Default, Clone)]
struct Acked {
    events: Vec<RecordedEvent>,
    cursor: u64,
}

fn in_memory(bytes: Option<Vec<u8>>) -> (Store, MemoryBackend) {
    let backend = bytes.map_or_else(MemoryBackend::new, MemoryBackend::from_bytes);
    let store = Store::builder()
        .clock(ManualClock::new(NOW_MS))
        .backend(backend.clone())
        .unwrap();
    (store, backend)
}

fn create(store: &Store, n: u128, email: &str) -> Result<(), StoreError> {
    let command = CreateUser::new(Uuid::from_u128(0x5c00 + n).to_string(), email);
    store.create_user(&command).map(drop)
}

fn update(store: &Store, n: u128, email: &str) -> Result<(), StoreError> {
    let command = spkey_store::UpdateUser::new(Uuid::from_u128(0x5c00 + n).to_string())
        .email(email)
        .last_name("Moved");
    store.update_user(&command).map(drop)
}

fn pull(device: &Store, hub: &Store) -> Result<(), StoreError> {
    device
        .import(&hub.export(device.pull_cursor()?, usize::MAX)?)
        .map(drop)
}

fn push(device: &Store, hub: &Store) -> Result<(), StoreError> {
    device.apply_reply(&hub.accept(&device.push()?)?).map(drop)
}

/// The workload: every step of sync, with a rejection (the device's second
/// user takes the hub's email), a pending claim of an email the pulled hub
/// holds (refused by the push after), an update synced, and an update
/// refused (to an email the hub's user holds). Steps go on past failures,
/// as an app would retry; `ack` is called after each step that returned
/// `Ok`.
fn workload(device: &Store, hub: &Store, mut ack: impl FnMut()) {
    let steps: [&dyn Fn() -> Result<(), StoreError>; 13] = [
        &|| create(hub, 1, "h1@example.com"),
        &|| create(device, 2, "d2@example.com"),
        &|| create(device, 3, "h1@example.com"),
        &|| push(device, hub),
        &|| pull(device, hub),
        &|| update(device, 2, "d2-moved@example.com"),
        &|| create(hub, 4, "d5@example.com"),
        &|| create(device, 5, "d5@example.com"),
        &|| create(hub, 6, "h6@example.com"),
        &|| update(device, 2, "h6@example.com"),
        &|| pull(device, hub),
        &|| push(device, hub),
        &|| pull(device, hub),
    ];
    for step in steps {
        if step().is_ok() {
            ack();
        }
    }
}

fn state(store: &Store) -> Acked {
    Acked {
        events: store.events(1, usize::MAX).unwrap_or_default(),
        cursor: store.pull_cursor().unwrap_or_default(),
    }
}

/// Runs the workload with `role` on `disk`; returns what was acknowledged
/// and the other side's bytes, or `None` if anything panicked.
fn run(role: Role, disk: &Disk) -> Option<(Acked, Vec<u8>)> {
    catch_unwind(AssertUnwindSafe(|| {
        let (other, backend) = in_memory(None);
        let mut acked = Acked::default();
        if let Ok(on_disk) = open(disk) {
            let (device, hub) = match role {
                Role::Device => (&on_disk, &other),
                Role::Hub => (&other, &on_disk),
            };
            // A step acknowledges only what the store on the disk returned
            // Ok for; the read after it sees exactly that.
            workload(device, hub, || acked = state(&on_disk));
        }
        (acked, backend.snapshot())
    }))
    .ok()
}

/// Reopens `image`, checks it against what was acknowledged, then syncs it
/// with the other side to the end and checks that both agree.
fn check(role: Role, image: Image, acked: &Acked, other: &[u8]) -> Result<(), String> {
    let on_disk = open(&Disk::with_image(image)).map_err(|e| format!("reopen failed: {e}"))?;
    let report = on_disk
        .verify()
        .map_err(|e| format!("verify failed: {e}"))?;
    if !report.is_sound() {
        return Err(format!("unsound: {:?}", report.findings));
    }
    let now = state(&on_disk);
    if now.events.get(..acked.events.len()) != Some(&acked.events[..]) {
        return Err(format!(
            "acknowledged events lost: had {} events, found {}",
            acked.events.len(),
            now.events.len()
        ));
    }
    if now.cursor < acked.cursor {
        return Err(format!(
            "cursor went back from {} to {}",
            acked.cursor, now.cursor
        ));
    }
    let (other, _) = in_memory(Some(other.to_vec()));
    let (device, hub) = match role {
        Role::Device => (&on_disk, &other),
        Role::Hub => (&other, &on_disk),
    };
    converge(device, hub)
}

/// Syncs until nothing changes, then holds device and hub to agreeing on
/// every user: the hub's users on the device as they are on the hub, and
/// every other device user refused, none left pending.
pub fn converge(device: &Store, hub: &Store) -> Result<(), String> {
    let fail = |e: StoreError| format!("sync after recovery failed: {e}");
    for _ in 0..2 {
        push(device, hub).map_err(fail)?;
        pull(device, hub).map_err(fail)?;
    }
    if !device.pending().map_err(fail)?.is_empty() {
        return Err("events still pending after a full sync".into());
    }
    for event in hub.events(1, usize::MAX).map_err(fail)? {
        let id = event.aggregate_id();
        let (on_hub, on_device) = (hub.user(id).map_err(fail)?, device.user(id).map_err(fail)?);
        if on_hub.map(|u| u.profile) != on_device.clone().map(|u| u.profile)
            || on_device.is_some_and(|u| u.is_rejected())
        {
            return Err(format!("device and hub disagree on {id}"));
        }
    }
    for event in device.events(1, usize::MAX).map_err(fail)? {
        let id = event.aggregate_id();
        let local = device.user(id).map_err(fail)?.expect("its event is here");
        if !local.is_rejected() && hub.user(id).map_err(fail)?.is_none() {
            return Err(format!(
                "device user {id} is neither on the hub nor refused"
            ));
        }
    }
    for store in [device, hub] {
        if !store.verify().map_err(fail)?.is_sound() {
            return Err("unsound after the final sync".into());
        }
    }
    Ok(())
}

fn total_ops(role: Role) -> u64 {
    let disk = Disk::default();
    let (acked, _) = run(role, &disk).expect("the workload runs");
    assert!(
        acked.events.len() >= 3,
        "{role:?}: the workload itself must succeed"
    );
    disk.ops()
}

fn power_cut_everywhere(role: Role) {
    let total = total_ops(role);
    let mut cases = 0;
    for at in 1..=total {
        let disk = Disk::default().with_fault(Fault::PowerCut(at));
        let (acked, other) =
            run(role, &disk).unwrap_or_else(|| panic!("{role:?}: panic with power cut at op {at}"));
        for (i, (keep, again)) in variants(at * 1000).into_iter().enumerate() {
            let mut image = disk.image(keep);
            if let Some(keep_again) = again {
                image = cut_during_recovery(image, keep_again, at * 1000 + i as u64);
            }
            if let Err(problem) = check(role, image, &acked, &other) {
                panic!(
                    "{role:?}: power cut at op {at}/{total}, {keep:?} then {again:?}: {problem}"
                );
            }
            cases += 1;
        }
    }
    eprintln!(
        "power cut, sync ({role:?} on disk): {total} I/O points, {cases} cases, 0 acknowledged events lost"
    );
}

fn io_fault_everywhere(role: Role) {
    let total = total_ops(role);
    let mut cases = 0;
    for at in 1..=total {
        for fault in [Fault::FailOnce(at), Fault::FailFrom(at)] {
            let disk = Disk::default().with_fault(fault);
            let (acked, other) =
                run(role, &disk).unwrap_or_else(|| panic!("{role:?}: panic with {fault:?}"));
            for (what, image) in [("live", disk.live()), ("synced", disk.image(Keep::Nothing))] {
                if let Err(problem) = check(role, image, &acked, &other) {
                    panic!("{role:?}: {fault:?}, {what} file: {problem}");
                }
                cases += 1;
            }
        }
    }
    eprintln!(
        "I/O faults, sync ({role:?} on disk): {total} I/O points, {cases} cases, 0 acknowledged events lost"
    );
}

#[test]
fn power_cut_at_every_io_op_of_a_device_syncing_loses_nothing_and_converges() {
    power_cut_everywhere(Role::Device);
}

#[test]
fn power_cut_at_every_io_op_of_a_hub_syncing_loses_nothing_and_converges() {
    power_cut_everywhere(Role::Hub);
}

#[test]
fn an_io_fault_at_every_op_of_a_device_syncing_loses_nothing_and_converges() {
    io_fault_everywhere(Role::Device);
}

#[test]
fn an_io_fault_at_every_op_of_a_hub_syncing_loses_nothing_and_converges() {
    io_fault_everywhere(Role::Hub);
}

/// The harness can fail: with fsync a lie on the device's disk, a power cut
/// loses steps it acknowledged, and the check says so.
#[test]
fn the_sync_harness_catches_a_sync_that_does_not_sync() {
    let disk = Disk::default().with_lying_sync();
    let (acked, other) = run(Role::Device, &disk).unwrap();

    let found = check(Role::Device, disk.image(Keep::Nothing), &acked, &other);

    assert!(found.is_err(), "a lying fsync went unnoticed");
}
