//! Who a caller may act for. A hub authenticates a request and knows its
//! caller's [`Scope`]: a B2B service acts for its whole organization, a B2C
//! user's token for that one user. The rule — which aggregates a scope may
//! touch — is here, once, for every backend and every path that writes or
//! reads for a caller (a command, a pushed event, a pull).

use uuid::Uuid;

use crate::field::{Field, FieldError, Rejection};
use crate::user::{parse_user_id, parse_uuid};

/// The users a caller may act on and see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every user of the organization: a service, or a device's own store.
    All,
    /// One user: an end user's token, whose pulls carry only this user's
    /// events and whose commands and pushes may touch only this user.
    User(Uuid),
}

impl Scope {
    /// The scope of the user whose id is `id`, in any form the API accepts
    /// (hyphenated, simple, braced, URN; any case), never the nil UUID.
    ///
    /// # Errors
    ///
    /// Why `id` is not a user id, as the API words it ("must be a UUID").
    pub fn user(id: &str) -> Result<Scope, String> {
        parse_user_id(id).map(Scope::User)
    }

    /// Whether this scope covers `user`.
    pub fn covers(self, user: Uuid) -> bool {
        match self {
            Scope::All => true,
            Scope::User(own) => own == user,
        }
    }

    /// Allows an action on `user`, or says why not: a 403 naming `field`.
    ///
    /// # Errors
    ///
    /// [`Rejection::Forbidden`] when `user` is outside this scope.
    pub fn authorize(self, user: Uuid, field: Field) -> Result<(), Rejection> {
        if self.covers(user) {
            Ok(())
        } else {
            Err(Rejection::Forbidden(vec![FieldError::not_yours(field)]))
        }
    }

    /// Allows a command on the path id `id` (`/users/{id}/…`), before its
    /// body is read. An id that is not a UUID names no user, so no one's
    /// data: it is let through for validation to answer with its 400.
    ///
    /// # Errors
    ///
    /// [`Rejection::Forbidden`] when `id` names a user outside this scope.
    pub fn authorize_path(self, id: &str) -> Result<(), Rejection> {
        match parse_uuid(id) {
            Ok(user) => self.authorize(user, Field::Id),
            Err(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_scope_covers_its_user_in_any_uuid_form_and_no_other() {
        let own = Uuid::from_u128(0x550e8400_e29b_41d4_a716_446655440000);
        let scope = Scope::User(own);
        for form in [
            "550e8400-e29b-41d4-a716-446655440000",
            "550E8400E29B41D4A716446655440000",
            "{550e8400-e29b-41d4-a716-446655440000}",
            "urn:uuid:550e8400-e29b-41d4-a716-446655440000",
        ] {
            assert_eq!(scope.authorize_path(form), Ok(()), "{form}");
        }
        let other = "650e8400-e29b-41d4-a716-446655440000";
        let refused = scope.authorize_path(other).unwrap_err();
        assert_eq!(refused.code(), 403);
        assert_eq!(refused.details()[0].field, Field::Id);
        assert_eq!(Scope::All.authorize_path(other), Ok(()));
        // Not a UUID: no one's id; validation answers it.
        assert_eq!(scope.authorize_path("nope"), Ok(()));
        assert!(!scope.covers(Uuid::from_u128(1)));
        assert!(Scope::All.covers(Uuid::from_u128(1)));
    }
}
