//! spkey-store for JavaScript: the same store, the same contract, in
//! browsers, Node and edge runtimes.
//!
//! A thin adapter: every rule lives in the core crate. This crate turns JS
//! values into the core's inputs, the core's bodies into JS objects (through
//! serde, so their TypeScript types are generated from the Rust types), and
//! failures into JS `Error`s with a stable `name`.
//!
//! Numbers: positions and versions cross into JavaScript as plain numbers
//! (`f64`). They count events, so they stay far below 2^53, where every
//! integer is exact.

#![deny(missing_docs)]

mod error;
mod opfs;

use serde::Serialize;
use spkey_store::contract::{Response, event_json, user_json};
use spkey_store::{ErrorKind, MemoryBackend, Store};
use wasm_bindgen::prelude::*;

pub use error::names;
use error::{js_error, store_error};
use opfs::OpfsBackend;

// The API's names for the generated types (their Rust names describe them as
// JSON shapes), narrowed to what each method returns so that a caller can
// switch on them: the shapes stay generated; only the literals that the
// Rust types cannot say (`success: true`, the status codes, which `data`
// goes with which `eventType`) and the request body are written here.
// `tests/types` holds them to the generated shapes under strict `tsc`.
#[wasm_bindgen(typescript_custom_section)]
const TS_NAMES: &'static str = r#"
/** The body `createUser` takes, as the API does (or its JSON text). A
 * field set to `undefined` is left out, as `JSON.stringify` leaves it. */
export interface CreateUserRequest {
    userId: string;
    email: string;
    firstName?: string | null | undefined;
    lastName?: string | null | undefined;
    phoneNumber?: string | null | undefined;
}
/** The body `updateUser` takes (or its JSON text): the fields to change;
 * `null` clears an optional one, `undefined` leaves it out. */
export interface UpdateUserRequest {
    userId?: string | undefined;
    email?: string | undefined;
    firstName?: string | null | undefined;
    lastName?: string | null | undefined;
    phoneNumber?: string | null | undefined;
}
/** The body `deleteUser` takes (or its JSON text), if any: `{}` or the
 * path's `userId`. */
export interface DeleteUserRequest {
    userId?: string | undefined;
}
/** A recorded event: `data` is what its `eventType` says. */
export type RecordedEvent =
    | (Omit<EventJson, "eventType" | "data"> & { eventType: "UserCreated"; data: UserJson })
    | (Omit<EventJson, "eventType" | "data"> & { eventType: "UserUpdated"; data: UpdateJson })
    | (Omit<EventJson, "eventType" | "data"> & { eventType: "UserErased" | "Redacted"; data: Pick<UpdateJson, "userId"> })
    | (Omit<EventJson, "eventType" | "data"> & { eventType: "UserCreationRejected" | "UserUpdateRejected" | "UserErasureRejected"; data: RejectionJson });
/** The success body: 201 for a creation, 200 for an update or a replay.
 * `if (answer.success)` narrows. */
export interface CreateUserResponse extends Omit<SuccessBody, "success" | "event"> {
    success: true;
    event: RecordedEvent;
}
/** The success body of `updateUser` (always 200, so no `WithStatus`
 * form: an error body's `code` is its status). */
export type UpdateUserResponse = CreateUserResponse;
/** The success body of `deleteUser` (200; a replay answers the same). */
export type DeleteUserResponse = CreateUserResponse;
/** The error body: 400, 404 (an update of no user), 409 or 413 (returned,
 * never thrown). */
export interface ErrorResponse extends Omit<ErrorBody, "code"> {
    success?: undefined;
    code: 400 | 404 | 409 | 413;
}
/** `createUserWithStatus`: the status beside the body, narrowed together. */
export type CreateUserAnswer =
    | { status: 201 | 200; body: CreateUserResponse }
    | { status: 400 | 409 | 413; body: ErrorResponse };

