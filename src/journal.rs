//! The journal: an acknowledged command costs one sequential append and one
//! `fdatasync`, not a redb commit's scattered page writes.
//!
//! Every write transaction's row changes (the [`Writer`](crate::log::Writer)
//! records each as it makes it) are appended to the journal, a second file
//! beside the store, as one checksummed record, and synced; only then does
//! redb commit, with `Durability::None`, and the caller hear back. redb's
//! own durable commit (a checkpoint) runs every [`CHECKPOINT_RECORDS`]
//! records or [`CHECKPOINT_BYTES`] bytes and on close, for many commands at
//! once; after it the journal is cut back to its header. Opening replays the
//! records past redb's durable state.
//!
//! File: a 32-byte header (magic with the format version, then the store
//! id, so a journal is never replayed into another store) and records
//! `[magic "SPJR"][payload length u32 LE][sequence u64 LE][crc32 LE][payload]`,
//! the CRC over length, sequence and payload. Sequences count commits since
//! the store was created; redb keeps the last one applied in its meta table
//! (`log::META_JOURNAL_SEQ`), written in the same transaction as the
//! changes, so a record is applied exactly once however a crash falls
//! between the journal, redb's commit, a checkpoint and the cut.
//!
//! A record is synced before the next one is written, so a power cut can
//! tear only the last: an invalid record with no valid later record is a
//! torn append and is cut (its command was never acknowledged); an invalid
//! record followed by a valid later one is damage, and the store refuses to
//! open rather than lose or invent anything.

use redb::StorageBackend;
use uuid::Uuid;

use crate::error::StoreError;

/// The header's magic number; its last byte is the journal format.
const MAGIC: [u8; 16] = *b"spkey-journal\0\0\x01";
/// Header: magic, then the store id.
pub(crate) const HEADER_LEN: u64 = 32;
/// The first bytes of every record.
const RECORD_MAGIC: [u8; 4] = *b"SPJR";
/// Magic, length, sequence, checksum.
const RECORD_HEADER: usize = 20;
/// A checkpoint after this many records by default…
pub(crate) const CHECKPOINT_RECORDS: u64 = 1024;
/// …or once the journal holds this many bytes, whichever comes first: it
/// bounds both the replay on open and redb's growth between durable commits
/// (pages freed by non-durable commits are reused only after one).
pub(crate) const CHECKPOINT_BYTES: u64 = 8 << 20;

/// …or once the records since the last one change this many rows. Pages
/// a non-durable commit frees are reused only after a durable one, so
/// until a checkpoint every changed row may cost redb's file a page; this
/// bounds that slack at about 32 MiB. Measured (200,000 creates in batches
/// of 1,000): without it a closed store was 695 bytes per event, 360 with
/// it, 356 checkpointing every commit; 4,096 cost 4 % more time than 8,192.
pub(crate) const CHECKPOINT_CHANGES: u64 = 8192;

/// One record: the row changes of one commit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// Its sequence number, 1 for a store's first journaled commit.
    pub seq: u64,
    /// The changes (see `log::apply_redo`).
    pub redo: Vec<u8>,
}

/// An open journal. Writes need `&mut`: the store holds it under the lock
/// its writers take before redb's.
pub(crate) struct Journal {
    file: Box<dyn StorageBackend>,
    /// Where the next record goes: the end of the last whole record.
    len: u64,
    /// Records since the last checkpoint.
    records: u64,
    /// Rows those records change.
    changes: u64,
    /// A checkpoint is due at this many records.
    checkpoint_every: u64,
    /// Set when a write or sync failed part way: the file's tail is then
    /// unknown, and only a reopen (which cuts a torn tail) may write again.
    failed: bool,
}

fn io(error: std::io::Error) -> StoreError {
    StoreError::Storage(redb::StorageError::from(error).into())
}

fn header(store_id: Uuid) -> [u8; HEADER_LEN as usize] {
    let mut header = [0; HEADER_LEN as usize];
    header[..16].copy_from_slice(&MAGIC);
    header[16..].copy_from_slice(store_id.as_bytes());
    header
}

/// The record in `bytes` at its start, and its length, if one is whole and
/// its checksum holds.
fn record_at(bytes: &[u8]) -> Option<(Record, usize)> {
    let head = bytes.get(..RECORD_HEADER)?;
    if head[..4] != RECORD_MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(head[4..8].try_into().ok()?) as usize;
    let seq = u64::from_le_bytes(head[8..16].try_into().ok()?);
    let stored = u32::from_le_bytes(head[16..20].try_into().ok()?);
    let payload = bytes.get(RECORD_HEADER..RECORD_HEADER.checked_add(len)?)?;
    if record_checksum(len as u32, seq, payload) != stored {
        return None;
    }
    Some((
        Record {
            seq,
            redo: payload.to_vec(),
        },
        RECORD_HEADER + len,
    ))
}

