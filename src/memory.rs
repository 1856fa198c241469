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
