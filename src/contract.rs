//! The wire contract of `POST /users/{id}/{command}` (`CreateUser`,
//! `UpdateUser`): request bytes in, the API's exact status and JSON bodies
//! out.
//!
//! Invariant: this module knows nothing of redb. It parses the wire into a
//! [`Command`], hands it to the [`Store`], and renders the [`Outcome`].

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::command::{Command, CreateUser, DeleteUser, Outcome, UpdateUser};
use crate::error::StoreError;
use crate::event::{Event, RecordedEvent, Refusal, UserCreated, UserUpdated};
use crate::field::{Field, FieldError};
use crate::store::Store;
use crate::user::User;

/// The largest request body accepted, in bytes; a larger one is answered 413
/// without being parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// An HTTP status and the JSON body that goes with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The HTTP status: 200, 201, 400, 403, 404, 409, 413 or 500.
    pub status: u16,
    /// The body.
    pub body: Body,
}

/// A response body: the seed's success shape or its error shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(tsify::Tsify))]
#[serde(untagged)]
pub enum Body {
    /// `{"success":true,"aggregateId",…}`. Boxed: it is four times the
    /// size of an error body, which would otherwise pay for it.
    Success(Box<SuccessBody>),
    /// `{"error","message","code","details"}`.
    Error(ErrorBody),
}

/// The success body of `CreateUser`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(tsify::Tsify))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SuccessBody {
    /// Always `true`.
    pub success: bool,
    /// The user's id, lowercase hyphenated.
    pub aggregate_id: String,
    /// The aggregate's version after the recorded event.
    pub version: u64,
    /// The recorded event.
    pub event: EventJson,
    /// The user's id, lowercase hyphenated.
    pub user_id: String,
}

/// The error body, as the API sends it for every 4xx and 5xx.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(tsify::Tsify))]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// The HTTP reason phrase, e.g. `"Bad Request"`.
    pub error: String,
    /// A sentence for a person.
    pub message: String,
    /// The HTTP status again.
    pub code: u16,
    /// One entry per failing field.
    pub details: Vec<Detail>,
}

/// One failing field of an error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(tsify::Tsify))]
#[serde(deny_unknown_fields)]
pub struct Detail {
    /// The API's field name (`id`, `userId`, `email`, …), `body` when no
    /// field applies, or the name of an unknown field as sent.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// A recorded event as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(tsify::Tsify))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventJson {
    /// UUID v7 of the event.
    pub event_id: String,
    /// `"UserCreated"`.
    pub event_type: String,
    /// The user's id.
    pub aggregate_id: String,
    /// `"User"`.
    pub aggregate_type: String,
    /// The aggregate's version after this event.
    pub version: u64,
    /// The event's position in the store's log.
    pub position: u64,
    /// RFC 3339, UTC, milliseconds: `2026-11-26T23:00:00.000Z`.
    pub recorded_at: String,
    /// The event's fields.
    pub data: EventData,
}

/// The `data` of an event, by event type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(tsify::Tsify))]
#[serde(untagged)]
pub enum EventData {
    /// `UserCreated`: the profile.
    User(UserJson),
    /// `UserCreationRejected`, `UserUpdateRejected`, `UserErasureRejected`:
    /// why the hub refused the event.
    Rejection(RejectionJson),
    /// `UserUpdated`: the fields changed; `UserErased` and `Redacted` (what
    /// erasure left of a creation or an update): the user's id alone.
    Update(UpdateJson),
}

/// The fields an update changed: a field absent was not changed, `null`
/// was cleared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(tsify::Tsify))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateJson {
    /// Lowercase hyphenated UUID.
    pub user_id: String,
    /// The new email.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub email: Option<String>,
    /// The new first name, `null` when cleared.
    #[serde(
        skip_serializing_if = "Option::is_none",
        default,
        deserialize_with = "present"
    )]
    #[cfg_attr(feature = "typescript", tsify(optional, type = "string | null"))]
    pub first_name: Option<Option<String>>,
    /// The new last name, `null` when cleared.
    #[serde(
        skip_serializing_if = "Option::is_none",
        default,
        deserialize_with = "present"
    )]
    #[cfg_attr(feature = "typescript", tsify(optional, type = "string | null"))]
    pub last_name: Option<Option<String>>,
    /// The new phone number, `null` when cleared.
    #[serde(
        skip_serializing_if = "Option::is_none",
        default,
        deserialize_with = "present"
    )]
    #[cfg_attr(feature = "typescript", tsify(optional, type = "string | null"))]
    pub phone_number: Option<Option<String>>,
}

