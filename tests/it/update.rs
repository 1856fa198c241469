//! UpdateUser: the command on one store, on the wire, and across devices
//! that sync with a hub — rejections compensated, replicas converging.

use spkey_store::contract::Body;
use spkey_store::{
    CreateUser, Event, Field, ManualClock, Outcome, Rejection, Store, UpdateUser, User,
};
use uuid::Uuid;

use crate::support::sync_with as sync;

use crate::support::{ID, NOW_MS, OTHER_ID, given_store};

fn id(n: u128) -> String {
    Uuid::from_u128(0xf000 + n).to_string()
}

fn store_at(clock: &ManualClock) -> Store {
    Store::builder().clock(clock.clone()).in_memory().unwrap()
}

fn create(store: &Store, n: u128, email: &str) {
    let outcome = store
        .create_user(&CreateUser::new(id(n), email).first_name("Ann"))
        .unwrap();
    assert!(matches!(outcome, Outcome::Recorded(_)), "{outcome:?}");
}

fn user(store: &Store, n: u128) -> User {
    store
        .user(id(n).parse().unwrap())
        .unwrap()
        .expect("the user")
}

fn owner(store: &Store, email: &str) -> Option<Uuid> {
    store.user_id_by_email(email).unwrap()
}

#[test]
fn an_update_changes_the_user_and_frees_its_old_email_at_once() {
    let given = given_store();
    let store = &given.store;
    create(store, 1, "old@example.com");
    let update = UpdateUser::new(id(1))
        .email("New@Example.com")
        .phone_number("+1 555 0100")
        .clear(Field::FirstName);
    let Outcome::Recorded(event) = store.update_user(&update).unwrap() else {
        panic!("recorded");
    };
    assert_eq!((event.version, event.position), (2, 2));
    let now = user(store, 1);
    assert_eq!(now.profile.email, "New@Example.com");
    assert_eq!(now.profile.first_name, None);
    assert_eq!(now.profile.phone_number.as_deref(), Some("+1 555 0100"));
    assert_eq!(now.version, 2);
    // The old email is someone else's to take; the new one is not.
    assert_eq!(owner(store, "old@example.com"), None);
    assert_eq!(
        owner(store, "new@EXAMPLE.com"),
        Some(id(1).parse().unwrap())
    );
    create(store, 2, "OLD@example.com");
    let taken = store
        .create_user(&CreateUser::new(id(3), "new@example.com"))
        .unwrap();
    assert!(matches!(taken, Outcome::Rejected(Rejection::Conflict(_))));
    assert!(store.verify().unwrap().is_sound());
    // And so after a reopen, from the file.
    let given = given.reopen();
    assert_eq!(user(&given.store, 1).profile.email, "New@Example.com");
    assert!(given.store.verify().unwrap().is_sound());
}

