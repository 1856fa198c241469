//! Shared helpers: a store on a real file in a temporary directory, a fixed
//! clock, and a snapshot of everything observable for "nothing changed".

use std::path::PathBuf;

use spkey_store::contract::{Body, ErrorBody, SuccessBody};
use spkey_store::{ManualClock, RecordedEvent, Response, Store};
use tempfile::TempDir;

pub const ID: &str = "550e8400-e29b-41d4-a716-446655440000";
pub const OTHER_ID: &str = "6fa459ea-ee8a-3ca4-894e-db77e160355e";
/// 2026-11-26T23:00:00.123Z
pub const NOW_MS: i64 = 1_795_734_000_123;

/// A store on a real redb file, with the clock that stamps its events.
pub struct Given {
    pub store: Store,
    pub clock: ManualClock,
    pub dir: TempDir,
}

impl Given {
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("store.redb")
    }

    /// Closes the store and opens the same file again.
    pub fn reopen(self) -> Given {
        let Given { store, clock, dir } = self;
        drop(store);
        let store = Store::builder()
            .clock(clock.clone())
            .open(dir.path().join("store.redb"))
            .expect("reopen store");
        Given { store, clock, dir }
    }

    /// Everything a caller can observe, for "the store is unchanged".
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            head: self.store.head_position().unwrap(),
            events: self.store.events(1, usize::MAX).unwrap(),
        }
    }

    pub fn wire(&self, id: &str, body: &str) -> Response {
        self.store.create_user_wire(id, body.as_bytes())
    }
}

#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub head: u64,
    pub events: Vec<RecordedEvent>,
}

/// A store in memory stamped by the fixed clock.
pub fn memory_store() -> Store {
    Store::builder()
        .clock(ManualClock::new(NOW_MS))
        .in_memory()
        .expect("in-memory store")
}

pub fn given_store() -> Given {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(NOW_MS);
    let store = Store::builder()
        .clock(clock.clone())
        .open(dir.path().join("store.redb"))
        .expect("open store");
    Given { store, clock, dir }
}

/// The seed's example body for `id`, with the given email.
pub fn body(id: &str, email: &str) -> String {
    format!(
        r#"{{"userId":"{id}","email":"{email}","firstName":"John Doe","lastName":"John Doe","phoneNumber":"+1-555-0123"}}"#
    )
}

pub fn success(response: &Response) -> &SuccessBody {
    match &response.body {
        Body::Success(body) => body,
        Body::Error(body) => panic!("expected success, got {body:?}"),
    }
}

pub fn error(response: &Response) -> &ErrorBody {
    match &response.body {
        Body::Error(body) => body,
        Body::Success(body) => panic!("expected an error, got {body:?}"),
    }
}

/// The fields named in an error response, in order.
pub fn fields(response: &Response) -> Vec<&str> {
    error(response)
        .details
        .iter()
        .map(|d| d.field.as_str())
        .collect()
}

/// `SPKEY_LONG=1` runs the reliability harnesses at full size.
pub fn long_run() -> bool {
    std::env::var_os("SPKEY_LONG").is_some()
}

/// One full sync of `device` with `hub`, in process: push, accept, apply
/// the reply, then pull.
pub fn sync_with(device: &Store, hub: &Store) {
    let reply = hub.accept(&device.push().unwrap()).unwrap();
    device.apply_reply(&reply).unwrap();
    let pull = hub
        .export(device.pull_cursor().unwrap(), usize::MAX)
        .unwrap();
    device.import(&pull).unwrap();
}

/// The `spkey` CLI on the store at `db`, run to its end.
pub fn spkey_on(db: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_spkey"))
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("run spkey")
}