/// A field that is present, `null` included (absent is `None` by
/// `default`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

fn update_json(updated: &UserUpdated) -> UpdateJson {
    UpdateJson {
        user_id: updated.user_id.to_string(),
        email: updated.email.clone(),
        first_name: updated.first_name.clone(),
        last_name: updated.last_name.clone(),
        phone_number: updated.phone_number.clone(),
    }
}

/// Why the hub refused a user created offline: the API's error body for the
/// refused command, and which event it refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(tsify::Tsify))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RejectionJson {
    /// The `UserCreated` event the hub refused.
    pub rejected_event_id: String,
    /// The HTTP reason phrase, e.g. `"Conflict"`.
    pub error: String,
    /// A sentence for a person.
    pub message: String,
    /// The HTTP status: 400 or 409.
    pub code: u16,
    /// One entry per failing field.
    pub details: Vec<Detail>,
}

/// A user's profile fields as JSON; absent optional fields are omitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(tsify::Tsify))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserJson {
    /// Lowercase hyphenated UUID.
    pub user_id: String,
    /// The email as given, trimmed.
    pub email: String,
    /// First name, trimmed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub first_name: Option<String>,
    /// Last name, trimmed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_name: Option<String>,
    /// Phone number, trimmed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub phone_number: Option<String>,
}

/// A user's current state as JSON, as `spkey user` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(tsify::Tsify))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserStateJson {
    /// The profile fields.
    #[serde(flatten)]
    pub profile: UserJson,
    /// The aggregate's version.
    pub version: u64,
    /// When the user was created, RFC 3339 UTC with milliseconds.
    pub created_at: String,
    /// Present when the hub refused this user (created offline): why.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rejection: Option<RejectionJson>,
    /// `true` when the user was erased: the email is empty and no other
    /// field is left.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub erased: bool,
}

impl Response {
    /// The body as one line of JSON.
    pub fn to_json(&self) -> String {
        // Plain structs of strings and integers always serialize.
        serde_json::to_string(&self.body).expect("response bodies serialize infallibly")
    }

    /// The response for a store outcome.
    pub fn from_outcome(outcome: &Outcome) -> Response {
        match outcome {
            Outcome::Recorded(event) => {
                let status = match event.event {
                    Event::UserCreated(_) => 201,
                    _ => 200,
                };
                Response::success(status, event)
            }
            Outcome::Replayed(event) => Response::success(200, event),
            Outcome::Rejected(rejection) => {
                let (error, message) = reason(rejection.code());
                Response::error(
                    rejection.code(),
                    error,
                    message,
                    domain_details(rejection.details()),
                )
            }
        }
    }

    /// A 400 naming `body`, for a body that could not even be turned into
    /// bytes (a caller passing a value JSON cannot express).
    pub fn invalid_body(message: &str) -> Response {
        bad_request(vec![body_detail(message.to_owned())])
    }

    /// The 500 response for a storage failure: nothing was written. The
    /// body names the kind of failure, not its internals (paths, positions,
    /// engine messages stay with the caller that has the error).
    pub fn storage_failure(error: &StoreError) -> Response {
        let kind = match error {
            StoreError::Locked => "the store is locked by another process",
            StoreError::ReadOnly => "the store was opened read-only",
            StoreError::Corrupt { .. } | StoreError::Inconsistent(_) | StoreError::Damaged(_) => {
                "the store is damaged"
            }
            StoreError::ClockOutOfRange(_) | StoreError::NoClock => "the store's clock is off",
            _ => "the storage failed",
        };
        Response::error(
            500,
            "Internal Server Error",
            &format!("The store could not record the command and wrote nothing: {kind}"),
            Vec::new(),
        )
    }

