//! Who sees what, against a real hub on 127.0.0.1 on both backends: a
//! service's token acts for its whole organization, a user's token for that
//! user alone — in what it may create, push and pull. The table of tokens ×
//! actions with exact statuses and bodies; the privacy of a user's device,
//! checked the way an attacker would (every byte of its files and of what it
//! received over HTTP); 16 user devices and 2 service devices converging
//! (on PostgreSQL through 3 nodes); a token provider asked again after a 401.

mod support;

use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spkey_store::http::{SyncError, Token, sync};
use spkey_store::{CreateUser, Store};
use support::*;
use uuid::Uuid;

fn forbidden_body() -> Value {
    json!({
        "error": "Forbidden",
        "message": "The credentials do not allow acting on this user",
        "code": 403,
        "details": [{"field": "id", "message": "names another user than the one this token is for"}],
    })
}

fn user_body(id: &str, n: usize) -> String {
    format!(r#"{{"userId":"{id}","email":"u{n}@example.com","firstName":"User {n}"}}"#)
}

/// What a token may do, as the table expects it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Service,
    User,
    Refused,
}

/// The table: every kind of token × create own id, create another id,
/// replay, push own events, push another user's events, pull — exact status,
/// body and what is recorded.
fn every_token_does_exactly_what_its_kind_may(backend: Backend) {
    let hub = TestHub::start(backend);
    let (a, b) = (user_id(1), user_id(2));
    let with = |claims: Value| hs256(&claims, ACME_SECRET);
    let mut service_scp = acme_claims();
    service_scp.as_object_mut().unwrap().remove("scope");
    service_scp["scp"] = json!(["read", "spkey:service"]);
    let mut not_a_uuid = acme_user_claims("alice");
    not_a_uuid["scope"] = json!("openid");
    let mut inside_a_word = acme_user_claims(&a);
    inside_a_word["scope"] = json!("xspkey:servicex spkey:services");
    let tokens = [
        ("service", acme_token(), Kind::Service, None),
        ("user A", acme_user_token(&a), Kind::User, Some(a.clone())),
        ("user B", acme_user_token(&b), Kind::User, Some(b.clone())),
        (
            "user A, sub not a UUID",
            with(not_a_uuid),
            Kind::Refused,
            None,
        ),
        (
            "service by scp array",
            with(service_scp),
            Kind::Service,
            None,
        ),
        (
            "the scope inside another word",
            with(inside_a_word),
            Kind::User,
            Some(a.clone()),
        ),
    ];
    let mut on_hub = BTreeSet::new();
    for (i, (name, token, kind, own)) in tokens.iter().enumerate() {
        let own = own.clone().unwrap_or_else(|| user_id(100 + i as u128));
        let other = user_id(200 + i as u128);
        let fresh = user_id(300 + i as u128);
        // Push: a device that created its own user and another one offline.
        let device = Store::in_memory().unwrap();
        for (id, n) in [(&own, 10 * i), (&other, 10 * i + 1)] {
            device
                .create_user(&CreateUser::new(id.clone(), format!("u{n}@example.com")))
                .unwrap();
        }
        let synced = sync(&device, &hub.url, ACME_KEY, token.as_str());
        match kind {
            Kind::Service => {
                let summary = synced.unwrap();
                assert_eq!((summary.accepted, summary.rejected), (2, 0), "{name}");
                on_hub.extend([own.clone(), other.clone()]);
            }
            Kind::User => {
                let summary = synced.unwrap();
                // A second token of user A finds A's creation already there.
                let first = !on_hub.contains(&own);
                assert_eq!(
                    (summary.accepted, summary.rejected),
                    (usize::from(first), 2 - usize::from(first)),
                    "{name}"
                );
                let rejections = device.rejections().unwrap();
                let forbidden = rejections
                    .iter()
                    .map(spkey_store::contract::event_json)
                    .map(|e| serde_json::to_value(e).unwrap())
                    .find(|e| e["aggregateId"] == other.as_str())
                    .expect("the other user's event is refused");
                assert_eq!(forbidden["data"]["code"], 403, "{name}: {forbidden}");
                assert_eq!(forbidden["data"]["error"], "Forbidden");
                assert_eq!(forbidden["data"]["details"][0]["field"], "userId");
                on_hub.insert(own.clone());
            }
            Kind::Refused => {
                assert!(
                    matches!(&synced, Err(SyncError::Refused { status: 401, message }) if message == "`sub` must be a UUID"),
                    "{name}: {synced:?}"
                );
            }
        }
        // Create own id (a replay of what the push recorded, for those it
        // accepted), create another id, and replay that.
        let replay = create(&hub.url, ACME_KEY, token, &own, &user_body(&own, 10 * i));
        let another = create(
            &hub.url,
            ACME_KEY,
            token,
            &fresh,
            &user_body(&fresh, 1000 + i),
        );
        let again = create(
            &hub.url,
            ACME_KEY,
            token,
            &fresh,
            &user_body(&fresh, 1000 + i),
        );
        match kind {
            Kind::Service => {
                assert_eq!(
                    (replay.status, another.status, again.status),
                    (409, 201, 200),
                    "{name}"
                );
                on_hub.insert(fresh.clone());
            }
            Kind::User => {
                // The pushed creation was recorded with no first name: the
                // same id with other data is a conflict, not a replay.
                assert_eq!(replay.status, 409, "{name}: {}", replay.json());
                assert_eq!(replay.json()["details"][0]["field"], "userId");
                assert_eq!(another.status, 403, "{name}");
                assert_eq!(another.json(), forbidden_body(), "{name}");
                assert_eq!(again.json(), forbidden_body(), "{name}");
                let exact = create(
                    &hub.url,
                    ACME_KEY,
                    token,
                    &own,
                    &format!(
                        r#"{{"userId":"{own}","email":"u{}@example.com"}}"#,
                        if own == a { 10 } else { 20 }
                    ),
                );
                assert_eq!(exact.status, 200, "{name}: {}", exact.json());
            }
            Kind::Refused => {
                for answer in [&replay, &another, &again] {
                    assert_eq!(answer.status, 401, "{name}");
                    assert_eq!(
                        answer.json(),
                        json!({"error": "Unauthorized", "message": "`sub` must be a UUID", "code": 401, "details": []})
                    );
                }
            }
        }
    }
    // Pull: a service's token gets the organization's log, a user's its own
    // user's events only.
    let everyone = hub.log("acme");
    let users: BTreeSet<String> = everyone
        .events(1, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.aggregate_id().to_string())
        .collect();
    assert_eq!(users, on_hub, "what is recorded");
    for (name, token, kind, own) in &tokens {
        let device = Store::in_memory().unwrap();
        let pulled = sync(&device, &hub.url, ACME_KEY, token.as_str());
        let held: BTreeSet<String> = device
            .events(1, usize::MAX)
            .unwrap()
            .iter()
            .map(|e| e.aggregate_id().to_string())
            .collect();
        match kind {
            Kind::Service => assert_eq!(held, on_hub, "{name}"),
            Kind::User => {
                assert_eq!(held, BTreeSet::from([own.clone().unwrap()]), "{name}");
                assert_eq!(pulled.unwrap().cursor, everyone.head_position().unwrap());
            }
            Kind::Refused => assert!(held.is_empty() && pulled.is_err(), "{name}"),
        }
    }
    // Without credentials, /health and /metrics name no organization, user
    // or email (counts are fine).
    for path in ["/health", "/metrics"] {
        let text =
            String::from_utf8(answer(agent().get(&format!("{}{path}", hub.url)).call()).body)
                .unwrap();
        for secret in ["acme", "beta", "@example.com"]
            .iter()
            .map(|s| s.to_string())
            .chain(on_hub.iter().cloned())
        {
            assert!(!text.contains(&secret), "{path} shows {secret}");
        }
    }
}

