//! DeleteUser through the hub, on both backends: who may erase whom, the
//! API's answers, a device offline across the erasure, and every file of
//! the hub's storage searched byte by byte for the erased user's values —
//! the redb hub's files at once, PostgreSQL's data directory after the
//! erasure maintenance step — none found, every other user's still there.

mod support;

use std::path::{Path, PathBuf};

use spkey_store::http::sync;
use spkey_store::{Store, UpdateUser};
use support::*;

/// A user's distinctive values: (email, first name, last name, phone).
fn values(who: &str, phone: &str) -> [String; 4] {
    [
        format!("{who}.Erasure-Probe@Example.org"),
        format!("Firstname{who}Probe"),
        format!("Lastname{who}Probe"),
        phone.to_owned(),
    ]
}

fn erased_values() -> [String; 4] {
    values("Ophelia", "+61 2 9374 4000")
}

fn kept_values() -> [String; 4] {
    values("Gideon", "+81 3 1234 5678")
}

fn create_body(id: &str, [email, first, last, phone]: &[String; 4]) -> String {
    serde_json::json!({
        "userId": id, "email": email, "firstName": first,
        "lastName": last, "phoneNumber": phone,
    })
    .to_string()
}

/// Each file under `dir` holding one of `values` (as given, lower case,
/// UTF-16 either way).
fn holders(dir: &Path, values: &[String]) -> Vec<(PathBuf, String)> {
    let mut forms = Vec::new();
    for value in values {
        for text in [value.clone(), value.to_lowercase()] {
            forms.push((value.clone(), text.as_bytes().to_vec()));
            let le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
            let be: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
            forms.push((value.clone(), le));
            forms.push((value.clone(), be));
        }
    }
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                stack.push(entry.path());
            }
            continue;
        }
        // A file the server removed while it was listed is no holder.
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        for (value, form) in &forms {
            if memchr::memmem::find(&bytes, form).is_some()
                && !found.iter().any(|(p, v)| p == &path && v == value)
            {
                found.push((path.clone(), value.clone()));
            }
        }
    }
    found
}