    fn success(status: u16, recorded: &RecordedEvent) -> Response {
        let event = event_json(recorded);
        Response {
            status,
            body: Body::Success(Box::new(SuccessBody {
                success: true,
                aggregate_id: event.aggregate_id.clone(),
                version: event.version,
                user_id: event.aggregate_id.clone(),
                event,
            })),
        }
    }

    fn error(status: u16, error: &str, message: &str, details: Vec<Detail>) -> Response {
        Response {
            status,
            body: Body::Error(ErrorBody {
                error: error.into(),
                message: message.into(),
                code: status,
                details,
            }),
        }
    }
}

/// The `error` and `message` of an error body with status `code`.
fn reason(code: u16) -> (&'static str, &'static str) {
    match code {
        400 => (
            "Bad Request",
            "The request contains invalid parameters or malformed data",
        ),
        403 => (
            "Forbidden",
            "The credentials do not allow acting on this user",
        ),
        404 => ("Not Found", "No user has this id"),
        409 => ("Conflict", "The request conflicts with an existing user"),
        413 => ("Payload Too Large", "The request body is too large"),
        _ => (
            "Internal Server Error",
            "The store could not record the command",
        ),
    }
}

fn bad_request(details: Vec<Detail>) -> Response {
    let (error, message) = reason(400);
    Response::error(400, error, message, details)
}

fn rejection_json(rejected: &Refusal) -> RejectionJson {
    let (error, message) = reason(rejected.code);
    RejectionJson {
        rejected_event_id: rejected.rejected_event_id.to_string(),
        error: error.into(),
        message: message.into(),
        code: rejected.code,
        details: domain_details(&rejected.details),
    }
}

fn domain_details(details: &[FieldError]) -> Vec<Detail> {
    details
        .iter()
        .map(|d| Detail {
            field: d.field.as_str().into(),
            message: d.message.clone(),
        })
        .collect()
}

/// RFC 3339 in UTC with exactly three fractional digits.
pub fn format_timestamp(ms: i64) -> String {
    use std::time::{Duration, UNIX_EPOCH};
    // humantime formats up to the year 9999; the store never records a
    // later or pre-1970 time (it checks the clock), so the fallback shows
    // only a hand-built event's raw value.
    match u64::try_from(ms) {
        Ok(ms) if ms <= crate::event::MAX_RECORDED_AT_MS as u64 => {
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        _ => ms.to_string(),
    }
}

/// A recorded event as the wire shows it.
pub fn event_json(recorded: &RecordedEvent) -> EventJson {
    let data = match &recorded.event {
        Event::UserCreated(created) => EventData::User(profile_json(created)),
        Event::UserUpdated(updated) => EventData::Update(update_json(updated)),
        Event::UserCreationRejected(refusal)
        | Event::UserUpdateRejected(refusal)
        | Event::UserErasureRejected(refusal) => EventData::Rejection(rejection_json(refusal)),
        Event::UserErased(user_id) | Event::Redacted(user_id, _) => {
            EventData::Update(update_json(&UserUpdated {
                user_id: *user_id,
                ..UserUpdated::default()
            }))
        }
    };
    EventJson {
        event_id: recorded.event_id.to_string(),
        event_type: recorded.event.event_type().into(),
        aggregate_id: recorded.aggregate_id().to_string(),
        aggregate_type: recorded.event.aggregate_type().into(),
        version: recorded.version,
        position: recorded.position,
        recorded_at: format_timestamp(recorded.recorded_at_ms),
        data,
    }
}

fn profile_json(profile: &UserCreated) -> UserJson {
    UserJson {
        user_id: profile.user_id.to_string(),
        email: profile.email.clone(),
        first_name: profile.first_name.clone(),
        last_name: profile.last_name.clone(),
        phone_number: profile.phone_number.clone(),
    }
}

/// A user's state as the wire shows it.
pub fn user_json(user: &User) -> UserStateJson {
    UserStateJson {
        profile: profile_json(&user.profile),
        version: user.version,
        created_at: format_timestamp(user.created_at_ms),
        rejection: user.rejection.as_ref().map(rejection_json),
        erased: user.is_erased(),
    }
}

/// The commands of the wire, by the name that ends their path
/// (`POST /users/{id}/{name}`).
pub const COMMANDS: [&str; 3] = ["CreateUser", "UpdateUser", "DeleteUser"];

/// Parses the request of the command `name` (one of [`COMMANDS`]) for the
/// user `id`: the one place that maps a wire name to its command.
///
/// # Errors
///
/// The response the API answers without running anything: a 404 for a name
/// that is not a command, otherwise the parser's 400 or 413.
pub fn parse_command(name: &str, id: &str, body: &[u8]) -> Result<Command, Response> {
    read_command(name, id, body).map(Command::into_owned)
}

/// As [`parse_command`], with the command's text borrowed from `id` and
/// `body` (copied only where the JSON escapes a character): validating it
/// copies only what the event keeps. The wire path of the store and the
/// hubs.
///
/// # Errors
///
/// As [`parse_command`].
pub fn read_command<'a>(
    name: &str,
    id: &'a str,
    body: &'a [u8],
) -> Result<Command<Cow<'a, str>>, Response> {
    match command_name(name)? {
        "CreateUser" => read_create_user(id, body).map(Command::Create),
        "DeleteUser" => read_delete_user(id, body).map(Command::Delete),
        _ => read_update_user(id, body).map(Command::Update),
    }
}

