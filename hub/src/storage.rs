//! The storage seam: what the HTTP layer asks of an organization's log, and
//! the redb backend (one store file per organization). The HTTP layer knows
//! nothing of redb; this module knows nothing of HTTP. A backend on another
//! engine implements [`HubStorage`] with the core's same rules (the
//! pipeline over a `Staged` log).

use std::fs::Permissions;
use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use spkey_store::{BatchError, Command, Outcome, Response, Scope, Store, StoreError};
use tokio::sync::watch;

use crate::batcher::Batcher;

/// Told each write's latency and how many events it appended (for the
/// metrics).
pub type Observer = Arc<dyn Fn(Duration, u64) + Send + Sync>;

/// Why an organization's log could not answer.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The batch was refused whole; nothing was applied (400).
    #[error("{0}")]
    Refused(BatchError),
    /// The storage failed; nothing was applied (500).
    #[error("the hub's storage failed: {0}")]
    Failed(StoreError),
    /// The storage cannot be reached now; retry later (503).
    #[error("the hub's storage is unavailable: {0}")]
    Unavailable(String),
    /// The database refused a statement; nothing was applied (500).
    #[error("the hub's database failed: {0}")]
    Database(String),
}

impl HubError {
    /// The same failure for another waiter of a failed group commit: its
    /// kind (and so its status) kept, the underlying error as text.
    pub fn duplicate(&self) -> HubError {
        match self {
            HubError::Refused(refused) => HubError::Refused(refused.clone()),
            HubError::Failed(failure) => HubError::Database(failure.to_string()),
            HubError::Unavailable(why) => HubError::Unavailable(why.clone()),
            HubError::Database(why) => HubError::Database(why.clone()),
        }
    }
}

impl From<StoreError> for HubError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Batch(refused) => HubError::Refused(refused),
            other => HubError::Failed(other),
        }
    }
}

