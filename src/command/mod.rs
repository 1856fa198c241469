//! The commands: each is its own module — its request type, its
//! validation, its decision over the user's state and the event it
//! records — and this module is the one place that lists them.
//!
//! Everything else carries commands without knowing which: the pipeline
//! (`pipeline.rs`) loads what an [`Intent`] reads, asks it to decide, and
//! appends; the store, group commit, the journal, sync and both hubs move
//! [`Command`]s, [`Intent`]s and events. Adding a command is a module here,
//! a variant in each enum below, its wire shape in `contract.rs`, and its
//! event's bytes in `codec.rs`.

mod create;
mod delete;
mod update;

use uuid::Uuid;

pub use create::CreateUser;
pub use delete::DeleteUser;
pub use update::UpdateUser;

use crate::event::{Event, RecordedEvent, UserCreated, UserUpdated};
use crate::field::{FieldError, Rejection};
use crate::user::User;

/// A command as a caller gives it, not yet validated. `T` is its text, as
/// in [`CreateUser`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<T = String> {
    /// `POST /users/{id}/CreateUser`.
    Create(CreateUser<T>),
    /// `POST /users/{id}/UpdateUser`.
    Update(UpdateUser<T>),
    /// `POST /users/{id}/DeleteUser`.
    Delete(DeleteUser<T>),
}

impl<T> From<CreateUser<T>> for Command<T> {
    fn from(command: CreateUser<T>) -> Self {
        Command::Create(command)
    }
}

impl<T> From<UpdateUser<T>> for Command<T> {
    fn from(command: UpdateUser<T>) -> Self {
        Command::Update(command)
    }
}

impl<T> From<DeleteUser<T>> for Command<T> {
    fn from(command: DeleteUser<T>) -> Self {
        Command::Delete(command)
    }
}

impl<T: Into<String>> Command<T> {
    /// The same command holding its own `String`s.
    pub fn into_owned(self) -> Command {
        match self {
            Command::Create(command) => Command::Create(command.into_owned()),
            Command::Update(command) => Command::Update(command.into_owned()),
            Command::Delete(command) => Command::Delete(command.into_owned()),
        }
    }
}

impl<T: AsRef<str>> Command<T> {
    /// Validates the command: what it asks for, or why it is invalid (400).
    /// Reads nothing of a log, so a caller may run it before a write
    /// begins.
    ///
    /// # Errors
    ///
    /// [`Rejection::Invalid`] naming every failing field.
    pub fn validate(&self) -> Result<Intent, Rejection> {
        self.intent().map_err(Rejection::Invalid)
    }

    /// As [`validate`](Self::validate), with the failing fields bare.
    pub(crate) fn intent(&self) -> Result<Intent, Vec<FieldError>> {
        match self {
            Command::Create(command) => command.validate().map(Intent::Create),
            Command::Update(command) => command.validate().map(Intent::Update),
            Command::Delete(command) => command.validate().map(Intent::Delete),
        }
    }
}

/// A validated command: what it asks of one user, ready to be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Create a user with this profile.
    Create(UserCreated),
    /// Change these fields of a user.
    Update(UserUpdated),
    /// Erase this user.
    Delete(Uuid),
}

/// What a valid command amounts to, given the current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Record this new event.
    Record(Event),
    /// The identical command was recorded before as this event: answer with
    /// it, record nothing.
    AlreadyRecorded(Uuid),
    /// The event would change nothing. A command made here is answered with
    /// the user's last event and records nothing; an event from another
    /// store is recorded anyway, so that every replica holds the same
    /// events and folds them alike.
    Unchanged(Event),
}

impl Intent {
    /// The user the command acts on.
    pub fn user_id(&self) -> Uuid {
        match self {
            Intent::Create(created) => created.user_id,
            Intent::Update(updated) => updated.user_id,
            Intent::Delete(user_id) => *user_id,
        }
    }

    /// The email the command sets, if any: the decision reads its key's
    /// owner.
    pub fn email(&self) -> Option<&str> {
        match self {
            Intent::Create(created) => Some(&created.email),
            Intent::Update(updated) => updated.email.as_deref(),
            Intent::Delete(_) => None,
        }
    }

