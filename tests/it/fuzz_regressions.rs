//! The fuzz targets' checks, run by `cargo test` over every seed and every
//! input that ever crashed a target (`fuzz/regressions/<target>/`), so a
//! fixed crash stays fixed without a nightly toolchain.

use std::path::PathBuf;

use spkey_store::{Store, codec};

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n != ".keep") {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, bytes));
            }
        }
    }
    out
}

#[test]
fn wire_inputs_get_a_contract_status() {
    let store = Store::in_memory().unwrap();
    let cases = inputs("wire");
    assert!(!cases.is_empty(), "no wire seeds found");
    for (path, data) in cases {
        let (id, body) = match data.iter().position(|b| *b == b'\n') {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => (&data[..0], &data[..]),
        };
        let response = store.create_user_wire(&String::from_utf8_lossy(id), body);
        assert!(
            matches!(response.status, 200 | 201 | 400 | 409 | 413),
            "{}: status {}",
            path.display(),
            response.status
        );
    }
}

#[test]
fn envelope_inputs_decode_or_fail_cleanly_and_round_trip() {
    let cases = inputs("envelope");
    assert!(!cases.is_empty(), "no envelope seeds found");
    let mut decoded = 0;
    for (path, data) in cases {
        let mut sealed = data.clone();
        sealed.extend_from_slice(&crc32fast::hash(&data).to_le_bytes());
        for bytes in [data, sealed] {
            if let Ok(event) = codec::decode(&bytes) {
                decoded += 1;
                let again = codec::encode(&event);
                assert_eq!(codec::decode(&again), Ok(event), "{}", path.display());
            }
        }
    }
    assert!(
        decoded > 0,
        "no seed decoded: the round trip was never checked"
    );
}

#[test]
fn batch_inputs_are_answered_and_leave_sound_stores() {
    let cases = inputs("batch");
    assert!(!cases.is_empty(), "no batch seeds found");
    for (path, data) in cases {
        let hub = Store::in_memory().unwrap();
        let device = Store::in_memory().unwrap();
        let _ = hub.accept(&data);
        let user = spkey_store::Scope::user("00000000-0000-4000-8000-000000000001").unwrap();
        let _ = hub.accept_as(&data, user);
        let _ = device.apply_reply(&data);
        let _ = device.import(&data);
        assert!(hub.verify().unwrap().is_sound(), "{}", path.display());
        assert!(device.verify().unwrap().is_sound(), "{}", path.display());
    }
}
