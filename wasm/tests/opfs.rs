//! The OPFS store, in a dedicated Worker of headless Chromium
//! (scripts/test-wasm runs this file there).

#![cfg(target_arch = "wasm32")]

use js_sys::{JSON, Reflect};
use spkey_store_wasm::EventStore;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

/// A name no earlier run used: OPFS outlives a page.
fn fresh_name(label: &str) -> String {
    format!(
        "{label}-{}-{}.redb",
        js_sys::Date::now(),
        js_sys::Math::random()
    )
}

fn create(store: &EventStore, n: u128) -> JsValue {
    let id = uuid::Uuid::from_u128(n).to_string();
    let body = format!(r#"{{"userId":"{id}","email":"opfs{n}@example.com"}}"#);
    store.create_user(&id, JsValue::from_str(&body)).unwrap()
}

fn error_name(error: JsValue) -> String {
    String::from(error.dyn_into::<js_sys::Error>().expect("an Error").name())
}

#[wasm_bindgen_test]
async fn users_written_to_opfs_are_there_after_reopening() {
    let name = fresh_name("reopen");
    let mut store = EventStore::open_opfs(name.clone()).await.unwrap();
    for n in 1..=5 {
        let answer = create(&store, n);
        assert_eq!(
            Reflect::get(&answer, &"success".into()).unwrap(),
            JsValue::TRUE
        );
    }
    store.close().unwrap();

    let reopened = EventStore::open_opfs(name).await.unwrap();

    assert_eq!(reopened.head_position().unwrap(), 5.0);
    let user = reopened
        .user(&uuid::Uuid::from_u128(3).to_string())
        .unwrap();
    assert_eq!(
        Reflect::get(&user, &"email".into()).unwrap(),
        JsValue::from_str("opfs3@example.com")
    );
    reopened.verify().unwrap();
}

#[wasm_bindgen_test]
async fn a_second_open_of_the_same_name_is_locked_until_the_first_closes() {
    let name = fresh_name("lock");
    let mut first = EventStore::open_opfs(name.clone()).await.unwrap();
    create(&first, 1);

    let second = EventStore::open_opfs(name.clone())
        .await
        .err()
        .expect("locked");
    assert_eq!(error_name(second), "StoreLockedError");

    first.close().unwrap();
    let third = EventStore::open_opfs(name).await.unwrap();
    assert_eq!(third.head_position().unwrap(), 1.0);
}

#[wasm_bindgen_test]
async fn an_opfs_store_snapshots_into_memory() {
    let store = EventStore::open_opfs(fresh_name("snapshot")).await.unwrap();
    create(&store, 1);
    create(&store, 2);

    let copy = EventStore::from_snapshot(&store.snapshot().unwrap()).unwrap();

    assert_eq!(copy.head_position().unwrap(), 2.0);
    let events = copy.events(None, None).unwrap();
    let text = JSON::stringify(&events).unwrap().as_string().unwrap();
    assert!(text.contains("opfs2@example.com"), "{text}");
}
