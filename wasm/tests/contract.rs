//! The JS API's contract cases, run under Node and in headless Chromium's
//! main thread (scripts/test-wasm runs this file in both).

#![cfg(target_arch = "wasm32")]

use js_sys::{JSON, Reflect};
use spkey_store_wasm::{EventStore, names};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::wasm_bindgen_test;

const ID: &str = "550e8400-e29b-41d4-a716-446655440000";
const OTHER: &str = "6fa459ea-ee8a-3ca4-894e-db77e160355e";

fn body(id: &str, email: &str) -> String {
    format!(
        r#"{{"userId":"{id}","email":"{email}","firstName":"John Doe","lastName":"John Doe","phoneNumber":"+1-555-0123"}}"#
    )
}

fn get(value: &JsValue, path: &str) -> JsValue {
    path.split('.').fold(value.clone(), |v, key| {
        let key = match key.parse::<u32>() {
            Ok(index) => JsValue::from(index),
            Err(_) => JsValue::from_str(key),
        };
        Reflect::get(&v, &key).unwrap()
    })
}

fn text(value: &JsValue, path: &str) -> String {
    get(value, path)
        .as_string()
        .unwrap_or_else(|| panic!("{path} is not a string"))
}

fn number(value: &JsValue, path: &str) -> f64 {
    get(value, path)
        .as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number"))
}

fn send(store: &EventStore, id: &str, body: &str) -> (u16, JsValue) {
    let answer = store
        .create_user_with_status(id, JsValue::from_str(body))
        .unwrap();
    (number(&answer, "status") as u16, get(&answer, "body"))
}

fn error_name(error: JsValue) -> String {
    let error: js_sys::Error = error.dyn_into().expect("a real Error object");
    String::from(error.name())
}

