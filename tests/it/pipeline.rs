//! The pipeline over a `Staged` log (the PostgreSQL hub's way) decides as
//! the store's own transaction does: the same push, loaded from the hub's
//! state, gets the same reply bytes and appends the same events. And a
//! staged log refuses to answer what it was not loaded with.

use std::sync::Arc;

use spkey_store::pipeline::{Needs, Pipeline, Source, Staged, Stamper};
use spkey_store::{
    CreateUser, Event, Intent, ManualClock, Push, Scope, Store, StoreError, reply_batch,
};

fn id(n: u128) -> String {
    uuid::Uuid::from_u128(0x5ea9_0000 + n).to_string()
}

#[test]
fn a_staged_log_decides_a_push_exactly_as_the_store_does() {
    decides_as_the_store(Scope::All, 2);
    // A user's token: its own event accepted, the others refused (403)
    // before anything of them is read.
    decides_as_the_store(Scope::user(&id(10)).unwrap(), 1);
}

fn decides_as_the_store(scope: Scope, created: usize) {
    let hub = Store::in_memory().unwrap();
    for (n, email) in [(1, "taken@example.com"), (2, "b@example.com")] {
        hub.create_user(&CreateUser::new(id(n), email)).unwrap();
    }
    let device = Store::in_memory().unwrap();
    for command in [
        CreateUser::new(id(10), "new@example.com"),
        CreateUser::new(id(11), "TAKEN@example.com"),
        CreateUser::new(id(2), "other@example.com"),
        CreateUser::new(id(12), "new2@example.com").first_name("Ana"),
    ] {
        device.create_user(&command).unwrap();
    }
    let bytes = device.push().unwrap();
    let head = hub.head_position().unwrap();

    let push = Push::open(hub.store_id(), &bytes).unwrap();
    let needs = Needs::of_push(&push.events, scope);
    let stamper = Stamper::new(Arc::new(ManualClock::new(1_700_000_000_000)));
    let mut staged = Staged::new(hub.store_id(), &stamper, head, &needs);
    for user in &needs.users {
        for event in hub.aggregate_events(*user).unwrap() {
            staged.load_event(event).unwrap();
        }
    }
    for event in &push.events {
        let Event::UserCreated(created) = &event.event else {
            unreachable!("a push holds creations")
        };
        if let Some(owner) = hub.user_id_by_email(&created.email).unwrap()
            && needs.email_keys.contains(&created.email_key())
        {
            staged.load_email(&created.email_key(), owner).unwrap();
        }
    }
    let staged_items = staged.accept_push(&push.events, scope).unwrap();
    let forbidden = staged_items
        .iter()
        .filter(|(_, outcome)| matches!(outcome, Err(r) if r.code() == 403))
        .count();
    assert_eq!(
        forbidden,
        if scope == Scope::All {
            0
        } else {
            push.events.len() - 1
        }
    );

    let reply = hub.accept_as(&bytes, scope).unwrap();
    assert_eq!(reply_batch(hub.store_id(), &staged_items), reply);
    assert_eq!(
        staged.appended(),
        &hub.events(head + 1, usize::MAX).unwrap()[..]
    );
    assert_eq!(
        staged.appended().len(),
        created,
        "new users; conflicts; forbidden"
    );
    assert!(staged.email_changes().all(|(_, owner)| {
        owner.is_some_and(|o| staged.appended().iter().any(|e| e.aggregate_id() == o))
    }));
}

#[test]
fn a_staged_log_refuses_what_it_was_not_loaded_with() {
    let stamper = Stamper::new(Arc::new(ManualClock::new(1_700_000_000_000)));
    let created = Intent::Create(CreateUser::new(id(1), "a@example.com").validate().unwrap());
    let mut staged = Staged::new(uuid::Uuid::from_u128(7), &stamper, 0, &Needs::default());
    let refused = staged.execute(created.clone(), Source::Local);
    assert!(
        matches!(&refused, Err(StoreError::Inconsistent(why)) if why.contains("not loaded")),
        "{refused:?}"
    );
    assert!(staged.appended().is_empty());
    let mut loaded = Staged::new(
        uuid::Uuid::from_u128(7),
        &stamper,
        0,
        &Needs::of_intents([&created]),
    );
    assert!(matches!(
        loaded.execute(created, Source::Local).unwrap(),
        spkey_store::pipeline::Executed::Recorded(_)
    ));
    assert_eq!(loaded.appended()[0].position, 1);
}
