//! spkey-store for native apps through UniFFI: Kotlin (Android, the JVM),
//! Swift (iOS, macOS) and Python. A thin layer like `wasm/`: it converts
//! types and errors and owns threads for live changes; every decision —
//! validation, the email rule, sync — stays in the core.
//!
//! The Kotlin and Swift SDKs (`mobile/kotlin`, `mobile/swift`) wrap these
//! generated bindings in each language's idiom: `AutoCloseable`, sealed
//! results, `Flow`, `suspend`.

#![deny(missing_docs)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use spkey_store::contract::{event_json, user_json};
use spkey_store::http::{SyncError, Token, Until};
use spkey_store::{
    CreateUser, ErrorKind, Field, Outcome, RecordedEvent, Rejection, Store, StoreError, UpdateUser,
};

uniffi::setup_scaffolding!();

/// Every failure the SDK throws: the store's kinds (named as the npm
/// package names them, without `Error`), the hub's, and the SDK's own.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum SpkeyError {
    /// The store file is open in another handle or process.
    #[error("{reason}")]
    StoreLocked {
        /// What happened.
        reason: String,
    },
    /// The store's bytes are damaged (a checksum, an index, a page).
    #[error("{reason}")]
    CorruptStore {
        /// What happened.
        reason: String,
    },
    /// The store was written by a newer version.
    #[error("{reason}")]
    UnsupportedFormat {
        /// What happened.
        reason: String,
    },
    /// The path holds something that is not a store; it was left untouched.
    #[error("{reason}")]
    NotAStore {
        /// What happened.
        reason: String,
    },
    /// The store was opened read-only and was asked to write.
    #[error("{reason}")]
    ReadOnlyStore {
        /// What happened.
        reason: String,
    },
    /// A sync batch was refused whole; nothing changed.
    #[error("{reason}")]
    BatchRefused {
        /// What happened.
        reason: String,
    },
    /// The storage underneath failed (I/O, a full disk).
    #[error("{reason}")]
    Storage {
        /// What happened.
        reason: String,
    },
    /// The store was closed.
    #[error("the store was closed")]
    StoreClosed,
    /// An argument was not what the method takes.
    #[error("{reason}")]
    InvalidArgument {
        /// What happened.
        reason: String,
    },
    /// The hub could not be reached.
    #[error("{reason}")]
    HubUnreachable {
        /// What happened.
        reason: String,
    },
    /// The hub answered with an error status.
    #[error("the hub answered {status}: {reason}")]
    HubRefused {
        /// The HTTP status.
        status: i32,
        /// The hub's message.
        reason: String,
    },
    /// The token provider failed.
    #[error("{reason}")]
    TokenUnavailable {
        /// What happened.
        reason: String,
    },
    /// The sync was cancelled before it finished; what was applied stays.
    #[error("the sync was cancelled")]
    Cancelled,
    /// The sync's deadline passed before it finished; what was applied
    /// stays.
    #[error("the sync ran out of time")]
    DeadlineExceeded,
}

impl From<StoreError> for SpkeyError {
    fn from(error: StoreError) -> Self {
        let reason = error.to_string();
        match error.kind() {
            ErrorKind::Locked => SpkeyError::StoreLocked { reason },
            ErrorKind::Corrupt => SpkeyError::CorruptStore { reason },
            ErrorKind::UnsupportedFormat => SpkeyError::UnsupportedFormat { reason },
            ErrorKind::NotAStore => SpkeyError::NotAStore { reason },
            ErrorKind::ReadOnly => SpkeyError::ReadOnlyStore { reason },
            ErrorKind::BatchRefused => SpkeyError::BatchRefused { reason },
            _ => SpkeyError::Storage { reason },
        }
    }
}

impl From<SyncError> for SpkeyError {
    fn from(error: SyncError) -> Self {
        match error {
            SyncError::Unreachable(reason) => SpkeyError::HubUnreachable { reason },
            SyncError::Refused { status, message } => SpkeyError::HubRefused {
                status: i32::from(status),
                reason: message,
            },
            SyncError::Token(reason) => SpkeyError::TokenUnavailable { reason },
            SyncError::Store(error) => error.into(),
            SyncError::Cancelled => SpkeyError::Cancelled,
            SyncError::DeadlineExceeded => SpkeyError::DeadlineExceeded,
        }
    }
}