/// The API's answers to DeleteUser over HTTP, and who may erase whom; then
/// a device that was offline across the erasure syncs and erases its copy.
fn erase_over_http(hub: &TestHub) {
    let (erased, kept) = (user_id(31), user_id(32));
    let service = acme_token();
    for (id, values) in [(&erased, erased_values()), (&kept, kept_values())] {
        let created = create(&hub.url, ACME_KEY, &service, id, &create_body(id, &values));
        assert_eq!(
            created.status,
            201,
            "{}",
            String::from_utf8_lossy(&created.body)
        );
    }
    // A device syncs everyone, then goes offline, editing the user there.
    let dir = tempfile::tempdir().unwrap();
    let laptop = Store::open(dir.path().join("laptop.redb")).unwrap();
    sync(&laptop, &hub.url, ACME_KEY, &service).unwrap();
    laptop
        .update_user(&UpdateUser::new(erased.clone()).last_name("Offline-Edit-Probe"))
        .unwrap();

    // A user may erase only itself.
    let other = post_command(
        &hub.url,
        ACME_KEY,
        &acme_user_token(&kept),
        "DeleteUser",
        &erased,
        "{}",
    );
    assert_eq!(
        other.status,
        403,
        "{}",
        String::from_utf8_lossy(&other.body)
    );
    let bad = post_command(
        &hub.url,
        ACME_KEY,
        &acme_user_token(&erased),
        "DeleteUser",
        &erased,
        r#"{"email":"x@y.co"}"#,
    );
    assert_eq!(bad.status, 400, "{}", String::from_utf8_lossy(&bad.body));
    let body = format!(r#"{{"userId":"{erased}"}}"#);
    let own = acme_user_token(&erased);
    let first = post_command(&hub.url, ACME_KEY, &own, "DeleteUser", &erased, &body);
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let json = first.json();
    assert_eq!(json["event"]["eventType"], "UserErased");
    assert_eq!(json["success"], true);
    let replay = post_command(&hub.url, ACME_KEY, &own, "DeleteUser", &erased, "{}");
    assert_eq!((replay.status, replay.json()), (200, json));
    let unknown = post_command(
        &hub.url,
        ACME_KEY,
        &service,
        "DeleteUser",
        &user_id(39),
        "{}",
    );
    assert_eq!(unknown.status, 404);
    // Its id stays taken; its email is free at once.
    let again = create(
        &hub.url,
        ACME_KEY,
        &service,
        &erased,
        &create_body(&erased, &erased_values()),
    );
    assert_eq!(again.status, 409);
    assert_eq!(again.json()["details"][0]["field"], "userId");
    let update = post_command(
        &hub.url,
        ACME_KEY,
        &service,
        "UpdateUser",
        &erased,
        r#"{"firstName":"X"}"#,
    );
    assert_eq!(update.status, 404);

    // The laptop comes back: its copy and its pending edit are erased.
    // Sync pushes first: the hub refuses the edit (404, recording nothing),
    // then the pull brings the erasure, which erases the edit too.
    let summary = sync(&laptop, &hub.url, ACME_KEY, &service).unwrap();
    assert_eq!((summary.pushed, summary.rejected), (1, 1), "{summary:?}");
    let refused = laptop.rejections().unwrap();
    assert_eq!(refused[0].event.refusal().unwrap().code, 404);
    let user = laptop.user(erased.parse().unwrap()).unwrap().unwrap();
    assert!(user.is_erased());
    assert!(laptop.pending().unwrap().is_empty());
    laptop.close().unwrap();
    let mut erased_and_edit = erased_values().to_vec();
    erased_and_edit.push("Offline-Edit-Probe".into());
    assert_eq!(holders(dir.path(), &erased_and_edit), vec![]);
    assert_eq!(holders(dir.path(), &kept_values()).len(), 4);
}

#[test]
fn redb_hub_erases_at_once_from_every_file() {
    let hub = TestHub::start(Backend::Redb);
    erase_over_http(&hub);
    // While it runs: the organization's store was rewritten before the
    // erasure was answered.
    let data = hub.dir.path().join("data");
    let mut erased = erased_values().to_vec();
    erased.push("Offline-Edit-Probe".into());
    assert_eq!(holders(&data, &erased), vec![]);
    let kept = holders(&data, &kept_values());
    assert_eq!(kept.len(), 4, "{kept:?}");
    // Read back, whole.
    let log = hub.log("acme");
    let user = log.user(user_id(32).parse().unwrap()).unwrap().unwrap();
    assert_eq!(user.profile.email, kept_values()[0]);
}

#[test]
fn postgres_hub_erases_from_every_live_file_after_the_maintenance_step() {
    // A cluster of its own: its whole data directory is searched, WAL
    // included, and it runs as the README says an operator should.
    let cluster = pg::PgCluster::start();
    cluster.psql("postgres", "ALTER SYSTEM SET wal_recycle = off");
    cluster.psql("postgres", "SELECT pg_reload_conf()");
    let url = cluster.new_database();
    let hub = TestHub::start_on(format!("postgres = \"{url}\""), "");
    erase_over_http(&hub);
    let data = cluster.data_dir();
    let mut erased = erased_values().to_vec();
    erased.push("Offline-Edit-Probe".into());
    assert!(
        !holders(&data, &erased).is_empty(),
        "the search must see the values before the maintenance step"
    );
    rt().block_on(spkey_hub::postgres::erase_maintenance(&url))
        .unwrap();
    assert_eq!(holders(&data, &erased), vec![]);
    let kept = holders(&data, &kept_values());
    assert!(kept.len() >= 4, "{kept:?}");
    let log = hub.log("acme");
    let user = log.user(user_id(32).parse().unwrap()).unwrap().unwrap();
    assert_eq!(user.profile.email, kept_values()[0]);
    let erased_user = log.user(user_id(31).parse().unwrap()).unwrap().unwrap();
    assert!(erased_user.is_erased());
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
