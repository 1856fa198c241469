//! A store held in memory whose bytes can be taken out and put back: for
//! snapshots (a browser saving its store to IndexedDB, a download, a file)
//! and for restoring one.

use std::io;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use redb::StorageBackend;

/// A redb storage backend over a byte vector. Clones share the bytes, so a
/// clone kept aside can take a [`snapshot`](Self::snapshot) of the store
/// that owns the other.
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend(Arc<RwLock<Vec<u8>>>);

impl MemoryBackend {
    /// An empty backend: a new store.
    pub fn new() -> Self {
        MemoryBackend::default()
    }

    /// A backend holding `bytes`, as a [`snapshot`](Self::snapshot) returned
    /// them. Opening a store on it recovers it as after a crash, so a
    /// snapshot taken between two commands restores every command before it.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        MemoryBackend(Arc::new(RwLock::new(bytes)))
    }

    /// A copy of the bytes. Between two calls on the store that owns this
    /// backend, every acknowledged command is in them.
    pub fn snapshot(&self) -> Vec<u8> {
        self.read().clone()
    }

    // A panic while the lock is held leaves bytes that are still the best
    // record there is; poisoning would only turn them into a second failure.
    fn read(&self) -> RwLockReadGuard<'_, Vec<u8>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, Vec<u8>> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

fn out_of_range() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "read past the end of the store",
    )
}

impl StorageBackend for MemoryBackend {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.read().len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let bytes = self.read();
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        let end = start.checked_add(out.len()).ok_or_else(out_of_range)?;
        out.copy_from_slice(bytes.get(start..end).ok_or_else(out_of_range)?);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let len = usize::try_from(len).map_err(|_| io::Error::other("length exceeds memory"))?;
        self.write_lock().resize(len, 0);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut bytes = self.write_lock();
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        let end = start.checked_add(data.len()).ok_or_else(out_of_range)?;
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        bytes[start..end].copy_from_slice(data);
        Ok(())
    }
}

/// Drives `backend` through `ops` random writes, resizes and reads that
/// straddle its 4 KiB blocks, against a plain vector holding `bytes` at
/// first (the backend's content): every read must return what the vector
/// holds. `after_each` sees the vector after each op. Returns the vector.
#[cfg(test)]
pub(crate) fn against_a_vector(
    backend: &dyn StorageBackend,
    bytes: Vec<u8>,
    seed: u64,
    ops: usize,
    mut after_each: impl FnMut(&[u8]),
) -> Vec<u8> {
    const BLOCK: usize = 4096;
    let mut model = bytes;
    let mut rng = fastrand::Rng::with_seed(seed);
    for _ in 0..ops {
        match rng.u8(0..3) {
            0 => {
                let offset = rng.usize(0..model.len() + 10);
                let data: Vec<u8> = (0..rng.usize(1..9000)).map(|_| rng.u8(..)).collect();
                backend.write(offset as u64, &data).unwrap();
                if model.len() < offset + data.len() {
                    model.resize(offset + data.len(), 0);
                }
                model[offset..offset + data.len()].copy_from_slice(&data);
            }
            1 => {
                let len = rng.usize(0..6 * BLOCK);
                backend.set_len(len as u64).unwrap();
                model.resize(len, 0);
            }
            _ => {
                let from = rng.usize(0..=model.len());
                let to = rng.usize(from..=model.len());
                let mut out = vec![0; to - from];
                backend.read(from as u64, &mut out).unwrap();
                assert_eq!(out, model[from..to]);
            }
        }
        after_each(&model);
    }
    model
}
