//! The hub's side of sync: accepting a device's push, and the pull batch of
//! what the hub has accepted.

use super::{bad, creation, untrusted_events};
use crate::batch::{self, BatchKind, EventsV1, OutcomeV1, ReplyItemV1, ReplyV1};
use crate::error::StoreError;
use crate::log::{self, EVENTS, Executed, Source};
use crate::store::Store;
use crate::user::{FieldError, Rejection};

impl Store {
    /// The hub's side of a push: decodes and re-validates every event, decides
    /// each against the hub's state, appends the accepted ones in one
    /// transaction, and returns the reply. An event seen before is accepted
    /// again at its first position, so a repeated push gets the same reply
    /// and changes nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError::Batch`] when the batch is damaged, oversized, of another
    /// kind, from this store itself, or carries an event that is not a valid
    /// creation by its sender: nothing is applied. Otherwise the storage
    /// failures of [`StoreError`].
    pub fn accept(&self, push: &[u8]) -> Result<Vec<u8>, StoreError> {
        let (sender, events) = untrusted_events(self, push, BatchKind::Push)?;
        if let Some(index) = events.iter().position(|e| e.origin != sender) {
            return Err(bad(index, "was not recorded by the batch's sender"));
        }
        let items = self.sync_step(|writer| {
            events
                .iter()
                .map(|recorded| {
                    let outcome = match writer.position_of(recorded.event_id)? {
                        Some(position) => Ok(position),
                        None => match writer.execute(creation(recorded), Source::From(recorded))? {
                            Executed::Recorded(event) => Ok(event.position),
                            // The same data, but created by another event
                            // (another device): this one is not the user's
                            // creation.
                            Executed::AlreadyRecorded(_) => {
                                Err(Rejection::Conflict(vec![FieldError::created_elsewhere()]))
                            }
                            Executed::Rejected(rejection) => Err(rejection),
                        },
                    };
                    Ok((recorded.event_id, outcome))
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })?;
        let details: Vec<Vec<(&str, &str)>> = items
            .iter()
            .map(|(_, outcome)| match outcome {
                Err(rejection) => rejection
                    .details()
                    .iter()
                    .map(|d| (d.field.as_str(), d.message.as_str()))
                    .collect(),
                Ok(_) => Vec::new(),
            })
            .collect();
        let reply = ReplyV1 {
            sender: self.store_id().into_bytes(),
            items: items
                .iter()
                .zip(details)
                .map(|((event_id, outcome), details)| ReplyItemV1 {
                    event_id: event_id.into_bytes(),
                    outcome: match outcome {
                        Ok(position) => OutcomeV1::Accepted {
                            hub_position: *position,
                        },
                        Err(rejection) => OutcomeV1::Rejected {
                            code: rejection.code(),
                            details: details.into(),
                        },
                    },
                })
                .collect::<Vec<_>>()
                .into(),
        };
        Ok(batch::encode(BatchKind::Reply, &reply))
    }

    /// The hub's side of a pull: its events after hub position `since`, at
    /// most `limit` of them, as a pull batch for [`import`](Self::import).
    ///
    /// # Errors
    ///
    /// The read failures of [`StoreError`].
    pub fn export(&self, since: u64, limit: usize) -> Result<Vec<u8>, StoreError> {
        let limit = limit.min(batch::MAX_BATCH_ITEMS);
        self.read(|txn| {
            let events = txn.open_table(EVENTS)?;
            let from = log::u64_bytes(since.saturating_add(1));
            let mut bytes = Vec::new();
            for row in events.range(&from[..]..)?.take(limit) {
                bytes.push(row?.1.value().to_vec());
            }
            Ok(batch::encode(
                BatchKind::Pull,
                &EventsV1 {
                    sender: self.store_id().into_bytes(),
                    events: bytes.iter().map(Vec::as_slice).collect::<Vec<_>>().into(),
                },
            ))
        })
    }
}