    /// Whether the command brings its user into being: a hub's creation
    /// overrides a device's pending creation of the same user.
    pub fn creates(&self) -> bool {
        matches!(self, Intent::Create(_))
    }

    /// Decides the command against the user's state (`current`, folded
    /// from `stream`) and the owner of its email key.
    ///
    /// # Errors
    ///
    /// The [`Rejection`] the API answers with: a conflict, a user not
    /// found.
    pub fn decide(
        self,
        current: Option<&User>,
        stream: &[RecordedEvent],
        email_owner: Option<Uuid>,
    ) -> Result<Decision, Rejection> {
        match self {
            Intent::Create(created) => create::decide(current, stream, email_owner, created),
            Intent::Update(updated) => update::decide(current, email_owner, updated),
            Intent::Delete(user_id) => delete::decide(current, user_id),
        }
    }

    /// What a command event from another store asks for; `None` for a
    /// compensation, which no store shares.
    pub fn of_event(event: &Event) -> Option<Intent> {
        match event {
            Event::UserCreated(created) => Some(Intent::Create(created.clone())),
            Event::UserUpdated(updated) => Some(Intent::Update(updated.clone())),
            Event::UserErased(user_id) => Some(Intent::Delete(*user_id)),
            Event::UserCreationRejected(_)
            | Event::UserUpdateRejected(_)
            | Event::UserErasureRejected(_)
            | Event::Redacted(..) => None,
        }
    }

    /// Whether an event from another store carries exactly what validation
    /// would have made of its fields: batches are untrusted.
    ///
    /// # Errors
    ///
    /// What is wrong, in words for a batch error.
    pub fn revalidate(&self) -> Result<(), String> {
        match self {
            Intent::Create(created) => create::revalidate(created),
            Intent::Update(updated) => update::revalidate(updated),
            // An id the envelope holds: decoding checked it is a UUID.
            Intent::Delete(user_id) if user_id.is_nil() => Err("names the nil user".into()),
            Intent::Delete(_) => Ok(()),
        }
    }

    /// How the hub answers a pushed event that is the same as one it
    /// already holds from another event (`Decision::AlreadyRecorded`): a
    /// user created alike on two devices is the first one's.
    pub fn recorded_elsewhere(&self) -> Rejection {
        Rejection::Conflict(vec![FieldError::created_elsewhere()])
    }
}

/// The user a command on an existing user names: the path `id`, and the
/// body's optional `userId`, which must be the same UUID. Failures are
/// pushed to `errors`.
fn existing_user_id(errors: &mut Vec<FieldError>, id: &str, user_id: Option<&str>) -> Option<Uuid> {
    use crate::field::Field;
    use crate::user::{check, parse_user_id, parse_uuid};
    let id = check(errors, Field::Id, parse_user_id(id));
    if let Some(user_id) = user_id {
        let user_id = check(errors, Field::UserId, parse_uuid(user_id));
        if let (Some(id), Some(user_id)) = (id, user_id)
            && id != user_id
        {
            errors.push(FieldError {
                field: Field::UserId,
                message: "must match the path id".into(),
            });
        }
    }
    id
}

/// Whether an event from another store holds `given` exactly as
/// validating its fields again made them (`validated`).
fn as_validated<T: PartialEq>(
    validated: Result<T, Vec<FieldError>>,
    given: &T,
) -> Result<(), String> {
    match validated {
        Ok(valid) if valid == *given => Ok(()),
        Ok(_) => Err("fields are not in their validated form".into()),
        Err(errors) => Err(format!("invalid: {}", Rejection::Invalid(errors))),
    }
}

/// What a command came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new event was recorded (HTTP 201 for a creation, 200 otherwise).
    Recorded(RecordedEvent),
    /// The identical command had been recorded before, or the command
    /// changes nothing: this is the event the user's state came from, and
    /// nothing new was written (HTTP 200).
    Replayed(RecordedEvent),
    /// The command was rejected and nothing was written (HTTP 400, 403,
    /// 404 or 409).
    Rejected(Rejection),
}

impl Outcome {
    /// The recorded event, for `Recorded` and `Replayed`.
    pub fn event(&self) -> Option<&RecordedEvent> {
        match self {
            Outcome::Recorded(event) | Outcome::Replayed(event) => Some(event),
            Outcome::Rejected(_) => None,
        }
    }
}