/** A user's current state. */
export type User = UserStateJson;
/** The `name` of every error this package throws. */
export type SpkeyErrorName =
    | "StoreLockedError"
    | "CorruptStoreError"
    | "UnsupportedFormatError"
    | "NotAStoreError"
    | "ReadOnlyStoreError"
    | "StorageError"
    | "InvalidArgumentError"
    | "NotSupportedError"
    | "StoreClosedError"
    | "BatchRefusedError"
    | "HubUnreachableError"
    | "HubRefusedError"
    | "AbortError"
    | "TimeoutError";
/** An error this package throws; `status` on `HubRefusedError`.
 *  `sync` stopped by its `signal` throws `AbortError`, or `TimeoutError`
 *  for `AbortSignal.timeout`. */
export interface SpkeyError extends Error {
    name: SpkeyErrorName;
    status?: number;
}
"#;

/// Where a store's bytes live, kept to take snapshots of them, and the
/// scratch they are rewritten through after an erasure (the core's
/// `backend_and_scratch`): OPFS has no rename, and a snapshot must not
/// carry an erased user's values in free pages either.
enum Bytes {
    Memory(MemoryBackend, MemoryBackend),
    Opfs(OpfsBackend, OpfsBackend),
}

impl Bytes {
    /// A store on these bytes (created when empty), finishing a rewrite
    /// a closed tab or a crash cut short.
    fn open(&self) -> Result<Store, JsValue> {
        let builder = Store::builder().clock(clock);
        match self {
            Bytes::Memory(main, scratch) => {
                builder.backend_and_scratch(main.clone(), scratch.clone())
            }
            Bytes::Opfs(main, scratch) => {
                builder.backend_and_scratch(main.clone(), scratch.clone())
            }
        }
        .map_err(store_error)
    }

    /// The store on these bytes with them, or the error with the bytes
    /// let go.
    fn opened(self) -> Result<(Store, Bytes), JsValue> {
        match self.open() {
            Ok(store) => Ok((store, self)),
            Err(error) => {
                self.release();
                Err(error)
            }
        }
    }

    /// Lets the OPFS files go, for the next open (the store leaves its
    /// handles open: it is reopened on them after a rewrite).
    fn release(&self) {
        if let Bytes::Opfs(main, scratch) = self {
            main.release();
            scratch.release();
        }
    }
}

/// An event store: `POST /users/{id}/CreateUser` and `UpdateUser`
/// answered locally.
#[wasm_bindgen]
pub struct EventStore {
    /// `None` once closed.
    open: Option<(Store, Bytes)>,
}

/// The browser's clock: `SystemTime::now()` panics on this target.
fn clock() -> i64 {
    js_sys::Date::now() as i64
}

/// Plain JS values — objects, arrays, numbers — by way of JSON text, which
/// the core already writes for the wire: one serializer in the binary
/// instead of two, and `JSON.parse` is as fast as building objects by hand.
fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    let text = serde_json::to_string(value).map_err(|e| js_error(ErrorKind::Storage.name(), e))?;
    js_sys::JSON::parse(&text)
}

/// Recorded events as a JS array of their wire JSON.
fn events_js(
    events: Result<Vec<spkey_store::RecordedEvent>, spkey_store::StoreError>,
) -> Result<JsValue, JsValue> {
    let events = events.map_err(store_error)?;
    to_js(&events.iter().map(event_json).collect::<Vec<_>>())
}

/// A count or position from JS: a non-negative integer within 2^53.
fn whole_number(name: &str, value: f64) -> Result<u64, JsValue> {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    if value.fract() == 0.0 && (0.0..=MAX_SAFE).contains(&value) {
        Ok(value as u64)
    } else {
        // JS formats the number: Rust's float formatting would add 15 KB.
        let shown = js_sys::Number::from(value)
            .to_string_with_radix(10)
            .map_or_else(|_| String::from("a number out of range"), String::from);
        Err(js_error(
            names::INVALID_ARGUMENT,
            format!("{name} must be a whole number from 0 to 2^53 - 1, got {shown}"),
        ))
    }
}

fn parse_id(id: &str) -> Result<uuid::Uuid, JsValue> {
    uuid::Uuid::try_parse(id).map_err(|e| {
        js_error(
            names::INVALID_ARGUMENT,
            format!("'{id}' is not a UUID: {e}"),
        )
    })
}

