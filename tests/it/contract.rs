//! The wire contract: statuses, exact bodies, and a table of bad inputs.

use serde_json::{Value, json};
use spkey_store::MAX_BODY_BYTES;
use spkey_store::contract::EventData;

use crate::support::*;

#[test]
fn a_new_user_is_answered_201_with_the_recorded_event() {
    let given = given_store();

    let response = given.wire(ID, &body(ID, "user@example.com"));

    assert_eq!(response.status, 201);
    let json: Value = serde_json::from_str(&response.to_json()).unwrap();
    let event_id = json["event"]["eventId"].as_str().unwrap().to_owned();
    let parsed = uuid::Uuid::parse_str(&event_id).unwrap();
    assert_eq!(parsed.get_version_num(), 7);
    assert_eq!(event_id, parsed.hyphenated().to_string());
    assert_eq!(
        json,
        json!({
            "success": true,
            "aggregateId": ID,
            "version": 1,
            "event": {
                "eventId": event_id,
                "eventType": "UserCreated",
                "aggregateId": ID,
                "aggregateType": "User",
                "version": 1,
                "position": 1,
                "recordedAt": "2026-11-26T23:00:00.123Z",
                "data": {
                    "userId": ID,
                    "email": "user@example.com",
                    "firstName": "John Doe",
                    "lastName": "John Doe",
                    "phoneNumber": "+1-555-0123"
                }
            },
            "userId": ID
        })
    );
}

#[test]
fn the_identical_command_replayed_is_200_with_the_original_body_and_records_nothing() {
    let given = given_store();
    let first = given.wire(ID, &body(ID, "user@example.com"));
    given.clock.advance(5_000);
    let before = given.snapshot();

    let again = given.wire(ID, &body(ID, "user@example.com"));

    assert_eq!(again.status, 200);
    assert_eq!(again.to_json(), first.to_json());
    assert_eq!(given.snapshot(), before);
}

#[test]
fn a_replay_is_recognised_after_normalization() {
    let given = given_store();
    given.wire(ID, &body(ID, "user@example.com"));
    let upper_simple = ID.replace('-', "").to_uppercase();
    let padded = format!(
        r#"{{"userId":"{{{ID}}}","email":" user@example.com ","firstName":" John Doe","lastName":"John Doe ","phoneNumber":"+1-555-0123"}}"#
    );

    let again = given.wire(&upper_simple, &padded);

    assert_eq!(again.status, 200);
    assert_eq!(given.store.head_position().unwrap(), 1);
}

#[test]
fn ids_in_any_standard_form_are_answered_lowercase_hyphenated() {
    let given = given_store();
    let urn = format!("urn:uuid:{}", ID.to_uppercase());

    let response = given.wire(&urn, &body(&ID.to_uppercase(), "a@b.co"));

    assert_eq!(response.status, 201);
    assert_eq!(success(&response).user_id, ID);
    let EventData::User(data) = &success(&response).event.data else {
        panic!("UserCreated data expected");
    };
    assert_eq!(data.user_id, ID);
}

