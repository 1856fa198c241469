//! Where the store's time comes from.
//!
//! `SystemTime::now()` panics on `wasm32-unknown-unknown`, so the core never
//! calls it there: time is whatever clock the caller supplies (the wasm
//! adapter passes `Date.now()`), and the system clock exists only on targets
//! that have one.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A source of wall-clock time in milliseconds since the Unix epoch (UTC).
pub trait Clock: Send + Sync + 'static {
    /// The current time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

impl<F: Fn() -> i64 + Send + Sync + 'static> Clock for F {
    fn now_ms(&self) -> i64 {
        self()
    }
}

/// The operating system's clock. Not available on `wasm32-unknown-unknown`,
/// which has none; supply a [`Clock`] there.
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        use std::time::{SystemTime, UNIX_EPOCH};
        // A system clock set before 1970 reads as the epoch; the store then
        // records time 0 instead of refusing every command.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// The operating system's clock where the target has one: the clock a
/// store stamps with unless given another.
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub(crate) fn system() -> Option<Arc<dyn Clock>> {
    Some(Arc::new(SystemClock))
}

/// None on `wasm32-unknown-unknown`.
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub(crate) fn system() -> Option<Arc<dyn Clock>> {
    None
}

/// A clock that reads what it is set to: for tests, replays and fixtures.
/// Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock reading `ms`.
    pub fn new(ms: i64) -> Self {
        ManualClock(Arc::new(AtomicI64::new(ms)))
    }

    /// Sets the time to `ms`.
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
