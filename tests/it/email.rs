//! The email rule against the corpus in `tests/fixtures/` (each case with
//! its verdict, the message a refusal must give, and why), through the wire
//! as an app calls it. The wasm suites run the same corpus.

#[path = "../common/email_corpus.rs"]
mod corpus;

use spkey_store::Store;
use spkey_store::contract::Body;
use uuid::Uuid;

use crate::support::NOW_MS;

use crate::support::memory_store as store;

#[test]
fn every_case_of_the_corpus_gets_its_verdict_and_its_message() {
    let cases = corpus::cases();
    assert!(cases.len() >= 90, "the corpus has {} cases", cases.len());
    let store = store();
    let mut wrong = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let id = Uuid::from_u128(0xe3a1_0000 + n as u128).to_string();
        let response = store.create_user_wire(&id, corpus::body(&id, &case.address).as_bytes());
        let verdict = match (&response.body, case.valid) {
            (Body::Success(_), true) => Ok(()),
            (Body::Error(error), false) => {
                let detail = error.details.first();
                match (detail, &case.message) {
                    (Some(d), Some(fragment))
                        if response.status == 400
                            && d.field == "email"
                            && d.message.contains(fragment.as_str()) =>
                    {
                        Ok(())
                    }
                    _ => Err(format!("refused as {:?}", error.details)),
                }
            }
            (Body::Success(_), false) => Err("accepted".into()),
            (Body::Error(error), true) => Err(format!("refused: {:?}", error.details)),
        };
        if let Err(what) = verdict {
            wrong.push(format!("{:?} ({}): {what}", case.address, case.why));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

#[test]
fn one_mailbox_is_one_user_and_two_mailboxes_are_two() {
    let mut wrong = Vec::new();
    for (n, pair) in corpus::pairs().iter().enumerate() {
        let store = store();
        let (a, b) = (
            Uuid::from_u128(0xe3b1_0000 + 2 * n as u128).to_string(),
            Uuid::from_u128(0xe3b1_0001 + 2 * n as u128).to_string(),
        );
        let first = store.create_user_wire(&a, corpus::body(&a, &pair.first).as_bytes());
        let second = store.create_user_wire(&b, corpus::body(&b, &pair.second).as_bytes());
        let expected = if pair.same { 409 } else { 201 };
        if first.status != 201 || second.status != expected {
            wrong.push(format!(
                "{:?} then {:?} ({}): {} then {}",
                pair.first, pair.second, pair.why, first.status, second.status
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_stored_email_is_what_was_typed_trimmed_and_composed() {
    let store = store();
    let id = Uuid::from_u128(0xe3c1).to_string();
    let typed = "  Jose\u{301}@Bücher.DE ";

    let response = store.create_user_wire(&id, corpus::body(&id, typed).as_bytes());

    let Body::Success(success) = response.body else {
        panic!("{response:?}");
    };
    let spkey_store::contract::EventData::User(user) = &success.event.data else {
        panic!("a creation");
    };
    assert_eq!(user.email, "José@Bücher.DE");
    assert_eq!(
        store.user_id_by_email("jOSÉ@xn--bcher-kva.de").unwrap(),
        Some(id.parse().unwrap())
    );
}

/// Format 1 folded only ASCII case, so `ñandú@…` and `ÑANDÚ@…` could both
/// register. Opening such a store rebuilds the index under the new rule:
/// the earlier user holds the mailbox, both stay recorded, `verify` is
/// sound, and no third user can take it.
#[test]
fn a_format_1_store_with_two_users_on_one_mailbox_migrates_soundly() {
    use redb::TableDefinition;
    use spkey_store::{Event, RecordedEvent, UserCreated, codec};
    const EVENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("events");
    const STREAMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("streams");
    const EMAILS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("emails");
    const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.redb");
    let (first, second) = (Uuid::from_u128(0xe3d1), Uuid::from_u128(0xe3d2));
    let store = Store::open(&path).unwrap();
    let body = corpus::body(&first.to_string(), "ñandú@example.com");
    assert_eq!(
        store
            .create_user_wire(&first.to_string(), body.as_bytes())
            .status,
        201
    );
    let origin = store.store_id();
    drop(store);
    // What format 1 would have recorded next: the second user, indexed by
    // the old key (ASCII case folded only).
    let event = RecordedEvent {
        event_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_e3d2),
        version: 1,
        position: 2,
        recorded_at_ms: NOW_MS,
        origin,
        event: Event::UserCreated(UserCreated {
            user_id: second,
            email: "ÑANDÚ@example.com".into(),
            first_name: None,
            last_name: None,
            phone_number: None,
        }),
    };
    let db = redb::Database::open(&path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut stream_key = second.as_bytes().to_vec();
        stream_key.extend_from_slice(&1u64.to_be_bytes());
        txn.open_table(EVENTS)
            .unwrap()
            .insert(&2u64.to_be_bytes()[..], codec::encode(&event).as_slice())
            .unwrap();
        txn.open_table(STREAMS)
            .unwrap()
            .insert(stream_key.as_slice(), &2u64.to_be_bytes()[..])
            .unwrap();
        let mut emails = txn.open_table(EMAILS).unwrap();
        emails.retain(|_, _| false).unwrap();
        emails
            .insert("ñandú@example.com".as_bytes(), &first.as_bytes()[..])
            .unwrap();
        emails
            .insert("ÑandÚ@example.com".as_bytes(), &second.as_bytes()[..])
            .unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(&b"format"[..], 1u32.to_le_bytes().as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
    drop(db);

    let store = Store::open(&path).unwrap();

    let report = store.verify().unwrap();
    assert!(report.is_sound(), "{:?}", report.findings);
    assert!(store.user(first).unwrap().is_some() && store.user(second).unwrap().is_some());
    assert_eq!(
        store.user_id_by_email("ÑANDÚ@EXAMPLE.COM").unwrap(),
        Some(first)
    );
    let third = Uuid::from_u128(0xe3d3).to_string();
    let taken =
        store.create_user_wire(&third, corpus::body(&third, "Ñandú@example.com").as_bytes());
    assert_eq!(taken.status, 409);
}

/// The rule is a subset of the RFC grammar: every address it accepts, the
/// `email_address` crate accepts too (with the domain in ASCII, as it
/// takes it).
#[test]
fn every_address_the_rule_accepts_is_an_rfc_mailbox() {
    use email_address::{EmailAddress, Options};
    let options = Options::default()
        .without_display_text()
        .without_domain_literal()
        .with_required_tld();
    let store = store();
    for (n, case) in corpus::cases().iter().filter(|c| c.valid).enumerate() {
        let id = Uuid::from_u128(0xe3f1_0000 + n as u128).to_string();
        let response = store.create_user_wire(&id, corpus::body(&id, &case.address).as_bytes());
        assert_eq!(response.status, 201, "{:?}", case.address);
        let stored = store
            .user(id.parse().unwrap())
            .unwrap()
            .unwrap()
            .profile
            .email;
        let key = spkey_store::email_key(&stored);
        let domain = key.rsplit_once('@').unwrap().1;
        let local = stored.rsplit_once('@').unwrap().0;
        let ascii = format!("{local}@{domain}");
        assert!(
            EmailAddress::parse_with_options(&ascii, options).is_ok(),
            "{ascii:?} accepted by the rule, refused by the RFC grammar"
        );
    }
}