/// An organization's log, as the HTTP layer uses it.
pub trait HubStorage: Send + Sync + 'static {
    /// `POST /users/{id}/{command}` (`command` one of the contract's
    /// `COMMANDS`): the contract's answer, durable before it returns. A
    /// command once queued for its group is decided (and, if it records,
    /// committed) even if the returned future is dropped: a client that
    /// hangs up never takes a group commit down with it.
    fn execute(
        &self,
        org: usize,
        command: &'static str,
        id: String,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<Response, HubError>> + Send;

    /// A device's push batch, sent by a caller of `scope` (each event of a
    /// user outside it refused, 403); returns the reply batch.
    fn accept(
        &self,
        org: usize,
        scope: Scope,
        push: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, HubError>> + Send;

    /// The pull batch of `scope`'s events after `since`, complete to a
    /// watermark; when the log has nothing after `since`, waits up to `wait`
    /// for a commit.
    fn pull(
        &self,
        org: usize,
        scope: Scope,
        since: u64,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, HubError>> + Send;

    /// Whether the storage answers.
    fn health(&self) -> impl Future<Output = Result<(), HubError>> + Send;
}

/// Publishes a committed head to the long-polls waiting on `head`, and
/// returns how far it moved. The head only moves forward: concurrent
/// writers (and, on PostgreSQL, notifications from other nodes) may
/// publish out of order, and each counts only what it adds past the last.
pub(crate) fn publish(head: &watch::Sender<u64>, new: u64) -> u64 {
    let mut moved = 0;
    head.send_if_modified(|old| {
        moved = new.saturating_sub(*old);
        *old = (*old).max(new);
        moved > 0
    });
    moved
}

/// The most events one pull batch carries; a device pulls again until it
/// is caught up.
pub const PULL_LIMIT: usize = 10_000;

struct OrgLog {
    /// What a write needs, shared with the writes in flight.
    log: Arc<Log>,
    /// The organization's group commit: commands queue here.
    batcher: Batcher<Command, Outcome>,
}

/// An organization's store and what its writes tell.
struct Log {
    /// The open store; replaced by a reopened one after an erasure (see
    /// [`scrub`]). `None` only if that reopening failed.
    store: RwLock<Option<Arc<Store>>>,
    path: PathBuf,
    /// The log's head, published after every commit: long-polls wait here.
    head: watch::Sender<u64>,
    /// Told each write's latency and how many events it appended.
    observe: Observer,
}

impl Log {
    /// Runs the write `f` on the store, times it, publishes the head to
    /// the long-polls, and rewrites the store if the write erased a user —
    /// the erased values leave the files before the answer does. Blocks:
    /// call off the async workers.
    fn write<T>(&self, f: impl FnOnce(&Store) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let started = Instant::now();
        let store = current(&self.store)?;
        let value = f(&store)?;
        let appended = publish(&self.head, store.head_position()?);
        (self.observe)(started.elapsed(), appended);
        if store.holds_erased_values() {
            drop(store);
            scrub(&self.store, &self.path)?;
        }
        Ok(value)
    }
}

/// The open store in `slot`, shared with the requests in flight. Blocks
/// while a reopening after an erasure holds it: call on the blocking pool.
fn current(slot: &RwLock<Option<Arc<Store>>>) -> Result<Arc<Store>, StoreError> {
    slot.read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .ok_or_else(|| StoreError::Inconsistent("the store could not be reopened".into()))
}

/// How long reopening a store after an erasure waits for the requests
/// still using it; past it, the next erasure (or a restart) reopens it.
const SCRUB_PATIENCE: Duration = Duration::from_secs(30);

/// Closes and reopens the store in `slot` after an erasure: closing
/// rewrites the file without the erased user's values (see
/// `Store::close`). New requests wait on the lock meanwhile; the ones in
/// flight finish first.
fn scrub(slot: &RwLock<Option<Arc<Store>>>, path: &Path) -> Result<(), StoreError> {
    let mut guard = slot.write().unwrap_or_else(|e| e.into_inner());
    let until = Instant::now() + SCRUB_PATIENCE;
    let old = loop {
        match guard.take() {
            Some(store) if !store.holds_erased_values() => {
                // Another request reopened it already.
                *guard = Some(store);
                return Ok(());
            }
            Some(store) => match Arc::try_unwrap(store) {
                Ok(store) => break store,
                Err(store) if Instant::now() < until => {
                    *guard = Some(store);
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(store) => {
                    *guard = Some(store);
                    return Ok(());
                }
            },
            None => return Ok(()),
        }
    };
    old.close()?;
    *guard = Some(Arc::new(Store::open(path)?));
    Ok(())
}

/// One redb store per organization, in `<data_dir>/<org id>.redb`.
pub struct RedbHub {
    orgs: Vec<OrgLog>,
}

impl RedbHub {
    /// Opens (or creates) each organization's store, and starts each one's
    /// group commit as a task on the current tokio runtime (call it within
    /// one). The stores close when the hub and those tasks are dropped.
    ///
    /// # Errors
    ///
    /// The [`StoreError`] of the first store that cannot be opened, with its
    /// organization.
    pub fn open(
        data_dir: &Path,
        org_ids: &[String],
        observe: Observer,
    ) -> Result<RedbHub, (String, StoreError)> {
        // Personal data rests here: the directory is the hub's alone, and so
        // is every file of every store (their own modes follow the umask).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .and_then(|()| std::fs::set_permissions(data_dir, Permissions::from_mode(0o700)))
            .map_err(|e| {
                (
                    data_dir.display().to_string(),
                    StoreError::NotAStore(e.to_string()),
                )
            })?;
        let mut orgs = Vec::new();
        for id in org_ids {
            let path = data_dir.join(format!("{id}.redb"));
            let store = Store::open(&path).map_err(|e| (id.clone(), e))?;
            for suffix in ["", "-journal", "-checksums"] {
                let file = format!("{}{suffix}", path.display());
                if std::path::Path::new(&file).exists() {
                    std::fs::set_permissions(&file, Permissions::from_mode(0o600))
                        .map_err(|e| (id.clone(), StoreError::NotAStore(e.to_string())))?;
                }
            }
            let head = store.head_position().map_err(|e| (id.clone(), e))?;
            let log = Arc::new(Log {
                store: RwLock::new(Some(Arc::new(store))),
                path,
                head: watch::Sender::new(head),
                observe: observe.clone(),
            });
            let batcher = {
                let log = log.clone();
                // One group, one transaction and one sync, on the blocking
                // pool: one hop a group, not one a request.
                Batcher::start(move |commands: Vec<Command>| {
                    let log = log.clone();
                    async move {
                        tokio::task::spawn_blocking(move || {
                            log.write(|store| store.execute_batch(&commands))
                        })
                        .await
                        .map_err(|e| HubError::Unavailable(format!("worker failed: {e}")))?
                        .map_err(HubError::from)
                    }
                })
            };
            orgs.push(OrgLog { log, batcher });
        }
        Ok(RedbHub { orgs })
    }

    /// Runs the write `f` on the organization's store on the blocking pool
    /// (see [`Log::write`]): there, so that a write whose client hung up
    /// (its request dropped) still finishes and wakes the long-polls.
    async fn blocking<T: Send + 'static>(
        &self,
        org: usize,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, HubError> {
        let log = self.orgs[org].log.clone();
        tokio::task::spawn_blocking(move || log.write(f))
            .await
            .map_err(|e| HubError::Unavailable(format!("worker failed: {e}")))?
            .map_err(HubError::from)
    }
}

impl HubStorage for RedbHub {
    async fn execute(
        &self,
        org: usize,
        command: &'static str,
        id: String,
        body: Vec<u8>,
    ) -> Result<Response, HubError> {
        // Parsed and validated here, on the request's task: a bad body is
        // answered without waiting for anyone's commit, and the groups hold
        // only valid commands. `execute_batch` validates each again (about
        // a microsecond): the store takes no command it has not checked
        // itself, and an `Intent` can be made by hand.
        let command = match spkey_store::contract::read_command(command, &id, &body) {
            Ok(command) => command,
            Err(refused) => return Ok(refused),
        };
        if let Err(invalid) = command.validate() {
            return Ok(Response::from_outcome(&Outcome::Rejected(invalid)));
        }
        let outcome = self.orgs[org].batcher.submit(command.into_owned()).await?;
        Ok(Response::from_outcome(&outcome))
    }

    async fn accept(&self, org: usize, scope: Scope, push: Vec<u8>) -> Result<Vec<u8>, HubError> {
        self.blocking(org, move |store| store.accept_as(&push, scope))
            .await
    }

    async fn pull(
        &self,
        org: usize,
        scope: Scope,
        since: u64,
        wait: Duration,
    ) -> Result<Vec<u8>, HubError> {
        let mut head = self.orgs[org].log.head.subscribe();
        // Wakes as soon as an event after `since` is committed, or gives up
        // at `wait` and answers an empty batch.
        let _ = tokio::time::timeout(wait, head.wait_for(|head| *head > since)).await;
        // On the blocking pool: the store's lock may be held by a reopening
        // after an erasure.
        let log = self.orgs[org].log.clone();
        tokio::task::spawn_blocking(move || {
            current(&log.store)?.export_as(since, PULL_LIMIT, scope)
        })
        .await
        .map_err(|e| HubError::Unavailable(format!("worker failed: {e}")))?
        .map_err(HubError::from)
    }

    async fn health(&self) -> Result<(), HubError> {
        for org in &self.orgs {
            let log = org.log.clone();
            tokio::task::spawn_blocking(move || current(&log.store)?.head_position())
                .await
                .map_err(|e| HubError::Unavailable(e.to_string()))??;
        }
        Ok(())
    }
}
