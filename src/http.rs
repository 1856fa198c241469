//! A device syncing with a hub over HTTP (feature `http`, which the `spkey`
//! CLI turns on; without it the library has no network code): push what is
//! pending, apply the reply, then pull until caught up. Every step is
//! idempotent, so after any failure the same call is safe to run again:
//! nothing is lost and nothing doubled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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
    /// [`Until::cancelled`] was set; the sync stopped before its next
    /// request. What was applied stays applied.
    #[error("the sync was cancelled")]
    Cancelled,
    /// [`Until::deadline`] passed before the sync finished (a request was
    /// cut short, or the next was not sent). What was applied stays
    /// applied; sync again to resume.
    #[error("the sync ran out of time")]
    DeadlineExceeded,
}

impl SyncError {
    /// Whether the same sync may succeed later unchanged: the hub was
    /// unreachable, busy (408, 429, 5xx) or out of time, the token could not
    /// be had, the sync was cancelled, or the store was locked. A background
    /// scheduler retries these (with backoff) and reports the rest.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Unreachable(_)
            | SyncError::Token(_)
            | SyncError::Cancelled
            | SyncError::DeadlineExceeded => true,
            SyncError::Refused { status, .. } => matches!(status, 408 | 429 | 500..=599),
            SyncError::Store(error) => matches!(error, StoreError::Locked),
        }
    }
}

/// When a sync must stop short: a deadline, a flag another thread sets, or
/// both (mobile schedulers give a task a few seconds; a user leaves the
/// screen). The sync checks both before each request, and a request never
/// runs past the deadline. `Until::default()` never stops short.
#[derive(Debug, Clone, Copy, Default)]
pub struct Until<'a> {
    /// No request runs past it.
    pub deadline: Option<Instant>,
    /// Set (by any thread) to stop before the next request.
    pub cancelled: Option<&'a AtomicBool>,
}

impl Until<'_> {
    /// How long the next request may take, or why it must not be sent.
    fn next_request(&self) -> Result<Duration, SyncError> {
        if self
            .cancelled
            .is_some_and(|flag| flag.load(Ordering::Acquire))
        {
            return Err(SyncError::Cancelled);
        }
        match self.deadline {
            None => Ok(REQUEST_TIMEOUT),
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Ok(left.min(REQUEST_TIMEOUT)),
                _ => Err(SyncError::DeadlineExceeded),
            },
        }
    }
}

/// The longest one request may take when no deadline is nearer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

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
    sync_until(store, hub, api_key, token, Until::default())
}

/// [`sync`], stopping short when `until` says: for a background task with
/// a deadline (Android's WorkManager, iOS's BGTaskScheduler) or a sync the
/// user cancels. Stopping short is safe: every step is idempotent, and the
/// next sync resumes.
///
/// # Errors
///
/// Those of [`sync`], and [`SyncError::Cancelled`] or
/// [`SyncError::DeadlineExceeded`] when it stopped short.
pub fn sync_until<'a>(
    store: &Store,
    hub: &str,
    api_key: &str,
    token: impl Into<Token<'a>>,
    until: Until<'_>,
) -> Result<SyncSummary, SyncError> {
    let mut token = token.into();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
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
            let timeout = until.next_request()?;
            let bearer = format!("Bearer {}", token.get()?);
            let sent = match body {
                Some(body) => headed(agent.post(&url), api_key, &bearer, timeout)
                    .content_type("application/octet-stream")
                    .send(body),
                None => headed(agent.get(&url), api_key, &bearer, timeout).call(),
            };
            match answer(sent, until) {
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
    timeout: Duration,
) -> ureq::RequestBuilder<B> {
    request
        .config()
        .timeout_global(Some(timeout))
        .build()
        .header("X-API-Key", api_key)
        .header("Authorization", bearer)
        .header(BATCH_FORMAT_HEADER, u16::from(BATCH_FORMAT))
}

/// The body of a 200, or the error it stands for.
fn answer(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    until: Until<'_>,
) -> Result<Vec<u8>, SyncError> {
    // A timeout at the deadline is the deadline's, not the hub's.
    let failed = |e: ureq::Error| match e {
        ureq::Error::Timeout(_) if until.next_request().is_err() => SyncError::DeadlineExceeded,
        e => SyncError::Unreachable(e.to_string()),
    };
    let mut response = response.map_err(failed)?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BATCH_BYTES as u64 + 1)
        .read_to_vec()
        .map_err(failed)?;
    if status == 200 {
        return Ok(body);
    }
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    Err(SyncError::Refused { status, message })
}
