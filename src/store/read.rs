//! Reads: the shared read snapshot, the log, users, emails, and `verify`
//! (a scrub of every block, then the log against its indexes).

use super::*;

impl Store {
    /// Runs `f` on a consistent read snapshot of the log.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.read_tables(|snapshot| f(&snapshot.txn))
    }

    /// Runs `f` on the shared read snapshot, opening one if the last commit
    /// retired it.
    pub(crate) fn read_tables<T>(
        &self,
        f: impl FnOnce(&Snapshot) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        contain(|| {
            // Shared until the next commit natively; a fresh one per read
            // in the browser (see `wasm.rs`).
            let snapshot = self.snapshot()?;
            f(std::borrow::Borrow::borrow(&snapshot))
        })
    }

    pub(super) fn open_snapshot(&self) -> Result<Snapshot, StoreError> {
        let txn = self.db().begin_read()?;
        Ok(Snapshot {
            events: txn.open_table(EVENTS)?,
            streams: txn.open_table(STREAMS)?,
            emails: txn.open_table(EMAILS)?,
            users: txn.open_table(USERS)?,
            txn,
        })
    }

    /// Up to `limit` events from `from` (inclusive) on, in position order.
    pub fn events(&self, from: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_tables(|snapshot| {
            let mut out = Vec::with_capacity(limit.min(1024));
            for row in snapshot
                .events
                .range(&log::u64_bytes(from)[..]..)?
                .take(limit)
            {
                let (position, bytes) = row?;
                let position = log::read_u64("log key", position.value())?;
                out.push(log::decode_row(position, bytes.value())?);
            }
            Ok(out)
        })
    }

    /// Visits the events from position `from` on, in position order, until
    /// `visit` returns `false` or the log ends; returns how many it visited.
    /// Each event is decoded into the memory of the one before, so a scan
    /// allocates nothing per event once warm (clone what you keep), unlike
    /// collecting pages with [`events`](Self::events). The whole scan reads
    /// one snapshot of the log; a damaged event ends it with the error.
    pub fn scan(
        &self,
        from: u64,
        mut visit: impl FnMut(&RecordedEvent) -> bool,
    ) -> Result<u64, StoreError> {
        self.read_tables(|snapshot| {
            let (mut current, mut visited) = (None, 0);
            for row in snapshot.events.range(&log::u64_bytes(from)[..]..)? {
                let (position, bytes) = row?;
                let position = log::read_u64("log key", position.value())?;
                visited += 1;
                if !visit(log::decode_row_into(position, bytes.value(), &mut current)?) {
                    break;
                }
            }
            Ok(visited)
        })
    }

    /// One user's events in version order; empty for an unknown id.
    pub fn aggregate_events(&self, user_id: Uuid) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_tables(|s| log::stream(&s.events, &s.streams, user_id))
    }

    /// A user's current state, or `None` for an unknown id.
    pub fn user(&self, user_id: Uuid) -> Result<Option<User>, StoreError> {
        // One row, kept with the user's events; a store whose rows were
        // lost still answers, from the log (`verify` reports the loss).
        self.read_tables(|s| match log::state_row(&s.users, user_id)? {
            Some(user) => Ok(Some(user)),
            None => log::load_user(&s.events, &s.streams, user_id),
        })
    }

    /// The user holding `email` (case and surrounding space ignored), if any.
    pub fn user_id_by_email(&self, email: &str) -> Result<Option<Uuid>, StoreError> {
        self.read_tables(|s| log::email_holder(&s.emails, &crate::event::email_key(email), None))
    }

    /// The position of the last recorded event; 0 for an empty store.
    pub fn head_position(&self) -> Result<u64, StoreError> {
        self.read_tables(|s| log::head(&s.events))
    }

    /// Checks the whole store: every envelope decodes and its checksum holds,
    /// positions and versions run without gaps, and the indexes and the log
    /// match row for row, both ways. Returns the findings; `Err` only when
    /// the store cannot be read at all. Memory stays flat: nothing is
    /// collected per event (the journal's rows excepted, at most one
    /// checkpoint's worth). The journal is checked too: each record whole
    /// and in sequence, and the rows its records change holding what they
    /// last wrote. A store kept with block checksums (native stores opened
    /// by path) has every 4 KiB block of its file read from the disk and
    /// checked first; when any fails, the report lists those blocks
    /// ([`Finding::DamagedBlock`](crate::Finding::DamagedBlock)) and
    /// nothing else (its counts are 0), as the other checks would only
    /// meet them as read errors.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] when the store or its journal cannot be read.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        // The platform's checks first (native: the block scrub, and the
        // log checked with its journal).
        if let Some(report) = self.verify_beside()? {
            return Ok(report);
        }
        self.read(|txn| crate::verify::verify(txn, self.store_id))
    }
}