#[test]
fn optional_fields_may_be_null_or_absent_and_are_omitted() {
    let given = given_store();
    let body = format!(r#"{{"userId":"{ID}","email":"a@b.co","firstName":null,"lastName":"  "}}"#);

    let response = given.wire(ID, &body);

    assert_eq!(response.status, 201);
    let json: Value = serde_json::from_str(&response.to_json()).unwrap();
    assert_eq!(
        json["event"]["data"],
        json!({"userId": ID, "email": "a@b.co"})
    );
}

#[test]
fn email_uniqueness_ignores_case() {
    let given = given_store();
    given.wire(ID, &body(ID, "User@Example.com"));

    let response = given.wire(OTHER_ID, &body(OTHER_ID, "user@EXAMPLE.COM"));

    assert_eq!(response.status, 409);
    assert_eq!(fields(&response), ["email"]);
    assert_eq!(error(&response).error, "Conflict");
}

#[test]
fn a_body_of_exactly_the_limit_is_accepted() {
    let given = given_store();
    let mut text = body(ID, "a@b.co");
    text.push_str(&" ".repeat(MAX_BODY_BYTES - text.len()));

    assert_eq!(given.wire(ID, &text).status, 201);
}

#[test]
fn the_seeds_example_path_is_not_a_uuid() {
    let given = given_store();

    let response = given.wire(
        "example_string",
        &body("example_string", "user@example.com"),
    );

    assert_eq!(response.status, 400);
    assert_eq!(fields(&response), ["id", "userId"]);
    let json: Value = serde_json::from_str(&response.to_json()).unwrap();
    assert_eq!(json["error"], "Bad Request");
    assert_eq!(
        json["message"],
        "The request contains invalid parameters or malformed data"
    );
    assert_eq!(json["code"], 400);
}

/// One bad request of the shared table (`tests/fixtures/contract.json`,
/// which the JavaScript and Kotlin tests read too): the path id, the body
/// bytes, and what must come back.
struct Bad {
    name: String,
    id: String,
    body: Vec<u8>,
    status: u16,
    fields: Vec<String>,
}

fn bad_inputs() -> Vec<Bad> {
    let table: Value =
        serde_json::from_str(include_str!("../fixtures/contract.json")).expect("the table is JSON");
    assert_eq!(
        table["given"],
        json!([{"id": ID, "body": body(ID, "user@example.com")}]),
        "the cases below assume the store holds this"
    );
    let text = |case: &Value, key: &str| case[key].as_str().map(str::to_owned);
    table["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|case| Bad {
            name: text(case, "name").expect("name"),
            id: text(case, "id").expect("id"),
            body: match (
                text(case, "body"),
                text(case, "bodyHex"),
                case["bodyOfSpaces"].as_u64(),
            ) {
                (Some(body), None, None) => body.into_bytes(),
                (None, Some(hex), None) => (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                    .collect(),
                (None, None, Some(n)) => vec![b' '; n as usize],
                _ => panic!("a case has exactly one body: {case}"),
            },
            status: case["status"].as_u64().expect("status") as u16,
            fields: serde_json::from_value(case["fields"].clone()).expect("fields"),
        })
        .collect()
}

#[test]
fn the_shared_table_keeps_its_edge_cases() {
    // The size limit and non-UTF-8 bytes are in the table, and the limit is
    // the one the code enforces.
    let cases = bad_inputs();
    assert!(cases.len() >= 35, "{} cases", cases.len());
    let too_large = cases.iter().find(|c| c.status == 413).expect("a 413 case");
    assert_eq!(too_large.body.len(), MAX_BODY_BYTES + 1);
    assert!(cases.iter().any(|c| std::str::from_utf8(&c.body).is_err()));
}

#[test]
fn every_bad_input_is_rejected_naming_its_field_and_changes_nothing() {
    let given = given_store();
    assert_eq!(given.wire(ID, &body(ID, "user@example.com")).status, 201);
    let before = given.snapshot();
    let file_before = std::fs::read(given.path()).unwrap();

    for case in bad_inputs() {
        let response = given.store.create_user_wire(&case.id, &case.body);

        assert_eq!(response.status, case.status, "{}: {response:?}", case.name);
        let body = error(&response);
        assert_eq!(body.code, case.status, "{}", case.name);
        assert_eq!(fields(&response), case.fields, "{}: {body:?}", case.name);
        assert!(
            body.details.iter().all(|d| !d.message.is_empty()),
            "{}",
            case.name
        );
        assert_eq!(given.snapshot(), before, "{} changed the store", case.name);
    }
    assert_eq!(
        std::fs::read(given.path()).unwrap(),
        file_before,
        "a rejected command changed the file"
    );
    assert!(given.store.verify().unwrap().is_sound());
}

#[test]
fn error_bodies_have_the_seed_shape() {
    let given = given_store();

    let response = given.wire(ID, &body(ID, "bad"));

    let json: Value = serde_json::from_str(&response.to_json()).unwrap();
    assert_eq!(
        json,
        json!({
            "error": "Bad Request",
            "message": "The request contains invalid parameters or malformed data",
            "code": 400,
            "details": [{"field": "email", "message": "Invalid email format: must contain an @"}]
        })
    );
}
