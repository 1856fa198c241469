//! The user domain: validate a command, decide what it means against the
//! current state, and apply recorded events to state.
//!
//! Invariant: nothing here knows of redb, JSON or wasm. These are plain
//! functions over plain types, testable without a database.

use std::fmt;

use uuid::Uuid;

use crate::event::{Event, RecordedEvent, UserCreated, UserCreationRejected};

/// Longest first or last name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Fewest digits a phone number may have.
pub const MIN_PHONE_DIGITS: usize = 7;
/// Most digits a phone number may have (E.164's limit).
pub const MAX_PHONE_DIGITS: usize = 15;

/// The `CreateUser` command as a caller gives it: raw strings, not yet validated.
///
/// `id` is the path parameter of `POST /users/{id}/CreateUser`; the other
/// fields are the body's. [`CreateUser::new`] sets `id` to `user_id`, as a
/// typed caller has no separate path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateUser {
    /// The path `id`: must denote the same UUID as `user_id`.
    pub id: String,
    /// `userId`: a UUID in any standard textual form, not the nil UUID.
    pub user_id: String,
    /// `email`: required; see the rule in the crate's `email` module (a
    /// deliverable address; one mailbox, one user).
    pub email: String,
    /// `firstName`: optional, at most 100 characters, no control characters.
    pub first_name: Option<String>,
    /// `lastName`: optional, at most 100 characters, no control characters.
    pub last_name: Option<String>,
    /// `phoneNumber`: optional; `+`, digits and ` -.()`, 7 to 15 digits.
    pub phone_number: Option<String>,
}

impl CreateUser {
    /// A command for `user_id` with `email`, the path id set to the same id.
    pub fn new(user_id: impl Into<String>, email: impl Into<String>) -> Self {
        let user_id = user_id.into();
        CreateUser {
            id: user_id.clone(),
            user_id,
            email: email.into(),
            ..CreateUser::default()
        }
    }

    /// Sets `firstName`.
    pub fn first_name(mut self, value: impl Into<String>) -> Self {
        self.first_name = Some(value.into());
        self
    }

    /// Sets `lastName`.
    pub fn last_name(mut self, value: impl Into<String>) -> Self {
        self.last_name = Some(value.into());
        self
    }

    /// Sets `phoneNumber`.
    pub fn phone_number(mut self, value: impl Into<String>) -> Self {
        self.phone_number = Some(value.into());
        self
    }

    /// Validates every field, reporting every failing field at once, in the
    /// API's field order.
    pub fn validate(&self) -> Result<UserCreated, Vec<FieldError>> {
        let mut errors = Vec::new();
        let e = &mut errors;
        let id = check(e, Field::Id, parse_uuid(&self.id));
        let user_id = check(e, Field::UserId, parse_user_id(&self.user_id));
        if let (Some(id), Some(user_id)) = (id, user_id)
            && id != user_id
        {
            // Reported first, where `id` belongs in the API's field order.
            e.insert(
                0,
                FieldError {
                    field: Field::Id,
                    message: "must match userId".into(),
                },
            );
        }
        let email = check(e, Field::Email, crate::email::validate(&self.email));
        let first_name = check(e, Field::FirstName, validate_name(&self.first_name));
        let last_name = check(e, Field::LastName, validate_name(&self.last_name));
        let phone_number = check(e, Field::PhoneNumber, validate_phone(&self.phone_number));
        match (user_id, email, first_name, last_name, phone_number) {
            (Some(user_id), Some(email), Some(first_name), Some(last_name), Some(phone_number))
                if errors.is_empty() =>
            {
                Ok(UserCreated {
                    user_id,
                    email,
                    first_name,
                    last_name,
                    phone_number,
                })
            }
            // Checked in field order, so reported in field order.
            _ => Err(errors),
        }
    }
}

/// Keeps a field's value, or records its error and yields `None`.
fn check<T>(errors: &mut Vec<FieldError>, field: Field, result: Result<T, String>) -> Option<T> {
    result
        .map_err(|message| errors.push(FieldError { field, message }))
        .ok()
}

pub(crate) fn parse_uuid(text: &str) -> Result<Uuid, String> {
    if text.is_empty() {
        return Err("is required".into());
    }
    Uuid::try_parse(text).map_err(|_| "must be a UUID".into())
}

pub(crate) fn parse_user_id(text: &str) -> Result<Uuid, String> {
    let id = parse_uuid(text)?;
    if id.is_nil() {
        return Err("must not be the nil UUID".into());
    }
    Ok(id)
}

