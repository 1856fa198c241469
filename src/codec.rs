//! The event envelope's bytes: `[format u8][postcard(envelope)][crc32 LE]`.
//!
//! postcard is not self-describing, so a struct that gains a field can no
//! longer read its old bytes. Hence: the envelope carries an event type and a
//! schema version, the payload is postcard bytes of that exact schema, and
//! every schema ever written stays decodable here (upcast on read). The golden
//! fixtures in `tests/fixtures/` fail when the bytes drift.
//!
//! redb does not verify checksums on ordinary reads, so a flipped bit on disk
//! would come back as wrong data. The trailing CRC-32 is checked on every
//! decode; decoding returns an error, never panics, whatever the bytes.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{Event, RecordedEvent, Refusal, UserCreated, UserUpdated};
use crate::field::{Field, FieldError};
use crate::user::{Sources, User};

/// The envelope format this version writes.
pub const FORMAT_V1: u8 = 1;

/// The event type code of `UserCreated`.
const USER_CREATED: u16 = 1;
/// The event type code of `UserCreationRejected`.
const USER_CREATION_REJECTED: u16 = 2;
/// The event type code of `UserUpdated`.
const USER_UPDATED: u16 = 3;
/// The event type code of `UserUpdateRejected`.
const USER_UPDATE_REJECTED: u16 = 4;
/// The event type code of `UserErased` (schema 1: an empty payload).
const USER_ERASED: u16 = 5;
/// The event type code of `UserErasureRejected`.
const USER_ERASURE_REJECTED: u16 = 6;
/// The event type code of `Redacted` (schema 1: whether it was the
/// creation, one postcard `bool`).
const REDACTED: u16 = 7;

const CHECKSUM_LEN: usize = 4;

/// Why bytes could not be decoded as an event envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than a format byte and a checksum.
    #[error("envelope is {0} bytes, too short to hold a format byte and a checksum")]
    TooShort(usize),
    /// The stored checksum does not match the bytes: they were damaged.
    #[error("envelope checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// The checksum found in the bytes.
        stored: u32,
        /// The checksum of the bytes as they are.
        computed: u32,
    },
    /// A format byte this version does not know (written by a newer version?).
    #[error("unknown envelope format {0}")]
    UnknownFormat(u8),
    /// An event type or schema version this version does not know.
    #[error("unknown event type {event_type} schema {schema_version}")]
    UnknownEvent {
        /// The type code found.
        event_type: u16,
        /// The schema version found.
        schema_version: u16,
    },
    /// The checksum held but the structure did not parse.
    #[error("malformed envelope: {0}")]
    Malformed(String),
}

#[derive(Serialize, Deserialize)]
struct EnvelopeV1<'a> {
    event_id: [u8; 16],
    event_type: u16,
    schema_version: u16,
    aggregate_id: [u8; 16],
    version: u64,
    position: u64,
    recorded_at_ms: i64,
    origin: [u8; 16],
    #[serde(borrow)]
    payload: &'a [u8],
}

/// `UserCreated`, schema 1. The user id is the envelope's aggregate id and is
/// not repeated here.
#[derive(Serialize, Deserialize)]
struct UserCreatedV1<'a> {
    email: &'a str,
    first_name: Option<&'a str>,
    last_name: Option<&'a str>,
    phone_number: Option<&'a str>,
}

/// `UserUpdated`, schema 1: each field `None` when unchanged, an optional
/// field `Some(None)` when cleared. The user id is the envelope's.
#[derive(Serialize, Deserialize)]
struct UserUpdatedV1<'a> {
    #[serde(borrow)]
    email: Option<&'a str>,
    #[serde(borrow)]
    first_name: Option<Option<&'a str>>,
    #[serde(borrow)]
    last_name: Option<Option<&'a str>>,
    #[serde(borrow)]
    phone_number: Option<Option<&'a str>>,
}

/// `UserCreationRejected` and `UserUpdateRejected`, schema 1. Fields are
/// stored by their API names.
#[derive(Serialize, Deserialize)]
struct RefusalV1<'a> {
    rejected_event_id: [u8; 16],
    code: u16,
    #[serde(borrow)]
    details: Bounded<(&'a str, &'a str), MAX_DETAILS>,
}

/// The most field errors one rejection may carry: one per field of the
/// request, and room for unknown fields.
pub(crate) const MAX_DETAILS: usize = 16;

