//! Live changes: a subscription yields every event after its cursor once,
//! in position order — local creates, compensations and sync imports alike
//! — and a waiting thread wakes on the commit.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spkey_store::{CreateUser, Event, Store};

fn id(n: u128) -> String {
    uuid::Uuid::from_u128(0x5ab5_0000 + n).to_string()
}

fn create(store: &Store, n: u128, email: &str) {
    store.create_user(&CreateUser::new(id(n), email)).unwrap();
}

#[test]
fn a_subscription_yields_each_event_once_in_order() {
    let store = Store::in_memory().unwrap();
    let mut all = store.subscribe(0);
    assert!(all.poll(100).unwrap().is_empty());
    for n in 1..=3 {
        create(&store, n, &format!("u{n}@example.com"));
    }
    let first: Vec<u64> = all.poll(100).unwrap().iter().map(|e| e.position).collect();
    assert_eq!(first, [1, 2, 3]);
    assert!(all.poll(100).unwrap().is_empty(), "nothing twice");
    // A replay and a rejection commit nothing, so yield nothing.
    create(&store, 1, "u1@example.com");
    create(&store, 9, "U1@example.com");
    assert!(all.poll(100).unwrap().is_empty());
    create(&store, 4, "u4@example.com");
    let mut late = store.subscribe(2);
    assert_eq!(all.poll(1).unwrap()[0].position, 4);
    assert_eq!(all.cursor(), 4);
    let late: Vec<u64> = late.poll(100).unwrap().iter().map(|e| e.position).collect();
    assert_eq!(late, [3, 4], "from a position: the events after it");
}

#[test]
fn events_that_arrive_by_sync_are_yielded_once_with_the_compensations() {
    let hub = Store::in_memory().unwrap();
    let (other, device) = (Store::in_memory().unwrap(), Store::in_memory().unwrap());
    create(&other, 1, "shared@example.com");
    create(&other, 2, "other@example.com");
    other
        .apply_reply(&hub.accept(&other.push().unwrap()).unwrap())
        .unwrap();
    create(&device, 3, "SHARED@example.com"); // loses the email to `other`
    create(&device, 4, "mine@example.com");
    let mut changes = device.subscribe(device.head_position().unwrap());

    device
        .apply_reply(&hub.accept(&device.push().unwrap()).unwrap())
        .unwrap();
    device.import(&hub.export(0, 1000).unwrap()).unwrap();
    // The same batch again changes nothing, so yields nothing.
    device.import(&hub.export(0, 1000).unwrap()).unwrap();

    let events = changes.poll(1000).unwrap();
    let positions: Vec<u64> = events.iter().map(|e| e.position).collect();
    let expected: Vec<u64> = (3..=device.head_position().unwrap()).collect();
    assert_eq!(positions, expected, "every new position, in order");
    let ids: HashSet<_> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), events.len(), "each event once");
    assert!(
        events
            .iter()
            .any(|e| matches!(e.event, Event::UserCreationRejected(_)))
    );
    let imported: HashSet<_> = events
        .iter()
        .map(|e| e.aggregate_id().to_string())
        .collect();
    assert!(imported.contains(&id(1)) && imported.contains(&id(2)));
    assert!(changes.poll(1000).unwrap().is_empty());
}

#[test]
fn a_waiting_thread_wakes_on_the_commit_and_listeners_hear_every_head() {
    let store = Arc::new(Store::in_memory().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let heard = heads.clone();
    let listener = store.on_commit(move |head| heard.lock().unwrap().push(head));

    assert!(!store.subscribe(0).wait(Duration::from_millis(50)).unwrap());
    let waiter = {
        let store = store.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let woke = store.subscribe(0).wait(Duration::from_secs(20)).unwrap();
            (woke, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    create(&store, 1, "a@example.com");
    let (woke, waited) = waiter.join().unwrap();
    assert!(woke);
    assert!(
        waited < Duration::from_secs(10),
        "woke by the commit, not the timeout: {waited:?}"
    );

    create(&store, 2, "b@example.com");
    drop(listener);
    create(&store, 3, "c@example.com");
    assert_eq!(
        *heads.lock().unwrap(),
        [1, 2],
        "each commit's head, until dropped"
    );
}