/// The request body as bytes: a string is taken as JSON text, anything
/// else is serialized with `JSON.stringify`.
fn body_bytes(body: &JsValue) -> Result<Vec<u8>, Response> {
    if let Some(text) = body.as_string() {
        return Ok(text.into_bytes());
    }
    match js_sys::JSON::stringify(body) {
        Ok(text) => text
            .as_string()
            .map(String::into_bytes)
            .ok_or_else(|| Response::invalid_body("is required")),
        Err(_) => Err(Response::invalid_body(
            "cannot be expressed as JSON (a cycle or a BigInt?)",
        )),
    }
}

#[wasm_bindgen]
impl EventStore {
    /// A new, empty store in memory. Keep it with `snapshot()`.
    #[wasm_bindgen(js_name = inMemory)]
    pub fn in_memory() -> Result<EventStore, JsValue> {
        EventStore::on(Bytes::Memory(MemoryBackend::new(), MemoryBackend::new()))
    }

    /// A durable store in the origin's private file system (OPFS), created
    /// when missing. Only in a dedicated Worker (a `NotSupportedError`
    /// elsewhere); a second open of the same name while one is open is a
    /// `StoreLockedError`.
    #[wasm_bindgen(js_name = openOpfs)]
    pub async fn open_opfs(name: String) -> Result<EventStore, JsValue> {
        let main = OpfsBackend::open(&name).await?;
        let scratch = match OpfsBackend::open(&format!("{name}-scratch")).await {
            Ok(scratch) => scratch,
            Err(error) => {
                main.release();
                return Err(error);
            }
        };
        EventStore::on(Bytes::Opfs(main, scratch))
    }

    /// A store in memory restored from `snapshot()` bytes. Damaged bytes are
    /// a `CorruptStoreError` (or a `StorageError`), never a wrong store.
    #[wasm_bindgen(js_name = fromSnapshot)]
    pub fn from_snapshot(bytes: &[u8]) -> Result<EventStore, JsValue> {
        EventStore::on(Bytes::Memory(
            MemoryBackend::from_bytes(bytes.to_vec()),
            MemoryBackend::new(),
        ))
    }

    fn on(bytes: Bytes) -> Result<EventStore, JsValue> {
        Ok(EventStore {
            open: Some(bytes.opened()?),
        })
    }

    /// After a command or a sync that erased a user: the store is closed,
    /// which rewrites its bytes through the scratch, and opened again, so
    /// that no free page of the OPFS file, and no snapshot, keeps the
    /// erased values. A failed close leaves the rewrite to the opening.
    fn settle(&mut self) -> Result<(), JsValue> {
        let Some((store, bytes)) = self.open.take_if(|(store, _)| store.holds_erased_values())
        else {
            return Ok(());
        };
        let _ = store.close();
        self.open = Some(bytes.opened()?);
        Ok(())
    }

    fn store(&self) -> Result<&Store, JsValue> {
        self.open
            .as_ref()
            .map(|(store, _)| store)
            .ok_or_else(|| js_error(names::CLOSED, "the store is closed"))
    }

    /// The whole store as bytes, to keep in IndexedDB, a download or a file
    /// and restore with `fromSnapshot`. Holds every command acknowledged so
    /// far.
    pub fn snapshot(&self) -> Result<Vec<u8>, JsValue> {
        let (_, bytes) = self
            .open
            .as_ref()
            .ok_or_else(|| js_error(names::CLOSED, "the store is closed"))?;
        match bytes {
            Bytes::Memory(memory, _) => Ok(memory.snapshot()),
            Bytes::Opfs(opfs, _) => opfs
                .snapshot()
                .map_err(|e| js_error(ErrorKind::Storage.name(), e)),
        }
    }

