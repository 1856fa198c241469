//! `CreateUser`: `POST /users/{id}/CreateUser`. Its request, its
//! validation and its decision; nothing else in the crate knows them.

use uuid::Uuid;

use super::Decision;
use crate::event::{Event, RecordedEvent, UserCreated};
use crate::field::{Field, FieldError, Rejection};
use crate::user::{
    User, check, not_nil, parse_user_id, parse_uuid, text, validate_name, validate_phone,
};

/// The `CreateUser` command as a caller gives it: raw strings, not yet validated.
///
/// `id` is the path parameter of `POST /users/{id}/CreateUser`; the other
/// fields are the body's. [`CreateUser::new`] sets `id` to `user_id`, as a
/// typed caller has no separate path.
///
/// `T` is the text: a caller's `String`, or text borrowed from a request's
/// body (`contract::read_command`), validated without being copied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateUser<T = String> {
    /// The path `id`: must denote the same UUID as `user_id`.
    pub id: T,
    /// `userId`: a UUID in any standard textual form, not the nil UUID.
    pub user_id: T,
    /// `email`: required; see the rule in the crate's `email` module (a
    /// deliverable address; one mailbox, one user).
    pub email: T,
    /// `firstName`: optional, at most 100 characters, no control characters.
    pub first_name: Option<T>,
    /// `lastName`: optional, at most 100 characters, no control characters.
    pub last_name: Option<T>,
    /// `phoneNumber`: optional; `+`, digits and ` -.()`, 7 to 15 digits.
    pub phone_number: Option<T>,
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
}

impl<T: AsRef<str>> CreateUser<T> {
    /// Validates every field, reporting every failing field at once, in the
    /// API's field order.
    ///
    /// # Errors
    ///
    /// Every failing field, in the API's order.
    pub fn validate(&self) -> Result<UserCreated, Vec<FieldError>> {
        CreateUser {
            id: self.id.as_ref(),
            user_id: self.user_id.as_ref(),
            email: self.email.as_ref(),
            first_name: text(&self.first_name),
            last_name: text(&self.last_name),
            phone_number: text(&self.phone_number),
        }
        .checked()
    }
}

impl CreateUser<&str> {
    /// [`CreateUser::validate`]'s rule, once for every kind of text (one
    /// copy in the browser package, not one per kind).
    fn checked(&self) -> Result<UserCreated, Vec<FieldError>> {
        let mut errors = Vec::new();
        let e = &mut errors;
        let (path_id, body_id) = (self.id, self.user_id);
        let parsed_id = parse_uuid(path_id);
        // The path's id and the body's userId are most often one text:
        // parsed once.
        let user_id = if body_id == path_id {
            parsed_id.clone().and_then(not_nil)
        } else {
            parse_user_id(body_id)
        };
        let id = check(e, Field::Id, parsed_id);
        let user_id = check(e, Field::UserId, user_id);
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
        let email = check(e, Field::Email, crate::email::validate(self.email));
        let first_name = check(e, Field::FirstName, validate_name(self.first_name));
        let last_name = check(e, Field::LastName, validate_name(self.last_name));
        let phone_number = check(e, Field::PhoneNumber, validate_phone(self.phone_number));
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

impl<T: Into<String>> CreateUser<T> {
    /// The same command holding its own `String`s.
    pub fn into_owned(self) -> CreateUser {
        CreateUser {
            id: self.id.into(),
            user_id: self.user_id.into(),
            email: self.email.into(),
            first_name: self.first_name.map(Into::into),
            last_name: self.last_name.map(Into::into),
            phone_number: self.phone_number.map(Into::into),
        }
    }
}

/// Decides what a validated `CreateUser` means.
///
/// `current` is the user's state if the userId has any events (a user whose
/// creation the hub rejected counts as absent: it may be created again),
/// `stream` its events; `email_owner` is the user currently holding the
/// command's email (case ignored), if any. The same creation again is a
/// replay, even after the user was updated.
pub(super) fn decide(
    current: Option<&User>,
    stream: &[RecordedEvent],
    email_owner: Option<Uuid>,
    command: UserCreated,
) -> Result<Decision, Rejection> {
    let mut conflicts = Vec::new();
    if current.is_some_and(User::is_erased) {
        conflicts.push(FieldError::erased_user_id());
    } else if let Some(user) = current.filter(|user| !user.is_rejected()) {
        let creation = user.sources.creation;
        let same = stream.iter().any(|e| {
            e.event_id == creation && matches!(&e.event, Event::UserCreated(c) if *c == command)
        });
        if same {
            return Ok(Decision::AlreadyRecorded(creation));
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

/// Whether a creation from another store holds its fields exactly as
/// validation leaves them.
pub(super) fn revalidate(created: &UserCreated) -> Result<(), String> {
    let id = created.user_id.to_string();
    let command = CreateUser {
        id: id.as_str(),
        user_id: id.as_str(),
        email: created.email.as_str(),
        first_name: created.first_name.as_deref(),
        last_name: created.last_name.as_deref(),
        phone_number: created.phone_number.as_deref(),
    };
    super::as_validated(command.validate(), created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::fold;

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
        assert_eq!(fields(command.validate()), Field::ALL[..6].to_vec());
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

    fn recorded(created: &UserCreated) -> RecordedEvent {
        RecordedEvent {
            event_id: Uuid::from_u128(5),
            version: 1,
            position: 1,
            recorded_at_ms: 0,
            origin: Uuid::from_u128(6),
            event: Event::UserCreated(created.clone()),
        }
    }

    #[test]
    fn identical_replay_is_not_a_conflict_but_other_data_is() {
        let created = CreateUser::new(ID, "a@b.co").validate().unwrap();
        let stream = vec![recorded(&created)];
        let user = fold(stream.clone()).unwrap();
        assert_eq!(
            decide(Some(&user), &stream, Some(created.user_id), created.clone()),
            Ok(Decision::AlreadyRecorded(Uuid::from_u128(5)))
        );
        let mut other = created.clone();
        other.first_name = Some("Ann".into());
        let rejection = decide(Some(&user), &stream, Some(created.user_id), other).unwrap_err();
        assert!(matches!(rejection, Rejection::Conflict(ref d) if d[0].field == Field::UserId));
    }

    #[test]
    fn an_email_held_by_another_user_is_a_conflict() {
        let created = CreateUser::new(ID, "a@b.co").validate().unwrap();
        let rejection = decide(None, &[], Some(Uuid::from_u128(7)), created).unwrap_err();
        assert_eq!(rejection.details()[0].field, Field::Email);
    }
}