/// A sequence of at most `MAX` items, refused while decoding — before
/// anything is allocated for it — when its length says more. serde caps
/// what it preallocates, but a sequence of millions of empty items still
/// costs its count times the item's size once decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bounded<T, const MAX: usize>(pub Vec<T>);

impl<T, const MAX: usize> std::ops::Deref for Bounded<T, MAX> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T, const MAX: usize> From<Vec<T>> for Bounded<T, MAX> {
    fn from(items: Vec<T>) -> Self {
        Bounded(items)
    }
}

impl<T: Serialize, const MAX: usize> Serialize for Bounded<T, MAX> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>, const MAX: usize> Deserialize<'de> for Bounded<T, MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<T, const MAX: usize>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const MAX: usize> serde::de::Visitor<'de> for Visit<T, MAX> {
            type Value = Bounded<T, MAX>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "a sequence of at most {MAX} items")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let too_many = |n: usize| {
                    // postcard replaces a custom message with a generic one;
                    // parse_exact reports this one instead.
                    OVER_LIMIT.with(|over| over.set(Some((n, MAX))));
                    serde::de::Error::custom("over the limit")
                };
                let hint = seq.size_hint().unwrap_or(0);
                if hint > MAX {
                    return Err(too_many(hint));
                }
                let mut items = Vec::with_capacity(hint.min(MAX));
                while let Some(item) = seq.next_element()? {
                    if items.len() == MAX {
                        return Err(too_many(MAX + 1));
                    }
                    items.push(item);
                }
                Ok(Bounded(items))
            }
        }
        deserializer.deserialize_seq(Visit::<T, MAX>(std::marker::PhantomData))
    }
}

/// Encodes a recorded event as envelope bytes in the current format.
pub fn encode(recorded: &RecordedEvent) -> Vec<u8> {
    let (event_type, schema_version, payload) = match &recorded.event {
        Event::UserCreated(created) => (
            USER_CREATED,
            1,
            to_postcard(&UserCreatedV1 {
                email: &created.email,
                first_name: created.first_name.as_deref(),
                last_name: created.last_name.as_deref(),
                phone_number: created.phone_number.as_deref(),
            }),
        ),
        Event::UserUpdated(updated) => (
            USER_UPDATED,
            1,
            to_postcard(&UserUpdatedV1 {
                email: updated.email.as_deref(),
                first_name: updated.first_name.as_ref().map(Option::as_deref),
                last_name: updated.last_name.as_ref().map(Option::as_deref),
                phone_number: updated.phone_number.as_ref().map(Option::as_deref),
            }),
        ),
        Event::UserCreationRejected(refusal) => (USER_CREATION_REJECTED, 1, refusal_v1(refusal)),
        Event::UserUpdateRejected(refusal) => (USER_UPDATE_REJECTED, 1, refusal_v1(refusal)),
        Event::UserErased(_) => (USER_ERASED, 1, Vec::new()),
        Event::UserErasureRejected(refusal) => (USER_ERASURE_REJECTED, 1, refusal_v1(refusal)),
        Event::Redacted(_, creation) => (REDACTED, 1, vec![u8::from(*creation)]),
    };
    let envelope = EnvelopeV1 {
        event_id: recorded.event_id.into_bytes(),
        event_type,
        schema_version,
        aggregate_id: recorded.aggregate_id().into_bytes(),
        version: recorded.version,
        position: recorded.position,
        recorded_at_ms: recorded.recorded_at_ms,
        origin: recorded.origin.into_bytes(),
        payload: &payload,
    };
    let mut bytes = vec![FORMAT_V1];
    bytes.extend_from_slice(&to_postcard(&envelope));
    let checksum = checksum(&bytes);
    bytes.extend_from_slice(&checksum.to_le_bytes());
    bytes
}

fn refusal_v1(refusal: &Refusal) -> Vec<u8> {
    to_postcard(&RefusalV1 {
        rejected_event_id: refusal.rejected_event_id.into_bytes(),
        code: refusal.code,
        details: refusal
            .details
            .iter()
            .map(|d| (d.field.as_str(), d.message.as_str()))
            .collect::<Vec<_>>()
            .into(),
    })
}

