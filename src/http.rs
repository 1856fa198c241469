//! A device syncing with a hub over HTTP (feature `http`, which the `spkey`
//! CLI turns on; without it the library has no network code): push what is
//! pending, apply the reply, then pull until caught up. Every step is
//! idempotent, so after any failure the same call is safe to run again:
//! nothing is lost and nothing doubled.

use std::time::Duration;

use serde::Serialize;

use crate::batch::{BATCH_FORMAT, BATCH_FORMAT_HEADER, MAX_BATCH_BYTES};
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
    /// The token provider could not give a token; its message.
    #[error("no token for the hub: {0}")]
    Token(String),
    /// The local store failed, or refused the hub's batch.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The most pull rounds one sync makes before it stops (and reports what
/// it has): a hub appending faster than a device imports must not hold it.
const MAX_PULLS: usize = 1_000;

/// The Bearer token a sync sends: one string, or a function asked before
/// each request (a device's token expires; the app's identity provider
/// refreshes it). A provider's `Err` ends the sync as
/// [`SyncError::Token`].
pub enum Token<'a> {
    /// The same token for every request.
    Fixed(&'a str),
    /// Asked before each request, and once more after a 401.
    Provider(Box<dyn FnMut() -> Result<String, String> + 'a>),
}

impl<'a> Token<'a> {
    /// A token from `provider`, asked before each request.
    pub fn provider(provider: impl FnMut() -> Result<String, String> + 'a) -> Token<'a> {
        Token::Provider(Box::new(provider))
    }

    fn get(&mut self) -> Result<String, SyncError> {
        match self {
            Token::Fixed(token) => Ok((*token).to_owned()),
            Token::Provider(provider) => provider().map_err(SyncError::Token),
        }
    }
}

impl<'a> From<&'a str> for Token<'a> {
    fn from(token: &'a str) -> Token<'a> {
        Token::Fixed(token)
    }
}

impl<'a> From<&'a String> for Token<'a> {
    fn from(token: &'a String) -> Token<'a> {
        Token::Fixed(token)
    }
}

/// Pushes `store`'s pending events to the hub at `hub` (e.g.
/// `http://127.0.0.1:8080`), applies the reply, and pulls until caught up,
/// authenticating with `api_key` and the Bearer `token` (a string, or a
/// [`Token::provider`] asked before each request). A 401 asks the provider
/// once more and retries; a second 401 ends the sync. With a user's token
/// the hub sends only that user's events: the device holds its own user.
///
/// # Errors
///
/// [`SyncError::Unreachable`] when the hub cannot be reached;
/// [`SyncError::Refused`] when it answers anything but 200 (its message is
/// kept); [`SyncError::Token`] when the token provider fails;
/// [`SyncError::Store`] when the local store fails or refuses a batch from
/// the hub.
pub fn sync<'a>(
    store: &Store,
    hub: &str,
    api_key: &str,
    token: impl Into<Token<'a>>,
) -> Result<SyncSummary, SyncError> {
    let mut token = token.into();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let hub = hub.trim_end_matches('/');
    // One request with the token of the moment; after a 401, a provider's
    // token is asked anew (it may have expired in between) and sent once
    // more.
    let mut call = |path: &str, body: Option<&[u8]>| {
        let url = format!("{hub}{path}");
        let mut retried = false;
        loop {
            let bearer = format!("Bearer {}", token.get()?);
            let sent = match body {
                Some(body) => headed(agent.post(&url), api_key, &bearer)
                    .content_type("application/octet-stream")
                    .send(body),
                None => headed(agent.get(&url), api_key, &bearer).call(),
            };
            match answer(sent) {
                Err(SyncError::Refused { status: 401, .. })
                    if !retried && matches!(token, Token::Provider(_)) =>
                {
                    retried = true;
                }
                other => return other,
            }
        }
    };
    // pending() only reads; push() is a sync step (a write transaction), so
    // an idle device skips it.
    let mut summary = SyncSummary {
        pushed: store.pending()?.len(),
        ..SyncSummary::default()
    };
    if summary.pushed > 0 {
        let reply = call("/sync/push", Some(&store.push()?))?;
        let applied = store.apply_reply(&reply)?;
        summary.accepted = applied.accepted;
        summary.rejected = applied.rejected;
    }
    for _ in 0..MAX_PULLS {
        let cursor = store.pull_cursor()?;
        let batch = call(&format!("/sync/pull?since={cursor}"), None)?;
        let imported = store.import(&batch)?;
        summary.pulled += imported.imported;
        summary.cursor = imported.cursor;
        if imported.cursor == cursor {
            break;
        }
    }
    Ok(summary)
}

/// Every sync request's headers, whatever its method.
fn headed<B>(
    request: ureq::RequestBuilder<B>,
    api_key: &str,
    bearer: &str,
) -> ureq::RequestBuilder<B> {
    request
        .header("X-API-Key", api_key)
        .header("Authorization", bearer)
        .header(BATCH_FORMAT_HEADER, u16::from(BATCH_FORMAT))
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
