//! The wire path end to end: path id + body bytes through parsing,
//! validation and a real (in-memory) store. Any panic is a bug; any status
//! outside the contract is a bug.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use spkey_store::Store;

static STORE: OnceLock<Store> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    // The first line is the path id, the rest the body.
    let (id, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let id = String::from_utf8_lossy(id);
    let store = STORE.get_or_init(|| Store::in_memory().expect("in-memory store"));
    let response = store.create_user_wire(&id, body);
    assert!(
        matches!(response.status, 200 | 201 | 400 | 409 | 413),
        "status {} outside the contract",
        response.status
    );
    let json = response.to_json();
    assert!(serde_json_like(&json));
});

/// The body is one JSON object on one line.
fn serde_json_like(json: &str) -> bool {
    json.starts_with('{') && json.ends_with('}') && !json.contains('\n')
}
