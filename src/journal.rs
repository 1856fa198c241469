//! The journal: an acknowledged command costs one sequential append and one
//! `fdatasync`, not a redb commit's scattered page writes.
//!
//! Every write transaction's row changes (the [`Writer`](crate::log::Writer)
//! records each as it makes it) are appended to the journal, a second file
//! beside the store, as one checksummed record, and synced; only then does
//! redb commit, with `Durability::None`, and the caller hear back. redb's
//! own durable commit (a checkpoint) runs every [`CHECKPOINT_RECORDS`]
//! records or [`CHECKPOINT_BYTES`] bytes and on close, for many commands at
//! once; after it the journal starts again from its head. Opening replays
//! the records past redb's durable state.
//!
//! The file is written over, not appended to: it grows in zero-filled
//! [`CHUNK`]s, and after a checkpoint the next record goes back to the
//! start, over records redb already holds. A sync then carries data only,
//! not a new file length — SQLite's WAL reuses its file for the same
//! reason. Records left from an earlier lap have lower sequence numbers,
//! which is how reading tells them from the current lap; a clean close
//! cuts the file back to its header.
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
//! tear only the last: an invalid record with no valid record of a later
//! sequence after it (later than what redb already holds) is a torn append
//! and ends the journal (its command was never acknowledged); an invalid
//! record followed by such a record is damage, and the store refuses to
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
/// it, 356 checkpointing every commit (`examples/journal_probe.rs` gives
/// the last two).
pub(crate) const CHECKPOINT_CHANGES: u64 = 8192;

/// The journal grows by this many zeroed bytes at a time, so that most
/// syncs find the file's length unchanged.
pub(crate) const CHUNK: u64 = 1 << 20;

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
    /// The file's length: records and the zeros after them.
    allocated: u64,
    /// The last record redb holds durably: the records of the current lap
    /// are later ones.
    base: u64,
    /// The last record appended (or replayed): the records since the last
    /// checkpoint are `last - base`.
    last: u64,
    /// Rows the records since the last checkpoint change.
    changes: u64,
    /// A checkpoint is due at this many records.
    checkpoint_every: u64,
    /// Set when a write or sync failed part way: the file's tail is then
    /// unknown, and only a reopen (which reads what is there) may write
    /// again.
    failed: bool,
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

/// The records of the current lap in a journal's bytes, and where they
/// end. `applied` is the last record redb holds: records of earlier laps
/// are at most that.
///
/// # Errors
///
/// [`StoreError::Damaged`] when an invalid record is followed by a valid
/// one with a sequence later than every record read and than `applied`
/// (damage, not a torn append), or when the current lap skips a sequence.
pub(crate) fn parse(bytes: &[u8], applied: u64) -> Result<(Vec<Record>, u64), StoreError> {
    let mut records: Vec<Record> = Vec::new();
    let mut at = HEADER_LEN as usize;
    while at < bytes.len() {
        let last = records.last().map(|r| r.seq);
        let Some((record, len)) = record_at(&bytes[at..]) else {
            // Torn append, zeros, or an earlier lap's bytes — or damage,
            // which leaves a whole record of a later sequence after it.
            let newest = last.unwrap_or(0).max(applied);
            // Bounded work: checksumming every candidate of a file packed
            // with record magic would be quadratic. Past the budget the
            // journal is refused, which is safe.
            let mut budget = 4 * bytes.len();
            let mut later = None;
            for i in (at + 1..bytes.len()).filter(|&i| bytes[i..].starts_with(&RECORD_MAGIC)) {
                let claimed = bytes.get(i + 4..i + 8).map_or(0, |len| {
                    u32::from_le_bytes(len.try_into().unwrap_or_default())
                });
                // A candidate costs at most the bytes it can cover.
                let cost = (claimed as usize).min(bytes.len() - i) + RECORD_HEADER;
                budget = budget.checked_sub(cost).ok_or_else(|| {
                    StoreError::Damaged(format!(
                        "journal: the record at byte {at} is damaged, and too many \
                         would-be records follow it to check"
                    ))
                })?;
                if let Some((record, _)) = record_at(&bytes[i..])
                    && record.seq > newest
                {
                    later = Some(record);
                    break;
                }
            }
            if let Some(record) = later {
                return Err(StoreError::Damaged(format!(
                    "journal: the record at byte {at} is damaged, and record {} follows it",
                    record.seq
                )));
            }
            break;
        };
        match last {
            // An earlier lap's record: the current lap ends here.
            Some(last) if record.seq <= last => break,
            Some(last) if record.seq != last + 1 => {
                return Err(StoreError::Damaged(format!(
                    "journal: record {} follows record {last}",
                    record.seq
                )));
            }
            _ => {}
        }
        records.push(record);
        at += len;
    }
    Ok((records, at as u64))
}

