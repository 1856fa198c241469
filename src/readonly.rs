//! A redb storage backend over a file opened for reading only: every write
//! redb makes (recovery after an unclean shutdown, the bookkeeping it
//! commits on close) lands in memory and is dropped with the store, and
//! every lock it asks for is taken shared.
//!
//! This is how reading commands open a store: they change no byte of the
//! file, work on read-only media or a file the process may not write, keep
//! redb's full recovery and a checked open — redb's page-checksum check,
//! or the block checksums beside the store read (never written) through
//! `checksums.rs` — (redb's own `ReadOnlyDatabase` refuses a store that was
//! not closed cleanly and skips the checksum check), and exclude a writer —
//! which takes its locks exclusively — exactly as redb's read-only opens
//! do.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// Overlay granularity: redb's page size, so a page write touches one block.
const BLOCK: u64 = 4096;

#[derive(Debug, Default)]
struct Overlay {
    /// The length redb sees.
    len: u64,
    /// Bytes of the file at or past this offset read as zero unless a block
    /// overlays them: the smallest length redb ever set (or the file's).
    base_len: u64,
    /// Blocks written since opening, by block index.
    blocks: BTreeMap<u64, Box<[u8]>>,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct ReadOnlyFile {
    file: FileBackend,
    overlay: Mutex<Overlay>,
}

fn past_end() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "read past the end of the store",
    )
}

impl ReadOnlyFile {
    /// Wraps `file`, which need only be open for reading.
    pub fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        let file = FileBackend::new(file).map_err(io::Error::other)?;
        Ok(ReadOnlyFile {
            file,
            overlay: Mutex::new(Overlay {
                len,
                base_len: len,
                blocks: BTreeMap::new(),
            }),
        })
    }

    fn overlay(&self) -> MutexGuard<'_, Overlay> {
        // Every critical section leaves the overlay consistent.
        self.overlay.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads `out.len()` bytes at `offset` as they are under the overlay.
    fn read_under(&self, overlay: &Overlay, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        while done < out.len() {
            let at = offset + done as u64;
            let (block, within) = (at / BLOCK, (at % BLOCK) as usize);
            let n = (BLOCK as usize - within).min(out.len() - done);
            let chunk = &mut out[done..done + n];
            if let Some(bytes) = overlay.blocks.get(&block) {
                chunk.copy_from_slice(&bytes[within..within + n]);
            } else {
                let from_file = overlay.base_len.saturating_sub(at).min(n as u64) as usize;
                if from_file > 0 {
                    self.file.read(at, &mut chunk[..from_file])?;
                }
                chunk[from_file..].fill(0);
            }
            done += n;
        }
        Ok(())
    }
}

impl StorageBackend for ReadOnlyFile {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.overlay().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let overlay = self.overlay();
        let end = offset.checked_add(out.len() as u64).ok_or_else(past_end)?;
        if end > overlay.len {
            return Err(past_end());
        }
        self.read_under(&overlay, offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut overlay = self.overlay();
        overlay.base_len = overlay.base_len.min(len);
        overlay.blocks.retain(|block, _| block * BLOCK < len);
        // The bytes past the new end of its last block read as zero when the
        // store grows again.
        if let Some(bytes) = overlay.blocks.get_mut(&(len / BLOCK)) {
            bytes[(len % BLOCK) as usize..].fill(0);
        }
        overlay.len = len;
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut overlay = self.overlay();
        let end = offset.checked_add(data.len() as u64).ok_or_else(past_end)?;
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let (block, within) = (at / BLOCK, (at % BLOCK) as usize);
            let n = (BLOCK as usize - within).min(data.len() - done);
            if !overlay.blocks.contains_key(&block) {
                let mut bytes = vec![0; BLOCK as usize].into_boxed_slice();
                let readable = overlay.len.saturating_sub(block * BLOCK).min(BLOCK) as usize;
                self.read_under(&overlay, block * BLOCK, &mut bytes[..readable])?;
                overlay.blocks.insert(block, bytes);
            }
            let bytes = overlay.blocks.get_mut(&block).expect("inserted above");
            bytes[within..within + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        overlay.len = overlay.len.max(end);
        Ok(())
    }

    fn close(&self) -> Result<(), io::Error> {
        self.file.close()
    }

    // A writer takes these ranges exclusively; a reader of the file takes
    // them shared, so it excludes writers and not other readers.
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The overlay against a plain vector, through writes, shrinks and
    /// growths that straddle blocks.
    #[test]
    fn reads_see_every_write_and_resize_and_the_file_never_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let original: Vec<u8> = (0..3 * BLOCK as usize + 100).map(|i| i as u8).collect();
        std::fs::write(&path, &original).unwrap();
        let backend = ReadOnlyFile::new(File::open(&path).unwrap()).unwrap();

        let model = crate::memory::against_a_vector(&backend, original.clone(), 3, 300, |_| {});

        let mut out = vec![0; model.len()];
        backend.read(0, &mut out).unwrap();
        assert_eq!(out, model);
        assert_eq!(std::fs::read(&path).unwrap(), original);
    }
}
