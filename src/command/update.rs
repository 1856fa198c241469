//! `UpdateUser`: `POST /users/{id}/UpdateUser`. Its request, its
//! validation and its decision; nothing else in the crate knows them.

use uuid::Uuid;

use super::Decision;
use crate::event::{Event, UserUpdated};
use crate::field::{Field, FieldError, Rejection};
use crate::user::{User, check, text, validate_name, validate_phone};

/// The `UpdateUser` command as a caller gives it: raw strings, not yet
/// validated.
///
/// `id` is the path parameter of `POST /users/{id}/UpdateUser`. A field
/// left `None` is not changed; an optional field set to `Some(None)` (the
/// wire's `null`, or an empty string) is cleared. The email can be changed
/// but not cleared. `T` is the text, as in [`CreateUser`](super::CreateUser).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpdateUser<T = String> {
    /// The path `id`: the user to change.
    pub id: T,
    /// `userId`: optional; when given, must denote the same UUID as `id`.
    pub user_id: Option<T>,
    /// `email`: the new address, under the rule of `CreateUser`.
    pub email: Option<T>,
    /// `firstName`: the new first name, or `Some(None)` to clear it.
    pub first_name: Option<Option<T>>,
    /// `lastName`: the new last name, or `Some(None)` to clear it.
    pub last_name: Option<Option<T>>,
    /// `phoneNumber`: the new phone number, or `Some(None)` to clear it.
    pub phone_number: Option<Option<T>>,
}

impl UpdateUser {
    /// An update of the user `id` that changes nothing yet.
    pub fn new(id: impl Into<String>) -> Self {
        UpdateUser {
            id: id.into(),
            ..UpdateUser::default()
        }
    }

    /// Changes `email`.
    pub fn email(mut self, value: impl Into<String>) -> Self {
        self.email = Some(value.into());
        self
    }

    /// Changes `firstName`.
    pub fn first_name(mut self, value: impl Into<String>) -> Self {
        self.first_name = Some(Some(value.into()));
        self
    }

    /// Changes `lastName`.
    pub fn last_name(mut self, value: impl Into<String>) -> Self {
        self.last_name = Some(Some(value.into()));
        self
    }

    /// Changes `phoneNumber`.
    pub fn phone_number(mut self, value: impl Into<String>) -> Self {
        self.phone_number = Some(Some(value.into()));
        self
    }

    /// Clears `field` (`firstName`, `lastName` or `phoneNumber`); other
    /// fields cannot be cleared and are left as they are.
    pub fn clear(mut self, field: Field) -> Self {
        match field {
            Field::FirstName => self.first_name = Some(None),
            Field::LastName => self.last_name = Some(None),
            Field::PhoneNumber => self.phone_number = Some(None),
            _ => {}
        }
        self
    }
}

impl<T: AsRef<str>> UpdateUser<T> {
    /// Validates every field given, reporting every failing field at once,
    /// in the API's field order. An update must change at least one field.
    ///
    /// # Errors
    ///
    /// Every failing field, in the API's order.
    pub fn validate(&self) -> Result<UserUpdated, Vec<FieldError>> {
        fn given<T: AsRef<str>>(value: &Option<Option<T>>) -> Option<Option<&str>> {
            value.as_ref().map(text)
        }
        UpdateUser {
            id: self.id.as_ref(),
            user_id: text(&self.user_id),
            email: text(&self.email),
            first_name: given(&self.first_name),
            last_name: given(&self.last_name),
            phone_number: given(&self.phone_number),
        }
        .checked()
    }
}

impl UpdateUser<&str> {
    /// [`UpdateUser::validate`]'s rule, once for every kind of text.
    fn checked(&self) -> Result<UserUpdated, Vec<FieldError>> {
        let mut errors = Vec::new();
        let e = &mut errors;
        let id = super::existing_user_id(e, self.id, self.user_id);
        let email = match self.email {
            Some(email) => check(e, Field::Email, crate::email::validate(email)).map(Some),
            None => Some(None),
        };
        let optional =
            |e: &mut Vec<FieldError>,
             field,
             value: Option<Option<&str>>,
             rule: fn(Option<&str>) -> Result<Option<String>, String>| {
                match value {
                    Some(value) => check(e, field, rule(value)).map(Some),
                    None => Some(None),
                }
            };
        let first_name = optional(e, Field::FirstName, self.first_name, validate_name);
        let last_name = optional(e, Field::LastName, self.last_name, validate_name);
        let phone_number = optional(e, Field::PhoneNumber, self.phone_number, validate_phone);
        if self.email.is_none()
            && self.first_name.is_none()
            && self.last_name.is_none()
            && self.phone_number.is_none()
        {
            e.push(FieldError {
                field: Field::Body,
                message: "must change at least one of email, firstName, lastName, phoneNumber"
                    .into(),
            });
        }
        match (id, email, first_name, last_name, phone_number) {
            (Some(user_id), Some(email), Some(first_name), Some(last_name), Some(phone_number))
                if errors.is_empty() =>
            {
                Ok(UserUpdated {
                    user_id,
                    email,
                    first_name,
                    last_name,
                    phone_number,
                })
            }
            _ => Err(errors),
        }
    }
}

