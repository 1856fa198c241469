//! Sync batches from another machine: arbitrary bytes given to the hub as a
//! push (from a service and from one user's token), and to a device as a
//! reply and as a pull (format 1, and format 2's pulls of the organization
//! or of one user, with their watermarks). Every call must answer with a
//! result, never panic, and leave stores that verify.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use spkey_store::{Scope, Store};

static STORES: OnceLock<(Store, Store)> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let (hub, device) = STORES.get_or_init(|| {
        let open = || Store::in_memory().expect("in-memory store");
        (open(), open())
    });
    let _ = hub.accept(data);
    let user = Scope::user("00000000-0000-4000-8000-000000000001").expect("a user id");
    let _ = hub.accept_as(data, user);
    let _ = device.apply_reply(data);
    let _ = device.import(data);
    assert!(hub.verify().expect("verify").is_sound());
    assert!(device.verify().expect("verify").is_sound());
});