#[test]
fn the_wire_answers_200_404_409_and_replays_with_the_original_body() {
    let given = given_store();
    let store = &given.store;
    assert_eq!(
        given
            .wire(ID, &crate::support::body(ID, "a@example.com"))
            .status,
        201
    );
    assert_eq!(
        given
            .wire(OTHER_ID, &crate::support::body(OTHER_ID, "b@example.com"))
            .status,
        201
    );
    let update = store.update_user_wire(ID, br#"{"email":"c@example.com","lastName":null}"#);
    assert_eq!(update.status, 200, "{}", update.to_json());
    let Body::Success(success) = &update.body else {
        panic!("a success body");
    };
    assert_eq!((success.version, success.user_id.as_str()), (2, ID));
    assert_eq!(success.event.event_type, "UserUpdated");
    assert_eq!(
        serde_json::to_value(&success.event.data).unwrap(),
        serde_json::json!({"userId": ID, "email": "c@example.com", "lastName": null})
    );
    // The same command again: 200 with the original body, nothing written.
    let head = store.head_position().unwrap();
    let replay = store.update_user_wire(ID, br#"{"email":"c@example.com","lastName":null}"#);
    assert_eq!((replay.status, replay.to_json()), (200, update.to_json()));
    assert_eq!(store.head_position().unwrap(), head);

    let unknown = store.update_user_wire(&Uuid::from_u128(9).to_string(), br#"{"firstName":"X"}"#);
    assert_eq!(unknown.status, 404, "{}", unknown.to_json());
    assert!(unknown.to_json().contains(r#""error":"Not Found""#));
    let taken = store.update_user_wire(OTHER_ID, br#"{"email":"C@example.com"}"#);
    assert_eq!(taken.status, 409);
    assert!(
        taken.to_json().contains(r#""field":"email""#),
        "{}",
        taken.to_json()
    );
    assert_eq!(store.head_position().unwrap(), head);
}

#[test]
fn a_bad_update_is_a_400_naming_every_fault_and_writes_nothing() {
    let given = given_store();
    create(&given.store, 1, "a@example.com");
    let before = given.snapshot();
    for (body, fields) in [
        (r#"{}"#, vec!["body"]),
        (r#"{"email":null}"#, vec!["email"]),
        (
            r#"{"email":"nope","phoneNumber":"12","nickname":"x"}"#,
            vec!["email", "phoneNumber", "nickname"],
        ),
        (
            r#"{"firstName":5,"userId":"6fa459ea-ee8a-3ca4-894e-db77e160355e"}"#,
            vec!["userId", "firstName"],
        ),
        (r#"[1]"#, vec!["body"]),
    ] {
        let response = given.store.update_user_wire(&id(1), body.as_bytes());
        assert_eq!(response.status, 400, "{body}");
        let Body::Error(error) = response.body else {
            panic!("an error body");
        };
        let named: Vec<&str> = error.details.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(named, fields, "{body}");
    }
    assert_eq!(given.snapshot(), before);
}

#[test]
fn a_user_token_updates_only_its_own_user_on_the_hub_side_too() {
    use spkey_store::Scope;
    let (device, hub) = (
        crate::support::memory_store(),
        crate::support::memory_store(),
    );
    create(&device, 1, "a@example.com");
    create(&device, 2, "b@example.com");
    sync(&device, &hub);
    device
        .update_user(&UpdateUser::new(id(1)).first_name("Own"))
        .unwrap();
    device
        .update_user(&UpdateUser::new(id(2)).first_name("Other"))
        .unwrap();
    let scope = Scope::user(&id(1)).unwrap();
    let reply = hub.accept_as(&device.push().unwrap(), scope).unwrap();
    let summary = device.apply_reply(&reply).unwrap();
    assert_eq!((summary.accepted, summary.rejected), (1, 1));
    assert_eq!(user(&hub, 1).profile.first_name.as_deref(), Some("Own"));
    assert_eq!(user(&hub, 2).profile.first_name.as_deref(), Some("Ann"));
    // The refused update is void on the device.
    assert_eq!(user(&device, 2).profile.first_name.as_deref(), Some("Ann"));
}

#[test]
fn an_offline_update_syncs_and_another_device_sees_it_and_the_old_email_free() {
    let clock = ManualClock::new(NOW_MS);
    let (a, b, hub) = (store_at(&clock), store_at(&clock), store_at(&clock));
    create(&a, 1, "old@example.com");
    sync(&a, &hub);
    sync(&b, &hub);
    clock.advance(1_000);
    b.update_user(&UpdateUser::new(id(1)).email("new@example.com"))
        .unwrap();
    assert_eq!(b.pending().unwrap().len(), 1);
    sync(&b, &hub);
    assert!(b.pending().unwrap().is_empty());
    sync(&a, &hub);
    for store in [&a, &b, &hub] {
        assert_eq!(user(store, 1).profile.email, "new@example.com");
        assert_eq!(owner(store, "old@example.com"), None);
        assert!(store.verify().unwrap().is_sound());
    }
    // The old email is free for a new account everywhere.
    create(&a, 2, "old@example.com");
    sync(&a, &hub);
    assert_eq!(owner(&hub, "old@example.com"), Some(id(2).parse().unwrap()));
}

#[test]
fn an_update_to_an_email_taken_elsewhere_is_rejected_and_compensated() {
    let clock = ManualClock::new(NOW_MS);
    let (a, b, hub) = (store_at(&clock), store_at(&clock), store_at(&clock));
    create(&a, 1, "ann@example.com");
    sync(&a, &hub);
    sync(&b, &hub);
    // Offline, b moves user 1 to x@; meanwhile a creates user 2 with x@
    // and reaches the hub first.
    b.update_user(
        &UpdateUser::new(id(1))
            .email("x@example.com")
            .last_name("Lee"),
    )
    .unwrap();
    assert_eq!(owner(&b, "x@example.com"), Some(id(1).parse().unwrap()));
    create(&a, 2, "x@example.com");
    sync(&a, &hub);
    sync(&b, &hub);
    let refused = b.rejections().unwrap();
    assert_eq!(refused.len(), 1);
    let Event::UserUpdateRejected(refusal) = &refused[0].event else {
        panic!("a UserUpdateRejected: {refused:?}");
    };
    assert_eq!(
        (refusal.code, refusal.details[0].field),
        (409, Field::Email)
    );
    // The whole update is void: email and last name as before.
    let now = user(&b, 1);
    assert_eq!(
        (now.profile.email.as_str(), now.profile.last_name.as_deref()),
        ("ann@example.com", None)
    );
    assert_eq!(owner(&b, "ann@example.com"), Some(id(1).parse().unwrap()));
    assert_eq!(owner(&b, "x@example.com"), Some(id(2).parse().unwrap()));
    assert!(b.verify().unwrap().is_sound(), "{:?}", b.verify().unwrap());
    assert_eq!(user(&hub, 1).profile, now.profile);
}

#[test]
fn an_update_of_a_user_whose_offline_creation_was_refused_is_refused_too() {
    let (a, b, hub) = (
        crate::support::memory_store(),
        crate::support::memory_store(),
        crate::support::memory_store(),
    );
    create(&a, 1, "x@example.com");
    sync(&a, &hub);
    create(&b, 2, "X@example.com");
    b.update_user(&UpdateUser::new(id(2)).first_name("Bo"))
        .unwrap();
    sync(&b, &hub);
    let codes: Vec<(&str, u16)> = b
        .rejections()
        .unwrap()
        .iter()
        .map(|e| (e.event.event_type(), e.event.refusal().unwrap().code))
        .collect();
    assert_eq!(
        codes,
        [("UserCreationRejected", 409), ("UserUpdateRejected", 404)]
    );
    assert!(user(&b, 2).is_rejected());
    assert!(hub.user(id(2).parse().unwrap()).unwrap().is_none());
    assert!(b.verify().unwrap().is_sound());
}

#[test]
fn concurrent_offline_updates_converge_on_the_later_one_whatever_the_sync_order() {
    for a_first in [true, false] {
        let clock = ManualClock::new(NOW_MS);
        let (a, b, hub) = (store_at(&clock), store_at(&clock), store_at(&clock));
        create(&a, 1, "ann@example.com");
        sync(&a, &hub);
        sync(&b, &hub);
        clock.advance(10);
        a.update_user(
            &UpdateUser::new(id(1))
                .first_name("Early")
                .phone_number("+1 555 0101"),
        )
        .unwrap();
        clock.advance(10);
        b.update_user(&UpdateUser::new(id(1)).first_name("Late"))
            .unwrap();
        let order = if a_first { [&a, &b, &a] } else { [&b, &a, &b] };
        for device in order {
            sync(device, &hub);
        }
        for store in [&a, &b, &hub] {
            let now = user(store, 1);
            assert_eq!(
                now.profile.first_name.as_deref(),
                Some("Late"),
                "a first: {a_first}"
            );
            assert_eq!(now.profile.phone_number.as_deref(), Some("+1 555 0101"));
            assert_eq!(now.version, 3);
        }
    }
}
