//! A redb `StorageBackend` that models a disk: what is durable, what was
//! written since the last sync and would be at the mercy of a power cut, and
//! faults injected at the Nth I/O operation. The disk holds three files, the
//! store, its journal and its block checksums, counted as one sequence of
//! I/O operations: a power cut hits them all at once.

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

/// The files of a store, as bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Image {
    /// The store file.
    pub store: Vec<u8>,
    /// Its journal.
    pub journal: Vec<u8>,
    /// Its block checksums.
    pub checksums: Vec<u8>,
}

impl From<Vec<u8>> for Image {
    /// A store file alone.
    fn from(store: Vec<u8>) -> Image {
        Image {
            store,
            ..Image::default()
        }
    }
}

#[derive(Default, Clone)]
struct File {
    /// What reads see: the OS page cache.
    live: Vec<u8>,
    /// What survives a power cut for certain.
    durable: Vec<u8>,
    /// Writes and resizes since the last sync, in order.
    pending: Vec<Pending>,
}

impl File {
    fn with(bytes: Vec<u8>) -> File {
        File {
            live: bytes.clone(),
            durable: bytes,
            pending: Vec::new(),
        }
    }

    /// The bytes found after power returns.
    fn image(&self, keep: Keep) -> Vec<u8> {
        let mut bytes = self.durable.clone();
        let pending = &self.pending;
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
}

#[derive(Default)]
struct State {
    /// The store, its journal, its checksums.
    files: [File; 3],
    /// Bytes read from each file.
    read: [u64; 3],
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
    /// When set, syncs of the journal wait at this gate.
    gate: Option<Arc<Gate>>,
}

/// See [`Gate::opened_on_drop`].
pub struct OpenOnDrop<'a>(&'a Gate);

impl Drop for OpenOnDrop<'_> {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// Holds the journal's syncs until opened, so a test can look at the store
/// while a commit is written but not yet durable.
#[derive(Default)]
pub struct Gate {
    /// (open, syncs waiting)
    state: Mutex<(bool, usize)>,
    moved: std::sync::Condvar,
}

impl Gate {
    /// Waits (at most 10 s) until a sync is held at the gate.
    pub fn wait_for_a_sync(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut state = self.state.lock().unwrap();
        while state.1 == 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(!left.is_zero(), "no sync reached the gate in 10 s");
            state = self.moved.wait_timeout(state, left).unwrap().0;
        }
    }

    /// Lets every sync through, now and from now on.
    pub fn open(&self) {
        self.state.lock().unwrap().0 = true;
        self.moved.notify_all();
    }

    /// Opens the gate when dropped: create one inside a thread scope, so
    /// that a failing assertion there lets the held sync finish instead of
    /// leaving the scope waiting for it for ever.
    pub fn opened_on_drop(&self) -> OpenOnDrop<'_> {
        OpenOnDrop(self)
    }

    fn pass(&self) {
        let mut state = self.state.lock().unwrap();
        state.1 += 1;
        self.moved.notify_all();
        while !state.0 {
            state = self.moved.wait(state).unwrap();
        }
        state.1 -= 1;
    }
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
    /// A disk holding `image`, all of it durable.
    pub fn with_image(image: impl Into<Image>) -> Disk {
        let image = image.into();
        let disk = Disk::default();
        disk.state().files = [
            File::with(image.store),
            File::with(image.journal),
            File::with(image.checksums),
        ];
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

    /// From now on, syncs of the journal wait at the returned gate.
    pub fn hold_journal_syncs(&self) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        self.state().gate = Some(gate.clone());
        gate
    }

    /// Bytes read so far from the store file, its journal and its
    /// checksums.
    pub fn bytes_read(&self) -> [u64; 3] {
        self.state().read
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
    pub fn live(&self) -> Image {
        let state = self.state();
        Image {
            store: state.files[0].live.clone(),
            journal: state.files[1].live.clone(),
            checksums: state.files[2].live.clone(),
        }
    }

    /// The bytes found after power returns: each file keeps what `keep`
    /// says of its unsynced writes (each with a seed of its own).
    pub fn image(&self, keep: Keep) -> Image {
        let state = self.state();
        let keep_of = |salt: u64| match keep {
            Keep::Some(seed) => Keep::Some(seed ^ salt),
            Keep::Torn(seed) => Keep::Torn(seed ^ salt),
            other => other,
        };
        Image {
            store: state.files[0].image(keep),
            journal: state.files[1].image(keep_of(0x5eed)),
            checksums: state.files[2].image(keep_of(0xc5c5)),
        }
    }

    /// Flips bits of the store file's byte at `offset`, as damage on the
    /// disk would, behind the back of whoever has it open.
    pub fn damage_store(&self, offset: usize, xor: u8) {
        let mut state = self.state();
        let file = &mut state.files[0];
        file.live[offset] ^= xor;
        file.durable[offset] ^= xor;
    }

    /// The store file, for redb.
    pub fn backend(&self) -> DiskBackend {
        DiskBackend(self.clone(), 0)
    }

    /// The journal file.
    pub fn journal(&self) -> DiskBackend {
        DiskBackend(self.clone(), 1)
    }

    /// The checksum file.
    pub fn checksums(&self) -> DiskBackend {
        DiskBackend(self.clone(), 2)
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

/// One file of the disk, as a backend.
#[derive(Debug)]
pub struct DiskBackend(Disk, usize);

impl StorageBackend for DiskBackend {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.0.state().files[self.1].live.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let mut state = self.0.state();
        if state.cut {
            return Err(io::Error::other("power is off"));
        }
        state.read[self.1] += out.len() as u64;
        let start = offset as usize;
        let bytes = state.files[self.1]
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
        let file = &mut state.files[self.1];
        change.apply(&mut file.live);
        file.pending.push(change);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        let (delay, gate) = {
            let state = self.0.state();
            (state.sync_delay, state.gate.clone())
        };
        std::thread::sleep(delay);
        if let (1, Some(gate)) = (self.1, gate) {
            gate.pass();
        }
        let mut state = self.0.state();
        state.syncs += 1;
        if self.0.op(&mut state)? && !state.sync_is_a_lie {
            let file = &mut state.files[self.1];
            let pending = std::mem::take(&mut file.pending);
            pending.iter().for_each(|p| p.apply(&mut file.durable));
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
        let file = &mut state.files[self.1];
        change.apply(&mut file.live);
        file.pending.push(change);
        Ok(())
    }
}
