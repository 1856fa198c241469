//! DeleteUser and erasure, checked as an auditor would: distinctive users
//! synced to a hub and devices (one of them offline across the erasure),
//! one erased, then every byte of every file — stores, journals, checksum
//! files — searched for each of the erased user's values in UTF-8, lower
//! case and UTF-16: none found, and every other user's values still found
//! and readable.

use std::path::{Path, PathBuf};

use spkey_store::{CreateUser, DeleteUser, Outcome, Store, UpdateUser};
use uuid::Uuid;

use crate::support::sync_with as sync;

/// A user's distinctive values: no other user's, so a match is theirs.
pub struct Person {
    pub id: Uuid,
    pub email: &'static str,
    pub first: &'static str,
    pub last: &'static str,
    pub phone: &'static str,
}

pub const ERASED: Person = Person {
    id: Uuid::from_u128(0xe1a5_0001),
    email: "Xanthippe.Quorrelby@Erasable.example",
    first: "Xanthippe",
    last: "Quorrelby",
    phone: "+44 20 7946 0311",
};
pub const KEPT: [Person; 2] = [
    Person {
        id: Uuid::from_u128(0xe1a5_0002),
        email: "bartholomew.keeping@example.com",
        first: "Bartholomew",
        last: "Keepington",
        phone: "+1 555 0100 42",
    },
    Person {
        id: Uuid::from_u128(0xe1a5_0003),
        email: "cordelia.stays@example.com",
        first: "Cordelia",
        last: "Staysworth",
        phone: "+49 30 901820 77",
    },
];

pub fn create(store: &Store, person: &Person) {
    let command = CreateUser::new(person.id.to_string(), person.email)
        .first_name(person.first)
        .last_name("placeholder-surname")
        .phone_number(person.phone);
    assert!(matches!(
        store.create_user(&command).unwrap(),
        Outcome::Recorded(_)
    ));
    let update = UpdateUser::new(person.id.to_string()).last_name(person.last);
    assert!(matches!(
        store.update_user(&update).unwrap(),
        Outcome::Recorded(_)
    ));
}

/// The forms of `value` a search looks for: as given, lower case, and
/// UTF-16 (little and big endian) of each.
fn forms(value: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for text in [value.to_owned(), value.to_lowercase()] {
        out.push(text.as_bytes().to_vec());
        out.push(text.encode_utf16().flat_map(u16::to_le_bytes).collect());
        out.push(text.encode_utf16().flat_map(u16::to_be_bytes).collect());
    }
    out
}

fn values(person: &Person) -> [&'static str; 4] {
    [person.email, person.first, person.last, person.phone]
}

/// The values of `person` that `bytes` hold, in any of their forms.
pub fn held(bytes: &[u8], person: &Person) -> Vec<&'static str> {
    values(person)
        .into_iter()
        .filter(|value| {
            forms(value)
                .iter()
                .any(|form| bytes.windows(form.len()).any(|w| w == &form[..]))
        })
        .collect()
}

