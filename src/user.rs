//! The user domain: the rules for each field, rejections, and the fold of
//! a user's events into its current state. The commands (`command/`) are
//! built from these.
//!
//! Invariant: nothing here knows of redb, JSON or wasm. These are plain
//! functions over plain types, testable without a database.

use uuid::Uuid;

use crate::event::{Event, RecordedEvent, Refusal, UserCreated, UserUpdated};
use crate::field::{Field, FieldError};

/// Longest first or last name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Fewest digits a phone number may have.
pub const MIN_PHONE_DIGITS: usize = 7;
/// Most digits a phone number may have (E.164's limit).
pub const MAX_PHONE_DIGITS: usize = 15;

/// Keeps a field's value, or records its error and yields `None`.
pub(crate) fn check<T>(
    errors: &mut Vec<FieldError>,
    field: Field,
    result: Result<T, String>,
) -> Option<T> {
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
    parse_uuid(text).and_then(not_nil)
}

/// A parsed UUID as a user id: any but the nil UUID.
pub(crate) fn not_nil(id: Uuid) -> Result<Uuid, String> {
    if id.is_nil() {
        return Err("must not be the nil UUID".into());
    }
    Ok(id)
}

/// An optional field's text, whatever holds it.
pub(crate) fn text<T: AsRef<str>>(value: &Option<T>) -> Option<&str> {
    value.as_ref().map(AsRef::as_ref)
}

/// Trims an optional text field; empty after trimming means absent.
pub(crate) fn trimmed(raw: Option<&str>) -> Option<&str> {
    raw.map(str::trim).filter(|s| !s.is_empty())
}

pub(crate) fn validate_name(raw: Option<&str>) -> Result<Option<String>, String> {
    let Some(name) = trimmed(raw) else {
        return Ok(None);
    };
    // A name of at most MAX_NAME_CHARS bytes has at most as many
    // characters: most names are told by their length alone.
    if name.len() > MAX_NAME_CHARS && name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("must be at most {MAX_NAME_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(Some(name.to_owned()))
}

pub(crate) fn validate_phone(raw: Option<&str>) -> Result<Option<String>, String> {
    let Some(phone) = trimmed(raw) else {
        return Ok(None);
    };
    let rest = phone.strip_prefix('+').unwrap_or(phone);
    // Every character allowed is ASCII, so bytes tell as much as chars: a
    // byte of a non-ASCII character is none of these.
    if !rest
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b' ' | b'-' | b'.' | b'(' | b')'))
    {
        return Err(
            "may hold only digits, one leading +, spaces and the separators - . ( )".into(),
        );
    }
    let digits = rest.bytes().filter(u8::is_ascii_digit).count();
    if !(MIN_PHONE_DIGITS..=MAX_PHONE_DIGITS).contains(&digits) {
        return Err(format!(
            "must have {MIN_PHONE_DIGITS} to {MAX_PHONE_DIGITS} digits"
        ));
    }
    Ok(Some(phone.to_owned()))
}

/// A user's current state, folded from its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user's current profile: the creation with every update applied.
    pub profile: UserCreated,
    /// The aggregate's version: the number of events in its stream.
    pub version: u64,
    /// When the user was created, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Set when the hub refused this creation: the user does not exist as
    /// far as the hub is concerned, and its email is free again.
    pub rejection: Option<Refusal>,
    /// The event ids the state came from: the creation and the last event
    /// applied.
    pub sources: Sources,
}

/// Which events a [`User`]'s state came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sources {
    /// The creation the state was folded from.
    pub creation: Uuid,
    /// The last event applied, in the fold's order.
    pub last: Uuid,
}

impl User {
    /// True when the hub refused this user's creation.
    pub fn is_rejected(&self) -> bool {
        self.rejection.is_some()
    }

    /// True when the user was erased: its id is all that is left (an
    /// empty email, which no other user can have, and no other field).
    pub fn is_erased(&self) -> bool {
        self.profile.email.is_empty()
    }

    /// Whether this user holds its email: not when refused or erased.
    pub fn holds_email(&self) -> bool {
        !self.is_rejected() && !self.is_erased()
    }

    /// The email key this user holds: its email's, unless it was refused
    /// or erased.
    pub fn held_email_key(&self) -> Option<String> {
        self.holds_email().then(|| self.profile.email_key())
    }
}

/// Folds a user's stream (in version order) into its current state. Has no
/// logic beyond folding: every rule was checked before an event was
/// recorded. Takes the events by value: their strings become the user's,
/// with no copy.
///
/// The order is what makes every replica agree. A compensation voids the
/// event it names. The state starts from the last creation not voided (or,
/// when every creation was refused, the last one, marked rejected); the
/// updates not voided apply on top of it in the order of their recording
/// time and then event id — the same order on the hub and on every device,
/// whatever order sync delivered them in (last writer wins, by the clock
/// of the device that wrote).
pub fn fold(stream: Vec<RecordedEvent>) -> Option<User> {
    let version = stream.last()?.version;
    if let Some(erased) = erased(&stream, version) {
        return Some(erased);
    }
    let voided: Vec<Uuid> = stream
        .iter()
        .filter_map(|e| e.event.refusal().map(|r| r.rejected_event_id))
        .collect();
    // The refusal of a creation comes after it, so the last one refuses
    // the last creation: the only one whose refusal the state shows.
    let mut last_refusal: Option<Refusal> = None;
    let mut creation: Option<(UserCreated, i64, Uuid, bool)> = None;
    let mut updates: Vec<(i64, Uuid, UserUpdated)> = Vec::new();
    for recorded in stream {
        let is_void = voided.contains(&recorded.event_id);
        match recorded.event {
            Event::UserCreated(created) => {
                // A voided creation counts only while no valid one exists.
                if !is_void || creation.as_ref().is_none_or(|c| c.3) {
                    creation = Some((created, recorded.recorded_at_ms, recorded.event_id, is_void));
                }
            }
            Event::UserUpdated(updated) if !is_void => {
                // Kept in order as they come (a user has few): a sort would
                // cost the browser package its code.
                let key = (recorded.recorded_at_ms, recorded.event_id);
                let at = updates.partition_point(|(t, id, _)| (*t, *id) <= key);
                updates.insert(at, (key.0, key.1, updated));
            }
            Event::UserUpdated(_) => {}
            Event::UserCreationRejected(refusal) => last_refusal = Some(refusal),
            // `erased` answered for streams holding these.
            Event::UserUpdateRejected(_)
            | Event::UserErased(_)
            | Event::UserErasureRejected(_)
            | Event::Redacted(..) => {}
        }
    }
    let (mut profile, created_at_ms, creation_id, refused) = creation?;
    let rejection = last_refusal.filter(|r| refused && r.rejected_event_id == creation_id);
    let mut sources = Sources {
        creation: creation_id,
        last: creation_id,
    };
    for (_, id, update) in updates {
        profile = update.applied_to(&profile);
        sources.last = id;
    }
    Some(User {
        profile,
        version,
        created_at_ms,
        rejection,
        sources,
    })
}

