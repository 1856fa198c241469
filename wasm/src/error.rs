//! Failures as real JavaScript `Error` objects with a stable `name`, so that
//! callers can branch on `err.name` instead of parsing messages.

use std::fmt::Display;

use spkey_store::StoreError;
use wasm_bindgen::JsValue;

/// The stable `name`s of the errors this package throws beside the
/// store's own kinds ([`spkey_store::ErrorKind::name`]: `StoreLockedError`,
/// `CorruptStoreError`, `UnsupportedFormatError`, `NotAStoreError`,
/// `ReadOnlyStoreError`, `BatchRefusedError`, `StorageError`).
pub mod names {
    /// An argument was not what the method takes.
    pub const INVALID_ARGUMENT: &str = "InvalidArgumentError";
    /// The method needs something this runtime lacks (OPFS outside a
    /// dedicated Worker).
    pub const NOT_SUPPORTED: &str = "NotSupportedError";
    /// The store was closed.
    pub const CLOSED: &str = "StoreClosedError";
}

/// A JavaScript `Error` with the given `name`.
pub fn js_error(name: &str, message: impl Display) -> JsValue {
    let error = js_sys::Error::new(&message.to_string());
    error.set_name(name);
    error.into()
}

/// The JavaScript error for a store failure, named by its kind.
pub fn store_error(error: StoreError) -> JsValue {
    js_error(error.kind().name(), error)
}
