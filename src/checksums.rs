//! Block checksums kept beside the store, so that opening a store closed
//! cleanly reads a few kilobytes instead of checking every page.
//!
//! redb checks its pages' checksums only when asked to check the whole file
//! on open, and its ordinary reads trust the bytes: without the check a
//! damaged index page can answer a lookup wrongly (the damage harness found
//! 62 wrong answers in 2,000 damaged copies opened unchecked). The check
//! reads the whole file — 1.9 s cold for a million events.
//!
//! [`Checked`] sits between redb and the store file and keeps a CRC-32 of
//! every 4 KiB block. Every block redb reads is checked against it, so a
//! block changed behind the store's back is an error when it is read,
//! never data. The sums live in memory while the store is open, and in a
//! side file (`<store>-checksums`) between opens:
//!
//! - before the first byte of the store changes, the side file's state byte
//!   is set to "in use" and synced: a process that dies leaves sums that
//!   are not trusted, whatever it managed to write;
//! - at a clean close, once the store is synced, the sums are written with
//!   the state still "in use" and synced, then the state byte alone (one
//!   byte cannot tear) is set to "whole" and synced;
//! - opening trusts the side file when it is whole, its own checksum holds,
//!   it was written for a store of this length and its sum of the first
//!   block matches the store's first block (redb rewrites that block at
//!   every commit, so a store written since by anything that does not keep
//!   the sums is noticed). Then redb's whole-file check is skipped: every
//!   block it reads is checked anyway. Otherwise redb checks the whole file
//!   as before, the sums are learned a 1 MiB chunk at a time as it first
//!   reads each part of the file, and only once that check has passed may
//!   they be written back at close: sums learned from damaged bytes must
//!   never vouch for them. Sums are held for the blocks touched, not for
//!   the file's length, so a file with a huge sparse tail costs what redb
//!   reads of it.
//!
//! The side file is a cache: without it (a store copied alone, a read-only
//! directory) a store opens exactly as before, with the whole-file check.
//!
//! Side file: `[magic 16][state u8][7 zero bytes][store length u64 LE]`
//! `[crc32 LE][4 zero bytes]` then one CRC-32 (LE) per 4 KiB block of the
//! store, the last block possibly shorter; the checksum covers the header
//! with the state set to "whole", then the sums.

use std::collections::BTreeMap;
use std::io;
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use redb::{BackendError, StorageBackend};

use crate::error::StoreError;

/// The side file's magic number; its last byte is the format.
const MAGIC: [u8; 16] = *b"spkey-checksums\x01";
/// Where the state byte is.
const STATE_AT: u64 = 16;
/// The state of sums written whole at a clean close.
const WHOLE: u8 = 1;
/// The state of sums that the store may have outrun.
const IN_USE: u8 = 0;
/// Header: magic, state, store length, checksum.
const HEADER: usize = 40;
/// Bytes per checksum: redb's page size, so a page is one block.
const BLOCK: u64 = 4096;
/// Blocks read at a time when sums are learned from the file: a first pass
/// over a store reads it in 1 MiB reads rather than page by page.
const CHUNK_BLOCKS: u64 = 256;
/// At a clean close, blocks whose sums were never learned (neither read nor
/// written since an open without trusted sums: free pages) are read to
/// learn them, up to as many as are known plus this many (64 MiB); a file
/// mostly made of blocks nothing touched (a sparse file with a store's
/// header) keeps no sums rather than be read whole.
const SPARE_BLOCKS: usize = 16_384;

/// The storage backend redb is given: the store file, every block read
/// checked. Cloning shares it; [`vouch`](Self::vouch) is called through
/// the clone the store keeps.
#[derive(Debug, Clone)]
pub(crate) struct Checked(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    store: Box<dyn StorageBackend>,
    side: Box<dyn StorageBackend>,
    /// Whether the side file may be written (not for read-only opens).
    writable: bool,
    /// Whether the side file was whole and matched the store when opened.
    trusted: bool,
    table: RwLock<Table>,
}

#[derive(Debug)]
struct Table {
    /// The CRC-32 of each block of the store, where known: every block
    /// when a trusted side file gave them; otherwise those written, and
    /// those read (with the rest of their chunk) since the open. A map, so
    /// that memory follows the blocks touched, not the file's length.
    sums: BTreeMap<u64, u32>,
    /// The store's length.
    len: u64,
    /// The side file no longer claims to be whole (or may not be written).
    marked: bool,
    /// The sums describe bytes that were checked: by a whole side file, by
    /// redb's whole-file check, or because this store wrote all of them.
    vouched: bool,
    /// A write, resize or sync of the store failed, so what the disk holds
    /// is not known: the sums are not written back.
    failed: bool,
}