/// The command `name` as one of [`COMMANDS`] (so with a `'static`
/// lifetime), before its body is read.
///
/// # Errors
///
/// The 404 the API answers for a name that is not a command.
pub fn command_name(name: &str) -> Result<&'static str, Response> {
    COMMANDS.into_iter().find(|c| *c == name).ok_or_else(|| {
        let mut message = format!("'{name}' is not one of");
        for (i, command) in COMMANDS.into_iter().enumerate() {
            message.push_str(if i == 0 { " " } else { ", " });
            message.push_str(command);
        }
        Response::error(
            404,
            "Not Found",
            "The Users API has no such command",
            vec![Detail {
                field: "command".into(),
                message,
            }],
        )
    })
}

impl Store {
    /// Executes `POST /users/{id}/{command}` from the wire: the command's
    /// name (one of [`COMMANDS`]), the path `id` and the raw body bytes.
    /// Never fails: every outcome, a storage failure included (500,
    /// nothing written), is a [`Response`]. Callers that handle failures
    /// themselves use [`try_command_wire`](Self::try_command_wire).
    pub fn command_wire(&self, command: &str, id: &str, body: &[u8]) -> Response {
        self.try_command_wire(command, id, body)
            .unwrap_or_else(|error| Response::storage_failure(&error))
    }

    /// As [`command_wire`](Self::command_wire), with a failure of the store
    /// returned as the [`StoreError`] it is, so that its kind (a damaged
    /// store, a lock, a full disk) reaches the caller.
    ///
    /// # Errors
    ///
    /// The errors of [`Store::execute`]; every answer of the API (201, 200,
    /// 400, 403, 404, 409, 413) is `Ok`.
    pub fn try_command_wire(
        &self,
        command: &str,
        id: &str,
        body: &[u8],
    ) -> Result<Response, StoreError> {
        match read_command(command, id, body) {
            Ok(command) => Ok(Response::from_outcome(&self.execute(&command)?)),
            Err(response) => Ok(response),
        }
    }

    /// `POST /users/{id}/CreateUser` from the wire: see
    /// [`command_wire`](Self::command_wire).
    pub fn create_user_wire(&self, id: &str, body: &[u8]) -> Response {
        self.command_wire("CreateUser", id, body)
    }

    /// As [`create_user_wire`](Self::create_user_wire), with a failure of
    /// the store returned as the [`StoreError`] it is.
    ///
    /// # Errors
    ///
    /// As [`try_command_wire`](Self::try_command_wire).
    pub fn try_create_user_wire(&self, id: &str, body: &[u8]) -> Result<Response, StoreError> {
        self.try_command_wire("CreateUser", id, body)
    }

    /// `POST /users/{id}/UpdateUser` from the wire: see
    /// [`command_wire`](Self::command_wire).
    pub fn update_user_wire(&self, id: &str, body: &[u8]) -> Response {
        self.command_wire("UpdateUser", id, body)
    }
}

