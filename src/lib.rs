//! An embedded, offline-first replica of the SmartphoneKey Users API.
//!
//! `POST /users/{id}/CreateUser` is validated, decided against what is
//! recorded, and kept as a `UserCreated` event in an append-only log in one
//! redb file. Callers get the API's exact status codes and JSON bodies, so an
//! app written against the remote API runs unchanged against the local store.
//!
//! ```
//! use spkey_store::{CreateUser, Outcome, Store, UpdateUser};
//!
//! # fn main() -> Result<(), spkey_store::StoreError> {
//! let store = Store::in_memory()?; // or Store::open("users.redb")?
//! let id = "550e8400-e29b-41d4-a716-446655440000";
//!
//! // From the wire: the path id and the body bytes, as the remote API takes them.
//! let response = store.create_user_wire(id, br#"{"userId":"550e8400-e29b-41d4-a716-446655440000","email":"user@example.com","firstName":"John"}"#);
//! assert_eq!(response.status, 201);
//! println!("{}", response.to_json()); // {"success":true,"aggregateId":…}
//!
//! // Typed: the same command again is a replay — the original event, nothing new.
//! let command = CreateUser::new(id, "user@example.com").first_name("John");
//! assert!(matches!(store.create_user(&command)?, Outcome::Replayed(_)));
//!
//! // People change their email: the old one is free again at once.
//! let update = UpdateUser::new(id).email("john@example.com");
//! assert!(matches!(store.update_user(&update)?, Outcome::Recorded(_)));
//!
//! // Another user may not take the email (409 naming `email`).
//! let taken = CreateUser::new("6fa459ea-ee8a-3ca4-894e-db77e160355e", "JOHN@example.com");
//! assert!(matches!(store.create_user(&taken)?, Outcome::Rejected(_)));
//!
//! let user = store.user(id.parse().unwrap())?.expect("created above");
//! assert_eq!(user.profile.email, "john@example.com");
//! assert_eq!(store.head_position()?, 2);
//! assert!(store.verify()?.is_sound());
//! # Ok(())
//! # }
//! ```
//!
//! Layers, each knowing only the one below: [`contract`] (wire JSON) →
//! [`Store`] (one redb transaction per command or batch) → the
//! [`pipeline`] (load, decide, append, for any command) → the commands
//! ([`CreateUser`], [`UpdateUser`]: validation and decisions, pure
//! functions) and the user's [`fold`] → the event log with its checksummed
//! [`codec`].

#![deny(missing_docs)]

mod batch;
#[cfg(not(target_family = "wasm"))]
mod checksums;
mod clock;
pub mod codec;
mod command;
#[cfg(not(target_family = "wasm"))]
mod commits;
pub mod contract;
mod email;
mod error;
mod event;
mod field;
#[cfg(not(target_family = "wasm"))]
pub mod group;
#[cfg(all(feature = "http", not(target_family = "wasm")))]
pub mod http;
#[cfg(not(target_family = "wasm"))]
mod journal;
mod log;
mod memory;
pub mod pipeline;
mod readonly;
mod scope;
mod store;
mod subscribe;
mod sync;
mod user;
mod verify;

pub use batch::{
    BATCH_FORMAT, BATCH_FORMAT_HEADER, BATCH_HEAD_BYTES, BatchError, BatchKind, MAX_BATCH_BYTES,
    MAX_BATCH_ITEMS, check_head,
};
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub use clock::SystemClock;
pub use clock::{Clock, ManualClock};
pub use codec::DecodeError;
pub use command::{Command, CreateUser, Decision, DeleteUser, Intent, Outcome, UpdateUser};
pub use contract::{MAX_BODY_BYTES, Response};
pub use error::{ErrorKind, StoreError};
pub use event::{Event, RecordedEvent, Refusal, UserCreated, UserUpdated, email_key};
pub use field::{Field, FieldError, Rejection};
pub use memory::MemoryBackend;
/// The trait a custom storage backend implements, re-exported from redb for
/// [`StoreBuilder::backend`].
pub use redb::StorageBackend;
pub use scope::Scope;
pub use store::{DEFAULT_CACHE_BYTES, STORE_FORMAT, Store, StoreBuilder};
#[cfg(not(target_family = "wasm"))]
pub use subscribe::CommitListener;
pub use subscribe::Subscription;
pub use sync::{ImportSummary, Push, ReplySummary, pull_batch, reply_batch, watermark};
pub use user::{Sources, User, fold};
pub use verify::{Finding, VerifyReport};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