/// A status and the API's exact JSON body.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Answer {
    /// 201, 200, 400, 409 or 413.
    pub status: i32,
    /// The response body, byte for byte what the remote API answers.
    pub body: String,
}

/// A recorded event: its envelope's fields, and its wire JSON whole.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct EventRecord {
    /// The event's position in this store's log.
    pub position: i64,
    /// The aggregate's version after it.
    pub version: i64,
    /// `UserCreated`, `UserCreationRejected`.
    pub event_type: String,
    /// The user's id.
    pub aggregate_id: String,
    /// UUID v7 of the event.
    pub event_id: String,
    /// RFC 3339, UTC, milliseconds.
    pub recorded_at: String,
    /// The event as the API's JSON shows it (`eventId`, `data`, …).
    pub json: String,
}

fn record(event: &RecordedEvent) -> EventRecord {
    let wire = event_json(event);
    EventRecord {
        position: signed(wire.position),
        version: signed(wire.version),
        event_type: wire.event_type.clone(),
        aggregate_id: wire.aggregate_id.clone(),
        event_id: wire.event_id.clone(),
        recorded_at: wire.recorded_at.clone(),
        json: to_json(&wire),
    }
}

/// Positions, versions and counts as the JVM's and Swift's everyday
/// integer (`Long`, `Int64`): never near 2^63 in a store.
fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A position or count from the caller: not negative.
fn unsigned(name: &str, value: i64) -> Result<u64, SpkeyError> {
    u64::try_from(value).map_err(|_| SpkeyError::InvalidArgument {
        reason: format!("{name} must not be negative, got {value}"),
    })
}

fn records(events: Vec<RecordedEvent>) -> Vec<EventRecord> {
    events.iter().map(record).collect()
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // The core's wire structs are strings and integers: they serialize.
    serde_json::to_string(value).expect("wire shapes serialize infallibly")
}

/// A CreateUser command, typed.
#[derive(Debug, Clone, uniffi::Record)]
pub struct NewUser {
    /// The user's id (the path's `{id}`; a UUID).
    pub id: String,
    /// The email.
    pub email: String,
    /// Optional first name.
    pub first_name: Option<String>,
    /// Optional last name.
    pub last_name: Option<String>,
    /// Optional phone number.
    pub phone_number: Option<String>,
}

/// One entry of an error body's `details`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct FieldDetail {
    /// The field at fault (`email`, `userId`, …).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// What a typed CreateUser amounted to.
#[derive(Debug, Clone, uniffi::Enum)]
pub enum CreateOutcome {
    /// Recorded (HTTP 201).
    Created {
        /// The new event.
        event: EventRecord,
    },
    /// The same command was recorded before (HTTP 200); nothing new.
    Replayed {
        /// The original event.
        event: EventRecord,
    },
    /// Refused, nothing written (HTTP 400, 403 or 409).
    Rejected {
        /// The HTTP status.
        status: i32,
        /// The error body's `details`.
        details: Vec<FieldDetail>,
        /// The API's error body, whole.
        body: String,
    },
}

/// An optional field an update can clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ClearableField {
    /// `firstName`.
    FirstName,
    /// `lastName`.
    LastName,
    /// `phoneNumber`.
    PhoneNumber,
}

/// An UpdateUser command, typed: each field `None` is left as it is.
#[derive(Debug, Clone, uniffi::Record)]
pub struct UserChanges {
    /// The user's id (the path's `{id}`; a UUID).
    pub id: String,
    /// A new email.
    pub email: Option<String>,
    /// A new first name.
    pub first_name: Option<String>,
    /// A new last name.
    pub last_name: Option<String>,
    /// A new phone number.
    pub phone_number: Option<String>,
    /// Optional fields to clear.
    pub clear: Vec<ClearableField>,
}

/// What a typed UpdateUser amounted to.
#[derive(Debug, Clone, uniffi::Enum)]
pub enum UpdateOutcome {
    /// Recorded (HTTP 200).
    Updated {
        /// The new event.
        event: EventRecord,
    },
    /// Nothing to change, or the same update again (HTTP 200): the event
    /// the user's state came from; nothing new.
    Unchanged {
        /// That event.
        event: EventRecord,
    },
    /// Refused, nothing written (HTTP 400, 403, 404 or 409).
    Rejected {
        /// The HTTP status.
        status: i32,
        /// The error body's `details`.
        details: Vec<FieldDetail>,
        /// The API's error body, whole.
        body: String,
    },
}