fn record_checksum(len: u32, seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len.to_le_bytes());
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// The records of a journal's bytes past the header, and the length of the
/// part that is whole records.
///
/// # Errors
///
/// [`StoreError::Damaged`] when an invalid record is followed by a valid
/// one with a later sequence (damage, not a torn append), or when sequences
/// do not follow each other.
pub(crate) fn parse(bytes: &[u8]) -> Result<(Vec<Record>, u64), StoreError> {
    let mut records: Vec<Record> = Vec::new();
    let mut at = HEADER_LEN as usize;
    while at < bytes.len() {
        let Some((record, len)) = record_at(&bytes[at..]) else {
            // Torn append or damage: damage leaves a whole later record.
            let last = records.last().map_or(0, |r| r.seq);
            let later = (at + 1..bytes.len())
                .filter(|&i| bytes[i..].starts_with(&RECORD_MAGIC))
                .filter_map(|i| record_at(&bytes[i..]))
                .find(|(record, _)| record.seq > last);
            if let Some((record, _)) = later {
                return Err(StoreError::Damaged(format!(
                    "journal: the record at byte {at} is damaged, and record {} follows it",
                    record.seq
                )));
            }
            break;
        };
        if let Some(previous) = records.last()
            && record.seq != previous.seq + 1
        {
            return Err(StoreError::Damaged(format!(
                "journal: record {} follows record {}",
                record.seq, previous.seq
            )));
        }
        records.push(record);
        at += len;
    }
    Ok((records, at as u64))
}

impl Journal {
    /// Opens the journal in `file` for the store `store_id`, returning it and
    /// the records it holds. An empty file, or one holding only the zeros
    /// of a header never written whole, gets a fresh header (when `write`).
    /// A torn last record is cut (when `write`; otherwise ignored).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotAStore`] when the file is not a journal or is
    /// another store's (it is left untouched); [`StoreError::Damaged`] as
    /// [`parse`]; [`StoreError::Storage`] when it cannot be read or written.
    pub fn open(
        file: Box<dyn StorageBackend>,
        store_id: Uuid,
        write: bool,
        checkpoint_every: u64,
    ) -> Result<(Journal, Vec<Record>), StoreError> {
        let size = file.len().map_err(io)?;
        let mut bytes = vec![0; usize::try_from(size).map_err(|_| too_big(size))?];
        file.read(0, &mut bytes).map_err(io)?;
        let fresh = bytes.len() < HEADER_LEN as usize && bytes.iter().all(|b| *b == 0)
            || bytes.len() >= HEADER_LEN as usize
                && bytes[..HEADER_LEN as usize].iter().all(|b| *b == 0)
                && bytes.iter().all(|b| *b == 0);
        let mut journal = Journal {
            file,
            len: HEADER_LEN,
            records: 0,
            changes: 0,
            checkpoint_every,
            failed: false,
        };
        if fresh {
            if write {
                journal.file.set_len(0).map_err(io)?;
                journal.file.write(0, &header(store_id)).map_err(io)?;
                journal.file.sync_data().map_err(io)?;
            }
            return Ok((journal, Vec::new()));
        }
        if bytes.len() < HEADER_LEN as usize || bytes[..16] != MAGIC {
            return Err(StoreError::NotAStore(
                "the store's journal file is not a journal (left untouched)".into(),
            ));
        }
        if bytes[16..32] != *store_id.as_bytes() {
            let other = Uuid::from_slice(&bytes[16..32]).unwrap_or_default();
            return Err(StoreError::NotAStore(format!(
                "the journal beside the store belongs to store {other}, not to this store \
                 {store_id}: it may hold that store's last commands; move it away to open \
                 this one (left untouched)"
            )));
        }
        let (records, whole) = parse(&bytes)?;
        if write && whole < size {
            journal.file.set_len(whole).map_err(io)?;
            journal.file.sync_data().map_err(io)?;
        }
        journal.len = whole;
        journal.records = records.len() as u64;
        Ok((journal, records))
    }

