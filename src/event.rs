//! Events as the log records them: a domain event plus its envelope metadata.
//!
//! An event is what a command recorded (`UserCreated`, `UserUpdated`) or the
//! compensation that voids one the hub refused (`UserCreationRejected`,
//! `UserUpdateRejected`), and what erasure leaves (`UserErased`, the
//! `Redacted` events it made of the user's others). Everything below the command modules — the
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
    /// The user was erased: each of its earlier events now reads
    /// [`Redacted`](Event::Redacted), and its id stays taken.
    UserErased(Uuid),
    /// The hub refused an erasure made on this device. The user stays
    /// erased here (its data is gone); the refusal is shown. Recorded only
    /// locally, never pushed.
    UserErasureRejected(Refusal),
    /// What a user's `UserCreated` or `UserUpdated` became when the user was
    /// erased: that it happened, to whom and when, without a field. (A
    /// `bool`: whether it was the creation.)
    Redacted(Uuid, bool),
}

impl Event {
    /// The stable type name, as the wire contract's `eventType` shows it.
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::UserCreated(_) => "UserCreated",
            Event::UserCreationRejected(_) => "UserCreationRejected",
            Event::UserUpdated(_) => "UserUpdated",
            Event::UserUpdateRejected(_) => "UserUpdateRejected",
            Event::UserErased(_) => "UserErased",
            Event::UserErasureRejected(_) => "UserErasureRejected",
            Event::Redacted(..) => "Redacted",
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
            Event::UserErased(user_id) | Event::Redacted(user_id, _) => *user_id,
            Event::UserCreationRejected(refusal)
            | Event::UserUpdateRejected(refusal)
            | Event::UserErasureRejected(refusal) => refusal.user_id,
        }
    }

    /// The refusal a compensating event carries; `None` for an event a
    /// command recorded.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Event::UserCreationRejected(refusal)
            | Event::UserUpdateRejected(refusal)
            | Event::UserErasureRejected(refusal) => Some(refusal),
            Event::UserCreated(_)
            | Event::UserUpdated(_)
            | Event::UserErased(_)
            | Event::Redacted(..) => None,
        }
    }

    /// Whether a command recorded this event as it is: the events devices
    /// push and hubs share. Compensations stay on the device that recorded
    /// them; a redacted event is no longer what its command recorded.
    pub fn is_command(&self) -> bool {
        matches!(
            self,
            Event::UserCreated(_) | Event::UserUpdated(_) | Event::UserErased(_)
        )
    }

    /// Whether this event erases its user's data: an erasure, or what one
    /// left of another event (a store that meets it erases its own copy).
    pub fn erases(&self) -> bool {
        matches!(self, Event::UserErased(_) | Event::Redacted(..))
    }

    /// What this event becomes when its user is erased: a creation or an
    /// update without its fields; `None` for the events that hold no
    /// personal data (erasures, compensations, what is already redacted).
    pub fn redacted(&self) -> Option<Event> {
        match self {
            Event::UserCreated(created) => Some(Event::Redacted(created.user_id, true)),
            Event::UserUpdated(updated) => Some(Event::Redacted(updated.user_id, false)),
            _ => None,
        }
    }

    /// The compensation that voids this event, when the hub refused it;
    /// `None` for a compensation, which is never refused.
    pub(crate) fn refused(&self, refusal: Refusal) -> Option<Event> {
        match self {
            Event::UserCreated(_) => Some(Event::UserCreationRejected(refusal)),
            Event::UserUpdated(_) => Some(Event::UserUpdateRejected(refusal)),
            Event::UserErased(_) => Some(Event::UserErasureRejected(refusal)),
            Event::UserCreationRejected(_)
            | Event::UserUpdateRejected(_)
            | Event::UserErasureRejected(_)
            | Event::Redacted(..) => None,
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
