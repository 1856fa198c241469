//! The browser's stand-in for `redo.rs`: a wasm store keeps no journal, so
//! a [`Writer`](super::Writer) records nothing for one.

use super::Tab;
use crate::error::StoreError;

/// Records nothing.
#[derive(Default)]
pub(super) struct Recorder {}

impl Recorder {
    #[inline]
    pub(super) fn record(
        &mut self,
        _tab: Tab,
        _key: &[u8],
        _value: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}