fn refusal_of(aggregate_id: Uuid, payload: &[u8]) -> Result<Refusal, DecodeError> {
    let v1: RefusalV1 = from_postcard(payload)?;
    let details = v1
        .details
        .0
        .into_iter()
        .map(|(field, message)| {
            let field = Field::ALL
                .into_iter()
                .find(|f| f.as_str() == field)
                .ok_or_else(|| DecodeError::Malformed(format!("unknown field '{field}'")))?;
            Ok(FieldError {
                field,
                message: message.to_owned(),
            })
        })
        .collect::<Result<_, DecodeError>>()?;
    Ok(Refusal {
        user_id: aggregate_id,
        rejected_event_id: Uuid::from_bytes(v1.rejected_event_id),
        code: v1.code,
        details,
    })
}

/// A user's current state, schema 1: the row of the `users` table that the
/// writer keeps beside its events. The user id is the row's key.
#[derive(Serialize, Deserialize)]
struct StateV1<'a> {
    #[serde(borrow)]
    email: &'a str,
    first_name: Option<&'a str>,
    last_name: Option<&'a str>,
    phone_number: Option<&'a str>,
    version: u64,
    created_at_ms: i64,
    sources: [[u8; 16]; 2],
    #[serde(borrow)]
    rejection: Option<&'a [u8]>,
}

/// The schema byte of a state row.
const STATE_V1: u8 = 1;

/// Encodes a user's state as a `users` row: `[1][postcard][crc32 LE]`.
pub(crate) fn encode_state(user: &User) -> Vec<u8> {
    let rejection = user.rejection.as_ref().map(refusal_v1);
    let profile = &user.profile;
    let state = StateV1 {
        email: &profile.email,
        first_name: profile.first_name.as_deref(),
        last_name: profile.last_name.as_deref(),
        phone_number: profile.phone_number.as_deref(),
        version: user.version,
        created_at_ms: user.created_at_ms,
        sources: [
            user.sources.creation.into_bytes(),
            user.sources.last.into_bytes(),
        ],
        rejection: rejection.as_deref(),
    };
    let mut bytes = vec![STATE_V1];
    bytes.extend_from_slice(&to_postcard(&state));
    let checksum = checksum(&bytes);
    bytes.extend_from_slice(&checksum.to_le_bytes());
    bytes
}

/// Decodes a `users` row of `user_id`, its checksum first.
pub(crate) fn decode_state(user_id: Uuid, bytes: &[u8]) -> Result<User, DecodeError> {
    let body = checked(bytes)?;
    if body[0] != STATE_V1 {
        return Err(DecodeError::UnknownFormat(body[0]));
    }
    let state: StateV1 = from_postcard(&body[1..])?;
    let owned = |v: Option<&str>| v.map(str::to_owned);
    Ok(User {
        profile: UserCreated {
            user_id,
            email: state.email.to_owned(),
            first_name: owned(state.first_name),
            last_name: owned(state.last_name),
            phone_number: owned(state.phone_number),
        },
        version: state.version,
        created_at_ms: state.created_at_ms,
        rejection: state
            .rejection
            .map(|payload| refusal_of(user_id, payload))
            .transpose()?,
        sources: Sources {
            creation: Uuid::from_bytes(state.sources[0]),
            last: Uuid::from_bytes(state.sources[1]),
        },
    })
}

/// CRC-32 (ISO-HDLC, the zlib/PNG one) of `bytes`. Natively crc32fast uses
/// the CPU's carry-less multiply; in wasm, where it would fall back to 16 KB
/// of tables, the `crc` crate's single 1 KB table does the same sum in a
/// fraction of the binary. Both must agree: the golden fixtures check it.
#[cfg(not(target_family = "wasm"))]
pub(crate) fn checksum(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

#[cfg(target_family = "wasm")]
pub(crate) fn checksum(bytes: &[u8]) -> u32 {
    const CRC: crc::Crc<u32, crc::Table<1>> =
        crc::Crc::<u32, crc::Table<1>>::new(&crc::CRC_32_ISO_HDLC);
    CRC.checksum(bytes)
}

fn to_postcard<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing plain structs of integers, byte arrays and strings into a
    // growable Vec has no failure path in postcard.
    postcard::to_allocvec(value).expect("postcard serializes envelope structs infallibly")
}

/// Decodes envelope bytes, verifying the checksum first.
pub fn decode(bytes: &[u8]) -> Result<RecordedEvent, DecodeError> {
    let body = checked(bytes)?;
    match body[0] {
        FORMAT_V1 => decode_v1(&body[1..]),
        other => Err(DecodeError::UnknownFormat(other)),
    }
}