fn checksum_mismatch(block: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "block {block} of the store (bytes {}..{}) fails its checksum: the file was \
             changed or damaged after the store wrote it",
            block * BLOCK,
            (block + 1) * BLOCK
        ),
    )
}

fn past_end() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "read past the end of the store",
    )
}

/// The CRC-32 of a block of zeros: what a block the store grew by holds.
fn zero_block_sum() -> u32 {
    static SUM: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *SUM.get_or_init(|| crc32fast::hash(&[0; BLOCK as usize]))
}

/// Checks `bytes`, read from block `first` on, against the sums it knows,
/// and returns the sums of the blocks it did not know.
fn check(table: &Table, first: u64, bytes: &[u8]) -> io::Result<Vec<(u64, u32)>> {
    let mut learned = Vec::new();
    for (i, block) in bytes.chunks(BLOCK as usize).enumerate() {
        let n = first + i as u64;
        let sum = crc32fast::hash(block);
        match table.sums.get(&n) {
            Some(known) if *known != sum => return Err(checksum_mismatch(n)),
            Some(_) => {}
            None => learned.push((n, sum)),
        }
    }
    Ok(learned)
}

/// Blocks in a store of `len` bytes.
fn blocks(len: u64) -> usize {
    len.div_ceil(BLOCK) as usize
}

/// The header and sums of a side file describing a store of `len` bytes.
fn side_bytes(len: u64, sums: &BTreeMap<u64, u32>) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER + 4 * sums.len());
    bytes.extend_from_slice(&MAGIC);
    bytes.push(WHOLE);
    bytes.extend_from_slice(&[0; 7]);
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&[0; 8]);
    for sum in sums.values() {
        bytes.extend_from_slice(&sum.to_le_bytes());
    }
    let crc = side_checksum(&bytes);
    bytes[32..36].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// The checksum of a side file's bytes: the header as written whole
/// (checksum field zero), then the sums.
fn side_checksum(bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[..STATE_AT as usize]);
    hasher.update(&[WHOLE]);
    hasher.update(&bytes[STATE_AT as usize + 1..32]);
    hasher.update(&[0; 4]);
    hasher.update(&bytes[36..]);
    hasher.finalize()
}

impl Checked {
    /// Wraps `store`, with `side` holding (or to hold) its sums; `writable`
    /// is false for read-only opens, which never write the side file.
    /// [`trusted`](Self::trusted) says whether the side file vouched for the
    /// store; when it did not, sums are learned as blocks are read (redb's
    /// whole-file check then reads them all), a chunk at a time.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotAStore`] when the side file is not a checksum file
    /// (it is left untouched); [`StoreError::Storage`] when either file
    /// cannot be read.
    pub fn open(
        store: Box<dyn StorageBackend>,
        side: Box<dyn StorageBackend>,
        writable: bool,
    ) -> Result<Checked, StoreError> {
        let len = store.len().map_err(StoreError::io)?;
        let trusted_sums = read_side(&*side, &*store, len)?;
        let trusted = trusted_sums.is_some();
        let sums = trusted_sums.unwrap_or_default();
        Ok(Checked(Arc::new(Inner {
            store,
            side,
            writable,
            trusted,
            table: RwLock::new(Table {
                sums,
                len,
                marked: !writable,
                vouched: trusted,
                failed: false,
            }),
        })))
    }

    /// Whether the side file vouched for the store as it was opened, so
    /// redb's whole-file check is not needed.
    pub fn trusted(&self) -> bool {
        self.0.trusted
    }

