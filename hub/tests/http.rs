//! The hub's HTTP contract against a real server on 127.0.0.1: every status
//! of the seed endpoint, a table of bad credentials (each with its exact
//! status and body, and the store unchanged), organizations kept apart,
//! long-polls, limits, batches, health and metrics, concurrent creates
//! sharing commits and decided in turn. Every test runs on both backends:
//! redb files and PostgreSQL.

mod support;

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use spkey_store::{CreateUser, Store};
use support::*;

fn the_seed_endpoint_answers_every_status_of_the_contract(backend: Backend) {
    let hub = TestHub::start(backend);
    let (token, id, other) = (acme_token(), user_id(1), user_id(2));

    let created = create(
        &hub.url,
        ACME_KEY,
        &token,
        &id,
        &body(&id, "user@example.com"),
    );
    let replayed = create(
        &hub.url,
        ACME_KEY,
        &token,
        &id,
        &body(&id, "user@example.com"),
    );
    let invalid = create(
        &hub.url,
        ACME_KEY,
        &token,
        &other,
        &body(&other, "me@[127.0.0.1]"),
    );
    let taken = create(
        &hub.url,
        ACME_KEY,
        &token,
        &other,
        &body(&other, "USER@example.com"),
    );
    let huge = create(&hub.url, ACME_KEY, &token, &other, &"x".repeat(70_000));
    let text = answer(
        agent()
            .post(&format!("{}/users/{other}/CreateUser", hub.url))
            .header("Content-Type", "text/plain")
            .header("Authorization", &format!("Bearer {token}"))
            .header("X-API-Key", ACME_KEY)
            .send(body(&other, "b@example.com")),
    );
    let wrong_method = answer(
        agent()
            .get(&format!("{}/users/{id}/CreateUser", hub.url))
            .header("Authorization", &format!("Bearer {token}"))
            .header("X-API-Key", ACME_KEY)
            .call(),
    );
    let nowhere = answer(agent().get(&format!("{}/users", hub.url)).call());

    assert_eq!(created.status, 201);
    let event = &created.json()["event"];
    assert_eq!(created.json()["userId"], json!(id));
    assert_eq!(event["eventType"], "UserCreated");
    assert_eq!(replayed.status, 200);
    assert_eq!(
        replayed.json(),
        created.json(),
        "a replay answers the original body"
    );
    assert_eq!(invalid.status, 400);
    assert_eq!(
        invalid.json()["details"],
        json!([{"field": "email", "message": "Invalid email format: IP addresses are not accepted"}])
    );
    assert_eq!(taken.status, 409);
    assert_eq!(taken.json()["details"][0]["field"], "email");
    for (answer, status, error) in [
        (&huge, 413, "Payload Too Large"),
        (&text, 415, "Unsupported Media Type"),
        (&wrong_method, 405, "Method Not Allowed"),
        (&nowhere, 404, "Not Found"),
    ] {
        assert_eq!(answer.status, status);
        let body = answer.json();
        assert_eq!(body["error"], error);
        assert_eq!(body["code"], status);
        assert_eq!(body["details"], json!([]));
    }
    let store = hub.log("acme");
    assert_eq!(
        store.head_position().unwrap(),
        1,
        "only the 201 recorded anything"
    );
    assert!(store.verify().unwrap().is_sound());
}

/// A token for acme with `edit` applied to its claims, signed HS256.
fn acme_with(edit: impl FnOnce(&mut Value)) -> String {
    let mut claims = acme_claims();
    edit(&mut claims);
    hs256(&claims, ACME_SECRET)
}

