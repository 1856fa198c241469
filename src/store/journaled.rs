//! Journal commits (native only): a commit's changes synced as one journal
//! record before redb commits without waiting for the disk, checkpoints,
//! and the journal's replay and close.

use std::sync::Mutex;

use super::*;
use crate::journal::Journal;

impl Store {
    /// Commits `txn`, whose changes are `redo`, through the journal: the
    /// record is synced first, then redb commits without waiting for the
    /// disk; a checkpoint follows when one is due.
    pub(super) fn commit_journaled(
        &self,
        txn: redb::WriteTransaction,
        journal: &mut Journal,
        redo: &[u8],
        changes: u64,
    ) -> Result<(), StoreError> {
        let seq = log::journal_seq(&txn)? + 1;
        log::set_journal_seq(&txn, seq)?;
        // On failure the transaction is dropped, so aborted: nothing was
        // acknowledged and redb holds nothing of it.
        journal.append(seq, redo, changes)?;
        if let Err(error) = txn.commit() {
            // The journal holds a record redb lacks: only a reopen, which
            // replays it, may write again.
            journal.fail();
            return Err(error.into());
        }
        if journal.full() {
            // The command is durable already: a failed checkpoint is retried
            // at the next commit, and the journal keeps every record.
            let _ = self.checkpoint(journal);
        }
        Ok(())
    }

    /// Closing's part for the journal: a checkpoint, then the journal cut
    /// back to its header, so a store closed cleanly is whole in its own
    /// file.
    pub(super) fn close_journal(&mut self) -> Result<(), StoreError> {
        let Some(journal) = self.platform.journal.take() else {
            return Ok(());
        };
        let mut journal = journal.into_inner().unwrap_or_else(|e| e.into_inner());
        if self.read_only || !journal.holds_records() {
            return Ok(());
        }
        contain(|| {
            self.checkpoint(&mut journal)?;
            journal.cut()
        })
    }

    /// Makes every commit durable in redb's own file; the journal then
    /// starts a new lap over the records redb now holds.
    pub(super) fn checkpoint(&self, journal: &mut Journal) -> Result<(), StoreError> {
        let mut txn = self.db().begin_write()?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| StoreError::Storage(e.into()))?;
        txn.commit()?;
        journal.restart();
        Ok(())
    }

    /// Attaches the journal in `file`: replays its records past redb's
    /// state into redb, durably (in memory for a read-only store); the
    /// journal's next lap then starts over them.
    pub(super) fn with_journal(
        mut self,
        file: Box<dyn StorageBackend>,
        checkpoint_every: u64,
    ) -> Result<Store, StoreError> {
        let txn = self.db().begin_write()?;
        let applied = log::journal_seq(&txn)?;
        let (mut journal, records) = Journal::open(
            file,
            self.store_id,
            applied,
            !self.read_only,
            checkpoint_every,
        )?;
        let mut seq = applied;
        let mut rebuild = false;
        for record in records.iter().filter(|record| record.seq > applied) {
            if record.seq != seq + 1 {
                return Err(StoreError::Damaged(format!(
                    "journal: record {} follows record {seq} of the store",
                    record.seq
                )));
            }
            log::apply_redo(&txn, &record.redo)?;
            rebuild |= log::from_before_format_3(&record.redo)?;
            seq = record.seq;
        }
        if seq > applied {
            // A journal written before format 3 holds email rows of the
            // old shape and no state rows, which the store's migration on
            // open did not see: both are rebuilt once more.
            if rebuild {
                log::rebuild_indexes(&txn)?;
            }
            log::set_journal_seq(&txn, seq)?;
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        // Replayed durably (or nothing to replay): every record is in redb.
        journal.restart();
        self.platform.journal = Some(Mutex::new(journal));
        Ok(self)
    }
}