/// The bytes before the checksum, once it holds; never empty.
fn checked(bytes: &[u8]) -> Result<&[u8], DecodeError> {
    if bytes.len() < 1 + CHECKSUM_LEN {
        return Err(DecodeError::TooShort(bytes.len()));
    }
    let (body, tail) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let computed = checksum(body);
    if stored != computed {
        return Err(DecodeError::ChecksumMismatch { stored, computed });
    }
    Ok(body)
}

/// Decodes envelope bytes into `out`, reusing its strings' memory when both
/// are a format-1 `UserCreated` (the event a scan meets), so a scan
/// allocates nothing per event once warm. Anything else is decoded afresh
/// by [`decode`], which checks the same things; on `Err`, `out` is left
/// unspecified but valid.
pub(crate) fn decode_into(bytes: &[u8], out: &mut RecordedEvent) -> Result<(), DecodeError> {
    let body = checked(bytes)?;
    let (FORMAT_V1, Event::UserCreated(created)) = (body[0], &mut out.event) else {
        *out = decode(bytes)?;
        return Ok(());
    };
    let envelope: EnvelopeV1 = from_postcard(&body[1..])?;
    if (envelope.event_type, envelope.schema_version) != (USER_CREATED, 1) {
        *out = decode(bytes)?;
        return Ok(());
    }
    let v1: UserCreatedV1 = from_postcard(envelope.payload)?;
    created.user_id = Uuid::from_bytes(envelope.aggregate_id);
    refill(&mut created.email, v1.email);
    refill_option(&mut created.first_name, v1.first_name);
    refill_option(&mut created.last_name, v1.last_name);
    refill_option(&mut created.phone_number, v1.phone_number);
    out.event_id = Uuid::from_bytes(envelope.event_id);
    out.version = envelope.version;
    out.position = envelope.position;
    out.recorded_at_ms = envelope.recorded_at_ms;
    out.origin = Uuid::from_bytes(envelope.origin);
    Ok(())
}

fn refill(to: &mut String, from: &str) {
    to.clear();
    to.push_str(from);
}

fn refill_option(to: &mut Option<String>, from: Option<&str>) {
    match (to.as_mut(), from) {
        (Some(to), Some(from)) => refill(to, from),
        (_, from) => *to = from.map(str::to_owned),
    }
}

fn decode_v1(body: &[u8]) -> Result<RecordedEvent, DecodeError> {
    let envelope: EnvelopeV1 = from_postcard(body)?;
    let aggregate_id = Uuid::from_bytes(envelope.aggregate_id);
    let event = match (envelope.event_type, envelope.schema_version) {
        (USER_CREATED, 1) => {
            let v1: UserCreatedV1 = from_postcard(envelope.payload)?;
            Event::UserCreated(UserCreated {
                user_id: aggregate_id,
                email: v1.email.to_owned(),
                first_name: v1.first_name.map(str::to_owned),
                last_name: v1.last_name.map(str::to_owned),
                phone_number: v1.phone_number.map(str::to_owned),
            })
        }
        (USER_UPDATED, 1) => {
            let v1: UserUpdatedV1 = from_postcard(envelope.payload)?;
            let owned = |v: Option<Option<&str>>| v.map(|v| v.map(str::to_owned));
            Event::UserUpdated(UserUpdated {
                user_id: aggregate_id,
                email: v1.email.map(str::to_owned),
                first_name: owned(v1.first_name),
                last_name: owned(v1.last_name),
                phone_number: owned(v1.phone_number),
            })
        }
        (USER_CREATION_REJECTED, 1) => {
            Event::UserCreationRejected(refusal_of(aggregate_id, envelope.payload)?)
        }
        (USER_UPDATE_REJECTED, 1) => {
            Event::UserUpdateRejected(refusal_of(aggregate_id, envelope.payload)?)
        }
        (USER_ERASED, 1) if envelope.payload.is_empty() => Event::UserErased(aggregate_id),
        (USER_ERASURE_REJECTED, 1) => {
            Event::UserErasureRejected(refusal_of(aggregate_id, envelope.payload)?)
        }
        // postcard's bool, read by hand (no decoder instantiated for it).
        (REDACTED, 1) => match envelope.payload {
            [0] => Event::Redacted(aggregate_id, false),
            [1] => Event::Redacted(aggregate_id, true),
            _ => {
                return Err(DecodeError::Malformed(
                    "a Redacted payload is one bool".into(),
                ));
            }
        },
        (USER_ERASED, 1) => {
            return Err(DecodeError::Malformed(
                "a UserErased payload is empty".into(),
            ));
        }
        (event_type, schema_version) => {
            return Err(DecodeError::UnknownEvent {
                event_type,
                schema_version,
            });
        }
    };
    Ok(RecordedEvent {
        event_id: Uuid::from_bytes(envelope.event_id),
        version: envelope.version,
        position: envelope.position,
        recorded_at_ms: envelope.recorded_at_ms,
        origin: Uuid::from_bytes(envelope.origin),
        event,
    })
}

