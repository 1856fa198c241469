//! A device syncing with a hub over HTTP (feature `http`, which the `spkey`
//! CLI turns on; without it the library has no network code): push what is
//! pending, apply the reply, then pull until caught up. Every step is
//! idempotent, so after any failure the same call is safe to run again:
//! nothing is lost and nothing doubled.

use std::time::Duration;

use serde::Serialize;

use crate::batch::MAX_BATCH_BYTES;
use crate::error::StoreError;
use crate::store::Store;

/// What [`sync`] did. Serializes as
/// `{"pushed","accepted","rejected","pulled","cursor"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SyncSummary {
    /// Pending events pushed.
    pub pushed: usize,
    /// Of them, accepted by the hub.
    pub accepted: usize,
    /// Of them, refused by the hub (now compensated).
    pub rejected: usize,
    /// Events of others pulled and imported.
    pub pulled: usize,
    /// The hub position imported up to.
    pub cursor: u64,
}

/// Why a sync did not finish. What was applied before the failure stays
/// applied; running the sync again resumes.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The hub could not be reached (or the connection broke).
    #[error("cannot reach the hub: {0}")]
    Unreachable(String),
    /// The hub refused the request; its status and message.
    #[error("the hub answered {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The error body's `message`, or the body as text.
        message: String,
    },
    /// The local store failed, or refused the hub's batch.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The most pull rounds one sync makes before it stops (and reports what
/// it has): a hub appending faster than a device imports must not hold it.
const MAX_PULLS: usize = 1_000;

/// Pushes `store`'s pending events to the hub at `hub` (e.g.
/// `http://127.0.0.1:8080`), applies the reply, and pulls until caught up,
/// authenticating with `api_key` and the Bearer `token`.
///
/// # Errors
///
/// [`SyncError::Unreachable`] when the hub cannot be reached;
/// [`SyncError::Refused`] when it answers anything but 200 (its message is
/// kept); [`SyncError::Store`] when the local store fails or refuses a
/// batch from the hub.
pub fn sync(
    store: &Store,
    hub: &str,
    api_key: &str,
    token: &str,
) -> Result<SyncSummary, SyncError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let hub = hub.trim_end_matches('/');
    let call = |request: ureq::RequestBuilder<ureq::typestate::WithBody>, body: &[u8]| {
        answer(
            request
                .header("X-API-Key", api_key)
                .header("Authorization", &format!("Bearer {token}"))
                .content_type("application/octet-stream")
                .send(body),
        )
    };
    // pending() only reads; push() is a sync step (a write transaction), so
    // an idle device skips it.
    let mut summary = SyncSummary {
        pushed: store.pending()?.len(),
        ..SyncSummary::default()
    };
    if summary.pushed > 0 {
        let reply = call(agent.post(&format!("{hub}/sync/push")), &store.push()?)?;
        let applied = store.apply_reply(&reply)?;
        summary.accepted = applied.accepted;
        summary.rejected = applied.rejected;
    }
    for _ in 0..MAX_PULLS {
        let cursor = store.pull_cursor()?;
        let batch = answer(
            agent
                .get(&format!("{hub}/sync/pull?since={cursor}"))
                .header("X-API-Key", api_key)
                .header("Authorization", &format!("Bearer {token}"))
                .call(),
        )?;
        let imported = store.import(&batch)?;
        summary.pulled += imported.imported;
        summary.cursor = imported.cursor;
        if imported.cursor == cursor {
            break;
        }
    }
    Ok(summary)
}

/// The body of a 200, or the error it stands for.
fn answer(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Vec<u8>, SyncError> {
    let mut response = response.map_err(|e| SyncError::Unreachable(e.to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BATCH_BYTES as u64 + 1)
        .read_to_vec()
        .map_err(|e| SyncError::Unreachable(e.to_string()))?;
    if status == 200 {
        return Ok(body);
    }
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    Err(SyncError::Refused { status, message })
}