impl<T: Into<String>> UpdateUser<T> {
    /// The same command holding its own `String`s.
    pub fn into_owned(self) -> UpdateUser {
        let owned = |value: Option<Option<T>>| value.map(|value| value.map(Into::into));
        UpdateUser {
            id: self.id.into(),
            user_id: self.user_id.map(Into::into),
            email: self.email.map(Into::into),
            first_name: owned(self.first_name),
            last_name: owned(self.last_name),
            phone_number: owned(self.phone_number),
        }
    }
}

/// Decides what a validated `UpdateUser` means: a user that does not
/// exist (or whose creation the hub refused) is not found; a new email
/// held by another user is a conflict; an update that changes nothing is
/// [`Decision::Unchanged`].
pub(super) fn decide(
    current: Option<&User>,
    email_owner: Option<Uuid>,
    update: UserUpdated,
) -> Result<Decision, Rejection> {
    let Some(user) = current.filter(|user| user.holds_email()) else {
        return Err(Rejection::NotFound(vec![FieldError::no_such_user()]));
    };
    if update.email.is_some() && email_owner.is_some_and(|owner| owner != update.user_id) {
        return Err(Rejection::Conflict(vec![FieldError::email_taken()]));
    }
    let unchanged = update.applied_to(&user.profile) == user.profile;
    let event = Event::UserUpdated(update);
    Ok(if unchanged {
        Decision::Unchanged(event)
    } else {
        Decision::Record(event)
    })
}

/// Whether an update from another store holds its fields exactly as
/// validation leaves them.
pub(super) fn revalidate(updated: &UserUpdated) -> Result<(), String> {
    let id = updated.user_id.to_string();
    let command = UpdateUser {
        id: id.as_str(),
        user_id: None,
        email: updated.email.as_deref(),
        first_name: updated.first_name.as_ref().map(Option::as_deref),
        last_name: updated.last_name.as_ref().map(Option::as_deref),
        phone_number: updated.phone_number.as_ref().map(Option::as_deref),
    };
    super::as_validated(command.validate(), updated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{RecordedEvent, UserCreated};
    use crate::user::fold;

    const ID: &str = "550e8400-e29b-41d4-a716-446655440000";

    fn user() -> User {
        fold(vec![RecordedEvent {
            event_id: Uuid::from_u128(5),
            version: 1,
            position: 1,
            recorded_at_ms: 0,
            origin: Uuid::from_u128(6),
            event: Event::UserCreated(UserCreated {
                user_id: ID.parse().unwrap(),
                email: "a@b.co".into(),
                first_name: Some("Ann".into()),
                last_name: None,
                phone_number: None,
            }),
        }])
        .unwrap()
    }

    fn fields(command: UpdateUser) -> Vec<Field> {
        command
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn each_field_follows_the_creation_rule_and_one_must_be_given() {
        assert_eq!(fields(UpdateUser::new(ID)), vec![Field::Body]);
        let mut bad = UpdateUser::new("nope")
            .email("no-at")
            .first_name("a\u{7}")
            .last_name("x".repeat(101))
            .phone_number("12");
        bad.user_id = Some("also-nope".into());
        assert_eq!(fields(bad), Field::ALL[..6].to_vec());
        let mut other = UpdateUser::new(ID).first_name("B");
        other.user_id = Some(Uuid::from_u128(3).to_string());
        assert_eq!(fields(other), vec![Field::UserId]);
    }

    #[test]
    fn an_empty_optional_field_clears_it() {
        let updated = UpdateUser::new(ID).first_name("  ").validate().unwrap();
        assert_eq!(updated.first_name, Some(None));
        let cleared = UpdateUser::new(ID)
            .clear(Field::LastName)
            .validate()
            .unwrap();
        assert_eq!(cleared.last_name, Some(None));
    }

    #[test]
    fn decisions() {
        let user = user();
        let rename = UpdateUser::new(ID).first_name("Bo").validate().unwrap();
        assert!(matches!(
            decide(Some(&user), None, rename.clone()),
            Ok(Decision::Record(_))
        ));
        assert!(matches!(
            decide(None, None, rename),
            Err(Rejection::NotFound(_))
        ));
        let same = UpdateUser::new(ID).first_name("Ann").validate().unwrap();
        assert!(matches!(
            decide(Some(&user), None, same),
            Ok(Decision::Unchanged(_))
        ));
        let taken = UpdateUser::new(ID).email("c@d.co").validate().unwrap();
        let refused = decide(Some(&user), Some(Uuid::from_u128(9)), taken.clone()).unwrap_err();
        assert_eq!(
            (refused.code(), refused.details()[0].field),
            (409, Field::Email)
        );
        // Its own email, in another case: not a conflict.
        assert!(decide(Some(&user), Some(user.profile.user_id), taken).is_ok());
    }
}
