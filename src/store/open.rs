//! Opening a store: the builder, atomic creation at a path, read-only
//! opens, what is refused, and a new store's tables.

use super::*;

/// Settings for opening a [`Store`]. Start from [`Store::builder`].
#[must_use]
pub struct StoreBuilder {
    pub(super) clock: Option<Arc<dyn Clock>>,
    pub(super) durable: bool,
    pub(super) check_on_open: bool,
    pub(super) cache_bytes: usize,
    /// The platform's own settings (`native.rs`: journal, checksums).
    #[allow(dead_code, reason = "wasm.rs has no settings to read")]
    pub(super) platform: platform::Settings,
}

impl Default for StoreBuilder {
    fn default() -> Self {
        StoreBuilder {
            clock: None,
            durable: true,
            check_on_open: true,
            cache_bytes: DEFAULT_CACHE_BYTES,
            platform: platform::Settings::default(),
        }
    }
}

impl StoreBuilder {
    /// The clock that stamps recorded events. Defaults to the system clock;
    /// required on `wasm32-unknown-unknown`, which has none.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Whether each commit waits for the disk (`true`, the default). With
    /// `false` a crash may lose the latest acknowledged commands (never
    /// corrupt the file): for imports and tests, not for user data.
    pub fn durable(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    /// Whether a damaged file is refused rather than read (`true`, the
    /// default). redb does not check page checksums on ordinary reads, so
    /// without this a damaged index page could answer a lookup wrongly.
    /// With it, opening verifies the checksum of every page of the file,
    /// which reads all of it — unless the store keeps block checksums
    /// beside it (native [`open`](Self::open)s do) and was closed cleanly:
    /// then every block is checked as it is read instead, and opening
    /// reads a few kilobytes. Turning it off skips the whole-file check
    /// where it would run; blocks are still checked against checksums
    /// that vouch for the file.
    pub fn check_on_open(mut self, check: bool) -> Self {
        self.check_on_open = check;
        self
    }

    /// redb's page cache size in bytes (default [`DEFAULT_CACHE_BYTES`]).
    pub fn cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Opens the store in the file at `path`, creating it when missing.
    ///
    /// A new store is created whole or not at all: it is built and synced
    /// under a temporary name in the same directory, then linked into place
    /// only if nothing is there yet, and the directory is synced. So any file
    /// at `path` is a complete store or not a store, whatever crashes, and
    /// processes racing to create the same path end up on one store.
    ///
    /// A durable store keeps a journal beside it, at `path` with `-journal`
    /// appended (as SQLite does): each command is acknowledged once its
    /// changes are appended there and synced, one sequential write; redb
    /// makes them durable in its own file at checkpoints, every 1,024
    /// commits (or 8 MiB of journal, or 8,192 changed rows) and on close,
    /// which also cuts the journal back to its 32-byte header. Opening
    /// replays what the journal holds past redb's state. A store copied while open needs its journal beside it; after
    /// [`Store::close`] the store file alone is complete.
    ///
    /// # Errors
    ///
    /// [`StoreError::Locked`] when another handle has the store open (after
    /// waiting up to 200 ms for locks held only for a moment, as a child
    /// process holds them between its start and its `exec`);
    /// [`StoreError::NotAStore`] when `path` is not a regular file or does
    /// not hold a store (it is left untouched);
    /// [`StoreError::UnsupportedFormat`] for a store from a newer version;
    /// [`StoreError::Storage`] / [`StoreError::Damaged`] when the file cannot
    /// be read or written, or fails its checksum check; `NotAStore` too
    /// when the journal beside it is not a journal or is another store's,
    /// and `Damaged` when it holds a damaged record before a whole one.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref();
        let store = patiently(|| self.open_once(path))?;
        // An erasure whose rewrite a crash cut short: closing does it.
        if store.scrubs() && store.read(log::scrub_due)? {
            store.close()?;
            return patiently(|| self.open_once(path));
        }
        Ok(store)
    }

    pub(super) fn open_once(&self, path: &Path) -> Result<Store, StoreError> {
        contain(|| {
            let existing = existing_store_file(path)?;
            // After the check above: a path holding something else gets no
            // files beside it.
            let side = self.side(path)?;
            let store = match existing {
                Some(_) => {
                    let file = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(path)
                        .map_err(StoreError::io)?;
                    self.open_file(file, &side)?
                }
                None => self.create_new(path, &side)?,
            };
            self.attach(store, path, side)
        })
    }

    /// Opens the existing store at `path` for reading only: no byte of the
    /// file changes, so it works on read-only media and on a file this
    /// process may not write. A store that was not closed cleanly is
    /// recovered in memory. Writing through the store fails with
    /// [`StoreError::ReadOnly`]. Another process may read it at the same
    /// time, but not write it (redb's locks).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open), and [`StoreError::NotAStore`] when there is
    /// no file at `path`.
    pub fn open_read_only(self, path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref();
        patiently(|| self.open_read_only_once(path))
    }