fn bad_credentials_are_refused_in_order_with_the_api_error_shape_and_nothing_recorded(
    backend: Backend,
) {
    let hub = TestHub::start(backend);
    let (private_pem, public_pem) = ed25519_keys(hub.dir.path());
    let ed_key = EncodingKey::from_ed_pem(&std::fs::read(&private_pem).unwrap()).unwrap();
    let none = {
        use base64_like::url;
        format!(
            "{}.{}.",
            url(br#"{"alg":"none","typ":"JWT"}"#),
            url(acme_claims().to_string().as_bytes())
        )
    };
    let public_as_secret = hs256(
        &acme_claims(),
        std::str::from_utf8(&std::fs::read(&public_pem).unwrap()).unwrap(),
    );
    let bearer = |token: &str| Some(format!("Bearer {token}"));
    let good = acme_token();
    let id = user_id(10);
    // (what, Authorization, X-API-Key, status)
    let cases: Vec<(&str, Option<String>, Option<&str>, u16)> = vec![
        ("no Authorization", None, Some(ACME_KEY), 401),
        (
            "Basic scheme",
            Some("Basic dXNlcjpwYXNz".into()),
            Some(ACME_KEY),
            401,
        ),
        ("empty Bearer", Some("Bearer ".into()), Some(ACME_KEY), 401),
        ("no X-API-Key", bearer(&good), None, 403),
        ("unknown X-API-Key", bearer(&good), Some("not-a-key"), 403),
        ("no Authorization and no key", None, None, 401),
        ("malformed token", bearer("abc.def"), Some(ACME_KEY), 401),
        (
            "signed with another secret",
            bearer(&hs256(&acme_claims(), BETA_SECRET)),
            Some(ACME_KEY),
            401,
        ),
        ("alg none", bearer(&none), Some(ACME_KEY), 401),
        (
            "HS256 keyed with the Ed25519 public key",
            bearer(&public_as_secret),
            Some(ACME_KEY),
            401,
        ),
        (
            "expired past the leeway",
            bearer(&acme_with(|c| c["exp"] = json!(now() - 120))),
            Some(ACME_KEY),
            401,
        ),
        (
            "no exp",
            bearer(&acme_with(|c| {
                c.as_object_mut().unwrap().remove("exp");
            })),
            Some(ACME_KEY),
            401,
        ),
        (
            "nbf in the future",
            bearer(&acme_with(|c| c["nbf"] = json!(now() + 600))),
            Some(ACME_KEY),
            401,
        ),
        (
            "wrong iss",
            bearer(&acme_with(|c| c["iss"] = json!("https://evil.example"))),
            Some(ACME_KEY),
            401,
        ),
        (
            "no iss",
            bearer(&acme_with(|c| {
                c.as_object_mut().unwrap().remove("iss");
            })),
            Some(ACME_KEY),
            401,
        ),
        (
            "wrong aud",
            bearer(&acme_with(|c| c["aud"] = json!("other"))),
            Some(ACME_KEY),
            401,
        ),
        (
            "acme's key with beta's token",
            bearer(&beta_token()),
            Some(ACME_KEY),
            401,
        ),
        (
            "beta's key with acme's token",
            bearer(&good),
            Some(BETA_KEY),
            401,
        ),
    ];
    assert!(cases.len() >= 15);
    for (what, authorization, key, status) in &cases {
        let mut request = agent()
            .post(&format!("{}/users/{id}/CreateUser", hub.url))
            .header("Content-Type", "application/json");
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        if let Some(value) = key {
            request = request.header("X-API-Key", *value);
        }
        let answer = answer(request.send(body(&id, "who@example.com")));

        assert_eq!(answer.status, *status, "{what}");
        let body = answer.json();
        let reason = if *status == 401 {
            "Unauthorized"
        } else {
            "Forbidden"
        };
        assert_eq!(body["error"], reason, "{what}");
        assert_eq!(body["code"], *status, "{what}");
        assert_eq!(body["details"], json!([]), "{what}");
        let message = body["message"].as_str().unwrap();
        match (
            *status,
            authorization
                .as_ref()
                .is_some_and(|a| a.len() > 7 && a.starts_with("Bearer ")),
        ) {
            (403, _) => assert_eq!(
                message,
                "the X-API-Key header is missing or names no organization"
            ),
            (_, false) => {
                assert_eq!(message, "an Authorization: Bearer <JWT> header is required");
                assert_eq!(answer.headers["www-authenticate"], "Bearer", "{what}");
            }
            _ => assert!(
                message.starts_with("invalid token")
                    || message.starts_with("malformed token")
                    || message.starts_with("algorithm"),
                "{what}: {message}"
            ),
        }
    }
    // The scheme in any case, within the leeway, and with the Ed25519 key:
    // accepted.
    let lower = answer(
        agent()
            .post(&format!("{}/users/{}/CreateUser", hub.url, user_id(13)))
            .header("Content-Type", "application/json")
            .header("Authorization", &format!("bearer {good}"))
            .header("X-API-Key", ACME_KEY)
            .send(body(&user_id(13), "lower@example.com")),
    );
    assert_eq!(lower.status, 201);
    let late = acme_with(|c| c["exp"] = json!(now() - 30));
    let ed = encode(&Header::new(Algorithm::EdDSA), &acme_claims(), &ed_key).unwrap();
    assert_eq!(
        create(
            &hub.url,
            ACME_KEY,
            &late,
            &user_id(11),
            &body(&user_id(11), "late@example.com")
        )
        .status,
        201
    );
    assert_eq!(
        create(
            &hub.url,
            ACME_KEY,
            &ed,
            &user_id(12),
            &body(&user_id(12), "ed@example.com")
        )
        .status,
        201
    );
    let store = hub.log("acme");
    assert_eq!(
        store.head_position().unwrap(),
        3,
        "no refused request recorded anything"
    );
    assert!(store.user(id.parse().unwrap()).unwrap().is_none());
}

/// A URL-safe base64 without padding, for the hand-made `alg: none` token
/// (no library signs one, which is the point).
mod base64_like {
    pub fn url(bytes: &[u8]) -> String {
        const TABLE: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }
}

fn organizations_are_kept_apart(backend: Backend) {
    let hub = TestHub::start(backend);
    let id = user_id(20);

    let in_acme = create(
        &hub.url,
        ACME_KEY,
        &acme_token(),
        &id,
        &body(&id, "same@example.com"),
    );
    let in_beta = create(
        &hub.url,
        BETA_KEY,
        &beta_token(),
        &id,
        &body(&id, "same@example.com"),
    );
    let beta_pull = answer(
        agent()
            .get(&format!("{}/sync/pull?since=0", hub.url))
            .header(
                "x-spkey-batch-format",
                spkey_store::BATCH_FORMAT.to_string(),
            )
            .header("Authorization", &format!("Bearer {}", beta_token()))
            .header("X-API-Key", BETA_KEY)
            .call(),
    );

    assert_eq!((in_acme.status, in_beta.status), (201, 201));
    assert_ne!(
        in_acme.json()["event"]["eventId"],
        in_beta.json()["event"]["eventId"]
    );
    let device = Store::in_memory().unwrap();
    assert_eq!(device.import(&beta_pull.body).unwrap().imported, 1);
    for org in ["acme", "beta"] {
        let store = hub.log(org);
        assert_eq!(store.head_position().unwrap(), 1, "{org}");
    }
}

fn devices_sync_through_the_hub_and_a_long_poll_wakes_on_news(backend: Backend) {
    let hub = TestHub::start(backend);
    let (a, b) = (Store::in_memory().unwrap(), Store::in_memory().unwrap());
    let token = acme_token();
    a.create_user(&CreateUser::new(user_id(30), "a@example.com"))
        .unwrap();
    b.create_user(&CreateUser::new(user_id(31), "A@EXAMPLE.COM"))
        .unwrap();

    let first = spkey_store::http::sync(&a, &hub.url, ACME_KEY, &token).unwrap();
    let second = spkey_store::http::sync(&b, &hub.url, ACME_KEY, &token).unwrap();

    assert_eq!((first.pushed, first.accepted), (1, 1));
    assert_eq!((second.pushed, second.rejected, second.pulled), (1, 1, 1));
    assert!(
        b.user(user_id(31).parse().unwrap())
            .unwrap()
            .unwrap()
            .is_rejected()
    );

    // A long-poll past the head is answered as soon as a user is created.
    let url = hub.url.clone();
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let answer = answer(
            agent()
                .get(&format!("{url}/sync/pull?since=1&wait=20"))
                .header(
                    "x-spkey-batch-format",
                    spkey_store::BATCH_FORMAT.to_string(),
                )
                .header("Authorization", &format!("Bearer {}", acme_token()))
                .header("X-API-Key", ACME_KEY)
                .call(),
        );
        (answer, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let created = Instant::now();
    assert_eq!(
        create(
            &hub.url,
            ACME_KEY,
            &token,
            &user_id(32),
            &body(&user_id(32), "c@example.com")
        )
        .status,
        201
    );
    let (pulled, waited) = waiter.join().unwrap();

    assert_eq!(pulled.status, 200);
    assert_eq!(
        pulled.headers["x-spkey-batch-format"],
        spkey_store::BATCH_FORMAT.to_string()
    );
    assert!(
        waited >= Duration::from_millis(300) && created.elapsed() < Duration::from_secs(2),
        "{waited:?}"
    );
    assert_eq!(a.import(&pulled.body).unwrap().imported, 1);
}

fn refused_batches_say_why_and_a_format_mismatch_names_both_versions(backend: Backend) {
    let hub = TestHub::start(backend);
    let device = Store::in_memory().unwrap();
    device
        .create_user(&CreateUser::new(user_id(40), "d@example.com"))
        .unwrap();
    let push = device.push().unwrap();
    let post = |bytes: Vec<u8>| {
        answer(
            agent()
                .post(&format!("{}/sync/push", hub.url))
                .header("Authorization", &format!("Bearer {}", acme_token()))
                .header("X-API-Key", ACME_KEY)
                .content_type("application/octet-stream")
                .send(&bytes[..]),
        )
    };
    let mut damaged = push.clone();
    damaged[20] ^= 1;
    // The same batch in format 5, which this hub does not read, and in
    // formats 3 and 1, whose device could not read this hub's reply:
    // resealed.
    let reformat = |version: u8| {
        let mut bytes = push.clone();
        bytes[4] = version;
        let len = bytes.len();
        let sum = crc32(&bytes[..len - 4]);
        bytes[len - 4..].copy_from_slice(&sum.to_le_bytes());
        bytes
    };
    let (newer, old, older, oldest) = (reformat(5), reformat(3), reformat(2), reformat(1));

    let damaged = post(damaged);
    let newer = post(newer);
    let old = post(old);
    let older = post(older);
    let oldest = post(oldest);
    let pull = |format: Option<&str>| {
        let mut request = agent()
            .get(&format!("{}/sync/pull?since=0", hub.url))
            .header("Authorization", &format!("Bearer {}", acme_token()))
            .header("X-API-Key", ACME_KEY);
        if let Some(format) = format {
            request = request.header("x-spkey-batch-format", format);
        }
        answer(request.call())
    };

    assert_eq!(damaged.status, 400);
    assert!(
        damaged.json()["message"]
            .as_str()
            .unwrap()
            .contains("checksum")
    );
    assert_eq!(newer.status, 400);
    assert_eq!(
        newer.json()["message"],
        "the batch is in format 5; this hub reads format 4: the hub must upgrade"
    );
    for (older, format) in [(old, 3), (older, 2), (oldest, 1)] {
        assert_eq!(older.status, 400);
        assert_eq!(
            older.json()["message"],
            format!(
                "the batch is in format {format}; this hub reads format 4: the device must upgrade"
            )
        );
    }
    // A format 1 device names no format when it pulls.
    let old_pull = pull(None);
    assert_eq!(old_pull.status, 400);
    assert_eq!(
        old_pull.json()["message"],
        "the device reads batch format 1; this hub sends format 4: the device must upgrade"
    );
    let format_2 = pull(Some("2"));
    assert_eq!(
        (format_2.status, format_2.json()["message"].as_str()),
        (
            400,
            Some(
                "the device reads batch format 2; this hub sends format 4: the device must upgrade"
            )
        )
    );
    assert_eq!(pull(Some("5")).status, 400);
    assert_eq!(pull(Some("3")).status, 400);
    assert_eq!(pull(Some("4")).status, 200);
    assert_eq!(hub.log("acme").head_position().unwrap(), 0);
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn long_polls_and_requests_beyond_their_caps_are_503_with_retry_after(backend: Backend) {
    let hub = TestHub::start_with(
        backend,
        "[limits]\nmax_long_polls = 2\nmax_concurrent_requests = 3",
    );
    let poll = |url: String| {
        std::thread::spawn(move || {
            answer(
                agent()
                    .get(&format!("{url}/sync/pull?since=0&wait=3"))
                    .header(
                        "x-spkey-batch-format",
                        spkey_store::BATCH_FORMAT.to_string(),
                    )
                    .header("Authorization", &format!("Bearer {}", acme_token()))
                    .header("X-API-Key", ACME_KEY)
                    .call(),
            )
        })
    };
    let held: Vec<_> = (0..2).map(|_| poll(hub.url.clone())).collect();
    std::thread::sleep(Duration::from_millis(500));

    let third_poll = poll(hub.url.clone()).join().unwrap();
    let health = answer(agent().get(&format!("{}/health", hub.url)).call());
    let (slow_tx, slow_rx) = std::sync::mpsc::channel();
    // With two polls held, one more request fills the cap of three.
    let url = hub.url.clone();
    let filler = std::thread::spawn(move || {
        let mut request = agent()
            .post(&format!("{url}/sync/push"))
            .header("Authorization", &format!("Bearer {}", acme_token()))
            .header("X-API-Key", ACME_KEY)
            .content_type("application/octet-stream");
        request = request.header("Content-Length", "100");
        let (mut reader, writer) = std::io::pipe().unwrap();
        slow_tx.send(writer).unwrap();
        answer(request.send(ureq::SendBody::from_reader(&mut reader)))
    });
    let mut writer = slow_rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let over = create(
        &hub.url,
        BETA_KEY,
        &beta_token(),
        &user_id(90),
        &body(&user_id(90), "o@example.com"),
    );
    // /health is never refused for the requests of organizations.
    let health_under_load = answer(agent().get(&format!("{}/health", hub.url)).call());
    std::io::Write::write_all(&mut writer, &[0; 100]).unwrap();
    drop(writer);
    assert_eq!(
        filler.join().unwrap().status,
        400,
        "the slow request is answered"
    );

    assert_eq!(third_poll.status, 503);
    assert_eq!(third_poll.headers["retry-after"], "1");
    assert_eq!(health.status, 200, "plain requests still pass");
    assert_eq!(health.json(), json!({"status": "ok"}));
    assert_eq!(over.status, 503);
    assert_eq!(over.json()["code"], 503);
    assert_eq!(health_under_load.status, 200);
    for poll in held {
        assert_eq!(poll.join().unwrap().status, 200);
    }
}

fn metrics_count_requests_and_events_and_cors_answers_the_configured_origin(backend: Backend) {
    let hub = TestHub::start(backend);
    let id = user_id(50);
    create(
        &hub.url,
        ACME_KEY,
        &acme_token(),
        &id,
        &body(&id, "m@example.com"),
    );
    create(&hub.url, ACME_KEY, "nope", &id, &body(&id, "m@example.com"));

    let metrics = answer(agent().get(&format!("{}/metrics", hub.url)).call());
    let preflight = answer(
        agent()
            .options(&format!("{}/sync/push", hub.url))
            .header("Origin", "http://localhost:5173")
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "authorization,x-api-key")
            .call(),
    );

    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        text.contains(r#"spkey_hub_requests_total{route="/users/{id}/CreateUser",status="201"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"spkey_hub_requests_total{route="/users/{id}/CreateUser",status="401"} 1"#),
        "{text}"
    );
    assert!(text.contains("spkey_hub_events_accepted_total 1"), "{text}");
    assert!(text.contains("spkey_hub_commit_seconds_count"), "{text}");
    assert_eq!(
        preflight.headers["access-control-allow-origin"],
        "http://localhost:5173"
    );
}

fn concurrent_creates_share_commits_and_are_decided_in_turn(backend: Backend) {
    let hub = TestHub::start(backend);
    let fire = |requests: Vec<(String, String)>| -> Vec<Answer> {
        let threads: Vec<_> = requests
            .into_iter()
            .map(|(id, email)| {
                let url = hub.url.clone();
                std::thread::spawn(move || {
                    create(&url, ACME_KEY, &acme_token(), &id, &body(&id, &email))
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    };
    // Sixteen users, one email: one owner, fifteen conflicts naming it.
    let same_email = fire(
        (0..16)
            .map(|i| (user_id(400 + i), "one@example.com".to_owned()))
            .collect(),
    );
    let mut statuses: Vec<u16> = same_email.iter().map(|a| a.status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [vec![201], vec![409; 15]].concat());
    // One create sent eight times at once: one 201, seven replays of it.
    let id = user_id(450);
    let same_create = fire(
        (0..8)
            .map(|_| (id.clone(), "twice@example.com".to_owned()))
            .collect(),
    );
    let mut statuses: Vec<u16> = same_create.iter().map(|a| a.status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [vec![200; 7], vec![201]].concat());
    let events: Vec<_> = same_create
        .iter()
        .map(|a| a.json()["event"].clone())
        .collect();
    assert!(
        events.iter().all(|e| *e == events[0]),
        "one event, answered to all"
    );
    assert_eq!(hub.log("acme").head_position().unwrap(), 2);
    // 24 requests at once, 2 events: fewer commits than requests, each
    // command decided in its group's turn (the rejected and replayed ones
    // commit nothing of their own).
    let metrics = answer(agent().get(&format!("{}/metrics", hub.url)).call());
    let text = String::from_utf8(metrics.body).unwrap();
    let commits: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("spkey_hub_commit_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no commit count in {text}"));
    assert!(commits < 24, "{commits} commits for 24 requests");
}

crate::on_both_backends!(
    the_seed_endpoint_answers_every_status_of_the_contract,
    bad_credentials_are_refused_in_order_with_the_api_error_shape_and_nothing_recorded,
    organizations_are_kept_apart,
    devices_sync_through_the_hub_and_a_long_poll_wakes_on_news,
    refused_batches_say_why_and_a_format_mismatch_names_both_versions,
    long_polls_and_requests_beyond_their_caps_are_503_with_retry_after,
    metrics_count_requests_and_events_and_cors_answers_the_configured_origin,
    concurrent_creates_share_commits_and_are_decided_in_turn,
);
