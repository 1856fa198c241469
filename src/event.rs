//! Events as the log records them: a domain event plus its envelope metadata.
//!
//! An event is what a command recorded (`UserCreated`, `UserUpdated`) or the
//! compensation that voids one the hub refused (`UserCreationRejected`,
//! `UserUpdateRejected`). Everything below the command modules — the
//! pipeline, the log, sync, the hubs — carries events without knowing
//! which; the fold in `user.rs` gives them meaning.

use uuid::Uuid;

use crate::field::FieldError;

/// Something that happened to a user aggregate. Variants are past tense and
/// their names are stable: they are written to disk and to the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A user was created with its initial profile.
    UserCreated(UserCreated),
    /// The hub refused a user created on this device: a compensating event,
    /// so the log stays append-only and the refusal stays visible. Recorded
    /// only locally, never pushed.
    UserCreationRejected(Refusal),
    /// Some of a user's fields were changed.
    UserUpdated(UserUpdated),
    /// The hub refused an update made on this device: the update is void.
    /// Recorded only locally, never pushed.
    UserUpdateRejected(Refusal),
}

impl Event {
    /// The stable type name, as the wire contract's `eventType` shows it.
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::UserCreated(_) => "UserCreated",
            Event::UserCreationRejected(_) => "UserCreationRejected",
            Event::UserUpdated(_) => "UserUpdated",
            Event::UserUpdateRejected(_) => "UserUpdateRejected",
        }
    }

    /// The aggregate type this event belongs to, as `aggregateType` shows it.
    pub fn aggregate_type(&self) -> &'static str {
        "User"
    }

    /// The aggregate (user) this event belongs to.
    pub fn aggregate_id(&self) -> Uuid {
        match self {
            Event::UserCreated(created) => created.user_id,
            Event::UserUpdated(updated) => updated.user_id,
            Event::UserCreationRejected(refusal) | Event::UserUpdateRejected(refusal) => {
                refusal.user_id
            }
        }
    }

    /// The refusal a compensating event carries; `None` for an event a
    /// command recorded.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Event::UserCreationRejected(refusal) | Event::UserUpdateRejected(refusal) => {
                Some(refusal)
            }
            Event::UserCreated(_) | Event::UserUpdated(_) => None,
        }
    }

    /// Whether a command recorded this event: the events devices push and
    /// hubs share. Compensations stay on the device that recorded them.
    pub fn is_command(&self) -> bool {
        self.refusal().is_none()
    }

    /// The compensation that voids this event, when the hub refused it;
    /// `None` for a compensation, which is never refused.
    pub(crate) fn refused(&self, refusal: Refusal) -> Option<Event> {
        match self {
            Event::UserCreated(_) => Some(Event::UserCreationRejected(refusal)),
            Event::UserUpdated(_) => Some(Event::UserUpdateRejected(refusal)),
            Event::UserCreationRejected(_) | Event::UserUpdateRejected(_) => None,
        }
    }
}

/// The validated profile of a newly created user.
///
/// Every string here has already passed validation: trimmed, within its
/// length limit, and (for the email) a syntactically valid address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCreated {
    /// The user's id, which is also the aggregate id. Never the nil UUID.
    pub user_id: Uuid,
    /// The email as given (trimmed, case preserved).
    pub email: String,
    /// Optional first name.
    pub first_name: Option<String>,
    /// Optional last name.
    pub last_name: Option<String>,
    /// Optional phone number, as given (trimmed).
    pub phone_number: Option<String>,
}

impl UserCreated {
    /// The key under which the email is held unique: uniqueness ignores case.
    pub fn email_key(&self) -> String {
        email_key(&self.email)
    }
}

/// The validated changes of an update: each field `None` when unchanged;
/// an optional field `Some(None)` when cleared.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserUpdated {
    /// The user (aggregate) changed.
    pub user_id: Uuid,
    /// The new email, when changed.
    pub email: Option<String>,
    /// The new first name, when changed (`Some(None)`: cleared).
    pub first_name: Option<Option<String>>,
    /// The new last name, when changed (`Some(None)`: cleared).
    pub last_name: Option<Option<String>>,
    /// The new phone number, when changed (`Some(None)`: cleared).
    pub phone_number: Option<Option<String>>,
}

impl UserUpdated {
    /// `profile` with these changes made.
    pub fn applied_to(&self, profile: &UserCreated) -> UserCreated {
        let pick = |change: &Option<Option<String>>, old: &Option<String>| {
            change.clone().unwrap_or_else(|| old.clone())
        };
        UserCreated {
            user_id: profile.user_id,
            email: self.email.clone().unwrap_or_else(|| profile.email.clone()),
            first_name: pick(&self.first_name, &profile.first_name),
            last_name: pick(&self.last_name, &profile.last_name),
            phone_number: pick(&self.phone_number, &profile.phone_number),
        }
    }
}

/// Why the hub refused an event this device recorded: the payload of the
/// compensations (`UserCreationRejected`, `UserUpdateRejected`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The user (aggregate) whose event was refused.
    pub user_id: Uuid,
    /// The event the hub refused.
    pub rejected_event_id: Uuid,
    /// The HTTP status the hub answered with (400, 403, 404 or 409).
    pub code: u16,
    /// The failing fields, as the hub named them.
    pub details: Vec<FieldError>,
}

/// The latest time an event may carry, in milliseconds since the epoch:
/// 9999-12-31T23:59:59.999Z, the last instant the wire's RFC 3339 can show.
pub(crate) const MAX_RECORDED_AT_MS: i64 = 253_402_300_799_999;

/// The key under which an email is held unique: two addresses with the same
/// key are one mailbox. The local part is compared in full Unicode case
/// folding and the domain in its ASCII (punycode) form, so `Ann@x.io` and
/// `ann@X.IO`, `ñandú@…` and `ÑANDÚ@…`, `…@bücher.de` and
/// `…@xn--bcher-kva.de` are each one address.
pub fn email_key(email: &str) -> String {
    crate::email::key(email)
}

/// An event as stored in the log: the event and where and when it was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Unique id of this event (UUID v7, time-ordered); dedupes retries and sync.
    pub event_id: Uuid,
    /// The aggregate's version after this event: 1, 2, … with no gaps.
    pub version: u64,
    /// Position in the store's log: 1, 2, … with no gaps.
    pub position: u64,
    /// When the event was recorded, in milliseconds since the Unix epoch (UTC).
    pub recorded_at_ms: i64,
    /// The id of the store that first recorded the event.
    pub origin: Uuid,
    /// The event itself.
    pub event: Event,
}

impl RecordedEvent {
    /// The aggregate (user) this event belongs to.
    pub fn aggregate_id(&self) -> Uuid {
        self.event.aggregate_id()
    }
}