/// A forwarding socket between a device and the hub that keeps every byte
/// the hub sent: what a device received over HTTP, to search.
struct Recorder {
    url: String,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    fn start(hub_url: &str) -> Recorder {
        let upstream = hub_url.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let keep = received.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    return;
                };
                let (mut to_server, mut from_client) =
                    (server.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_client, &mut to_server);
                    let _ = to_server.shutdown(std::net::Shutdown::Write);
                });
                let keep = keep.clone();
                let (mut from_server, mut to_client) = (server, client);
                std::thread::spawn(move || {
                    let mut buffer = [0; 16 * 1024];
                    while let Ok(n) = from_server.read(&mut buffer) {
                        if n == 0 || to_client.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                        keep.lock().unwrap().extend_from_slice(&buffer[..n]);
                    }
                    let _ = to_client.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Recorder { url, received }
    }
}

/// Every encoding of `value` an attacker would try: as typed, lowercase,
/// UTF-16 in both byte orders.
fn forms(value: &str) -> Vec<Vec<u8>> {
    let lower = value.to_lowercase();
    let mut out = vec![value.as_bytes().to_vec(), lower.as_bytes().to_vec()];
    for text in [value, lower.as_str()] {
        out.push(text.encode_utf16().flat_map(u16::to_le_bytes).collect());
        out.push(text.encode_utf16().flat_map(u16::to_be_bytes).collect());
    }
    out
}