/// Parses a `CreateUser` request. On any fault, returns the 400 (or 413)
/// response naming every failing field: JSON type errors and unknown fields
/// found here, value errors found by [`CreateUser::validate`].
pub fn parse_create_user(id: &str, body: &[u8]) -> Result<CreateUser, Response> {
    read_create_user(id, body).map(CreateUser::into_owned)
}

fn read_create_user<'a>(id: &'a str, body: &'a [u8]) -> Result<CreateUser<Cow<'a, str>>, Response> {
    let mut fields = read_body(body, "CreateUser", None)?;
    let mut text = |field: Field| fields.values[field as usize].take().flatten();
    let command = CreateUser {
        id: Cow::Borrowed(id),
        // A null required field reads as missing, and validate() says so.
        user_id: text(Field::UserId).unwrap_or_default(),
        email: text(Field::Email).unwrap_or_default(),
        first_name: text(Field::FirstName),
        last_name: text(Field::LastName),
        phone_number: text(Field::PhoneNumber),
    };
    match fields.faults() {
        None => Ok(command),
        Some(faults) => Err(faults.report(command.validate().err())),
    }
}

/// Parses an `UpdateUser` request: any of `email`, `firstName`,
/// `lastName`, `phoneNumber` (`null` clears an optional field) and,
/// optionally, `userId`. On any fault, returns the 400 (or 413) response
/// naming every failing field, as [`parse_create_user`] does.
pub fn parse_update_user(id: &str, body: &[u8]) -> Result<UpdateUser, Response> {
    read_update_user(id, body).map(UpdateUser::into_owned)
}

fn read_update_user<'a>(id: &'a str, body: &'a [u8]) -> Result<UpdateUser<Cow<'a, str>>, Response> {
    let mut fields = read_body(body, "UpdateUser", None)?;
    for (field, what) in [
        (Field::UserId, "must be a string when given"),
        (Field::Email, "cannot be cleared: every user has an email"),
    ] {
        if matches!(fields.values[field as usize], Some(None)) {
            fields.wire_errors.push((field, what.into()));
        }
    }
    let mut value = |field: Field| fields.values[field as usize].take();
    let command = UpdateUser {
        id: Cow::Borrowed(id),
        user_id: value(Field::UserId).flatten(),
        // A null email keeps a placeholder: its wire error speaks for it.
        email: value(Field::Email).map(Option::unwrap_or_default),
        first_name: value(Field::FirstName),
        last_name: value(Field::LastName),
        phone_number: value(Field::PhoneNumber),
    };
    match fields.faults() {
        None => Ok(command),
        Some(faults) => Err(faults.report(command.validate().err())),
    }
}

/// Parses a `DeleteUser` request: an empty object, or one holding
/// `userId` (the path's id). Any other field is refused as unknown.
pub fn parse_delete_user(id: &str, body: &[u8]) -> Result<DeleteUser, Response> {
    read_delete_user(id, body).map(DeleteUser::into_owned)
}

fn read_delete_user<'a>(id: &'a str, body: &'a [u8]) -> Result<DeleteUser<Cow<'a, str>>, Response> {
    let mut fields = read_body(body, "DeleteUser", Some(Field::UserId))?;
    let command = DeleteUser {
        id: Cow::Borrowed(id),
        // A null userId reads as absent: the path names the user.
        user_id: fields.values[Field::UserId as usize].take().flatten(),
    };
    match fields.faults() {
        None => Ok(command),
        Some(faults) => Err(faults.report(command.validate().err())),
    }
}

/// A request body read field by field, before any value is checked.
struct BodyFields<'a> {
    /// Each body field's value by `Field as usize`: `None` when absent,
    /// `Some(None)` when `null`; borrowed from the body unless the JSON
    /// escapes a character in it.
    values: [Option<Option<Cow<'a, str>>>; Field::ALL.len()],
    /// Faults of the JSON itself: a field twice, a value of the wrong type.
    wire_errors: Vec<(Field, String)>,
    /// Fields the command does not have.
    unknown: Vec<Detail>,
}