    /// `POST /users/{id}/CreateUser`: returns the API's body — the success
    /// body (201, or 200 for a replay) or the error body (400, 409, 413).
    /// Contract outcomes are returned, never thrown; a storage failure
    /// throws a `StorageError`.
    #[wasm_bindgen(
        js_name = createUser,
        unchecked_return_type = "CreateUserResponse | ErrorResponse"
    )]
    pub fn create_user(
        &self,
        id: &str,
        #[wasm_bindgen(unchecked_param_type = "CreateUserRequest | string")] body: JsValue,
    ) -> Result<JsValue, JsValue> {
        let response = self.respond("CreateUser", id, &body)?;
        to_js(&response.body)
    }

    /// `POST /users/{id}/UpdateUser`: any of `email`, `firstName`,
    /// `lastName`, `phoneNumber` (`null` clears an optional field). Returns
    /// the success body (200) or the error body (400, 404, 409, 413); a
    /// storage failure throws.
    #[wasm_bindgen(
        js_name = updateUser,
        unchecked_return_type = "UpdateUserResponse | ErrorResponse"
    )]
    pub fn update_user(
        &self,
        id: &str,
        #[wasm_bindgen(unchecked_param_type = "UpdateUserRequest | string")] body: JsValue,
    ) -> Result<JsValue, JsValue> {
        let response = self.respond("UpdateUser", id, &body)?;
        to_js(&response.body)
    }

    /// `POST /users/{id}/DeleteUser`: erases the user — its email is free
    /// at once, its id stays taken, its earlier events keep only their
    /// kind and time. `body` is `{}`, `{ userId }` or left out. Returns the
    /// success body (200, the same again for a replay) or the error body
    /// (400, 404, 413); a storage failure throws. The erased values leave
    /// the store's bytes before it returns: its rows, and (the store
    /// rewritten through a scratch file) every free page of its OPFS file.
    #[wasm_bindgen(
        js_name = deleteUser,
        unchecked_return_type = "DeleteUserResponse | ErrorResponse"
    )]
    pub fn delete_user(
        &mut self,
        id: &str,
        #[wasm_bindgen(unchecked_param_type = "DeleteUserRequest | string | undefined")]
        body: JsValue,
    ) -> Result<JsValue, JsValue> {
        let body = if body.is_undefined() {
            JsValue::from_str("{}")
        } else {
            body
        };
        let response = self.respond("DeleteUser", id, &body)?;
        self.settle()?;
        to_js(&response.body)
    }

    /// As `createUser`, with the HTTP status beside the body:
    /// `{ status, body }`, to tell a 201 from a replay's 200.
    #[wasm_bindgen(
        js_name = createUserWithStatus,
        unchecked_return_type = "CreateUserAnswer"
    )]
    pub fn create_user_with_status(
        &self,
        id: &str,
        #[wasm_bindgen(unchecked_param_type = "CreateUserRequest | string")] body: JsValue,
    ) -> Result<JsValue, JsValue> {
        self.with_status("CreateUser", id, &body)
    }

    /// `{ status, body }` of the command's answer.
    fn with_status(&self, command: &str, id: &str, body: &JsValue) -> Result<JsValue, JsValue> {
        #[derive(Serialize)]
        struct WithStatus<'a> {
            status: u16,
            body: &'a spkey_store::contract::Body,
        }
        let response = self.respond(command, id, body)?;
        to_js(&WithStatus {
            status: response.status,
            body: &response.body,
        })
    }

    /// The contract's answer to the command, or the store's failure thrown
    /// as the named error of its kind (a damaged store is a
    /// `CorruptStoreError` here as in every other method).
    fn respond(&self, command: &str, id: &str, body: &JsValue) -> Result<Response, JsValue> {
        let store = self.store()?;
        match body_bytes(body) {
            Ok(bytes) => store
                .try_command_wire(command, id, &bytes)
                .map_err(store_error),
            Err(response) => Ok(response),
        }
    }

    /// The user's current state, or `null` when there is none. An `id` that
    /// is not a UUID is an `InvalidArgumentError`.
    #[wasm_bindgen(unchecked_return_type = "User | null")]
    pub fn user(&self, id: &str) -> Result<JsValue, JsValue> {
        let id = parse_id(id)?;
        match self.store()?.user(id).map_err(store_error)? {
            Some(user) => to_js(&user_json(&user)),
            None => Ok(JsValue::NULL),
        }
    }

    /// Events in position order, from `fromPosition` (default 1) on, at most
    /// `limit` of them (default: all).
    #[wasm_bindgen(unchecked_return_type = "RecordedEvent[]")]
    pub fn events(
        &self,
        #[wasm_bindgen(js_name = fromPosition)] from_position: Option<f64>,
        limit: Option<f64>,
    ) -> Result<JsValue, JsValue> {
        let from = whole_number("fromPosition", from_position.unwrap_or(1.0))?;
        let limit = match limit {
            Some(limit) => whole_number("limit", limit)? as usize,
            None => usize::MAX,
        };
        events_js(self.store()?.events(from, limit))
    }

    /// The position of the last event; 0 for an empty store.
    #[wasm_bindgen(js_name = headPosition)]
    pub fn head_position(&self) -> Result<f64, JsValue> {
        let head = self.store()?.head_position().map_err(store_error)?;
        Ok(head as f64)
    }

    /// Checks every event and index row; throws a `CorruptStoreError` with
    /// the findings when the store is damaged.
    pub fn verify(&self) -> Result<(), JsValue> {
        let report = self.store()?.verify().map_err(store_error)?;
        if report.is_sound() {
            Ok(())
        } else {
            let findings: Vec<String> = report.findings.iter().map(|f| f.to_string()).collect();
            Err(js_error(ErrorKind::Corrupt.name(), findings.join("; ")))
        }
    }

    /// Sync: the pending events as a push batch for the hub (a native
    /// store: `Store::accept`, or `spkey accept`), over any transport.
    pub fn push(&self) -> Result<Vec<u8>, JsValue> {
        self.store()?.push().map_err(store_error)
    }

    /// Sync: applies the hub's reply. Accepted events stop being pending;
    /// each rejected one gets its compensation (see `rejections()`).
    /// A refused batch throws a `BatchRefusedError` and changes nothing.
    #[wasm_bindgen(
        js_name = applyReply,
        unchecked_return_type = "{ accepted: number; rejected: number; alreadyApplied: number }"
    )]
    pub fn apply_reply(&mut self, reply: &[u8]) -> Result<JsValue, JsValue> {
        let summary = self.store()?.apply_reply(reply).map_err(store_error)?;
        self.settle()?;
        to_js(&summary)
    }

    /// Sync: imports the hub's pull batch (the hub's `Store::export` or
    /// `spkey export --since` with this store's `pullCursor()`).
    #[wasm_bindgen(
        js_name = importBatch,
        unchecked_return_type = "{ imported: number; own: number; rebased: number; cursor: number }"
    )]
    pub fn import_batch(&mut self, batch: &[u8]) -> Result<JsValue, JsValue> {
        let summary = self.store()?.import(batch).map_err(store_error)?;
        self.settle()?;
        to_js(&summary)
    }

    /// Sync: the hub position imported up to.
    #[wasm_bindgen(js_name = pullCursor)]
    pub fn pull_cursor(&self) -> Result<f64, JsValue> {
        Ok(self.store()?.pull_cursor().map_err(store_error)? as f64)
    }

    /// Sync: the events the hub has not answered yet.
    #[wasm_bindgen(unchecked_return_type = "RecordedEvent[]")]
    pub fn pending(&self) -> Result<JsValue, JsValue> {
        events_js(self.store()?.pending())
    }

    /// Sync: the rejections the hub sent back (`UserCreationRejected` and
    /// `UserUpdateRejected` events, whose `data` is the API's error body
    /// for the refused command).
    #[wasm_bindgen(unchecked_return_type = "RecordedEvent[]")]
    pub fn rejections(&self) -> Result<JsValue, JsValue> {
        events_js(self.store()?.rejections())
    }

    /// Closes the store, releasing its OPFS file for the next open. Later
    /// calls throw a `StoreClosedError`; closing twice is harmless.
    pub fn close(&mut self) -> Result<(), JsValue> {
        match self.open.take() {
            Some((store, bytes)) => {
                let closed = store.close().map_err(store_error);
                bytes.release();
                closed
            }
            None => Ok(()),
        }
    }
}

impl Drop for EventStore {
    /// A store freed without `close()` lets its OPFS files go too.
    fn drop(&mut self) {
        if let Some((store, bytes)) = self.open.take() {
            drop(store);
            bytes.release();
        }
    }
}
