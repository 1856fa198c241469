//! A redb `StorageBackend` that models a disk: what is durable, what was
//! written since the last sync and would be at the mercy of a power cut, and
//! faults injected at the Nth I/O operation.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use std::io;

use redb::StorageBackend;

/// The sector size a torn write is cut into.
pub const SECTOR: usize = 512;

/// What happens at the Nth I/O operation (writes, `set_len`s and syncs
/// count; reads do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Power is cut at op N: it and every later op fail, nothing more reaches
    /// the disk; what the disk holds is decided by [`Disk::image`].
    PowerCut(u64),
    /// Op N fails once; later ops succeed.
    FailOnce(u64),
    /// Op N and every later op fail.
    FailFrom(u64),
    /// Planted bug: op N reports success and does nothing (a write lost by
    /// a lying disk, a sync that is not one).
    Lose(u64),
}

/// What the disk keeps of the writes that were never synced, at a power cut.
#[derive(Debug, Clone, Copy)]
pub enum Keep {
    /// None of them.
    Nothing,
    /// All of them, in order.
    Everything,
    /// The first half, in order (a disk that writes in order).
    Prefix,
    /// Each write whole or not at all, chosen by the seed (reordering).
    Some(u64),
    /// Each 512-byte sector of each write, chosen by the seed.
    Torn(u64),
}

#[derive(Debug, Clone)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

impl Pending {
    fn apply(&self, bytes: &mut Vec<u8>) {
        match self {
            Pending::Write { offset, data } => {
                let end = *offset as usize + data.len();
                if bytes.len() < end {
                    bytes.resize(end, 0);
                }
                bytes[*offset as usize..end].copy_from_slice(data);
            }
            Pending::SetLen(len) => bytes.resize(*len as usize, 0),
        }
    }
}

#[derive(Default)]
struct State {
    /// What reads see: the OS page cache.
    live: Vec<u8>,
    /// What survives a power cut for certain.
    durable: Vec<u8>,
    /// Writes and resizes since the last sync, in order.
    pending: Vec<Pending>,
    /// I/O operations so far.
    ops: u64,
    fault: Option<Fault>,
    cut: bool,
    /// Planted bug: a sync that does not reach the disk.
    sync_is_a_lie: bool,
    /// How long a sync takes, as a real disk's would.
    sync_delay: std::time::Duration,
    /// Syncs so far.
    syncs: u64,
}

/// A disk shared by the test and the backend redb holds.
#[derive(Clone, Default)]
pub struct Disk(Arc<Mutex<State>>);

impl fmt::Debug for Disk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Disk")
    }
}

impl Disk {
    /// A disk holding `bytes`, all of them durable.
    pub fn with_image(bytes: Vec<u8>) -> Disk {
        let disk = Disk::default();
        {
            let mut state = disk.state();
            state.live = bytes.clone();
            state.durable = bytes;
        }
        disk
    }

    pub fn with_fault(self, fault: Fault) -> Disk {
        self.state().fault = Some(fault);
        self
    }

    /// Planted bug for showing the harness can fail: syncs do nothing.
    pub fn with_lying_sync(self) -> Disk {
        self.state().sync_is_a_lie = true;
        self
    }

    /// Syncs that take `delay`, like a real disk's fsync.
    pub fn with_slow_sync(self, delay: std::time::Duration) -> Disk {
        self.state().sync_delay = delay;
        self
    }

    pub fn syncs(&self) -> u64 {
        self.state().syncs
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a test failure anyway; the state
        // is still the best record of what happened.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn ops(&self) -> u64 {
        self.state().ops
    }

    /// The bytes as the running process sees them.
    pub fn live(&self) -> Vec<u8> {
        self.state().live.clone()
    }

    /// The bytes found after power returns.
    pub fn image(&self, keep: Keep) -> Vec<u8> {
        let state = self.state();
        let mut bytes = state.durable.clone();
        let pending = &state.pending;
        match keep {
            Keep::Nothing => {}
            Keep::Everything => pending.iter().for_each(|p| p.apply(&mut bytes)),
            Keep::Prefix => pending[..pending.len() / 2]
                .iter()
                .for_each(|p| p.apply(&mut bytes)),
            Keep::Some(seed) => {
                let mut rng = fastrand::Rng::with_seed(seed);
                for p in pending {
                    if rng.bool() {
                        p.apply(&mut bytes);
                    }
                }
            }
            Keep::Torn(seed) => {
                let mut rng = fastrand::Rng::with_seed(seed);
                for p in pending {
                    match p {
                        Pending::Write { offset, data } => {
                            for (i, sector) in data.chunks(SECTOR).enumerate() {
                                if rng.bool() {
                                    Pending::Write {
                                        offset: offset + (i * SECTOR) as u64,
                                        data: sector.to_vec(),
                                    }
                                    .apply(&mut bytes);
                                }
                            }
                        }
                        Pending::SetLen(_) => {
                            if rng.bool() {
                                p.apply(&mut bytes);
                            }
                        }
                    }
                }
            }
        }
        bytes
    }

    pub fn backend(&self) -> DiskBackend {
        DiskBackend(self.clone())
    }

    /// Counts an I/O op and decides whether it fails (`Err`), is silently
    /// lost (`Ok(false)`) or happens (`Ok(true)`).
    fn op(&self, state: &mut State) -> Result<bool, io::Error> {
        state.ops += 1;
        let n = state.ops;
        if state.fault == Some(Fault::Lose(n)) {
            return Ok(false);
        }
        let fails = state.cut
            || match state.fault {
                Some(Fault::PowerCut(at)) if n >= at => {
                    state.cut = true;
                    true
                }
                Some(Fault::FailOnce(at)) => n == at,
                Some(Fault::FailFrom(at)) => n >= at,
                _ => false,
            };
        if fails {
            Err(io::Error::other(format!("injected fault at I/O op {n}")))
        } else {
            Ok(true)
        }
    }
}

/// The backend handed to redb.
#[derive(Debug)]
pub struct DiskBackend(Disk);

impl StorageBackend for DiskBackend {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.0.state().live.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let state = self.0.state();
        if state.cut {
            return Err(io::Error::other("power is off"));
        }
        let start = offset as usize;
        let bytes = state
            .live
            .get(start..start + out.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        out.copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut state = self.0.state();
        if !self.0.op(&mut state)? {
            return Ok(());
        }
        let change = Pending::SetLen(len);
        change.apply(&mut state.live);
        state.pending.push(change);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        let delay = self.0.state().sync_delay;
        std::thread::sleep(delay);
        let mut state = self.0.state();
        state.syncs += 1;
        if self.0.op(&mut state)? && !state.sync_is_a_lie {
            let pending = std::mem::take(&mut state.pending);
            let State { durable, .. } = &mut *state;
            pending.iter().for_each(|p| p.apply(durable));
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut state = self.0.state();
        if !self.0.op(&mut state)? {
            return Ok(());
        }
        let change = Pending::Write {
            offset,
            data: data.to_vec(),
        };
        change.apply(&mut state.live);
        state.pending.push(change);
        Ok(())
    }
}
