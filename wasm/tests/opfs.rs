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

/// The bytes of the OPFS file `name`, read through the File API (the store
/// must have let it go).
async fn opfs_file(name: &str) -> Vec<u8> {
    use wasm_bindgen_futures::JsFuture;
    let call = |target: &JsValue, method: &str, args: &[JsValue]| -> js_sys::Promise {
        let function: js_sys::Function = Reflect::get(target, &method.into()).unwrap().into();
        let args: js_sys::Array = args.iter().collect();
        function.apply(target, &args).unwrap().into()
    };
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).unwrap();
    let storage = Reflect::get(&navigator, &"storage".into()).unwrap();
    let root = JsFuture::from(call(&storage, "getDirectory", &[]))
        .await
        .unwrap();
    let handle = JsFuture::from(call(&root, "getFileHandle", &[name.into()]))
        .await
        .unwrap();
    let file = JsFuture::from(call(&handle, "getFile", &[])).await.unwrap();
    let buffer = JsFuture::from(call(&file, "arrayBuffer", &[]))
        .await
        .unwrap();
    js_sys::Uint8Array::new(&buffer).to_vec()
}

/// Whether `bytes` hold `value` as UTF-8 or UTF-16 (either order), as
/// given or lower case.
fn holds(bytes: &[u8], value: &str) -> bool {
    [value.to_owned(), value.to_lowercase()].iter().any(|text| {
        let utf16 = |order: fn(u16) -> [u8; 2]| -> Vec<u8> {
            text.encode_utf16().flat_map(order).collect()
        };
        [
            text.as_bytes().to_vec(),
            utf16(u16::to_le_bytes),
            utf16(u16::to_be_bytes),
        ]
        .iter()
        .any(|form| bytes.windows(form.len()).any(|w| w == &form[..]))
    })
}

#[wasm_bindgen_test]
async fn after_delete_user_no_byte_of_the_opfs_files_holds_the_erased_user() {
    let name = fresh_name("erase");
    let mut store = EventStore::open_opfs(name.clone()).await.unwrap();
    let erased = [
        "Xanthippe.Quorrelby@Erasable.example",
        "Xanthippe",
        "Quorrelby",
        "+44 20 7946 0311",
    ];
    let kept = [
        "bartholomew.keeping@example.com",
        "Bartholomew",
        "Keepington",
        "+1 555 0100 42",
    ];
    for (n, [email, first, last, phone]) in [(1u128, erased), (2, kept)] {
        let id = uuid::Uuid::from_u128(n).to_string();
        let body = format!(
            r#"{{"userId":"{id}","email":"{email}","firstName":"{first}","lastName":"placeholder","phoneNumber":"{phone}"}}"#
        );
        store.create_user(&id, JsValue::from_str(&body)).unwrap();
        let update = format!(r#"{{"lastName":"{last}"}}"#);
        store.update_user(&id, JsValue::from_str(&update)).unwrap();
    }
    let before = store.snapshot().unwrap();
    assert!(erased.iter().all(|value| holds(&before, value)));

    let answer = store
        .delete_user(&uuid::Uuid::from_u128(1).to_string(), JsValue::UNDEFINED)
        .unwrap();
    assert_eq!(
        Reflect::get(&answer, &"success".into()).unwrap(),
        JsValue::TRUE
    );

    // The store reads on, rewritten: the file as it holds it now.
    let live = store.snapshot().unwrap();
    assert_eq!(erased.iter().filter(|v| holds(&live, v)).count(), 0);
    let user = store.user(&uuid::Uuid::from_u128(2).to_string()).unwrap();
    assert_eq!(
        Reflect::get(&user, &"lastName".into()).unwrap(),
        JsValue::from_str("Keepington")
    );
    store.close().unwrap();

    for file in [name.clone(), format!("{name}-scratch")] {
        let bytes = opfs_file(&file).await;
        let left: Vec<_> = erased.iter().filter(|v| holds(&bytes, v)).collect();
        assert!(left.is_empty(), "{file} holds {left:?}");
    }
    let main = opfs_file(&name).await;
    assert!(kept.iter().all(|value| holds(&main, value)));
    let reopened = EventStore::open_opfs(name).await.unwrap();
    reopened.verify().unwrap();
    assert_eq!(reopened.head_position().unwrap(), 5.0);
}