fn holds(haystack: &[u8], value: &str) -> bool {
    forms(value).iter().any(|needle| {
        let mut rest = haystack;
        // From one occurrence of the first byte to the next: quick even in
        // a debug build.
        while let Some(at) = rest.iter().position(|b| *b == needle[0]) {
            if rest[at..].starts_with(needle) {
                return true;
            }
            rest = &rest[at + 1..];
        }
        false
    })
}

fn files_bytes(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            (path.display().to_string(), std::fs::read(&path).unwrap())
        })
        .collect()
}

/// Users A and B create themselves on their own devices (store files) and
/// sync through a recorder; a service device syncs too. A's files (store,
/// journal, checksums) and every byte A received hold none of B's values; the
/// service device's files hold both users' (so the search can find them).
fn a_users_device_holds_no_byte_of_another_user(backend: Backend) {
    let hub = TestHub::start(backend);
    let recorder = Recorder::start(&hub.url);
    let (a, b) = (user_id(11), user_id(12));
    let values = |who: &str| {
        [
            format!("{who}.Secret-Mailbox@example.com"),
            format!("Firstname{who}"),
            format!("Lastname{who}"),
            if who == "alice" {
                "+1 555 0100 11".to_owned()
            } else {
                "+44 20 7946 0958".to_owned()
            },
        ]
    };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let device = |n: usize| Store::open(dirs[n].path().join("device.redb")).unwrap();
    let (device_a, device_b, service) = (device(0), device(1), device(2));
    for (store, id, who) in [(&device_a, &a, "alice"), (&device_b, &b, "bob")] {
        let [email, first, last, phone] = values(who);
        store
            .create_user(
                &CreateUser::new(id.clone(), email)
                    .first_name(first)
                    .last_name(last)
                    .phone_number(phone),
            )
            .unwrap();
    }
    // B first, so that A's pulls have B's events on the hub to leak.
    sync(&device_b, &hub.url, ACME_KEY, acme_user_token(&b).as_str()).unwrap();
    for _ in 0..2 {
        sync(
            &device_a,
            &recorder.url,
            ACME_KEY,
            acme_user_token(&a).as_str(),
        )
        .unwrap();
    }
    sync(&service, &hub.url, ACME_KEY, acme_token().as_str()).unwrap();
    // User C takes A's email: refused with a 409 on `email`, learning
    // nothing else of its owner.
    let c = user_id(13);
    let snoop = Recorder::start(&hub.url);
    let device_c = Store::in_memory().unwrap();
    device_c
        .create_user(&CreateUser::new(c.clone(), values("alice")[0].clone()))
        .unwrap();
    let summary = sync(
        &device_c,
        &snoop.url,
        ACME_KEY,
        acme_user_token(&c).as_str(),
    )
    .unwrap();
    assert_eq!(summary.rejected, 1);
    let refusal = serde_json::to_value(spkey_store::contract::event_json(
        &device_c.rejections().unwrap()[0],
    ))
    .unwrap();
    assert_eq!(refusal["data"]["code"], 409);
    assert_eq!(refusal["data"]["details"][0]["field"], "email");
    let seen = snoop.received.lock().unwrap().clone();
    for value in values("alice").iter().skip(1).chain([&a]) {
        assert!(!holds(&seen, value), "C learned A's {value}");
    }
    let a_id: Uuid = a.parse().unwrap();
    let b_id: Uuid = b.parse().unwrap();
    assert!(device_a.user(a_id).unwrap().is_some() && device_a.user(b_id).unwrap().is_none());
    assert!(service.user(a_id).unwrap().is_some() && service.user(b_id).unwrap().is_some());
    for store in [device_a, device_b, service] {
        store.close().unwrap();
    }

    let received = recorder.received.lock().unwrap().clone();
    assert!(received.len() > 200, "the recorder saw the pulls");
    for value in values("bob") {
        for (path, bytes) in files_bytes(dirs[0].path()) {
            assert!(!holds(&bytes, &value), "{path} holds B's {value}");
        }
        assert!(
            !holds(&received, &value),
            "A received B's {value} over HTTP"
        );
        assert!(
            files_bytes(dirs[2].path())
                .iter()
                .any(|(_, bytes)| holds(bytes, &value)),
            "the service device holds B's {value}: the search can find it"
        );
    }
    for value in values("alice") {
        assert!(
            files_bytes(dirs[0].path())
                .iter()
                .any(|(_, bytes)| holds(bytes, &value)),
            "A's device holds its own {value}"
        );
    }
}

