//! A redb storage backend over the Origin Private File System.
//!
//! `FileSystemSyncAccessHandle` gives synchronous reads, writes and flushes,
//! which is what redb's backend needs; browsers offer it only in dedicated
//! Workers. Opening the handle is asynchronous, everything after is not. The
//! handle is exclusive: while one store holds it, a second open of the same
//! name (another tab, another worker) fails.

use std::io;

use spkey_store::{ErrorKind, StorageBackend};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    DedicatedWorkerGlobalScope, DomException, FileSystemDirectoryHandle, FileSystemFileHandle,
    FileSystemGetFileOptions, FileSystemReadWriteOptions, FileSystemSyncAccessHandle,
};

use crate::error::{js_error, names};

// The unsafe Send/Sync below rest on there being one thread. A build with
// wasm threads (the `atomics` target feature) must not compile.
#[cfg(target_feature = "atomics")]
compile_error!("OpfsBackend assumes single-threaded wasm; it is not safe with wasm threads");

/// A store file in OPFS, held through its exclusive sync access handle.
/// Clones share the handle.
#[derive(Debug, Clone)]
pub struct OpfsBackend {
    handle: FileSystemSyncAccessHandle,
}

// SAFETY: redb requires backends to be Send + Sync. This crate is built for
// wasm32-unknown-unknown without the atomics feature (enforced above), where
// there is exactly one thread, so the JS handle can never be reached from
// another thread.
unsafe impl Send for OpfsBackend {}
// SAFETY: as for Send.
unsafe impl Sync for OpfsBackend {}

fn io_error(what: &str, error: JsValue) -> io::Error {
    let detail = error
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap_or_else(|| shown(&error));
    io::Error::other(format!("OPFS {what} failed: {detail}"))
}

fn at(offset: u64) -> FileSystemReadWriteOptions {
    let options = FileSystemReadWriteOptions::new();
    // Offsets stay far below 2^53, where f64 is exact.
    options.set_at(offset as f64);
    options
}

impl OpfsBackend {
    /// Opens (creating when missing) the file `name` in the origin's private
    /// file system. Only in a dedicated Worker.
    pub async fn open(name: &str) -> Result<OpfsBackend, JsValue> {
        let scope = js_sys::global()
            .dyn_into::<DedicatedWorkerGlobalScope>()
            .map_err(|_| {
                js_error(
                    names::NOT_SUPPORTED,
                    "openOpfs works only in a dedicated Worker: browsers offer \
                     synchronous OPFS access nowhere else",
                )
            })?;
        let root: FileSystemDirectoryHandle =
            JsFuture::from(scope.navigator().storage().get_directory())
                .await?
                .unchecked_into();
        let options = FileSystemGetFileOptions::new();
        options.set_create(true);
        let file: FileSystemFileHandle =
            JsFuture::from(root.get_file_handle_with_options(name, &options))
                .await
                .map_err(|e| {
                    js_error(
                        names::INVALID_ARGUMENT,
                        format!("cannot open OPFS file '{name}': {}", describe(&e)),
                    )
                })?
                .unchecked_into();
        let handle = JsFuture::from(file.create_sync_access_handle())
            .await
            .map_err(|e| {
                let taken = e
                    .dyn_ref::<DomException>()
                    .is_some_and(|d| d.name() == "NoModificationAllowedError");
                if taken {
                    js_error(
                        ErrorKind::Locked.name(),
                        format!("store '{name}' is open elsewhere (another tab or worker)"),
                    )
                } else {
                    js_error(ErrorKind::Storage.name(), describe(&e))
                }
            })?
            .unchecked_into();
        Ok(OpfsBackend { handle })
    }

    /// Releases the exclusive handle, so the name can be opened again.
    pub fn release(&self) {
        self.handle.close();
    }

    /// The whole file's bytes.
    pub fn snapshot(&self) -> io::Result<Vec<u8>> {
        let mut bytes = vec![0; self.len()? as usize];
        self.read(0, &mut bytes)?;
        Ok(bytes)
    }
}

fn describe(error: &JsValue) -> String {
    error
        .dyn_ref::<js_sys::Error>()
        .map(|e| format!("{}: {}", String::from(e.name()), String::from(e.message())))
        .or_else(|| {
            error
                .dyn_ref::<DomException>()
                .map(|d| format!("{}: {}", d.name(), d.message()))
        })
        .unwrap_or_else(|| shown(error))
}

/// A thrown JS value that is not an `Error`, as text: its own string form
/// (the package is built without `Debug` output).
fn shown(error: &JsValue) -> String {
    js_sys::JSON::stringify(error)
        .ok()
        .and_then(|text| text.as_string())
        .unwrap_or_else(|| String::from("a value that is not an Error"))
}

impl StorageBackend for OpfsBackend {
    fn len(&self) -> io::Result<u64> {
        let size = self.handle.get_size().map_err(|e| io_error("size", e))?;
        Ok(size as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let read = self
            .handle
            .read_with_u8_array_and_options(out, &at(offset))
            .map_err(|e| io_error("read", e))?;
        // Counts are converted before formatting: Rust's float formatting
        // would add 14 KB to the binary.
        let read = read as u64;
        if read != out.len() as u64 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("OPFS read {read} of {} bytes at {offset}", out.len()),
            ));
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.handle
            .truncate_with_f64(len as f64)
            .map_err(|e| io_error("truncate", e))
    }

    fn sync_data(&self) -> io::Result<()> {
        self.handle.flush().map_err(|e| io_error("flush", e))
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let written = self
            .handle
            .write_with_u8_array_and_options(data, &at(offset))
            .map_err(|e| io_error("write", e))?;
        let written = written as u64;
        if written != data.len() as u64 {
            return Err(io::Error::other(format!(
                "OPFS wrote {written} of {} bytes at {offset} (quota?)",
                data.len()
            )));
        }
        Ok(())
    }

    fn close(&self) -> io::Result<()> {
        // The handle outlives the store: it is reopened on it after a
        // rewrite. `release` lets it go.
        Ok(())
    }
}