/// A user's current state.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct UserRecord {
    /// The user's id.
    pub user_id: String,
    /// The email.
    pub email: String,
    /// Optional first name.
    pub first_name: Option<String>,
    /// Optional last name.
    pub last_name: Option<String>,
    /// Optional phone number.
    pub phone_number: Option<String>,
    /// The aggregate's version.
    pub version: i64,
    /// When the user was created, RFC 3339.
    pub created_at: String,
    /// True when the hub refused this user's creation (made offline).
    pub rejected: bool,
    /// The user as `spkey user` prints it.
    pub json: String,
}

/// What a sync did (as `spkey sync` prints it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct SyncSummary {
    /// Pending events pushed.
    pub pushed: i64,
    /// Of them, accepted by the hub.
    pub accepted: i64,
    /// Of them, refused (now visible in `rejections()`).
    pub rejected: i64,
    /// Events of others pulled.
    pub pulled: i64,
    /// The hub position imported up to.
    pub cursor: i64,
}

/// Gives the Bearer token for the next request; asked before each one
/// (tokens expire). An error ends the sync with `TokenUnavailable`.
#[uniffi::export(callback_interface)]
pub trait TokenProvider: Send + Sync {
    /// The token, without `Bearer `.
    ///
    /// # Errors
    ///
    /// [`CallbackError`] when no token can be had (signed out, offline).
    fn token(&self) -> Result<String, CallbackError>;
}

/// Receives each event after a subscription's start, once, in order.
#[uniffi::export(callback_interface)]
pub trait EventListener: Send + Sync {
    /// One event. Called on the subscription's own thread.
    ///
    /// # Errors
    ///
    /// [`CallbackError`] when the listener failed: the store is not
    /// harmed and the next event is delivered as usual.
    fn on_event(&self, event: EventRecord) -> Result<(), CallbackError>;
}