/// The state of an erased user, or `None` when `stream` holds no erasure.
/// A stream with a redacted event is erased too: redaction comes only with
/// an erasure, which a device importing the hub's log meets after them.
/// The state keeps the id, the version and the creation's time; its last
/// event is the first erasure (a repeated `DeleteUser` answers with it).
/// An erasure the hub refused still counts: the data is gone here.
fn erased(stream: &[RecordedEvent], version: u64) -> Option<User> {
    let first = stream.first()?;
    let erasure = stream
        .iter()
        .find(|e| matches!(e.event, Event::UserErased(_)))
        .or_else(|| {
            stream
                .iter()
                .any(|e| matches!(e.event, Event::Redacted(..)))
                .then(|| stream.last())
                .flatten()
        })?;
    Some(User {
        profile: UserCreated {
            user_id: first.aggregate_id(),
            email: String::new(),
            first_name: None,
            last_name: None,
            phone_number: None,
        },
        version,
        created_at_ms: first.recorded_at_ms,
        rejection: None,
        sources: Sources {
            creation: first.event_id,
            last: erasure.event_id,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_count_digits_not_characters() {
        let check = |p: &str| validate_phone(Some(p));
        assert!(check("(555) 012.3456").is_ok());
        assert!(check("+44 20 7946 0958").is_ok());
        assert!(check("555-0123").is_ok());
        assert!(check("555-012").is_err());
        assert!(check("1234567890123456").is_err());
        assert!(check("++15550123").is_err());
        assert!(check("555 0123 x12").is_err());
    }

    fn event(n: u128, version: u64, at: i64, event: Event) -> RecordedEvent {
        RecordedEvent {
            event_id: Uuid::from_u128(n),
            version,
            position: version,
            recorded_at_ms: at,
            origin: Uuid::from_u128(99),
            event,
        }
    }

    fn created(email: &str) -> Event {
        Event::UserCreated(UserCreated {
            user_id: Uuid::from_u128(1),
            email: email.into(),
            first_name: None,
            last_name: None,
            phone_number: None,
        })
    }

    fn renamed(name: &str) -> Event {
        Event::UserUpdated(UserUpdated {
            user_id: Uuid::from_u128(1),
            first_name: Some(Some(name.into())),
            ..UserUpdated::default()
        })
    }

    fn refused(of: u128, creation: bool) -> Event {
        let refusal = Refusal {
            user_id: Uuid::from_u128(1),
            rejected_event_id: Uuid::from_u128(of),
            code: 409,
            details: vec![FieldError::email_taken()],
        };
        if creation {
            Event::UserCreationRejected(refusal)
        } else {
            Event::UserUpdateRejected(refusal)
        }
    }

    #[test]
    fn updates_apply_in_recording_time_order_whatever_the_log_order() {
        // Two devices renamed the user; the hub and a device received the
        // renames in opposite orders: both fold to the later one.
        let a = vec![
            event(10, 1, 100, created("a@b.co")),
            event(11, 2, 300, renamed("Late")),
            event(12, 3, 200, renamed("Early")),
        ];
        let mut b = a.clone();
        b.swap(1, 2);
        let (a, b) = (fold(a).unwrap(), fold(b).unwrap());
        assert_eq!(a.profile.first_name.as_deref(), Some("Late"));
        assert_eq!(a.profile, b.profile);
        assert_eq!((a.version, a.sources.last), (3, Uuid::from_u128(11)));
    }

    #[test]
    fn a_refused_update_is_void_and_a_refused_creation_marks_the_user() {
        let stream = vec![
            event(10, 1, 100, created("a@b.co")),
            event(11, 2, 200, renamed("Void")),
            event(12, 3, 300, refused(11, false)),
        ];
        let user = fold(stream.clone()).unwrap();
        assert_eq!(user.profile.first_name, None);
        assert!(!user.is_rejected());
        let mut stream = stream;
        stream.push(event(13, 4, 400, refused(10, true)));
        let user = fold(stream.clone()).unwrap();
        assert!(user.is_rejected());
        assert_eq!(user.held_email_key(), None);
        // Created again after the refusal: the new creation is the state.
        stream.push(event(14, 5, 500, created("new@b.co")));
        let user = fold(stream).unwrap();
        assert!(!user.is_rejected());
        assert_eq!(user.profile.email, "new@b.co");
        assert_eq!(user.sources.creation, Uuid::from_u128(14));
    }
}