/// Trims an optional text field; empty after trimming means absent.
fn trimmed(raw: &Option<String>) -> Option<&str> {
    raw.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn validate_name(raw: &Option<String>) -> Result<Option<String>, String> {
    let Some(name) = trimmed(raw) else {
        return Ok(None);
    };
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("must be at most {MAX_NAME_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(Some(name.to_owned()))
}

fn validate_phone(raw: &Option<String>) -> Result<Option<String>, String> {
    let Some(phone) = trimmed(raw) else {
        return Ok(None);
    };
    let rest = phone.strip_prefix('+').unwrap_or(phone);
    if !rest
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')'))
    {
        return Err(
            "may hold only digits, one leading +, spaces and the separators - . ( )".into(),
        );
    }
    let digits = rest.chars().filter(char::is_ascii_digit).count();
    if !(MIN_PHONE_DIGITS..=MAX_PHONE_DIGITS).contains(&digits) {
        return Err(format!(
            "must have {MIN_PHONE_DIGITS} to {MAX_PHONE_DIGITS} digits"
        ));
    }
    Ok(Some(phone.to_owned()))
}

/// A field of the `CreateUser` request, named as the API names it.
///
/// The order of the variants is the order in which errors are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// The path parameter `id`.
    Id,
    /// `userId`.
    UserId,
    /// `email`.
    Email,
    /// `firstName`.
    FirstName,
    /// `lastName`.
    LastName,
    /// `phoneNumber`.
    PhoneNumber,
}

impl Field {
    /// Every field, in reporting order.
    pub const ALL: [Field; 6] = [
        Field::Id,
        Field::UserId,
        Field::Email,
        Field::FirstName,
        Field::LastName,
        Field::PhoneNumber,
    ];

    /// The API's name for the field.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::UserId => "userId",
            Field::Email => "email",
            Field::FirstName => "firstName",
            Field::LastName => "lastName",
            Field::PhoneNumber => "phoneNumber",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One field's reason for rejecting a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field at fault.
    pub field: Field,
    /// What is wrong with it, in words an end user can act on.
    pub message: String,
}

impl FieldError {
    /// `userId` names a user recorded with other data.
    pub fn user_id_taken() -> FieldError {
        FieldError {
            field: Field::UserId,
            message: "a user with this userId already exists with different data".into(),
        }
    }

    /// `email` is held by another user.
    pub fn email_taken() -> FieldError {
        FieldError {
            field: Field::Email,
            message: "is already registered to another user".into(),
        }
    }

    /// `field` names a user the caller's token is not for.
    pub fn not_yours(field: Field) -> FieldError {
        FieldError {
            field,
            message: "names another user than the one this token is for".into(),
        }
    }

    /// The same user, with the same data, was created by another event: on
    /// another device, which reached the hub first.
    pub fn created_elsewhere() -> FieldError {
        FieldError {
            field: Field::UserId,
            message: "was already created by another device".into(),
        }
    }
}

/// Why a command was rejected. Rejections are answers, not failures: the
/// store is unchanged and the caller shows the details to whoever sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The command is malformed (HTTP 400). Handling: fix every listed field
    /// and send again.
    #[error("invalid command: {}", describe(.0))]
    Invalid(Vec<FieldError>),
    /// The command contradicts what is recorded (HTTP 409): the userId exists
    /// with other data, or the email belongs to another user. Handling: do not
    /// retry as is; pick another id or email, or read the existing user.
    #[error("conflict: {}", describe(.0))]
    Conflict(Vec<FieldError>),
    /// The caller may not act on this user (HTTP 403): a user's token names
    /// another user than the command's. Handling: act only on the user the
    /// token is for, or use a service token.
    #[error("forbidden: {}", describe(.0))]
    Forbidden(Vec<FieldError>),
}

impl Rejection {
    /// The HTTP status the API answers with: 400, 403 or 409.
    pub fn code(&self) -> u16 {
        match self {
            Rejection::Invalid(_) => 400,
            Rejection::Forbidden(_) => 403,
            Rejection::Conflict(_) => 409,
        }
    }

    /// The field errors, whatever the kind of rejection.
    pub fn details(&self) -> &[FieldError] {
        match self {
            Rejection::Invalid(details)
            | Rejection::Conflict(details)
            | Rejection::Forbidden(details) => details,
        }
    }
}