    /// Reads every block of the store as the disk holds it (not redb's
    /// cache) and returns those that fail their sums: a scrub, for
    /// `verify`. Writers wait only while a chunk of 1 MiB is read.
    ///
    /// # Errors
    ///
    /// The store's read errors.
    pub fn scrub(&self) -> io::Result<Vec<u64>> {
        let mut damaged = Vec::new();
        let mut buffer = vec![0; (CHUNK_BLOCKS * BLOCK) as usize];
        let mut first = 0;
        loop {
            let table = self.0.table();
            let start = first * BLOCK;
            if start >= table.len {
                return Ok(damaged);
            }
            let n = (table.len - start).min(CHUNK_BLOCKS * BLOCK) as usize;
            self.0.store.read(start, &mut buffer[..n])?;
            for (i, block) in buffer[..n].chunks(BLOCK as usize).enumerate() {
                let at = first + i as u64;
                // A block with no known sum was never read nor written
                // since an open that could not trust the sums: free space.
                if table
                    .sums
                    .get(&at)
                    .is_some_and(|sum| *sum != crc32fast::hash(block))
                {
                    damaged.push(at);
                }
            }
            first += CHUNK_BLOCKS;
        }
    }

    /// Declares the store's bytes checked (redb's whole-file check passed,
    /// or the store was created here), so the sums may be written back at a
    /// clean close.
    pub fn vouch(&self) {
        self.0.table_mut().vouched = true;
    }
}

/// The sums of a side file that vouches for `store` of `len` bytes; `None`
/// when it does not (missing, in use, damaged, stale).
///
/// # Errors
///
/// `NotAStore` for a file that is not a checksum file.
fn read_side(
    side: &dyn StorageBackend,
    store: &dyn StorageBackend,
    len: u64,
) -> Result<Option<BTreeMap<u64, u32>>, StoreError> {
    let size = side.len().map_err(StoreError::io)?;
    // The header first: a foreign file is refused having read 40 bytes of
    // it, however big it is.
    let mut head = vec![0; size.min(HEADER as u64) as usize];
    side.read(0, &mut head).map_err(StoreError::io)?;
    // No bytes, or the zeros of a header whose write was cut short.
    if head.iter().all(|b| *b == 0) && size <= HEADER as u64 {
        return Ok(None);
    }
    if head.len() < MAGIC.len() || head[..MAGIC.len()] != MAGIC {
        return Err(StoreError::NotAStore(
            "the store's checksum file (`-checksums` beside it) is not a checksum file: \
             left untouched; move it away to open the store, which needs only its own \
             file and journal"
                .into(),
        ));
    }
    let expected = HEADER as u64 + 4 * blocks(len) as u64;
    if head.len() < HEADER
        || head[STATE_AT as usize] != WHOLE
        || head[24..32] != len.to_le_bytes()
        || size != expected
    {
        return Ok(None);
    }
    let mut bytes = vec![0; expected as usize];
    side.read(0, &mut bytes).map_err(StoreError::io)?;
    if side_checksum(&bytes) != u32::from_le_bytes(bytes[32..36].try_into().expect("4 bytes")) {
        return Ok(None);
    }
    let sums: BTreeMap<u64, u32> = bytes[HEADER..]
        .chunks_exact(4)
        .map(|sum| u32::from_le_bytes(sum.try_into().expect("4 bytes")))
        .enumerate()
        .map(|(n, sum)| (n as u64, sum))
        .collect();
    if let Some(first) = sums.get(&0) {
        let mut block = vec![0; len.min(BLOCK) as usize];
        store.read(0, &mut block).map_err(StoreError::io)?;
        if crc32fast::hash(&block) != *first {
            return Ok(None);
        }
    }
    Ok(Some(sums))
}

