//! The API's field names, a field's error, and the rejections a command
//! is answered with: the vocabulary every layer above shares, below the
//! events that record refusals.

use std::fmt;

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
    /// The request body as a whole (an update that changes no field).
    Body,
}

impl Field {
    /// Every field, in reporting order.
    pub const ALL: [Field; 7] = [
        Field::Id,
        Field::UserId,
        Field::Email,
        Field::FirstName,
        Field::LastName,
        Field::PhoneNumber,
        Field::Body,
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
            Field::Body => "body",
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

    /// No user has this id (or its creation was refused).
    pub fn no_such_user() -> FieldError {
        FieldError {
            field: Field::Id,
            message: "names no user".into(),
        }
    }

    /// The user id belonged to a user who was erased: it stays taken.
    pub fn erased_user_id() -> FieldError {
        FieldError {
            field: Field::UserId,
            message: "belonged to a user who was erased; it cannot be used again".into(),
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
    /// The command names a user that does not exist (HTTP 404). Handling:
    /// create the user first, or check the id.
    #[error("not found: {}", describe(.0))]
    NotFound(Vec<FieldError>),
}

impl Rejection {
    /// The HTTP status the API answers with: 400, 403, 404 or 409.
    pub fn code(&self) -> u16 {
        match self {
            Rejection::Invalid(_) => 400,
            Rejection::Forbidden(_) => 403,
            Rejection::NotFound(_) => 404,
            Rejection::Conflict(_) => 409,
        }
    }

    /// The field errors, whatever the kind of rejection.
    pub fn details(&self) -> &[FieldError] {
        match self {
            Rejection::Invalid(details)
            | Rejection::Conflict(details)
            | Rejection::Forbidden(details)
            | Rejection::NotFound(details) => details,
        }
    }
}

fn describe(details: &[FieldError]) -> String {
    let mut text = String::new();
    for (i, detail) in details.iter().enumerate() {
        if i > 0 {
            text.push_str("; ");
        }
        text.push_str(detail.field.as_str());
        text.push(' ');
        text.push_str(&detail.message);
    }
    text
}