#[wasm_bindgen_test]
fn a_new_user_is_201_with_the_recorded_event_as_plain_js() {
    let store = EventStore::in_memory().unwrap();

    let (status, body) = send(&store, ID, &body(ID, "user@example.com"));

    assert_eq!(status, 201);
    assert_eq!(get(&body, "success"), JsValue::TRUE);
    assert_eq!(text(&body, "aggregateId"), ID);
    assert_eq!(text(&body, "userId"), ID);
    assert_eq!(number(&body, "version"), 1.0);
    assert_eq!(number(&body, "event.position"), 1.0);
    assert_eq!(text(&body, "event.eventType"), "UserCreated");
    assert_eq!(text(&body, "event.data.phoneNumber"), "+1-555-0123");
    assert!(text(&body, "event.recordedAt").ends_with('Z'));
    // Plain objects, not Maps: JSON.stringify sees every field.
    let json = JSON::stringify(&body).unwrap().as_string().unwrap();
    assert!(json.contains(r#""eventType":"UserCreated""#), "{json}");
}

#[wasm_bindgen_test]
fn a_replay_is_200_with_the_same_body_and_records_nothing() {
    let store = EventStore::in_memory().unwrap();
    let (_, first) = send(&store, ID, &body(ID, "user@example.com"));

    let (status, again) = send(&store, ID, &body(ID, "user@example.com"));

    assert_eq!(status, 200);
    assert_eq!(
        JSON::stringify(&again).unwrap(),
        JSON::stringify(&first).unwrap()
    );
    assert_eq!(store.head_position().unwrap(), 1.0);
}

#[wasm_bindgen_test]
fn the_body_may_be_an_object() {
    let store = EventStore::in_memory().unwrap();
    let object = JSON::parse(&body(ID, "user@example.com")).unwrap();

    let answer = store.create_user(ID, object).unwrap();

    assert_eq!(get(&answer, "success"), JsValue::TRUE);
}

/// The shared table of bad requests (`tests/fixtures/contract.json`, read
/// by the Rust and Kotlin tests too): every case a JS string can carry
/// (the non-UTF-8 one cannot).
#[wasm_bindgen_test]
fn every_bad_input_is_returned_with_its_status_and_fields_and_changes_nothing() {
    let table = JSON::parse(include_str!("../../tests/fixtures/contract.json")).unwrap();
    let store = EventStore::in_memory().unwrap();
    let given = get(&table, "given.0");
    send(&store, &text(&given, "id"), &text(&given, "body"));
    let cases: js_sys::Array = get(&table, "cases").dyn_into().unwrap();
    let mut sent = 0;
    for case in cases.iter() {
        let request = match (
            get(&case, "body").as_string(),
            get(&case, "bodyOfSpaces").as_f64(),
        ) {
            (Some(body), _) => body,
            (None, Some(spaces)) => " ".repeat(spaces as usize),
            (None, None) => continue,
        };
        let name = text(&case, "name");
        let (status, body) = send(&store, &text(&case, "id"), &request);

        let expected = number(&case, "status");
        assert_eq!(
            f64::from(status),
            expected,
            "{name}: {:?}",
            JSON::stringify(&body)
        );
        assert_eq!(number(&body, "code"), expected, "{name}");
        let strings = |array: JsValue, key: Option<&str>| -> Vec<String> {
            js_sys::Array::from(&array)
                .iter()
                .map(|item| match key {
                    Some(key) => text(&item, key),
                    None => item.as_string().unwrap(),
                })
                .collect()
        };
        assert_eq!(
            strings(get(&body, "details"), Some("field")),
            strings(get(&case, "fields"), None),
            "{name}"
        );
        assert_eq!(
            store.head_position().unwrap(),
            1.0,
            "{name} changed the store"
        );
        sent += 1;
    }
    assert_eq!(sent, cases.length() - 1, "every case but the non-UTF-8 one");
}

#[wasm_bindgen_test]
fn a_body_json_cannot_express_is_a_400_naming_body() {
    let store = EventStore::in_memory().unwrap();
    let object = JSON::parse(&body(ID, "user@example.com")).unwrap();
    Reflect::set(
        &object,
        &"firstName".into(),
        &js_sys::BigInt::from(5u32).into(),
    )
    .unwrap();

    let answer = store.create_user_with_status(ID, object).unwrap();

    assert_eq!(number(&answer, "status"), 400.0);
    assert_eq!(text(&answer, "body.details.0.field"), "body");
}

#[wasm_bindgen_test]
fn reads_return_plain_values_and_bad_arguments_throw_named_errors() {
    let store = EventStore::in_memory().unwrap();
    for n in 1..=3u128 {
        let id = uuid::Uuid::from_u128(n).to_string();
        send(&store, &id, &body(&id, &format!("u{n}@example.com")));
    }

    let user = store.user(&uuid::Uuid::from_u128(2).to_string()).unwrap();
    let missing = store.user(OTHER).unwrap();
    let page = store.events(Some(2.0), Some(5.0)).unwrap();
    let bad_id = store.user("nope").unwrap_err();
    let bad_limit = store.events(Some(1.0), Some(-1.0)).unwrap_err();
    let fraction = store.events(Some(1.5), None).unwrap_err();

    assert_eq!(text(&user, "email"), "u2@example.com");
    assert_eq!(number(&user, "version"), 1.0);
    assert!(missing.is_null());
    let page: js_sys::Array = page.dyn_into().unwrap();
    assert_eq!(page.length(), 2);
    assert_eq!(number(&page.get(0), "position"), 2.0);
    assert_eq!(error_name(bad_id), names::INVALID_ARGUMENT);
    assert_eq!(error_name(bad_limit), names::INVALID_ARGUMENT);
    assert_eq!(error_name(fraction), names::INVALID_ARGUMENT);
    store.verify().unwrap();
}

#[wasm_bindgen_test]
fn a_snapshot_restores_the_store_and_damaged_bytes_are_refused() {
    let store = EventStore::in_memory().unwrap();
    send(&store, ID, &body(ID, "user@example.com"));

    let bytes = store.snapshot().unwrap();
    let restored = EventStore::from_snapshot(&bytes).unwrap();
    let mut damaged = bytes.clone();
    damaged.truncate(bytes.len() / 2);
    damaged[0] ^= 0xff;
    let refused = EventStore::from_snapshot(&damaged).err().expect("refused");

    assert_eq!(restored.head_position().unwrap(), 1.0);
    assert_eq!(
        text(&restored.user(ID).unwrap(), "email"),
        "user@example.com"
    );
    restored.verify().unwrap();
    assert!(
        ["CorruptStoreError", "StorageError"].contains(&error_name(refused).as_str()),
        "damaged snapshot accepted"
    );
}

#[wasm_bindgen_test]
fn a_closed_store_throws_store_closed() {
    let mut store = EventStore::in_memory().unwrap();
    store.close().unwrap();
    store.close().unwrap();

    let after = store.head_position().unwrap_err();

    assert_eq!(error_name(after), names::CLOSED);
}

#[wasm_bindgen_test]
async fn opfs_outside_a_dedicated_worker_is_not_supported() {
    let refused = EventStore::open_opfs("users".into())
        .await
        .err()
        .expect("refused");

    assert_eq!(error_name(refused), names::NOT_SUPPORTED);
}

#[path = "../../tests/common/email_corpus.rs"]
mod email_corpus;

/// The email rule's whole corpus through the JS API: the same verdicts and
/// messages as natively, so the Unicode tables in the package are the
/// native ones.
#[wasm_bindgen_test]
fn the_email_corpus_gets_the_same_verdicts_as_natively() {
    let store = EventStore::in_memory().unwrap();
    let mut wrong = Vec::new();
    for (n, case) in email_corpus::cases().iter().enumerate() {
        let id = format!("00000000-0000-4000-8000-{:012x}", 0xe3a1_0000u64 + n as u64);
        let body = JsValue::from_str(&email_corpus::body(&id, &case.address));
        let answer = store.create_user_with_status(&id, body).unwrap();
        let status = number(&answer, "status") as u16;
        let ok = match (&case.message, status) {
            (None, 201) => true,
            (Some(fragment), 400) => {
                text(&answer, "body.details.0.field") == "email"
                    && text(&answer, "body.details.0.message").contains(fragment.as_str())
            }
            _ => false,
        };
        if !ok || case.valid != case.message.is_none() {
            wrong.push(format!("{:?} ({}): {status}", case.address, case.why));
        }
    }
    for (n, pair) in email_corpus::pairs().iter().enumerate() {
        let store = EventStore::in_memory().unwrap();
        let (a, b) = (
            format!(
                "00000000-0000-4000-8000-{:012x}",
                0xe3b1_0000u64 + 2 * n as u64
            ),
            format!(
                "00000000-0000-4000-8000-{:012x}",
                0xe3b1_0001u64 + 2 * n as u64
            ),
        );
        let first = store
            .create_user_with_status(&a, JsValue::from_str(&email_corpus::body(&a, &pair.first)));
        let second = store
            .create_user_with_status(&b, JsValue::from_str(&email_corpus::body(&b, &pair.second)));
        let expected = if pair.same { 409.0 } else { 201.0 };
        if number(&first.unwrap(), "status") != 201.0
            || number(&second.unwrap(), "status") != expected
        {
            wrong.push(format!(
                "{:?} / {:?} ({})",
                pair.first, pair.second, pair.why
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