fn from_postcard<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    parse_exact(bytes).map_err(DecodeError::Malformed)
}

/// Parses exactly `bytes` as `T`, or says why not. Trailing bytes are an
/// error: a valid checksum over bytes with a tail means the writer and the
/// reader disagree on the structure.
pub(crate) fn parse_exact<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    OVER_LIMIT.with(|over| over.set(None));
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(format!("{} trailing bytes", rest.len())),
        Err(error) => Err(match OVER_LIMIT.with(|over| over.take()) {
            Some((count, max)) => {
                format!("a sequence of {count} items, over the limit of {max}")
            }
            None => error.to_string(),
        }),
    }
}

thread_local! {
    /// The count and limit of the last [`Bounded`] sequence refused on this
    /// thread, for [`parse_exact`]'s message.
    static OVER_LIMIT: std::cell::Cell<Option<(usize, usize)>> = const { std::cell::Cell::new(None) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RecordedEvent {
        RecordedEvent {
            event_id: Uuid::from_u128(1),
            version: 1,
            position: 9,
            recorded_at_ms: 1_700_000_000_123,
            origin: Uuid::from_u128(2),
            event: Event::UserCreated(UserCreated {
                user_id: Uuid::from_u128(3),
                email: "a@b.co".into(),
                first_name: Some("Ann".into()),
                last_name: None,
                phone_number: Some("+1 555 0123".into()),
            }),
        }
    }

    #[test]
    fn both_checksum_crates_compute_the_same_sum() {
        let crc = crc::Crc::<u32, crc::Table<1>>::new(&crc::CRC_32_ISO_HDLC);
        for bytes in [&b""[..], b"123456789", &encode(&sample())] {
            assert_eq!(crc.checksum(bytes), crc32fast::hash(bytes));
        }
        assert_eq!(checksum(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn round_trips() {
        assert_eq!(decode(&encode(&sample())), Ok(sample()));
    }

    #[test]
    fn decoding_into_an_earlier_event_gives_what_decoding_afresh_gives() {
        let full = sample();
        let mut sparse = sample();
        sparse.position = 10;
        if let Event::UserCreated(created) = &mut sparse.event {
            created.email = "a-much-longer-address@example.com".into();
            (created.first_name, created.last_name, created.phone_number) =
                (None, Some("Lee".into()), None);
        }
        let rejected = RecordedEvent {
            event: Event::UserCreationRejected(Refusal {
                user_id: Uuid::from_u128(3),
                rejected_event_id: Uuid::from_u128(1),
                code: 409,
                details: vec![FieldError {
                    field: Field::Email,
                    message: "taken".into(),
                }],
            }),
            ..sample()
        };
        let cases = [full, sparse, rejected];
        for earlier in &cases {
            for next in &cases {
                let mut out = earlier.clone();
                assert_eq!(decode_into(&encode(next), &mut out), Ok(()));
                assert_eq!(&out, next);
            }
        }
        let mut damaged = encode(&cases[1]);
        damaged[5] ^= 1;
        let mut out = cases[0].clone();
        assert!(decode_into(&damaged, &mut out).is_err());
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let bytes = encode(&sample());
        for i in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[i / 8] ^= 1 << (i % 8);
            assert!(decode(&damaged).is_err(), "flip of bit {i} went unnoticed");
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = encode(&sample());
        for len in 0..bytes.len() {
            assert!(
                decode(&bytes[..len]).is_err(),
                "truncation to {len} accepted"
            );
        }
    }

    #[test]
    fn a_valid_checksum_over_a_bad_structure_is_malformed_not_a_panic() {
        let mut body = vec![FORMAT_V1, 0xff, 0xff, 0xff];
        body.extend_from_slice(&checksum(&body).to_le_bytes());
        assert!(matches!(decode(&body), Err(DecodeError::Malformed(_))));
    }
}