    pub(super) fn open_read_only_once(&self, path: &Path) -> Result<Store, StoreError> {
        contain(|| {
            let Some(file) = existing_store_file(path)? else {
                return Err(StoreError::NotAStore(format!(
                    "{}: no such file",
                    path.display()
                )));
            };
            let backend = crate::readonly::ReadOnlyFile::new(file).map_err(StoreError::io)?;
            self.open_read_only_file(backend, path)
        })
    }

    /// Builds a new store under a temporary name beside `path` and links it
    /// into place; when another process linked its store there first, opens
    /// that one instead.
    pub(super) fn create_new(&self, path: &Path, side: &Side) -> Result<Store, StoreError> {
        let (dir, temporary) = temporary_beside(path, "creating")?;
        let created = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&temporary)
            .map_err(StoreError::io);
        // The store stays open on the temporary name: redb's lock is on the
        // file, so the name it is linked to is locked from the first moment.
        let linked = created
            .and_then(|file| self.open_file(file, side))
            .and_then(|store| link_new(&temporary, path, dir).map(|won| won.then_some(store)));
        // Whether linked, beaten or failed, the temporary name goes.
        let _ = std::fs::remove_file(&temporary);
        match linked? {
            Some(store) => {
                sync_dir(dir)?;
                // Every byte of a new store was written through its sums.
                store.vouch_new();
                Ok(store)
            }
            None => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(StoreError::io)?;
                self.open_file(file, side)
            }
        }
    }

    /// Opens a store that lives in memory and is gone when dropped.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] only if redb fails to set up its memory.
    pub fn in_memory(self) -> Result<Store, StoreError> {
        self.backend(InMemoryBackend::new())
    }

    /// Opens the store on any redb storage backend (OPFS, a fault-injecting
    /// test disk, …). The backend belongs to the store: one holding the
    /// remains of a creation that never finished (redb writes its magic
    /// number last, so those read as zeros there) is emptied first, as no
    /// other data may live in it.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn backend(self, backend: impl StorageBackend) -> Result<Store, StoreError> {
        contain(|| {
            empty_if_unborn(&backend)?;
            self.open_backend(backend)
        })
    }

    /// Opens the store on `main`, a backend that cannot be renamed (a
    /// browser's OPFS file, bytes in memory), with `scratch`, a second one
    /// it is rewritten through after an erasure: [`Store::close`] copies
    /// every row into a new database in `scratch`, writes its bytes over
    /// `main`'s and empties `scratch`, so no free page of `main` keeps an
    /// erased user's values. A crash at any point of that leaves either
    /// the old store whole (the rewrite runs again on opening) or a
    /// finished copy in `scratch`, which opening writes over `main` again.
    /// `scratch` holds nothing between rewrites. Both backends belong to
    /// the store, which closes them when it ends; a journal or block
    /// checksums set on this builder are not used (those are for stores
    /// opened by path).
    ///
    /// # Errors
    ///
    /// As [`backend`](Self::backend), for either backend.
    pub fn backend_and_scratch(
        self,
        main: impl StorageBackend,
        scratch: impl StorageBackend,
    ) -> Result<Store, StoreError> {
        // One copy of the opening, whatever the backends' types.
        self.open_pair(super::scratch::Pair::new(main, scratch))
    }

    fn open_pair(self, pair: super::scratch::Pair) -> Result<Store, StoreError> {
        contain(|| {
            pair.recover()?;
            empty_if_unborn(&pair.main())?;
            let store = self.plain(pair.main(), false)?;
            // A rewrite a crash cut short: the store is whole, so it runs
            // again (the pair is attached after, so this close leaves it).
            let mut store = if store.read(log::scrub_due)? {
                store.close()?;
                pair.rewrite()?;
                self.plain(pair.main(), false)?
            } else {
                store
            };
            store.pair = Some(pair.clone());
            Ok(store)
        })
        .inspect_err(|_| pair.close())
    }

    /// redb's settings; `check` runs its whole-file check on open.
    pub(super) fn redb(&self, check: bool) -> Builder {
        let mut builder = Builder::new();
        builder
            .set_cache_size(self.cache_bytes)
            .set_check_integrity_on_open(check);
        self.tune(&mut builder);
        builder
    }

    /// Opens the store in `backend` as it is (`read_only`: the store
    /// refuses writes), redb's whole-file check as
    /// [`check_on_open`](Self::check_on_open) says.
    pub(super) fn plain(
        &self,
        backend: impl StorageBackend,
        read_only: bool,
    ) -> Result<Store, StoreError> {
        self.finish(
            self.redb(self.check_on_open).create_with_backend(backend)?,
            read_only,
        )
    }

    pub(super) fn finish(&self, db: Database, read_only: bool) -> Result<Store, StoreError> {
        let store_id = init(&db)?;
        self.finish_with(platform::own(db), store_id, read_only)
    }

    /// The store over `db`, whose id is `store_id`.
    pub(super) fn finish_with(
        &self,
        db: platform::Db,
        store_id: Uuid,
        read_only: bool,
    ) -> Result<Store, StoreError> {
        let clock = match &self.clock {
            Some(clock) => clock.clone(),
            None => crate::clock::system().ok_or(StoreError::NoClock)?,
        };
        let durability = if self.durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        Ok(Store {
            db: Some(db),
            durability,
            store_id,
            read_only,
            stamper: Stamper::new(clock),
            erased: std::sync::atomic::AtomicBool::new(false),
            pair: None,
            platform: Platform::default(),
        })
    }
}