/// 16 user devices and 2 service devices create and sync at random through
/// the hub (on PostgreSQL, through 3 nodes on one database): each user device
/// ends holding exactly its own user, each service device every user,
/// nothing lost, nothing on the hub twice.
fn user_and_service_devices_converge_each_on_its_own_view(backend: Backend) {
    let storage = backend.storage_line();
    let nodes: Vec<TestHub> = (0..if backend == Backend::Postgres { 3 } else { 1 })
        .map(|_| TestHub::start_on(storage.clone(), ""))
        .collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let mut rng = fastrand::Rng::with_seed(0x5c0e);
    let users: Vec<String> = (0..16).map(|d| user_id(500 + d)).collect();
    let devices: Vec<Store> = (0..18).map(|_| Store::in_memory().unwrap()).collect();
    let token = |d: usize| {
        if d < 16 {
            acme_user_token(&users[d])
        } else {
            acme_token()
        }
    };
    let mut created: Vec<Vec<CreateUser>> = vec![Vec::new(); 18];
    let deadline = Instant::now() + Duration::from_secs(120);
    for round in 0..120 {
        let d = rng.usize(..18);
        if rng.bool() {
            let command = if d < 16 {
                // Its own user (once), or an attempt on a neighbour's.
                if created[d].is_empty() {
                    CreateUser::new(users[d].clone(), format!("user{d}@example.com"))
                } else {
                    CreateUser::new(users[(d + 1) % 16].clone(), format!("n{round}@example.com"))
                }
            } else {
                // A service creates users of its own, some emails shared.
                CreateUser::new(user_id(900 + round), format!("s{}@example.com", round % 24))
            };
            if device_records(&devices[d], &command) {
                created[d].push(command);
            }
        }
        let url = &urls[rng.usize(..urls.len())];
        sync(&devices[d], url, ACME_KEY, token(d).as_str()).unwrap();
        assert!(Instant::now() < deadline, "bounded in time");
    }
    for _ in 0..2 {
        for (d, device) in devices.iter().enumerate() {
            sync(device, &urls[d % urls.len()], ACME_KEY, token(d).as_str()).unwrap();
        }
    }
    let hub = nodes[0].log("acme");
    let on_hub: HashSet<Uuid> = hub
        .events(1, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.aggregate_id())
        .collect();
    let ids: HashSet<_> = hub
        .events(1, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(
        ids.len() as u64,
        hub.head_position().unwrap(),
        "an event on the hub twice"
    );
    assert!(hub.verify().unwrap().is_sound());
    for (d, device) in devices.iter().enumerate() {
        assert!(
            device.pending().unwrap().is_empty(),
            "device {d} has pending events"
        );
        let live: HashSet<Uuid> = device
            .events(1, usize::MAX)
            .unwrap()
            .iter()
            .map(|e| e.aggregate_id())
            .filter(|id| !device.user(*id).unwrap().unwrap().is_rejected())
            .collect();
        if d < 16 {
            let own: Uuid = users[d].parse().unwrap();
            let expected: HashSet<Uuid> = on_hub.iter().copied().filter(|u| *u == own).collect();
            assert_eq!(live, expected, "user device {d} holds exactly its own user");
        } else {
            assert_eq!(live, on_hub, "service device {d} holds every user");
            for id in &on_hub {
                assert_eq!(
                    device.user(*id).unwrap().map(|u| u.profile),
                    hub.user(*id).unwrap().map(|u| u.profile)
                );
            }
        }
        for command in &created[d] {
            let id: Uuid = command.user_id.parse().unwrap();
            let local = device
                .user(id)
                .unwrap()
                .expect("a created user stays recorded");
            assert!(
                local.is_rejected() || on_hub.contains(&id),
                "device {d}: {id} lost"
            );
        }
    }
    let refused: usize = devices[..16]
        .iter()
        .map(|d| d.rejections().unwrap().len())
        .sum();
    assert!(refused > 0, "user devices tried their neighbours' ids");
}

fn device_records(device: &Store, command: &CreateUser) -> bool {
    device.create_user(command).unwrap().event().is_some()
}

/// A token provider is asked before each request, and once more after a
/// 401; a second 401 ends the sync with the hub's message.
fn a_token_provider_is_asked_again_after_a_401(backend: Backend) {
    let hub = TestHub::start(backend);
    let own = user_id(40);
    let device = Store::in_memory().unwrap();
    device
        .create_user(&CreateUser::new(own.clone(), "p@example.com"))
        .unwrap();
    let mut expired = acme_user_claims(&own);
    expired["exp"] = json!(now() - 600);
    let expired = hs256(&expired, ACME_SECRET);
    let asked = std::cell::Cell::new(0);
    let summary = sync(
        &device,
        &hub.url,
        ACME_KEY,
        Token::provider(|| {
            asked.set(asked.get() + 1);
            // The first token has expired by the time it is sent.
            Ok(if asked.get() == 1 {
                expired.clone()
            } else {
                acme_user_token(&own)
            })
        }),
    )
    .unwrap();
    assert_eq!(summary.accepted, 1);
    assert!(
        asked.get() >= 3,
        "asked before each request: {}",
        asked.get()
    );

    let always = std::cell::Cell::new(0);
    let refused = sync(
        &device,
        &hub.url,
        ACME_KEY,
        Token::provider(|| {
            always.set(always.get() + 1);
            Ok(expired.clone())
        }),
    );
    assert!(
        matches!(&refused, Err(SyncError::Refused { status: 401, message }) if message.contains("ExpiredSignature")),
        "{refused:?}"
    );
    assert_eq!(
        always.get(),
        2,
        "asked once more after the 401, then no more"
    );
    let failing = sync(
        &device,
        &hub.url,
        ACME_KEY,
        Token::provider(|| Err("signed out".into())),
    );
    assert!(matches!(failing, Err(SyncError::Token(why)) if why == "signed out"));
}

/// UpdateUser over HTTP: a service updates anyone, a user's token only
/// itself (403 before the body is read); 404, 409 and a replay as the
/// contract says; a changed email is free for a new account at once; an
/// update made offline on a device syncs, and a mirror of the hub folds to
/// the same user.
fn update_user_over_http(backend: Backend) {
    let hub = TestHub::start(backend);
    let (a, b, c) = (user_id(1), user_id(2), user_id(3));
    let service = acme_token();
    let update = |token: &str, id: &str, body: &str| {
        post_command(&hub.url, ACME_KEY, token, "UpdateUser", id, body)
    };
    assert_eq!(
        create(&hub.url, ACME_KEY, &service, &a, &user_body(&a, 1)).status,
        201
    );
    assert_eq!(
        create(&hub.url, ACME_KEY, &service, &b, &user_body(&b, 2)).status,
        201
    );

    let own = update(&acme_user_token(&a), &a, r#"{"email":"a-new@example.com"}"#);
    assert_eq!(own.status, 200, "{}", own.json());
    assert_eq!(
        (
            own.json()["version"].clone(),
            own.json()["event"]["eventType"].clone()
        ),
        (json!(2), json!("UserUpdated"))
    );
    let replay = update(&acme_user_token(&a), &a, r#"{"email":"a-new@example.com"}"#);
    assert_eq!((replay.status, replay.json()), (200, own.json()));
    let other = update(&acme_user_token(&a), &b, r#"{"firstName":"Mallory"}"#);
    assert_eq!((other.status, other.json()), (403, forbidden_body()));
    let taken = update(&service, &b, r#"{"email":"A-NEW@example.com"}"#);
    assert_eq!(taken.status, 409);
    assert_eq!(taken.json()["details"][0]["field"], "email");
    let missing = update(&service, &c, r#"{"firstName":"Nobody"}"#);
    assert_eq!(missing.status, 404, "{}", missing.json());
    let not_a_command = post_command(&hub.url, ACME_KEY, &service, "RenameUser", &a, "{}");
    assert_eq!(not_a_command.status, 404);
    // A's old email is free for a new account at once.
    assert_eq!(
        create(&hub.url, ACME_KEY, &service, &c, &user_body(&c, 1)).status,
        201
    );

    // Offline on B's phone, then synced with B's own token.
    let phone = Store::in_memory().unwrap();
    sync(&phone, &hub.url, ACME_KEY, &acme_user_token(&b)).unwrap();
    phone
        .update_user(&spkey_store::UpdateUser::new(b.clone()).phone_number("+1 555 0199"))
        .unwrap();
    let summary = sync(&phone, &hub.url, ACME_KEY, &acme_user_token(&b)).unwrap();
    assert_eq!((summary.accepted, summary.rejected), (1, 0));
    let mirror = hub.log("acme");
    assert!(mirror.verify().unwrap().is_sound());
    let b_now = mirror.user(Uuid::parse_str(&b).unwrap()).unwrap().unwrap();
    assert_eq!(b_now.profile.phone_number.as_deref(), Some("+1 555 0199"));
    assert_eq!(
        phone
            .user(Uuid::parse_str(&b).unwrap())
            .unwrap()
            .unwrap()
            .profile,
        b_now.profile
    );
    let a_now = mirror.user(Uuid::parse_str(&a).unwrap()).unwrap().unwrap();
    assert_eq!(a_now.profile.email, "a-new@example.com");
    assert_eq!(
        mirror.user_id_by_email("u1@example.com").unwrap(),
        Some(Uuid::parse_str(&c).unwrap())
    );
}

on_both_backends!(
    update_user_over_http,
    every_token_does_exactly_what_its_kind_may,
    a_users_device_holds_no_byte_of_another_user,
    user_and_service_devices_converge_each_on_its_own_view,
    a_token_provider_is_asked_again_after_a_401,
);