/// A callback failed (the foreign code threw).
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum CallbackError {
    /// With the foreign code's message.
    #[error("{reason}")]
    Failed {
        /// What the foreign code said.
        reason: String,
    },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for CallbackError {
    fn from(error: uniffi::UnexpectedUniFFICallbackError) -> Self {
        CallbackError::Failed {
            reason: error.reason,
        }
    }
}

/// Stops a sync from another thread: the sync ends with `Cancelled`
/// before its next request.
#[derive(Debug, Default, uniffi::Object)]
pub struct SyncControl {
    cancelled: AtomicBool,
}

#[uniffi::export]
impl SyncControl {
    /// A control not yet cancelled.
    #[uniffi::constructor]
    pub fn new() -> Arc<Self> {
        Arc::new(SyncControl::default())
    }

    /// Cancels the sync it was given to.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }
}

/// A live subscription's thread; stopped by [`SubscriptionHandle::cancel`]
/// or when the store closes.
#[derive(uniffi::Object)]
pub struct SubscriptionHandle {
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[uniffi::export]
impl SubscriptionHandle {
    /// Stops delivery; no event is delivered after this returns (unless
    /// called from the listener itself, which stops after that event).
    pub fn cancel(&self) {
        self.stop.store(true, Ordering::Release);
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

/// How long a subscription's thread sleeps between checks for a cancel
/// when no commit wakes it.
const SUBSCRIPTION_TICK: Duration = Duration::from_millis(100);
/// Events a subscription reads per round.
const SUBSCRIPTION_BATCH: usize = 256;

/// A store file, or one in memory.
#[derive(uniffi::Object)]
pub struct NativeStore {
    /// `None` once closed.
    store: RwLock<Option<Arc<Store>>>,
    subscriptions: Mutex<Vec<Arc<SubscriptionHandle>>>,
    /// How to open the store again after an erasure (see `settle`);
    /// `None` for a store that is not rewritten (in memory, a reader).
    reopen: Option<Box<dyn Fn() -> Result<Store, spkey_store::StoreError> + Send + Sync>>,
}

impl NativeStore {
    fn new(store: Store) -> Arc<Self> {
        NativeStore::reopened_by(store, None)
    }

    fn reopened_by(
        store: Store,
        reopen: Option<Box<dyn Fn() -> Result<Store, spkey_store::StoreError> + Send + Sync>>,
    ) -> Arc<Self> {
        Arc::new(NativeStore {
            store: RwLock::new(Some(Arc::new(store))),
            subscriptions: Mutex::new(Vec::new()),
            reopen,
        })
    }

    /// After a call that may have erased a user (a `DeleteUser`, a sync
    /// that pulled an erasure): a store opened by path is closed and opened
    /// again, which rewrites its file, so that no free page or journal
    /// record keeps the erased values — as the npm package and the hub do.
    /// While anything else holds the store (a subscription, a call on
    /// another thread), the rewrite waits for `close_store` or the next
    /// open.
    fn settle(&self) -> Result<(), SpkeyError> {
        let Some(reopen) = &self.reopen else {
            return Ok(());
        };
        let mut slot = self.store.write().unwrap_or_else(|e| e.into_inner());
        if !slot
            .as_ref()
            .is_some_and(|store| store.holds_erased_values())
        {
            return Ok(());
        }
        let store = match slot.take().map(Arc::try_unwrap) {
            Some(Ok(store)) => store,
            Some(Err(shared)) => {
                *slot = Some(shared);
                return Ok(());
            }
            None => return Ok(()),
        };
        // A failed close leaves the rewrite to the opening.
        let _ = store.close();
        *slot = Some(Arc::new(reopen()?));
        Ok(())
    }

    fn store(&self) -> Result<Arc<Store>, SpkeyError> {
        self.store
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(SpkeyError::StoreClosed)
    }

    /// The contract's answer to the wire command `name`.
    fn command(&self, name: &str, id: &str, body: &str) -> Result<Answer, SpkeyError> {
        let response = self.store()?.try_command_wire(name, id, body.as_bytes())?;
        Ok(Answer {
            status: i32::from(response.status),
            body: response.to_json(),
        })
    }
}

fn parse_id(id: &str) -> Result<uuid::Uuid, SpkeyError> {
    uuid::Uuid::try_parse(id).map_err(|e| SpkeyError::InvalidArgument {
        reason: format!("'{id}' is not a UUID: {e}"),
    })
}

#[uniffi::export]
impl NativeStore {
    /// Opens the store file at `path`, creating it when absent. The same
    /// file format as every other target.
    ///
    /// # Errors
    ///
    /// `StoreLocked` when another handle has it, `NotAStore` for a file
    /// that is not a store, the store's other kinds.
    #[uniffi::constructor]
    pub fn open(path: String) -> Result<Arc<Self>, SpkeyError> {
        let reopen = move || Store::open(&path);
        Ok(NativeStore::reopened_by(reopen()?, Some(Box::new(reopen))))
    }

    /// Opens the store file at `path` shared with other processes (an app
    /// and its widget or share extension, an app and its sync service):
    /// this handle writes, creating the file when absent; others read with
    /// [`open_reader`](Self::open_reader). Each write is synced to the
    /// file (no journal). A second writer waits 200 ms, then gets
    /// `StoreLocked`.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    #[uniffi::constructor]
    pub fn open_shared(path: String) -> Result<Arc<Self>, SpkeyError> {
        let reopen = move || Store::builder().shared(true).open(&path);
        Ok(NativeStore::reopened_by(reopen()?, Some(Box::new(reopen))))
    }

    /// Opens the store file at `path` to read beside the process that
    /// writes it shared: every read sees that writer's latest commit, whole.
    /// Writes fail with `ReadOnlyStore`.
    ///
    /// # Errors
    ///
    /// `NotAStore` when there is no store at `path`; `StoreLocked` while
    /// a process has it open unshared; the store's other kinds.
    #[uniffi::constructor]
    pub fn open_reader(path: String) -> Result<Arc<Self>, SpkeyError> {
        Ok(NativeStore::new(
            Store::builder().shared(true).open_read_only(path)?,
        ))
    }

    /// A store in memory, gone when closed.
    ///
    /// # Errors
    ///
    /// `Storage` when it cannot be made.
    #[uniffi::constructor]
    pub fn in_memory() -> Result<Arc<Self>, SpkeyError> {
        Ok(NativeStore::new(Store::in_memory()?))
    }

    /// Closes the store: subscriptions stop, the file is released for the
    /// next open (once calls in flight on other threads return). Closing
    /// twice is harmless.
    ///
    /// # Errors
    ///
    /// `Storage` when the last commit cannot be made durable.
    pub fn close_store(&self) -> Result<(), SpkeyError> {
        let subscriptions =
            std::mem::take(&mut *self.subscriptions.lock().unwrap_or_else(|e| e.into_inner()));
        for subscription in subscriptions {
            subscription.cancel();
        }
        let store = self.store.write().unwrap_or_else(|e| e.into_inner()).take();
        match store.map(Arc::try_unwrap) {
            Some(Ok(store)) => Ok(store.close()?),
            // A call on another thread still holds it: it closes when that
            // call returns.
            Some(Err(_)) | None => Ok(()),
        }
    }

    /// `POST /users/{id}/CreateUser` with `body` as the request body: the
    /// API's status and exact JSON body. Rejections are answers, not
    /// errors.
    ///
    /// # Errors
    ///
    /// The store's failure kinds; `StoreClosed`.
    pub fn create_user(&self, id: String, body: String) -> Result<Answer, SpkeyError> {
        self.command("CreateUser", &id, &body)
    }

    /// `POST /users/{id}/UpdateUser` with `body` as the request body (any
    /// of `email`, `firstName`, `lastName`, `phoneNumber`; `null` clears an
    /// optional field): the API's status and exact JSON body.
    ///
    /// # Errors
    ///
    /// The store's failure kinds; `StoreClosed`.
    pub fn update_user(&self, id: String, body: String) -> Result<Answer, SpkeyError> {
        self.command("UpdateUser", &id, &body)
    }

    /// `POST /users/{id}/DeleteUser` with `body` as the request body (`{}`
    /// or `{"userId": id}`): the user is erased — its email free at once,
    /// its id taken for good, its earlier events keeping only their kind
    /// and time. The API's status (200, a replay 200 again; 400, 404, 413)
    /// and exact JSON body. The erased values leave the file before it
    /// returns: the store is closed and opened again, which rewrites it
    /// (unless a subscription holds it: then at `close_store`).
    ///
    /// # Errors
    ///
    /// The store's failure kinds; `StoreClosed`.
    pub fn delete_user(&self, id: String, body: String) -> Result<Answer, SpkeyError> {
        let answer = self.command("DeleteUser", &id, &body)?;
        self.settle()?;
        Ok(answer)
    }

    /// UpdateUser, typed.
    ///
    /// # Errors
    ///
    /// The store's failure kinds; `StoreClosed`.
    pub fn update_user_typed(&self, changes: UserChanges) -> Result<UpdateOutcome, SpkeyError> {
        let mut command = UpdateUser::new(changes.id);
        command.email = changes.email;
        command.first_name = changes.first_name.map(Some);
        command.last_name = changes.last_name.map(Some);
        command.phone_number = changes.phone_number.map(Some);
        for field in changes.clear {
            command = command.clear(match field {
                ClearableField::FirstName => Field::FirstName,
                ClearableField::LastName => Field::LastName,
                ClearableField::PhoneNumber => Field::PhoneNumber,
            });
        }
        let outcome = self.store()?.update_user(&command)?;
        Ok(match &outcome {
            Outcome::Recorded(event) => UpdateOutcome::Updated {
                event: record(event),
            },
            Outcome::Replayed(event) => UpdateOutcome::Unchanged {
                event: record(event),
            },
            Outcome::Rejected(rejection) => UpdateOutcome::Rejected {
                status: i32::from(rejection.code()),
                details: details(rejection),
                body: spkey_store::Response::from_outcome(&outcome).to_json(),
            },
        })
    }

    /// CreateUser, typed.
    ///
    /// # Errors
    ///
    /// The store's failure kinds; `StoreClosed`.
    pub fn create_user_typed(&self, user: NewUser) -> Result<CreateOutcome, SpkeyError> {
        let mut command = CreateUser::new(user.id, user.email);
        command.first_name = user.first_name;
        command.last_name = user.last_name;
        command.phone_number = user.phone_number;
        let outcome = self.store()?.create_user(&command)?;
        Ok(match &outcome {
            Outcome::Recorded(event) => CreateOutcome::Created {
                event: record(event),
            },
            Outcome::Replayed(event) => CreateOutcome::Replayed {
                event: record(event),
            },
            Outcome::Rejected(rejection) => CreateOutcome::Rejected {
                status: i32::from(rejection.code()),
                details: details(rejection),
                body: spkey_store::Response::from_outcome(&outcome).to_json(),
            },
        })
    }

    /// The user as `spkey user` prints it (JSON), or `None`.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` when `id` is not a UUID; the store's kinds.
    pub fn user(&self, id: String) -> Result<Option<String>, SpkeyError> {
        Ok(self.user_typed(id)?.map(|user| user.json))
    }

    /// The user's current state, typed, or `None`.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` when `id` is not a UUID; the store's kinds.
    pub fn user_typed(&self, id: String) -> Result<Option<UserRecord>, SpkeyError> {
        let Some(user) = self.store()?.user(parse_id(&id)?)? else {
            return Ok(None);
        };
        let profile = &user.profile;
        Ok(Some(UserRecord {
            user_id: profile.user_id.to_string(),
            email: profile.email.clone(),
            first_name: profile.first_name.clone(),
            last_name: profile.last_name.clone(),
            phone_number: profile.phone_number.clone(),
            version: signed(user.version),
            created_at: spkey_store::contract::format_timestamp(user.created_at_ms),
            rejected: user.is_rejected(),
            json: to_json(&user_json(&user)),
        }))
    }

    /// Events from position `from` (1 for the first) on, at most `limit`.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a negative `from` or `limit`; the store's
    /// kinds.
    pub fn events(&self, from: i64, limit: i32) -> Result<Vec<EventRecord>, SpkeyError> {
        let (from, limit) = (
            unsigned("from", from)?,
            unsigned("limit", i64::from(limit))?,
        );
        Ok(records(self.store()?.events(from, limit as usize)?))
    }

    /// The position of the last event; 0 when empty.
    ///
    /// # Errors
    ///
    /// The store's kinds.
    pub fn head_position(&self) -> Result<i64, SpkeyError> {
        Ok(signed(self.store()?.head_position()?))
    }

    /// Checks every event and index row: the findings, empty when sound.
    ///
    /// # Errors
    ///
    /// The store's kinds when it cannot be read at all.
    pub fn verify(&self) -> Result<Vec<String>, SpkeyError> {
        let report = self.store()?.verify()?;
        Ok(report.findings.iter().map(ToString::to_string).collect())
    }

    /// The events the hub has not answered yet.
    ///
    /// # Errors
    ///
    /// The store's kinds.
    pub fn pending(&self) -> Result<Vec<EventRecord>, SpkeyError> {
        Ok(records(self.store()?.pending()?))
    }

    /// The hub's refusals of events made here (`UserCreationRejected`,
    /// whose `data` holds the API's error body).
    ///
    /// # Errors
    ///
    /// The store's kinds.
    pub fn rejections(&self) -> Result<Vec<EventRecord>, SpkeyError> {
        Ok(records(self.store()?.rejections()?))
    }

    /// Calls `listener` with every event after position `from` (0 for
    /// all), once each, in order, as they are committed — commands, sync
    /// replies, imports — on a thread of its own, until the handle is
    /// cancelled or the store closes.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a negative `from`; `StoreClosed`.
    pub fn subscribe(
        &self,
        from: i64,
        listener: Box<dyn EventListener>,
    ) -> Result<Arc<SubscriptionHandle>, SpkeyError> {
        let from = unsigned("from", from)?;
        let store = self.store()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("spkey-subscription".into())
            .spawn(move || deliver(&store, from, listener.as_ref(), &stopped))
            .map_err(|e| SpkeyError::Storage {
                reason: format!("cannot start the subscription's thread: {e}"),
            })?;
        let handle = Arc::new(SubscriptionHandle {
            stop,
            thread: Mutex::new(Some(thread)),
        });
        let mut subscriptions = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
        subscriptions.retain(|s| !s.stop.load(Ordering::Acquire));
        subscriptions.push(handle.clone());
        Ok(handle)
    }

    /// Syncs with the hub at `hub`: pushes what is pending, applies the
    /// reply, pulls until caught up. `token` is asked before each request.
    /// Stops short with `DeadlineExceeded` once `deadline_ms` milliseconds
    /// have passed (when given), or `Cancelled` once `control` is
    /// cancelled; what was applied stays, and the next sync resumes.
    ///
    /// # Errors
    ///
    /// `HubUnreachable`, `HubRefused`, `TokenUnavailable`, `Cancelled`,
    /// `DeadlineExceeded`, the store's kinds.
    pub fn sync(
        &self,
        hub: String,
        api_key: String,
        token: Box<dyn TokenProvider>,
        deadline_ms: Option<i64>,
        control: Option<Arc<SyncControl>>,
    ) -> Result<SyncSummary, SpkeyError> {
        let store = self.store()?;
        let summary = run_sync(&store, &hub, &api_key, token, deadline_ms, control);
        drop(store);
        // A pulled erasure, even from a sync cut short, is rewritten away.
        self.settle()?;
        Ok(summary?)
    }

    /// One sync for a background scheduler (Android's WorkManager, iOS's
    /// BGTaskScheduler): finishes within `deadline_ms` and says whether to
    /// retry, by the core's rule (unreachable, busy, out of time, no token:
    /// retry; refused: report).
    ///
    /// # Errors
    ///
    /// `StoreClosed`, or the store's kinds when it cannot be opened again
    /// after pulling an erasure; every sync failure is in the answer
    /// instead.
    pub fn sync_once(
        &self,
        hub: String,
        api_key: String,
        token: Box<dyn TokenProvider>,
        deadline_ms: i64,
    ) -> Result<SyncAttempt, SpkeyError> {
        let store = self.store()?;
        let result = run_sync(&store, &hub, &api_key, token, Some(deadline_ms), None);
        drop(store);
        self.settle()?;
        Ok(match result {
            Ok(summary) => SyncAttempt {
                summary: Some(summary),
                retry: false,
                failure: None,
            },
            Err(error) => SyncAttempt {
                summary: None,
                retry: error.is_transient(),
                failure: Some(error.to_string()),
            },
        })
    }
}

/// What [`NativeStore::sync_once`] did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncAttempt {
    /// What the sync did, when it finished.
    pub summary: Option<SyncSummary>,
    /// Whether to schedule it again (WorkManager's `Result.retry()`).
    pub retry: bool,
    /// Why it did not finish.
    pub failure: Option<String>,
}

fn run_sync(
    store: &Store,
    hub: &str,
    api_key: &str,
    token: Box<dyn TokenProvider>,
    deadline_ms: Option<i64>,
    control: Option<Arc<SyncControl>>,
) -> Result<SyncSummary, SyncError> {
    let until = Until {
        deadline: deadline_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms.max(0).unsigned_abs())),
        cancelled: control.as_ref().map(|control| &control.cancelled),
    };
    let provider = Token::provider(|| token.token().map_err(|e| e.to_string()));
    let summary = spkey_store::http::sync_until(store, hub, api_key, provider, until)?;
    Ok(SyncSummary {
        pushed: signed(summary.pushed as u64),
        accepted: signed(summary.accepted as u64),
        rejected: signed(summary.rejected as u64),
        pulled: signed(summary.pulled as u64),
        cursor: signed(summary.cursor),
    })
}

fn details(rejection: &Rejection) -> Vec<FieldDetail> {
    rejection
        .details()
        .iter()
        .map(|field| FieldDetail {
            field: field.field.as_str().to_owned(),
            message: field.message.clone(),
        })
        .collect()
}

/// A subscription's thread: reads after the cursor, delivers, and sleeps
/// until the next commit (or a tick, to see a cancel).
fn deliver(store: &Store, from: u64, listener: &dyn EventListener, stop: &AtomicBool) {
    let mut subscription = store.subscribe(from);
    while !stop.load(Ordering::Acquire) {
        match subscription.poll(SUBSCRIPTION_BATCH) {
            Ok(events) if !events.is_empty() => {
                for event in &events {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    // A listener's failure is its own: the next event is
                    // delivered as usual.
                    let _ = listener.on_event(record(event));
                }
            }
            // Nothing new, or a read failed (tried again after the wait).
            _ => {
                let _ = subscription.wait(SUBSCRIPTION_TICK);
            }
        }
    }
}