/// Empties a backend holding the remains of a creation that never
/// finished: redb writes its magic number last, so they read as zeros there.
fn empty_if_unborn(backend: &impl StorageBackend) -> Result<(), StoreError> {
    let len = backend.len().map_err(StoreError::io)?;
    let mut head = vec![0; REDB_MAGIC.len().min(len as usize)];
    backend.read(0, &mut head).map_err(StoreError::io)?;
    if len > 0 && head.iter().all(|b| *b == 0) {
        backend.set_len(0).map_err(StoreError::io)?;
    }
    Ok(())
}

/// redb's magic number, the first bytes of every redb file.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// The store file at `path` opened for reading, `None` when there is none.
/// Anything else at the path — a directory, a FIFO (opening one would
/// block), a file without redb's magic number — is refused untouched:
/// creation is atomic, so a store file always starts with it.
pub(super) fn existing_store_file(path: &Path) -> Result<Option<std::fs::File>, StoreError> {
    use std::io::Read;
    let not_a_store = |why: &str| StoreError::NotAStore(format!("{}: {why}", path.display()));
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StoreError::io(error)),
    };
    if !metadata.is_file() {
        return Err(not_a_store("not a regular file"));
    }
    let mut file = std::fs::File::open(path).map_err(StoreError::io)?;
    let mut magic = Vec::with_capacity(REDB_MAGIC.len());
    (&mut file)
        .take(REDB_MAGIC.len() as u64)
        .read_to_end(&mut magic)
        .map_err(StoreError::io)?;
    if magic != REDB_MAGIC {
        return Err(not_a_store(
            "not a store file (no redb header); left untouched",
        ));
    }
    Ok(Some(file))
}

/// The directory of the store at `path`, and a new name in it for a file
/// built before it takes the store's place (`.NAME.UUID.what`).
///
/// # Errors
///
/// [`StoreError::NotAStore`] when `path` has no file name.
pub(super) fn temporary_beside<'p>(
    path: &'p Path,
    what: &str,
) -> Result<(&'p Path, std::path::PathBuf), StoreError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| StoreError::NotAStore(format!("{}: not a file name", path.display())))?;
    let temporary = dir.join(format!(
        ".{}.{}.{what}",
        name.to_string_lossy(),
        Uuid::new_v4().simple()
    ));
    Ok((dir, temporary))
}

/// Links the finished store at `temporary` to `path` unless something is
/// there already; returns whether it was linked.
pub(super) fn link_new(temporary: &Path, path: &Path, dir: &Path) -> Result<bool, StoreError> {
    match std::fs::hard_link(temporary, path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        // A file system without hard links: a rename after a check, which
        // two racing creators could both pass. The first open of a path is
        // rarely raced there; the store is whole either way.
        Err(_) if !path.exists() => {
            std::fs::rename(temporary, path).map_err(StoreError::io)?;
            sync_dir(dir)?;
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

/// Makes a directory entry just created durable.
#[cfg(unix)]
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io)
}

/// Elsewhere a directory cannot be opened to be synced.
#[cfg(not(unix))]
pub(super) fn sync_dir(_dir: &Path) -> Result<(), StoreError> {
    Ok(())
}

/// Creates the tables and meta rows of a new store, or checks an existing
/// store's format; returns the store id.
pub(super) fn init(db: &Database) -> Result<Uuid, StoreError> {
    let txn = db.begin_write()?;
    let (store_id, mut wrote) = {
        let mut meta = txn.open_table(META)?;
        match log::meta_format(&meta)? {
            Some(found) if found > STORE_FORMAT => {
                return Err(StoreError::UnsupportedFormat {
                    found,
                    supported: STORE_FORMAT,
                });
            }
            Some(found) => {
                let id = log::meta_uuid(&meta, log::META_STORE_ID)?.ok_or_else(|| {
                    StoreError::Inconsistent("meta store_id row is missing".into())
                })?;
                (id, found < STORE_FORMAT)
            }
            None => {
                let id = Uuid::new_v4();
                log::set_meta_format(&mut meta, STORE_FORMAT)?;
                meta.insert(log::META_STORE_ID, id.as_bytes().as_slice())?;
                (id, true)
            }
        }
    };
    // Creates the tables missing (all of them in a new store; the sync
    // tables in a store from before sync), so that later reads never meet a
    // missing table. A complete store is opened without writing to it.
    wrote |= log::create_tables(&txn)?;
    if wrote {
        // Older formats are brought to this one in the same transaction (a
        // new store's rebuild finds nothing to do).
        log::rebuild_indexes(&txn)?;
        log::set_meta_format(&mut txn.open_table(META)?, STORE_FORMAT)?;
    }
    if wrote {
        txn.commit()?;
    } else {
        txn.abort()?;
    }
    Ok(store_id)
}
