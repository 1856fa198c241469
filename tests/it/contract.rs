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

/// One bad request: the path id, the body bytes, and what must come back.
struct Bad {
    name: &'static str,
    id: &'static str,
    body: Vec<u8>,
    status: u16,
    fields: &'static [&'static str],
}

fn bad(name: &'static str, id: &'static str, body: impl Into<Vec<u8>>) -> Bad {
    Bad {
        name,
        id,
        body: body.into(),
        status: 400,
        fields: &[],
    }
}

impl Bad {
    fn is(mut self, status: u16, fields: &'static [&'static str]) -> Bad {
        self.status = status;
        self.fields = fields;
        self
    }
}

/// A body with the seed's valid fields for `ID`, one field replaced by raw JSON.
fn with(field: &str, raw: &str) -> String {
    let mut value: Value = serde_json::from_str(&body(ID, "new@example.com")).unwrap();
    value[field] = serde_json::from_str(raw).unwrap();
    value.to_string()
}

fn without(field: &str) -> String {
    let mut value: Value = serde_json::from_str(&body(ID, "new@example.com")).unwrap();
    value.as_object_mut().unwrap().remove(field);
    value.to_string()
}

fn bad_inputs() -> Vec<Bad> {
    let long_email = format!(r#""{}@example.com""#, "a".repeat(243));
    let long_name = format!(r#""{}""#, "é".repeat(101));
    vec![
        bad("malformed JSON", ID, r#"{"userId":"#).is(400, &["body"]),
        bad("trailing garbage", ID, format!("{} x", body(ID, "a@b.co"))).is(400, &["body"]),
        bad("empty body", ID, "").is(400, &["body"]),
        bad("array body", ID, "[]").is(400, &["body"]),
        bad("string body", ID, r#""hello""#).is(400, &["body"]),
        bad("null body", ID, "null").is(400, &["body"]),
        bad("not UTF-8", ID, b"{\"userId\":\"\xff\xfe\"}".to_vec()).is(400, &["body"]),
        bad("too large", ID, vec![b' '; MAX_BODY_BYTES + 1]).is(413, &["body"]),
        bad("empty path id", "", body(ID, "a@b.co")).is(400, &["id"]),
        bad("path id not a UUID", "example_string", body(ID, "a@b.co")).is(400, &["id"]),
        bad("path id another UUID", OTHER_ID, body(ID, "a@b.co")).is(400, &["id"]),
        bad("userId missing", ID, without("userId")).is(400, &["userId"]),
        bad("userId null", ID, with("userId", "null")).is(400, &["userId"]),
        bad("userId a number", ID, with("userId", "42")).is(400, &["userId"]),
        bad("userId not a UUID", ID, with("userId", r#""abc""#)).is(400, &["userId"]),
        bad(
            "userId nil",
            "00000000-0000-0000-0000-000000000000",
            with("userId", r#""00000000-0000-0000-0000-000000000000""#),
        )
        .is(400, &["userId"]),
        bad("email missing", ID, without("email")).is(400, &["email"]),
        bad("email blank", ID, with("email", r#""   ""#)).is(400, &["email"]),
        bad("email a boolean", ID, with("email", "true")).is(400, &["email"]),
        bad("email invalid", ID, with("email", r#""not-an-email""#)).is(400, &["email"]),
        bad("email with display name", ID, with("email", r#""Ann <a@b.co>""#))
            .is(400, &["email"]),
        bad("email too long", ID, with("email", &long_email)).is(400, &["email"]),
        bad("firstName an object", ID, with("firstName", r#"{"a":1}"#)).is(400, &["firstName"]),
        bad("firstName too long", ID, with("firstName", &long_name)).is(400, &["firstName"]),
        bad("firstName control char", ID, with("firstName", r#""Jo\u0000hn""#))
            .is(400, &["firstName"]),
        bad("lastName an array", ID, with("lastName", r#"["Doe"]"#)).is(400, &["lastName"]),
        bad("lastName newline", ID, with("lastName", r#""Do\ne""#)).is(400, &["lastName"]),
        bad("phoneNumber letters", ID, with("phoneNumber", r#""abc""#)).is(400, &["phoneNumber"]),
        bad("phoneNumber a number", ID, with("phoneNumber", "5550123")).is(400, &["phoneNumber"]),
        bad("phoneNumber 6 digits", ID, with("phoneNumber", r#""555-012""#))
            .is(400, &["phoneNumber"]),
        bad("phoneNumber 16 digits", ID, with("phoneNumber", r#""+1234567890123456""#))
            .is(400, &["phoneNumber"]),
        bad("phoneNumber inner plus", ID, with("phoneNumber", r#""1+5550123""#))
            .is(400, &["phoneNumber"]),
        bad("misspelt field", ID, with("firstname", r#""John""#)).is(400, &["firstname"]),
        bad(
            "duplicate field",
            ID,
            format!(r#"{{"userId":"{ID}","email":"a@b.co","email":"c@d.co"}}"#),
        )
        .is(400, &["email"]),
        bad(
            "everything wrong at once",
            "nope",
            r#"{"userId":7,"email":"x","firstName":"\u0007","lastName":[],"phoneNumber":"abc","extra":1}"#,
        )
        .is(
            400,
            &["id", "userId", "email", "firstName", "lastName", "phoneNumber", "extra"],
        ),
        // The store already holds ID with user@example.com.
        bad("userId taken with other data", ID, body(ID, "other@example.com")).is(409, &["userId"]),
        bad("email taken", OTHER_ID, body(OTHER_ID, "USER@example.com")).is(409, &["email"]),
    ]
}

#[test]
fn every_bad_input_is_rejected_naming_its_field_and_changes_nothing() {
    let given = given_store();
    assert_eq!(given.wire(ID, &body(ID, "user@example.com")).status, 201);
    let before = given.snapshot();
    let file_before = std::fs::read(given.path()).unwrap();

    for case in bad_inputs() {
        let response = given.store.create_user_wire(case.id, &case.body);

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

    let response = given.wire(ID, &with("email", r#""bad""#));

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