impl Inner {
    fn table(&self) -> RwLockReadGuard<'_, Table> {
        // Every critical section leaves the table consistent or `failed`.
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn table_mut(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Before the store's first change: the side file stops claiming to be
    /// whole, durably.
    fn mark(&self, table: &mut Table) -> io::Result<()> {
        if table.marked {
            return Ok(());
        }
        let mut head = MAGIC.to_vec();
        head.push(IN_USE);
        self.side.write(0, &head)?;
        self.side.sync_data()?;
        table.marked = true;
        Ok(())
    }

    /// Recomputes the sum of `block` from the store.
    fn resum(&self, table: &mut Table, block: u64) -> io::Result<()> {
        let start = block * BLOCK;
        let mut bytes = vec![0; (table.len - start).min(BLOCK) as usize];
        self.store.read(start, &mut bytes)?;
        table.sums.insert(block, crc32fast::hash(&bytes));
        Ok(())
    }

    /// Reads the blocks of `chunk` whose sums are not known and learns
    /// them.
    fn learn_chunk(&self, table: &mut Table, chunk: u64) -> io::Result<()> {
        let start = chunk * CHUNK_BLOCKS * BLOCK;
        let stop = ((chunk + 1) * CHUNK_BLOCKS * BLOCK).min(table.len);
        let mut bytes = vec![0; (stop - start) as usize];
        self.store.read(start, &mut bytes)?;
        let learned = check(table, chunk * CHUNK_BLOCKS, &bytes)?;
        table.sums.extend(learned);
        Ok(())
    }

    /// Makes the table describe the store, now `len` bytes long, whose new
    /// bytes are zeros.
    fn resize(&self, table: &mut Table, len: u64) -> io::Result<()> {
        let old = table.len;
        if old == len {
            return Ok(());
        }
        table.len = len;
        let (known, new) = (blocks(old.min(len)) as u64, blocks(len) as u64);
        table.sums.split_off(&known);
        table
            .sums
            .extend((known..new).map(|n| (n, zero_block_sum())));
        // The blocks cut at the old end and at the new one hold other bytes
        // than before (or than zeros): read their sums from the store.
        for edge in [old.min(len), len] {
            if !edge.is_multiple_of(BLOCK) {
                self.resum(table, edge / BLOCK)?;
            }
        }
        Ok(())
    }

    /// Writes `data` at `offset` and sums the blocks it touched.
    fn write(&self, table: &mut Table, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset.checked_add(data.len() as u64).ok_or_else(past_end)?;
        self.store.write(offset, data)?;
        if end > table.len {
            self.resize(table, end)?;
        }
        let mut block = offset / BLOCK;
        while block * BLOCK < end {
            let (start, stop) = (block * BLOCK, ((block + 1) * BLOCK).min(table.len));
            if start >= offset && stop <= end {
                let bytes = &data[(start - offset) as usize..(stop - offset) as usize];
                table.sums.insert(block, crc32fast::hash(bytes));
            } else {
                // Part of the block is outside `data`.
                self.resum(table, block)?;
            }
            block += 1;
        }
        Ok(())
    }

    /// Writes the sums back, whole, at a clean close.
    fn save(&self) -> io::Result<()> {
        let mut table = self.table_mut();
        // Nothing to save: the side file may not be written, or does not
        // vouch for what the disk holds; or it is whole and nothing changed.
        if !self.writable || !table.vouched || table.failed || (self.trusted && !table.marked) {
            return Ok(());
        }
        // The blocks nothing touched since an open without trusted sums.
        let total = blocks(table.len) as u64;
        let known = table.sums.len();
        if total as usize > 2 * known + SPARE_BLOCKS {
            return Ok(());
        }
        for chunk in 0..total.div_ceil(CHUNK_BLOCKS) {
            let blocks = chunk * CHUNK_BLOCKS..((chunk + 1) * CHUNK_BLOCKS).min(total);
            if table.sums.range(blocks.clone()).count() < blocks.count() {
                self.learn_chunk(&mut table, chunk)?;
            }
        }
        self.mark(&mut table)?;
        self.store.sync_data()?;
        let mut bytes = side_bytes(table.len, &table.sums);
        bytes[STATE_AT as usize] = IN_USE;
        self.side.set_len(bytes.len() as u64)?;
        self.side.write(0, &bytes)?;
        self.side.sync_data()?;
        self.side.write(STATE_AT, &[WHOLE])?;
        self.side.sync_data()
    }
}

impl StorageBackend for Checked {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.0.table().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let table = self.0.table();
        let end = offset.checked_add(out.len() as u64).ok_or_else(past_end)?;
        if end > table.len {
            return Err(past_end());
        }
        if out.is_empty() {
            return Ok(());
        }
        let (first, last) = (offset / BLOCK, (end - 1) / BLOCK);
        let known = table.sums.range(first..=last).count() as u64 == last - first + 1;
        if known && offset.is_multiple_of(BLOCK) && (end.is_multiple_of(BLOCK) || end == table.len)
        {
            self.0.store.read(offset, out)?;
            check(&table, first, out)?;
            return Ok(());
        }
        // redb reads whole pages; anything else (its header) is read as the
        // whole blocks it falls in, so that every byte handed over is
        // checked. Blocks whose sums are not known are read with the rest
        // of their chunk, and the chunk's sums learned.
        let align = if known { 1 } else { CHUNK_BLOCKS };
        let start = first / align * align * BLOCK;
        let stop = ((last / align + 1) * align * BLOCK).min(table.len);
        let mut covering = vec![0; (stop - start) as usize];
        self.0.store.read(start, &mut covering)?;
        let learned = check(&table, start / BLOCK, &covering)?;
        let from = (offset - start) as usize;
        out.copy_from_slice(&covering[from..from + out.len()]);
        drop(table);
        if !learned.is_empty() {
            let mut table = self.0.table_mut();
            let blocks = blocks(table.len) as u64;
            // A write since the read above made its own sums.
            for (n, sum) in learned {
                if n < blocks {
                    table.sums.entry(n).or_insert(sum);
                }
            }
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut table = self.0.table_mut();
        self.0.mark(&mut table)?;
        let result = self
            .0
            .store
            .set_len(len)
            .and_then(|()| self.0.resize(&mut table, len));
        table.failed |= result.is_err();
        result
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        let result = self.0.store.sync_data();
        // After a failed sync the kernel may have dropped the pages it
        // could not write: what the disk holds is no longer known.
        if result.is_err() {
            self.0.table_mut().failed = true;
        }
        result
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut table = self.0.table_mut();
        self.0.mark(&mut table)?;
        let result = self.0.write(&mut table, offset, data);
        table.failed |= result.is_err();
        result
    }

