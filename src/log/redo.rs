//! The journal's redo records (native only; `no_redo.rs` is the browser's
//! stand-in): every row a [`Writer`] writes, encoded as the journal keeps
//! it, decoded and applied again on replay.

use redb::{TableDefinition, WriteTransaction};

use super::*;

/// Meta row: the sequence number of the last journal record this file
/// holds the changes of, u64 (see `journal.rs`); written in the commit of
/// those changes, so a replay applies each record once.
pub(crate) const META_JOURNAL_SEQ: &[u8] = b"journal_seq";

/// The last journal record applied in the state `txn` sees.
pub(crate) fn journal_seq(txn: &WriteTransaction) -> Result<u64, StoreError> {
    meta_u64(&txn.open_table(META)?, META_JOURNAL_SEQ)
}

/// Records that the state `txn` commits includes journal record `seq`. Not
/// a change the journal records: its replay writes it.
pub(crate) fn set_journal_seq(txn: &WriteTransaction, seq: u64) -> Result<(), StoreError> {
    txn.open_table(META)?
        .insert(META_JOURNAL_SEQ, &u64_bytes(seq)[..])?;
    Ok(())
}

impl Tab {
    /// Every table, for decoding a code.
    const ALL: [Tab; 8] = [
        Tab::Events,
        Tab::Streams,
        Tab::Emails,
        Tab::EventIds,
        Tab::Pending,
        Tab::Rejections,
        Tab::Meta,
        Tab::Users,
    ];

    /// The table of `code`, `None` for a code no version wrote.
    pub fn from_code(code: u8) -> Option<Tab> {
        Tab::ALL.into_iter().find(|t| *t as u8 == code)
    }

    /// Its name, as redb knows it.
    pub fn name(self) -> &'static str {
        match self {
            Tab::Events => "events",
            Tab::Streams => "streams",
            Tab::Emails => "emails",
            Tab::EventIds => "event_ids",
            Tab::Pending => "pending",
            Tab::Rejections => "rejections",
            Tab::Meta => "meta",
            Tab::Users => "users",
        }
    }

    /// Its definition.
    pub fn definition(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        match self {
            Tab::Events => EVENTS,
            Tab::Streams => STREAMS,
            Tab::Emails => EMAILS,
            Tab::EventIds => EVENT_IDS,
            Tab::Pending => PENDING,
            Tab::Rejections => REJECTIONS,
            Tab::Meta => META,
            Tab::Users => USERS,
        }
    }
}

/// One row change of a commit, as the journal records it: `value` `None`
/// removes the row.
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub(crate) struct Change<'a> {
    pub table: u8,
    #[serde(borrow)]
    pub key: &'a [u8],
    #[serde(borrow)]
    pub value: Option<&'a [u8]>,
}

/// The changes of one commit, each postcard-encoded, back to back.
pub(crate) type Redo = Vec<u8>;

/// One change of a redo record: its table, key and value (`None`:
/// removed).
pub(crate) type RowChange<'a> = (Tab, &'a [u8], Option<&'a [u8]>);

/// The changes of a redo record, in the order they were made.
///
/// # Errors
///
/// Each item is [`StoreError::Damaged`] when the bytes are not a change
/// (a record whose checksum held but that this version cannot read); the
/// iterator ends after it.
pub(crate) fn changes(mut redo: &[u8]) -> impl Iterator<Item = Result<RowChange<'_>, StoreError>> {
    std::iter::from_fn(move || {
        if redo.is_empty() {
            return None;
        }
        let change = postcard::take_from_bytes::<Change<'_>>(redo)
            .map_err(|e| StoreError::Damaged(format!("journal record: {e}")))
            .and_then(|(change, rest)| {
                let tab = Tab::from_code(change.table).ok_or_else(|| {
                    StoreError::Damaged(format!("journal record: unknown table {}", change.table))
                })?;
                redo = rest;
                Ok((tab, change.key, change.value))
            });
        if change.is_err() {
            redo = &[];
        }
        Some(change)
    })
}

/// Whether `redo` is a record of a version before format 3: one that
/// writes an event but no state row, or an email row of the old shape (the
/// key alone, the holder as the value).
///
/// # Errors
///
/// [`StoreError::Damaged`] as [`changes`].
pub(crate) fn from_before_format_3(redo: &[u8]) -> Result<bool, StoreError> {
    let (mut event, mut state) = (false, false);
    for change in changes(redo) {
        match change? {
            (Tab::Emails, _, Some(value)) if !value.is_empty() => return Ok(true),
            (Tab::Events, ..) => event = true,
            (Tab::Users, ..) => state = true,
            _ => {}
        }
    }
    Ok(event && !state)
}

/// Applies the changes encoded in `redo` to the tables of `txn`: the replay
/// of one journal record.
///
/// # Errors
///
/// [`StoreError::Damaged`] as [`changes`]; [`StoreError::Storage`] when a
/// table cannot be written.
pub(crate) fn apply_redo(txn: &WriteTransaction, redo: &[u8]) -> Result<(), StoreError> {
    for change in changes(redo) {
        let (tab, key, value) = change?;
        let mut table = txn.open_table(tab.definition())?;
        match value {
            Some(value) => table.insert(key, value)?,
            None => table.remove(key)?,
        };
    }
    Ok(())
}

/// Every row a [`Writer`] writes, as a redo record for the journal (see
/// `journal.rs`), once the store asks for one.
#[derive(Default)]
pub(super) struct Recorder {
    redo: Option<Redo>,
    /// How many rows were written.
    changes: u64,
}

impl Recorder {
    /// Adds one row change to the record, if one is kept.
    pub(super) fn record(
        &mut self,
        tab: Tab,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        if let Some(redo) = &mut self.redo {
            self.changes += 1;
            let change = Change {
                table: tab as u8,
                key,
                value,
            };
            postcard::to_io(&change, &mut *redo)
                .map_err(|e| StoreError::Inconsistent(format!("redo record: {e}")))?;
        }
        Ok(())
    }
}

impl Writer<'_, '_> {
    /// Records every change from now on as a redo record for the journal.
    pub fn record_redo(&mut self) {
        self.recorder.redo = Some(Vec::new());
    }

    /// The redo record of everything written, when recorded, and how many
    /// rows it changes.
    pub fn take_redo(&mut self) -> Option<(Redo, u64)> {
        self.recorder
            .redo
            .take()
            .map(|redo| (redo, self.recorder.changes))
    }
}

#[cfg(test)]
mod tests {
    use redb::TableHandle;

    use super::*;

    #[test]
    fn every_table_code_decodes_to_its_table_and_its_name_is_redbs() {
        for tab in Tab::ALL {
            assert_eq!(Tab::from_code(tab as u8), Some(tab));
            assert_eq!(tab.name(), tab.definition().name());
        }
        assert_eq!(Tab::from_code(0), None);
        assert_eq!(Tab::from_code(9), None);
    }
}