/// Every file under `dir`, with the values of `person` each holds.
fn found(dir: &Path, person: &Person) -> Vec<(PathBuf, &'static str)> {
    let mut hits = Vec::new();
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap();
        for value in held(&bytes, person) {
            hits.push((entry.clone(), value));
        }
    }
    hits
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn an_erased_user_is_in_no_file_of_the_hub_or_any_device_even_one_offline_that_day() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let hub = Store::open(path("hub.redb")).unwrap();
    let phone = Store::open(path("phone.redb")).unwrap();
    let laptop = Store::open(path("laptop.redb")).unwrap();
    create(&phone, &ERASED);
    for person in &KEPT {
        create(&laptop, person);
    }
    sync(&phone, &hub);
    sync(&laptop, &hub);
    sync(&phone, &hub);
    // The laptop goes offline holding every user, and edits the one about
    // to be erased there: a pending update with a new value of its own.
    let offline_edit = UpdateUser::new(ERASED.id.to_string()).first_name("Xanthippa-Offline");
    assert!(matches!(
        laptop.update_user(&offline_edit).unwrap(),
        Outcome::Recorded(_)
    ));
    let before = found(dir.path(), &ERASED);
    assert!(
        before
            .iter()
            .any(|(p, _)| p.ends_with("laptop.redb") || p.ends_with("laptop.redb-journal")),
        "the search must see the user before the erasure: {before:?}"
    );

    // The phone erases the user and syncs; the hub accepts the erasure.
    let erased = phone
        .delete_user(&DeleteUser::new(ERASED.id.to_string()))
        .unwrap();
    assert!(matches!(erased, Outcome::Recorded(_)), "{erased:?}");
    sync(&phone, &hub);
    assert!(hub.user(ERASED.id).unwrap().unwrap().is_erased());
    // The email is free at once; the id stays taken.
    assert_eq!(hub.user_id_by_email(ERASED.email).unwrap(), None);

    // Days later the laptop comes back and syncs: its pending edit of the
    // erased user is erased too, never sent.
    sync(&laptop, &hub);
    assert!(laptop.pending().unwrap().is_empty());
    assert!(laptop.user(ERASED.id).unwrap().unwrap().is_erased());
    for store in [&hub, &phone, &laptop] {
        let report = store.verify().unwrap();
        assert!(report.is_sound(), "{report:?}");
    }
    for store in [hub, phone, laptop] {
        store.close().unwrap();
    }

    let mut left = found(dir.path(), &ERASED);
    left.extend(found(
        dir.path(),
        &Person {
            first: "Xanthippa-Offline",
            ..ERASED
        },
    ));
    assert!(left.is_empty(), "erased values found: {left:?}");
    // Every other user's values are still there, and read back.
    for person in &KEPT {
        let hits = found(dir.path(), person);
        for store_file in ["hub.redb", "phone.redb", "laptop.redb"] {
            for value in values(person) {
                assert!(
                    hits.iter()
                        .any(|(p, v)| p.ends_with(store_file) && *v == value),
                    "{value} is gone from {store_file}"
                );
            }
        }
    }
    for name in ["hub.redb", "phone.redb", "laptop.redb"] {
        let store = Store::open(path(name)).unwrap();
        assert!(store.verify().unwrap().is_sound(), "{name}");
        for person in &KEPT {
            let user = store.user(person.id).unwrap().unwrap();
            assert_eq!(user.profile.email, person.email);
            assert_eq!(user.profile.last_name.as_deref(), Some(person.last));
        }
        let erased = store.user(ERASED.id).unwrap().unwrap();
        assert!(erased.is_erased() && erased.profile.first_name.is_none());
    }
}

#[test]
fn delete_user_answers_as_the_api_does() {
    let store = Store::in_memory().unwrap();
    let id = ERASED.id.to_string();
    assert!(matches!(
        store.delete_user(&DeleteUser::new(&id)).unwrap(),
        Outcome::Rejected(r) if r.code() == 404
    ));
    create(&store, &ERASED);
    let first = store.delete_user(&DeleteUser::new(&id)).unwrap();
    let Outcome::Recorded(erasure) = first else {
        panic!("{first:?}")
    };
    // A replay answers with the original erasure.
    assert_eq!(
        store.delete_user(&DeleteUser::new(&id)).unwrap(),
        Outcome::Replayed(erasure)
    );
    // The id stays taken; an update finds no user; the email is free.
    let again = CreateUser::new(&id, "new@example.com");
    let Outcome::Rejected(taken) = store.create_user(&again).unwrap() else {
        panic!("the id was reused")
    };
    assert_eq!(taken.code(), 409);
    assert!(taken.details()[0].message.contains("erased"));
    let update = UpdateUser::new(&id).first_name("Back");
    assert!(matches!(
        store.update_user(&update).unwrap(),
        Outcome::Rejected(r) if r.code() == 404
    ));
    let other = CreateUser::new(Uuid::from_u128(77).to_string(), ERASED.email);
    assert!(matches!(
        store.create_user(&other).unwrap(),
        Outcome::Recorded(_)
    ));
    // What is left of the user: its events' kinds and times, no field.
    let kinds: Vec<&str> = store
        .aggregate_events(ERASED.id)
        .unwrap()
        .iter()
        .map(|e| e.event.event_type())
        .collect();
    assert_eq!(kinds, ["Redacted", "Redacted", "UserErased"]);
    assert!(store.verify().unwrap().is_sound());
}

#[cfg(unix)]
#[test]
fn the_rewritten_file_keeps_the_stores_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mode.redb");
    let store = Store::open(&path).unwrap();
    create(&store, &ERASED);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    store
        .delete_user(&DeleteUser::new(ERASED.id.to_string()))
        .unwrap();
    store.close().unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(found(dir.path(), &ERASED).is_empty());
}