impl Journal {
    /// Opens the journal in `file` for the store `store_id`, whose redb file
    /// holds the changes up to record `applied`, returning it and the
    /// records of its current lap. An empty file, or one holding only the
    /// zeros of a header never written whole, gets a fresh header (when
    /// `write`). Nothing else is written: the caller replays the records,
    /// makes them durable and [`restart`](Self::restart)s the lap.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotAStore`] when the file is not a journal or is
    /// another store's (it is left untouched); [`StoreError::Damaged`] as
    /// [`parse`]; [`StoreError::Storage`] when it cannot be read or written.
    pub fn open(
        file: Box<dyn StorageBackend>,
        store_id: Uuid,
        applied: u64,
        write: bool,
        checkpoint_every: u64,
    ) -> Result<(Journal, Vec<Record>), StoreError> {
        let size = file.len().map_err(StoreError::io)?;
        // The header first: a file that is not this store's journal is
        // refused having read 32 bytes of it, however big it is.
        let mut head = vec![0; size.min(HEADER_LEN) as usize];
        file.read(0, &mut head).map_err(StoreError::io)?;
        // What creating a journal can leave behind when it is cut short: no
        // bytes, or a header's worth of zeros.
        let fresh = head.iter().all(|b| *b == 0) && size <= HEADER_LEN;
        let mut journal = Journal {
            file,
            len: HEADER_LEN,
            allocated: size.max(HEADER_LEN),
            base: applied,
            last: applied,
            changes: 0,
            checkpoint_every,
            failed: false,
        };
        if fresh {
            if write {
                journal.file.set_len(0).map_err(StoreError::io)?;
                journal
                    .file
                    .write(0, &header(store_id))
                    .map_err(StoreError::io)?;
                journal.file.sync_data().map_err(StoreError::io)?;
            }
            return Ok((journal, Vec::new()));
        }
        if head.len() < HEADER_LEN as usize || head[..16] != MAGIC {
            return Err(StoreError::NotAStore(
                "the store's journal file is not a journal (left untouched)".into(),
            ));
        }
        if head[16..32] != *store_id.as_bytes() {
            let other = Uuid::from_slice(&head[16..32]).unwrap_or_default();
            return Err(StoreError::NotAStore(format!(
                "the journal beside the store belongs to store {other}, not to this store \
                 {store_id}: it may hold that store's last commands; move it away to open \
                 this one (left untouched)"
            )));
        }
        // This store's journal: at most a lap and one commit's record, in
        // zeroed chunks.
        let (records, whole) = parse(&journal.bytes()?, applied)?;
        journal.len = whole;
        journal.last = records.last().map_or(applied, |r| r.seq.max(applied));
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
        let end = self.len + record.len() as u64;
        if end > self.allocated {
            // Zeros up to the next chunk; the sync below carries them with
            // the record, and the syncs of the next records find the
            // length unchanged.
            let grown = end.div_ceil(CHUNK) * CHUNK;
            let zeros = vec![0; (grown - end) as usize];
            self.file.write(end, &zeros).map_err(StoreError::io)?;
            self.allocated = grown;
        }
        self.file.write(self.len, &record).map_err(StoreError::io)?;
        self.file.sync_data().map_err(StoreError::io)?;
        self.failed = false;
        self.len += record.len() as u64;
        self.last = seq;
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
        self.last - self.base >= self.checkpoint_every
            || self.len >= CHECKPOINT_BYTES
            || self.changes >= CHECKPOINT_CHANGES
    }

