//! The bytes that travel between devices and the hub: push batches, replies
//! and pull batches. `[b"SPKS"][version u8][kind u8][postcard body][crc32 LE]`.
//!
//! Format 4 (written now) has format 2's bodies too, and may carry what
//! erasure adds: `UserErased` events, and in pulls the `Redacted` events an
//! erasure left of a user's others. A device or hub of format 3 is refused
//! by name as format 2 was.
//!
//! Format 3 has format 2's bodies; what is new is what they
//! carry: `UserUpdated` events, and replies that refuse with a 404 (an
//! update of a user the hub does not have). A device or hub of format 2
//! could not read them, so each side refuses the other's format by name
//! (the format header) rather than failing on the first new event.
//!
//! Format 2 differs from format 1 in two bodies: a pull says
//! whose events it carries (the organization's, or one user's) and up to
//! which hub position it is complete for them — its watermark, the device's
//! next cursor, since a scoped pull's positions have gaps; a reply may
//! carry a 403 (an event of a user the pusher's token is not for). Push
//! bodies are unchanged. Format 1 replies and pulls are still read (a file
//! a device was given); a hub refuses format 1 pushes, naming both formats,
//! since the device behind one could not read the hub's answer.
//!
//! Batches come from other machines, so they are untrusted input: the length
//! is checked before anything is parsed, the checksum before the structure,
//! and no length field can make the decoder allocate beyond the input (serde
//! caps preallocation; every item borrows from the input). Decoding returns
//! an error, never panics.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec::{Bounded, MAX_DETAILS, checksum};

const MAGIC: &[u8; 4] = b"SPKS";
pub(crate) const VERSION_1: u8 = 1;
pub(crate) const VERSION_2: u8 = 2;
pub(crate) const VERSION_3: u8 = 3;
pub(crate) const VERSION_4: u8 = 4;
/// The batch format this version writes (and the newest it reads).
pub const BATCH_FORMAT: u8 = VERSION_4;
const HEADER: usize = MAGIC.len() + 2;
const CHECKSUM_LEN: usize = 4;

/// The HTTP header in which a device names the batch format it reads
/// (sent with every sync request) and a hub the format it sends; a hub
/// refuses the pulls of a device of another format, naming both.
pub const BATCH_FORMAT_HEADER: &str = "x-spkey-batch-format";

/// The largest batch accepted, in bytes.
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// The most events or reply items one batch may carry; a batch claiming more
/// is refused while it is decoded, before anything is allocated for it.
pub const MAX_BATCH_ITEMS: usize = 100_000;
/// The longest message a rejection's field error may carry, in bytes.
pub(crate) const MAX_DETAIL_BYTES: usize = 1024;

/// What a batch is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchKind {
    /// A device's pending events, for the hub to accept or reject.
    Push = 1,
    /// The hub's answer to a push, one item per event.
    Reply = 2,
    /// The hub's accepted events after a cursor, for a device to import.
    Pull = 3,
}

impl BatchKind {
    /// The kind's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            BatchKind::Push => "push",
            BatchKind::Reply => "reply",
            BatchKind::Pull => "pull",
        }
    }

    fn from_byte(byte: u8) -> Option<BatchKind> {
        match byte {
            1 => Some(BatchKind::Push),
            2 => Some(BatchKind::Reply),
            3 => Some(BatchKind::Pull),
            _ => None,
        }
    }
}

/// Why bytes were refused as a batch. A refused batch changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// Over [`MAX_BATCH_BYTES`].
    #[error("batch is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// The batch's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Does not start with the batch magic: not a batch at all.
    #[error("not an spkey batch")]
    NotABatch,
    /// A format version this library does not read.
    #[error("batch format {0} is not supported")]
    UnsupportedVersion(u8),
    /// A batch of another kind (a reply where a push was expected, …).
    #[error("expected a {} batch, got kind {found}", expected.name())]
    WrongKind {
        /// The kind this call takes.
        expected: BatchKind,
        /// The kind byte found.
        found: u8,
    },
    /// The checksum does not match: the bytes were damaged on the way.
    #[error("batch checksum mismatch: damaged in transit")]
    ChecksumMismatch,
    /// The checksum held but the structure did not parse.
    #[error("malformed batch: {0}")]
    Malformed(String),
    /// More items than [`MAX_BATCH_ITEMS`].
    #[error("batch carries {0} items, over the limit")]
    TooManyItems(usize),
    /// One event of the batch is unacceptable; the whole batch is refused.
    #[error("event {index} of the batch: {reason}")]
    BadEvent {
        /// Its index in the batch.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The batch was made by the store it is given to: every reply and
    /// export carries its sender's id, and a store's own events are not news
    /// to it.
    #[error("batch was sent by this very store")]
    FromThisStore,
    /// The batch comes from another hub than this device syncs with.
    #[error("batch is from store {found}, but this store syncs with hub {expected}")]
    WrongHub {
        /// The hub this store has synced with.
        expected: Uuid,
        /// The sender of the batch.
        found: Uuid,
    },
}

/// Push batches (formats 1 and 2) and format 1 pull batches: events as
/// envelope bytes.
#[derive(Serialize, Deserialize)]
pub(crate) struct EventsV1<'a> {
    pub sender: [u8; 16],
    #[serde(borrow)]
    pub events: Bounded<&'a [u8], MAX_BATCH_ITEMS>,
}

