//! Failures as real JavaScript `Error` objects with a stable `name`, so that
//! callers can branch on `err.name` instead of parsing messages.

use std::fmt::Display;

use spkey_store::StoreError;
use wasm_bindgen::JsValue;

/// The stable `name`s of the errors this package throws.
pub mod names {
    /// The store (its OPFS file) is open elsewhere: another tab or worker.
    pub const LOCKED: &str = "StoreLockedError";
    /// The store's bytes are damaged: a checksum, an index or a page failed.
    pub const CORRUPT: &str = "CorruptStoreError";
    /// The store was written by a newer version of this package.
    pub const UNSUPPORTED_FORMAT: &str = "UnsupportedFormatError";
    /// The storage underneath failed (I/O, quota).
    pub const STORAGE: &str = "StorageError";
    /// An argument was not what the method takes.
    pub const INVALID_ARGUMENT: &str = "InvalidArgumentError";
    /// The method needs something this runtime lacks (OPFS outside a
    /// dedicated Worker).
    pub const NOT_SUPPORTED: &str = "NotSupportedError";
    /// The store was closed.
    pub const CLOSED: &str = "StoreClosedError";
    /// A sync batch was refused whole (damaged, foreign, invalid); nothing
    /// changed.
    pub const BATCH_REFUSED: &str = "BatchRefusedError";
}

/// A JavaScript `Error` with the given `name`.
pub fn js_error(name: &str, message: impl Display) -> JsValue {
    let error = js_sys::Error::new(&message.to_string());
    error.set_name(name);
    error.into()
}

/// The JavaScript error for a store failure.
pub fn store_error(error: StoreError) -> JsValue {
    let name = match &error {
        StoreError::Locked => names::LOCKED,
        StoreError::Corrupt { .. } | StoreError::Inconsistent(_) | StoreError::Damaged(_) => {
            names::CORRUPT
        }
        StoreError::UnsupportedFormat { .. } => names::UNSUPPORTED_FORMAT,
        StoreError::Batch(_) => names::BATCH_REFUSED,
        StoreError::NotAStore(_) => names::INVALID_ARGUMENT,
        _ => names::STORAGE,
    };
    js_error(name, error)
}