/// Reads `body` as the JSON object of the command `name` (whose fields are
/// `only` that one, when given), or answers the 413 or 400 that a body
/// which is not one deserves.
fn read_body<'a>(
    body: &'a [u8],
    name: &str,
    only: Option<Field>,
) -> Result<BodyFields<'a>, Response> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Response::error(
            413,
            "Payload Too Large",
            &format!("The request body exceeds {MAX_BODY_BYTES} bytes"),
            vec![body_detail(format!(
                "is {} bytes, more than {MAX_BODY_BYTES}",
                body.len()
            ))],
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| bad_request(vec![body_detail(format!("is not valid UTF-8: {e}"))]))?;
    let mut fields = BodyFields {
        values: Default::default(),
        wire_errors: Vec::new(),
        unknown: Vec::new(),
    };
    let mut json = serde_json::Deserializer::from_str(text);
    let read = BodySeed {
        fields: &mut fields,
        name,
        only,
    }
    .deserialize(&mut json)
    .and_then(|read| json.end().map(|()| read));
    match read {
        Ok(Ok(())) => Ok(fields),
        Ok(Err(kind)) => Err(bad_request(vec![body_detail(format!(
            "must be a JSON object, not {kind}"
        ))])),
        Err(e) => Err(bad_request(vec![body_detail(format!(
            "malformed JSON: {e}"
        ))])),
    }
}

impl<'a> BodyFields<'a> {
    /// Takes the entry `key: value` of the body of the command `name`
    /// (whose fields are `only` that one, when given).
    fn take(&mut self, key: Cow<'_, str>, value: Raw<'a>, name: &str, only: Option<Field>) {
        let Some(field) = body_field(&key).filter(|f| only.is_none_or(|only| *f == only)) else {
            self.unknown.push(Detail {
                message: format!("is not a field of {name}"),
                field: key.into_owned(),
            });
            return;
        };
        if self.values[field as usize].is_some() {
            self.wire_errors
                .push((field, "appears more than once".into()));
            return;
        }
        let text = match value {
            Raw::Str(text) => Some(text),
            Raw::Null => None,
            Raw::Other(kind) => {
                self.wire_errors
                    .push((field, format!("must be a string, not {kind}")));
                // A placeholder: the field was given, and its wire error
                // speaks for it.
                Some(Cow::Borrowed(""))
            }
        };
        self.values[field as usize] = Some(text);
    }

    /// The body's own faults, if it has any.
    fn faults(self) -> Option<Self> {
        (!self.wire_errors.is_empty() || !self.unknown.is_empty()).then_some(self)
    }

    /// The 400 naming every failing field in the API's order — the body's
    /// own faults and the command's `value_errors` — then the unknown ones.
    fn report(self, value_errors: Option<Vec<FieldError>>) -> Response {
        let value_errors = value_errors.unwrap_or_default();
        let mut details = Vec::new();
        for field in Field::ALL {
            // A field with a wire error has a placeholder value, so its
            // value error (if any) is noise: the wire error alone is told.
            let has_wire_error = self.wire_errors.iter().any(|(f, _)| *f == field);
            let messages = self
                .wire_errors
                .iter()
                .filter(|(f, _)| *f == field)
                .map(|(_, m)| m.clone())
                .chain(
                    value_errors
                        .iter()
                        .filter(|e| e.field == field && !has_wire_error)
                        .map(|e| e.message.clone()),
                );
            details.extend(messages.map(|message| Detail {
                field: field.as_str().into(),
                message,
            }));
        }
        details.extend(self.unknown);
        bad_request(details)
    }
}

fn body_detail(message: String) -> Detail {
    Detail {
        field: "body".into(),
        message,
    }
}

fn body_field(key: &str) -> Option<Field> {
    Field::ALL
        .into_iter()
        .find(|f| !matches!(f, Field::Id | Field::Body) && f.as_str() == key)
}

/// A JSON value kept only as far as validation needs: a string, null, or
/// the kind of anything else.
enum Raw<'a> {
    Str(Cow<'a, str>),
    Null,
    Other(&'static str),
}

impl Raw<'_> {
    /// What a body that is this value instead of an object is.
    fn kind(&self) -> &'static str {
        match self {
            Raw::Str(_) => "a string",
            Raw::Null => "null",
            Raw::Other(kind) => kind,
        }
    }
}

