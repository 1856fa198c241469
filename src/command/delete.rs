//! `DeleteUser`: `POST /users/{id}/DeleteUser`, the user erased. Its
//! request, its validation and its decision; what erasure does to the
//! user's other events is the pipeline's (`Pipeline::execute`).

use uuid::Uuid;

use super::Decision;
use crate::event::Event;
use crate::field::{FieldError, Rejection};
use crate::user::User;

/// The `DeleteUser` command as a caller gives it: the path id and,
/// optionally, the body's `userId`. `T` is the text, as in
/// [`CreateUser`](super::CreateUser).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteUser<T = String> {
    /// The path `id`: the user to erase.
    pub id: T,
    /// `userId`: optional; when given, must denote the same UUID as `id`.
    pub user_id: Option<T>,
}

impl DeleteUser {
    /// The erasure of the user `id`.
    pub fn new(id: impl Into<String>) -> Self {
        DeleteUser {
            id: id.into(),
            user_id: None,
        }
    }
}

impl<T: AsRef<str>> DeleteUser<T> {
    /// Validates the ids: the user to erase.
    ///
    /// # Errors
    ///
    /// The failing fields: `id` not a user's UUID, `userId` not a UUID or
    /// not the same one.
    pub fn validate(&self) -> Result<Uuid, Vec<FieldError>> {
        let mut errors = Vec::new();
        let e = &mut errors;
        let id = super::existing_user_id(e, self.id.as_ref(), crate::user::text(&self.user_id));
        match id {
            Some(id) if errors.is_empty() => Ok(id),
            _ => Err(errors),
        }
    }
}

impl<T: Into<String>> DeleteUser<T> {
    /// The same command holding its own `String`s.
    pub fn into_owned(self) -> DeleteUser {
        DeleteUser {
            id: self.id.into(),
            user_id: self.user_id.map(Into::into),
        }
    }
}

/// Decides what a validated `DeleteUser` means: a user that does not exist
/// (or whose creation the hub refused) is not found; a user already erased
/// is [`Decision::Unchanged`] (answered with its erasure here, recorded
/// anyway when another store's, so replicas hold the same events).
pub(super) fn decide(current: Option<&User>, user_id: Uuid) -> Result<Decision, Rejection> {
    let Some(user) = current.filter(|user| !user.is_rejected()) else {
        return Err(Rejection::NotFound(vec![FieldError::no_such_user()]));
    };
    let event = Event::UserErased(user_id);
    Ok(if user.is_erased() {
        Decision::Unchanged(event)
    } else {
        Decision::Record(event)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::Field;

    const ID: &str = "550e8400-e29b-41d4-a716-446655440000";

    #[test]
    fn the_ids_must_be_one_users() {
        assert!(DeleteUser::new(ID).validate().is_ok());
        let fields = |c: DeleteUser| -> Vec<Field> {
            c.validate()
                .unwrap_err()
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        assert_eq!(fields(DeleteUser::new("nope")), vec![Field::Id]);
        let mut other = DeleteUser::new(ID);
        other.user_id = Some(Uuid::from_u128(3).to_string());
        assert_eq!(fields(other), vec![Field::UserId]);
        assert!(matches!(
            decide(None, Uuid::from_u128(1)),
            Err(Rejection::NotFound(_))
        ));
    }
}