/// A format 2 pull batch: the events of `scope` (every user when `None`,
/// else that one user) after the device's cursor, in position order, and
/// the hub position the batch is complete to for that scope.
#[derive(Serialize, Deserialize)]
pub(crate) struct PullV2<'a> {
    pub sender: [u8; 16],
    pub scope: Option<[u8; 16]>,
    pub complete_to: u64,
    #[serde(borrow)]
    pub events: Bounded<&'a [u8], MAX_BATCH_ITEMS>,
}

/// A reply: one item per pushed event.
#[derive(Serialize, Deserialize)]
pub(crate) struct ReplyV1<'a> {
    pub sender: [u8; 16],
    #[serde(borrow)]
    pub items: Bounded<ReplyItemV1<'a>, MAX_BATCH_ITEMS>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct ReplyItemV1<'a> {
    pub event_id: [u8; 16],
    #[serde(borrow)]
    pub outcome: OutcomeV1<'a>,
}

#[derive(Serialize, Deserialize)]
pub(crate) enum OutcomeV1<'a> {
    Accepted {
        hub_position: u64,
    },
    Rejected {
        code: u16,
        #[serde(borrow)]
        details: Bounded<(&'a str, &'a str), MAX_DETAILS>,
    },
}

pub(crate) fn encode<T: Serialize>(kind: BatchKind, body: &T) -> Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    bytes.push(BATCH_FORMAT);
    bytes.push(kind as u8);
    // Structs of integers, byte arrays and slices always serialize.
    bytes.extend_from_slice(&postcard::to_allocvec(body).expect("batch bodies serialize"));
    let sum = checksum(&bytes);
    bytes.extend_from_slice(&sum.to_le_bytes());
    bytes
}

/// Checks the frame of a batch of `kind` and returns its format version and
/// body.
pub(crate) fn open(bytes: &[u8], kind: BatchKind) -> Result<(u8, &[u8]), BatchError> {
    if bytes.len() > MAX_BATCH_BYTES {
        return Err(BatchError::TooLarge {
            len: bytes.len(),
            max: MAX_BATCH_BYTES,
        });
    }
    if bytes.len() < HEADER + CHECKSUM_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(BatchError::NotABatch);
    }
    let (framed, tail) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    if checksum(framed) != stored {
        return Err(BatchError::ChecksumMismatch);
    }
    let version = check_head(framed, kind)?;
    Ok((version, &framed[HEADER..]))
}

/// The bytes [`check_head`] needs: magic, version and kind.
pub const BATCH_HEAD_BYTES: usize = HEADER;

/// Checks the first [`BATCH_HEAD_BYTES`] of a batch of `kind` — magic, a
/// version this library reads, the kind — and returns its version: a
/// receiver streaming a large body refuses what cannot be a batch before
/// the rest arrives (the checksum, at the end, is checked by the full
/// decode).
///
/// # Errors
///
/// [`BatchError::NotABatch`] for fewer bytes or another magic,
/// [`BatchError::UnsupportedVersion`], [`BatchError::WrongKind`].
pub fn check_head(head: &[u8], kind: BatchKind) -> Result<u8, BatchError> {
    if head.len() < HEADER || &head[..MAGIC.len()] != MAGIC {
        return Err(BatchError::NotABatch);
    }
    let version = head[MAGIC.len()];
    if !matches!(version, VERSION_1 | VERSION_2 | VERSION_3 | VERSION_4) {
        return Err(BatchError::UnsupportedVersion(version));
    }
    let found = head[MAGIC.len() + 1];
    if BatchKind::from_byte(found) != Some(kind) {
        return Err(BatchError::WrongKind {
            expected: kind,
            found,
        });
    }
    Ok(version)
}

/// Parses exactly `body` as `T`.
pub(crate) fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, BatchError> {
    crate::codec::parse_exact(body).map_err(BatchError::Malformed)
}

/// Refuses batches with too many items.
pub(crate) fn check_count(count: usize) -> Result<(), BatchError> {
    if count > MAX_BATCH_ITEMS {
        Err(BatchError::TooManyItems(count))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(events: Vec<&[u8]>) -> Vec<u8> {
        encode(
            BatchKind::Push,
            &EventsV1 {
                sender: [7; 16],
                events: events.into(),
            },
        )
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_is_refused() {
        let bytes = push(vec![b"one", b"two"]);
        for i in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[i / 8] ^= 1 << (i % 8);
            assert!(open(&damaged, BatchKind::Push).is_err(), "bit {i}");
        }
        for len in 0..bytes.len() {
            assert!(open(&bytes[..len], BatchKind::Push).is_err(), "len {len}");
        }
        let (version, body) = open(&bytes, BatchKind::Push).unwrap();
        assert_eq!(version, BATCH_FORMAT);
        let parsed: EventsV1 = parse(body).unwrap();
        assert_eq!(*parsed.events, vec![&b"one"[..], b"two"]);
    }

    #[test]
    fn a_length_field_cannot_allocate_beyond_the_input() {
        // A body claiming 2^32 events, sealed with a valid checksum.
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[VERSION_1, BatchKind::Push as u8]);
        bytes.extend_from_slice(&[7; 16]);
        bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        let sum = checksum(&bytes);
        bytes.extend_from_slice(&sum.to_le_bytes());
        let (_, body) = open(&bytes, BatchKind::Push).unwrap();
        assert!(matches!(
            parse::<EventsV1>(body),
            Err(BatchError::Malformed(_))
        ));
    }

    #[test]
    fn a_batch_of_another_kind_is_refused() {
        let bytes = push(vec![]);
        assert!(matches!(
            open(&bytes, BatchKind::Reply),
            Err(BatchError::WrongKind { found: 1, .. })
        ));
    }
}
