//! Sync batches from another machine: arbitrary bytes given to the hub as a
//! push, and to a device as a reply and as a pull. Every call must answer
//! with a result, never panic, and leave stores that verify.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use spkey_store::Store;

static STORES: OnceLock<(Store, Store)> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let (hub, device) = STORES.get_or_init(|| {
        let open = || Store::in_memory().expect("in-memory store");
        (open(), open())
    });
    let _ = hub.accept(data);
    let _ = device.apply_reply(data);
    let _ = device.import(data);
    assert!(hub.verify().expect("verify").is_sound());
    assert!(device.verify().expect("verify").is_sound());
});