    /// Appends the record `seq` of `redo`, which changes `changes` rows,
    /// and waits for the disk.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] when it cannot be written or synced; the
    /// journal then refuses every write until the store is reopened.
    pub fn append(&mut self, seq: u64, redo: &[u8], changes: u64) -> Result<(), StoreError> {
        self.usable()?;
        let len = u32::try_from(redo.len()).map_err(|_| {
            StoreError::Inconsistent(format!("one commit of {} bytes of changes", redo.len()))
        })?;
        let mut record = Vec::with_capacity(RECORD_HEADER + redo.len());
        record.extend_from_slice(&RECORD_MAGIC);
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&seq.to_le_bytes());
        record.extend_from_slice(&record_checksum(len, seq, redo).to_le_bytes());
        record.extend_from_slice(redo);
        self.failed = true;
        self.file.write(self.len, &record).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.failed = false;
        self.len += record.len() as u64;
        self.records += 1;
        self.changes += changes;
        Ok(())
    }

    /// Refuses every write from now on: the file no longer matches what
    /// the store knows (see `Store::commit_journaled`).
    pub fn fail(&mut self) {
        self.failed = true;
    }

    /// Whether a checkpoint is due.
    pub fn full(&self) -> bool {
        self.records >= self.checkpoint_every
            || self.len >= CHECKPOINT_BYTES
            || self.changes >= CHECKPOINT_CHANGES
    }

    /// Whether any record is held since the last cut.
    pub fn holds_records(&self) -> bool {
        self.len > HEADER_LEN
    }

    /// Cuts the journal back to its header, once redb has made every record
    /// durable.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] when the file cannot be cut or synced (the
    /// records stay, and are skipped on replay as already applied).
    pub fn cut(&mut self) -> Result<(), StoreError> {
        self.usable()?;
        self.file.set_len(HEADER_LEN).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.len = HEADER_LEN;
        self.records = 0;
        self.changes = 0;
        Ok(())
    }

    /// The whole file, for `verify`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] when it cannot be read.
    pub fn bytes(&self) -> Result<Vec<u8>, StoreError> {
        let size = self.file.len().map_err(io)?;
        let mut bytes = vec![0; usize::try_from(size).map_err(|_| too_big(size))?];
        self.file.read(0, &mut bytes).map_err(io)?;
        Ok(bytes)
    }

    fn usable(&self) -> Result<(), StoreError> {
        if self.failed {
            return Err(StoreError::Storage(
                redb::StorageError::Io(std::io::Error::other(
                    "an earlier journal write failed; reopen the store",
                ))
                .into(),
            ));
        }
        Ok(())
    }
}

fn too_big(size: u64) -> StoreError {
    StoreError::Damaged(format!("journal of {size} bytes: larger than memory"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBackend;

    fn journal_with(records: &[(u64, &[u8])]) -> Vec<u8> {
        let file = MemoryBackend::new();
        let image = file.clone();
        let (mut journal, _) = Journal::open(Box::new(file), Uuid::from_u128(1), true, 8).unwrap();
        for (seq, redo) in records {
            journal.append(*seq, redo, 1).unwrap();
        }
        image.snapshot()
    }

    #[test]
    fn records_read_back_in_order() {
        let bytes = journal_with(&[(1, b"one"), (2, b"two")]);
        let (records, whole) = parse(&bytes).unwrap();
        assert_eq!(whole, bytes.len() as u64);
        assert_eq!(
            records,
            vec![
                Record {
                    seq: 1,
                    redo: b"one".to_vec()
                },
                Record {
                    seq: 2,
                    redo: b"two".to_vec()
                }
            ]
        );
    }

    #[test]
    fn a_torn_last_record_is_cut_and_a_damaged_middle_one_refused() {
        let bytes = journal_with(&[(1, b"one"), (2, b"two")]);
        let first_end = HEADER_LEN as usize + RECORD_HEADER + 3;
        for cut in first_end + 1..bytes.len() {
            let (records, whole) = parse(&bytes[..cut]).unwrap();
            assert_eq!(records.len(), 1, "cut at {cut}");
            assert_eq!(whole, first_end as u64);
        }
        let mut damaged = bytes.clone();
        damaged[HEADER_LEN as usize + RECORD_HEADER] ^= 1;
        assert!(matches!(parse(&damaged), Err(StoreError::Damaged(_))));
    }

    #[test]
    fn sequences_must_follow_each_other() {
        let bytes = journal_with(&[(1, b"one"), (3, b"three")]);
        assert!(matches!(parse(&bytes), Err(StoreError::Damaged(_))));
    }
}