/// Walks a JSON value without building it: arrays and objects are skipped.
struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Raw::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Raw::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Raw::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Raw::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Raw::Other("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Raw::Other("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Raw::Other("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Raw::Other("a number"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Raw::Other("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Raw::Other("an object"))
    }
}

/// A value inside the body: never built further than [`Raw`].
struct RawValue<'a>(Raw<'a>);

impl<'de> Deserialize<'de> for RawValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor).map(RawValue)
    }
}

/// Reads the body of the command `name` (whose fields are `only` that one,
/// when given) into `fields` as its entries come, or tells the kind of
/// value it is instead of an object. A seed, not a `Deserialize`, so that
/// each entry is taken where it is read: no list of entries in between,
/// and the fields, written in place, never moved.
struct BodySeed<'a, 'de> {
    fields: &'a mut BodyFields<'de>,
    name: &'a str,
    only: Option<Field>,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_, 'de> {
    type Value = Result<(), &'static str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// Anything but an object is told by its kind, as [`RawVisitor`] reads it.
impl<'de> Visitor<'de> for BodySeed<'_, 'de> {
    type Value = Result<(), &'static str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        RawVisitor.visit_borrowed_str(v).map(|raw| Err(raw.kind()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        RawVisitor.visit_str(v).map(|raw| Err(raw.kind()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        RawVisitor.visit_string(v).map(|raw| Err(raw.kind()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        RawVisitor.visit_unit().map(|raw| Err(raw.kind()))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        RawVisitor.visit_none().map(|raw| Err(raw.kind()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        RawVisitor.visit_bool(v).map(|raw| Err(raw.kind()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        RawVisitor.visit_i64(v).map(|raw| Err(raw.kind()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        RawVisitor.visit_u64(v).map(|raw| Err(raw.kind()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        RawVisitor.visit_f64(v).map(|raw| Err(raw.kind()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        RawVisitor.visit_seq(seq).map(|raw| Err(raw.kind()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while let Some(RawValue(key)) = map.next_key()? {
            let Raw::Str(key) = key else {
                return Err(de::Error::custom("object keys must be strings"));
            };
            let RawValue(value) = map.next_value()?;
            self.fields.take(key, value, self.name, self.only);
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields_of(response: Response) -> Vec<String> {
        match response.body {
            Body::Error(body) => body.details.into_iter().map(|d| d.field).collect(),
            Body::Success(_) => panic!("expected an error body"),
        }
    }

    const ID: &str = "550e8400-e29b-41d4-a716-446655440000";

    #[test]
    fn wire_and_value_errors_are_reported_together_in_order() {
        let body = br#"{"phoneNumber":"abc","email":5,"firstname":"x","userId":"550e8400-e29b-41d4-a716-446655440000"}"#;
        let response = parse_create_user("", body).unwrap_err();
        assert_eq!(response.status, 400);
        assert_eq!(
            fields_of(response),
            ["id", "email", "phoneNumber", "firstname"]
        );
    }

    #[test]
    fn escaped_strings_and_keys_are_read() {
        let body = format!(r#"{{"user\u0049d":"{ID}","email":"a\u0040b.co"}}"#);
        let command = parse_create_user(ID, body.as_bytes()).unwrap();
        assert_eq!(command.email, "a@b.co");
    }

    #[test]
    fn the_wire_borrows_the_bodys_text_unless_it_is_escaped() {
        let body = format!(r#"{{"userId":"{ID}","email":"a\u0040b.co","firstName":"Ann"}}"#);
        let Ok(Command::Create(command)) = read_command("CreateUser", ID, body.as_bytes()) else {
            panic!("a valid create");
        };
        assert!(matches!(command.id, Cow::Borrowed(ID)));
        assert!(matches!(command.user_id, Cow::Borrowed(ID)));
        assert!(matches!(command.first_name, Some(Cow::Borrowed("Ann"))));
        assert!(matches!(command.email, Cow::Owned(ref email) if email == "a@b.co"));
    }

    #[test]
    fn recorded_at_has_exactly_three_fraction_digits() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_timestamp(1_700_000_000_120),
            "2023-11-14T22:13:20.120Z"
        );
    }
}