    /// Whether the file is longer than its header.
    pub fn holds_records(&self) -> bool {
        // Records are written below `allocated`, which only a cut lowers.
        self.allocated > HEADER_LEN
    }

    /// Starts a new lap, once redb has made every record durable: the next
    /// record goes back to the start, over records redb holds. No I/O.
    pub fn restart(&mut self) {
        self.base = self.last;
        self.len = HEADER_LEN;
        self.changes = 0;
    }

    /// Cuts the file back to its header, on a clean close (after the last
    /// checkpoint): a closed store's journal is 32 bytes.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] when the file cannot be cut or synced (the
    /// records stay, and are skipped on replay as already applied).
    pub fn cut(&mut self) -> Result<(), StoreError> {
        self.usable()?;
        self.file.set_len(HEADER_LEN).map_err(StoreError::io)?;
        self.file.sync_data().map_err(StoreError::io)?;
        self.allocated = HEADER_LEN;
        self.restart();
        Ok(())
    }

    /// The last record redb holds durably.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The whole file, for opening and `verify`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] when it cannot be read.
    pub fn bytes(&self) -> Result<Vec<u8>, StoreError> {
        let size = self.file.len().map_err(StoreError::io)?;
        let mut bytes = vec![0; usize::try_from(size).map_err(|_| too_big(size))?];
        self.file.read(0, &mut bytes).map_err(StoreError::io)?;
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

    const RECORD_END: usize = HEADER_LEN as usize + RECORD_HEADER + 3;

    /// A journal written lap by lap: each lap's records, a restart between
    /// laps; returns its bytes.
    fn journal_with(laps: &[&[(u64, &[u8])]]) -> Vec<u8> {
        let file = MemoryBackend::new();
        let image = file.clone();
        let (mut journal, _) =
            Journal::open(Box::new(file), Uuid::from_u128(1), 0, true, 8).unwrap();
        for (i, lap) in laps.iter().enumerate() {
            if i > 0 {
                journal.restart();
            }
            for (seq, redo) in lap.iter() {
                journal.append(*seq, redo, 1).unwrap();
            }
        }
        image.snapshot()
    }

    fn seqs(bytes: &[u8], applied: u64) -> Vec<u64> {
        parse(bytes, applied)
            .unwrap()
            .0
            .iter()
            .map(|r| r.seq)
            .collect()
    }

    #[test]
    fn records_read_back_in_order_and_the_zeros_after_them_end_the_lap() {
        let bytes = journal_with(&[&[(1, b"one"), (2, b"two")]]);
        assert_eq!(bytes.len() as u64, CHUNK, "grown by a zeroed chunk");
        let (records, whole) = parse(&bytes, 0).unwrap();
        assert_eq!(whole as usize, 2 * (RECORD_END - HEADER_LEN as usize) + 32);
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
    fn a_new_lap_ends_where_the_last_laps_records_begin() {
        let bytes = journal_with(&[&[(1, b"one"), (2, b"two"), (3, b"333")], &[(4, b"fou")]]);
        // Record 4 over record 1; records 2 and 3 remain, and are older.
        assert_eq!(seqs(&bytes, 3), vec![4]);
    }

    #[test]
    fn a_torn_record_ends_the_lap_and_a_damaged_middle_one_is_refused() {
        let bytes = journal_with(&[&[(1, b"one"), (2, b"two")]]);
        for cut in RECORD_END + 1..2 * RECORD_END - 32 {
            let mut torn = bytes.clone();
            torn[cut..].fill(0);
            assert_eq!(seqs(&torn, 0), vec![1], "torn at {cut}");
        }
        let mut damaged = bytes.clone();
        damaged[HEADER_LEN as usize + RECORD_HEADER] ^= 1;
        assert!(matches!(parse(&damaged, 0), Err(StoreError::Damaged(_))));
        // The same bytes are a torn first record of a new lap when redb
        // already holds record 2: nothing is lost, nothing refused.
        assert_eq!(seqs(&damaged, 2), Vec::<u64>::new());
    }

    #[test]
    fn a_lap_that_skips_a_sequence_is_refused() {
        let bytes = journal_with(&[&[(1, b"one"), (3, b"333")]]);
        assert!(matches!(parse(&bytes, 0), Err(StoreError::Damaged(_))));
    }
}