fn describe(details: &[FieldError]) -> String {
    details
        .iter()
        .map(|d| format!("{} {}", d.field, d.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A user's current state, folded from its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user's profile as (last) created.
    pub profile: UserCreated,
    /// The aggregate's version: the number of events applied.
    pub version: u64,
    /// When the user was created, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Set when the hub refused this creation: the user does not exist as
    /// far as the hub is concerned, and its email is free again.
    pub rejection: Option<UserCreationRejected>,
}

impl User {
    /// True when the hub refused this user's creation.
    pub fn is_rejected(&self) -> bool {
        self.rejection.is_some()
    }
}

/// What a valid command amounts to, given the current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Record this new event.
    Record(Event),
    /// The same user was already created with identical data: answer with the
    /// original event, record nothing.
    AlreadyRecorded,
}

/// Decides what a validated `CreateUser` means.
///
/// `current` is the user's state if the userId has any events (a user whose
/// creation the hub rejected counts as absent: it may be created again);
/// `email_owner` is the user currently holding the command's email (case
/// ignored), if any.
pub fn decide(
    current: Option<&User>,
    email_owner: Option<Uuid>,
    command: UserCreated,
) -> Result<Decision, Rejection> {
    let mut conflicts = Vec::new();
    if let Some(user) = current.filter(|user| !user.is_rejected()) {
        if user.profile == command {
            return Ok(Decision::AlreadyRecorded);
        }
        conflicts.push(FieldError::user_id_taken());
    }
    if email_owner.is_some_and(|owner| owner != command.user_id) {
        conflicts.push(FieldError::email_taken());
    }
    if conflicts.is_empty() {
        Ok(Decision::Record(Event::UserCreated(command)))
    } else {
        Err(Rejection::Conflict(conflicts))
    }
}

/// Applies a recorded event to a user's state. Has no logic beyond folding:
/// every rule was checked before the event was recorded. Takes the event by
/// value: its strings become the user's, with no copy (a lookup folds events
/// it has just decoded and has no other use for).
pub fn apply(state: Option<User>, recorded: RecordedEvent) -> Option<User> {
    match recorded.event {
        // A first creation, or a new one after the hub refused the last.
        Event::UserCreated(created) => Some(User {
            profile: created,
            version: recorded.version,
            created_at_ms: recorded.recorded_at_ms,
            rejection: None,
        }),
        Event::UserCreationRejected(rejected) => state.map(|user| User {
            version: recorded.version,
            rejection: Some(rejected),
            ..user
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "550e8400-e29b-41d4-a716-446655440000";

    fn fields(result: Result<UserCreated, Vec<FieldError>>) -> Vec<Field> {
        result.unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn the_seed_example_is_valid() {
        let created = CreateUser::new(ID, "user@example.com")
            .first_name("John Doe")
            .last_name("John Doe")
            .phone_number("+1-555-0123")
            .validate()
            .unwrap();
        assert_eq!(created.user_id.to_string(), ID);
        assert_eq!(created.phone_number.as_deref(), Some("+1-555-0123"));
    }

    #[test]
    fn every_failing_field_is_reported_in_api_order() {
        let mut command = CreateUser::new("nope", "not-an-email")
            .first_name("a\u{7}b")
            .last_name("x".repeat(101))
            .phone_number("abc");
        command.id = String::new();
        assert_eq!(fields(command.validate()), Field::ALL.to_vec());
    }

    #[test]
    fn uuid_forms_are_equivalent_but_the_nil_uuid_is_not_a_user() {
        let mut command = CreateUser::new(ID, "a@b.co");
        command.id = ID.replace('-', "").to_uppercase();
        assert!(command.validate().is_ok());
        assert_eq!(
            fields(CreateUser::new(Uuid::nil().to_string(), "a@b.co").validate()),
            vec![Field::UserId]
        );
    }

    #[test]
    fn phone_numbers_count_digits_not_characters() {
        let check = |p: &str| validate_phone(&Some(p.into()));
        assert!(check("(555) 012.3456").is_ok());
        assert!(check("+44 20 7946 0958").is_ok());
        assert!(check("555-0123").is_ok());
        assert!(check("555-012").is_err());
        assert!(check("1234567890123456").is_err());
        assert!(check("++15550123").is_err());
        assert!(check("555 0123 x12").is_err());
    }

    #[test]
    fn identical_replay_is_not_a_conflict_but_other_data_is() {
        let created = CreateUser::new(ID, "a@b.co").validate().unwrap();
        let user = User {
            profile: created.clone(),
            version: 1,
            created_at_ms: 0,
            rejection: None,
        };
        assert_eq!(
            decide(Some(&user), Some(created.user_id), created.clone()),
            Ok(Decision::AlreadyRecorded)
        );
        let mut other = created.clone();
        other.first_name = Some("Ann".into());
        let rejection = decide(Some(&user), Some(created.user_id), other).unwrap_err();
        assert!(matches!(rejection, Rejection::Conflict(ref d) if d[0].field == Field::UserId));
    }

    #[test]
    fn an_email_held_by_another_user_is_a_conflict() {
        let created = CreateUser::new(ID, "a@b.co").validate().unwrap();
        let rejection = decide(None, Some(Uuid::from_u128(7)), created).unwrap_err();
        assert_eq!(rejection.details()[0].field, Field::Email);
    }
}