    fn close(&self) -> Result<(), io::Error> {
        let saved = self.0.save();
        let closed = self.0.store.close();
        saved.and(closed)
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.store.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.0.store.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.store.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.store.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.store.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.store.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryBackend;

    /// The sums of the store's bytes as they are.
    fn compute(store: &dyn StorageBackend, len: u64) -> io::Result<Vec<u32>> {
        let mut sums = Vec::with_capacity(blocks(len));
        let mut buffer = vec![0; (CHUNK_BLOCKS * BLOCK) as usize];
        let mut at = 0;
        while at < len {
            let n = (len - at).min(CHUNK_BLOCKS * BLOCK) as usize;
            store.read(at, &mut buffer[..n])?;
            sums.extend(buffer[..n].chunks(BLOCK as usize).map(crc32fast::hash));
            at += n as u64;
        }
        Ok(sums)
    }

    fn checked(store: &MemoryBackend, side: &MemoryBackend) -> Checked {
        Checked::open(Box::new(store.clone()), Box::new(side.clone()), true).unwrap()
    }

    /// Writes, shrinks and growths that straddle blocks, against a plain
    /// vector: reads see every change, the sums always equal those of the
    /// bytes, and a clean close leaves sums the next open trusts.
    #[test]
    fn the_sums_follow_every_write_and_resize_and_vouch_after_a_clean_close() {
        let (store, side) = (MemoryBackend::new(), MemoryBackend::new());
        let backend = checked(&store, &side);
        assert!(!backend.trusted(), "no checksums yet");
        backend.vouch();
        let model = crate::memory::against_a_vector(&backend, Vec::new(), 7, 400, |model| {
            let table = backend.0.table();
            assert_eq!(table.len, model.len() as u64);
            let sums: Vec<u32> = table.sums.values().copied().collect();
            assert_eq!(sums, compute(&store, table.len).unwrap());
        });
        backend.close().unwrap();

        let reopened = checked(&store, &side);
        assert!(reopened.trusted(), "a clean close's sums were not trusted");
        let mut out = vec![0; model.len()];
        reopened.read(0, &mut out).unwrap();
        assert_eq!(out, model);
    }

    #[test]
    fn a_changed_byte_fails_the_read_of_its_block_only() {
        let (store, side) = (MemoryBackend::new(), MemoryBackend::new());
        let backend = checked(&store, &side);
        backend.vouch();
        backend.write(0, &vec![7; 3 * BLOCK as usize]).unwrap();
        backend.close().unwrap();
        // Behind the store's back.
        store.write(BLOCK + 5, &[8]).unwrap();

        let reopened = checked(&store, &side);
        let mut out = vec![0; 10];
        let error = reopened.read(BLOCK + 1, &mut out).unwrap_err();

        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("block 1 "), "{error}");
        reopened.read(0, &mut out).unwrap();
        reopened.read(2 * BLOCK, &mut out).unwrap();
    }

    /// Unvouched sums (computed from a file nothing checked) are never
    /// written back.
    #[test]
    fn sums_nobody_vouched_for_are_not_written_back() {
        let (store, side) = (MemoryBackend::new(), MemoryBackend::new());
        let backend = checked(&store, &side);
        backend.write(0, &[1; 100]).unwrap();
        backend.close().unwrap();
        assert!(!checked(&store, &side).trusted());
    }
}
