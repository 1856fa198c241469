//! The HTTP layer: routes, auth, limits, metrics. It speaks the seed's
//! contract and knows nothing of how a log is stored ([`HubStorage`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::json;
use spkey_store::{
    BATCH_FORMAT, BATCH_FORMAT_HEADER, BATCH_HEAD_BYTES, BatchError, BatchKind, MAX_BATCH_BYTES,
    MAX_BODY_BYTES, Outcome,
};
use tokio::sync::Semaphore;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::{Caller, Denied, authenticate};
use crate::config::{Config, Organization};
use crate::storage::{HubError, HubStorage};

/// The longest a long-poll may wait, in seconds.
pub const MAX_WAIT_SECS: u64 = 30;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

/// What `/metrics` shows.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// Commit latency of every write, in seconds.
    pub commits: Histogram,
    /// Events appended to the organizations' logs.
    pub events_accepted: Counter,
    long_polls: Gauge,
}

impl Metrics {
    /// A registry with the hub's metrics.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let commits = Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        let events_accepted = Counter::default();
        let long_polls = Gauge::default();
        registry.register(
            "spkey_hub_requests",
            "Requests by route and status",
            requests.clone(),
        );
        registry.register(
            "spkey_hub_commit_seconds",
            "Latency of each write to an organization's log",
            commits.clone(),
        );
        registry.register(
            "spkey_hub_events_accepted",
            "Events recorded by the seed endpoint or accepted from pushes",
            events_accepted.clone(),
        );
        registry.register(
            "spkey_hub_open_long_polls",
            "Pull requests waiting for news",
            long_polls.clone(),
        );
        Metrics {
            registry,
            requests,
            commits,
            events_accepted,
            long_polls,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

struct Hub<S> {
    storage: S,
    orgs: Vec<Organization>,
    metrics: Arc<Metrics>,
    serve_metrics: bool,
    requests: Arc<Semaphore>,
    /// Each organization's share of the requests in flight.
    per_org: Vec<Arc<Semaphore>>,
    long_polls: Arc<Semaphore>,
    /// Bytes of push bodies held, in KiB permits.
    push_budget: Arc<Semaphore>,
    request_timeout: Duration,
    body_timeout: Duration,
}

/// The API's error shape: `{"error","message","code","details":[]}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({
        "error": status.canonical_reason().unwrap_or("Error"),
        "message": message.into(),
        "code": status.as_u16(),
        "details": [],
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn busy(what: &str) -> Response {
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the hub is at its limit of {what}; retry shortly"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Which side of a format mismatch must upgrade: the older one.
fn who_upgrades(device_format: u8) -> &'static str {
    if device_format > BATCH_FORMAT {
        "the hub must upgrade"
    } else {
        "the device must upgrade"
    }
}

fn hub_error(error_: HubError) -> Response {
    match error_ {
        HubError::Refused(BatchError::UnsupportedVersion(found)) => error(
            StatusCode::BAD_REQUEST,
            format!(
                "the batch is in format {found}; this hub reads format {BATCH_FORMAT}: {}",
                who_upgrades(found)
            ),
        ),
        HubError::Refused(refused) => error(StatusCode::BAD_REQUEST, refused.to_string()),
        HubError::Unavailable(why) => {
            tracing::warn!(%why, "storage unavailable");
            let mut response = error(StatusCode::SERVICE_UNAVAILABLE, why);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        HubError::Database(failure) => {
            tracing::error!(%failure, "database failure");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the hub's storage failed; nothing was recorded",
            )
        }
        HubError::Failed(failure) => {
            tracing::error!(%failure, "storage failure");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the hub's storage failed; nothing was recorded",
            )
        }
    }
}

/// Builds the router over `storage`.
pub fn router<S: HubStorage>(config: Config, storage: S, metrics: Arc<Metrics>) -> Router {
    let limits = config.limits.clone();
    let origins: Vec<HeaderValue> = config
        .organizations
        .iter()
        .flat_map(|org| org.cors_origins.iter())
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    let hub = Arc::new(Hub {
        storage,
        per_org: config
            .organizations
            .iter()
            .map(|_| Arc::new(Semaphore::new(limits.max_requests_per_organization)))
            .collect(),
        orgs: config.organizations,
        metrics,
        serve_metrics: config.metrics,
        requests: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
        long_polls: Arc::new(Semaphore::new(limits.max_long_polls)),
        push_budget: Arc::new(Semaphore::new(
            limits.max_push_bytes_in_flight.div_ceil(1024),
        )),
        request_timeout: limits.request_timeout(),
        body_timeout: limits.body_timeout(),
    });
    let authenticated = Router::new()
        .route(
            "/users/{id}/{command}",
            post(command::<S>).fallback(method_not_allowed),
        )
        .route("/sync/push", post(push::<S>).fallback(method_not_allowed))
        .route("/sync/pull", get(pull::<S>).fallback(method_not_allowed))
        .route_layer(middleware::from_fn_with_state(hub.clone(), auth::<S>));
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static(BATCH_FORMAT_HEADER),
        ])
        .expose_headers([HeaderName::from_static(BATCH_FORMAT_HEADER)]);
    Router::new()
        .merge(authenticated)
        .route("/health", get(health::<S>).fallback(method_not_allowed))
        .route(
            "/metrics",
            get(serve_metrics::<S>).fallback(method_not_allowed),
        )
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(hub.clone(), admit::<S>))
        .layer(cors)
        .layer(middleware::from_fn_with_state(
            hub.clone(),
            cors_of_the_key::<S>,
        ))
        .with_state(hub)
}

/// CORS is configured per organization: the allowed origins of all of them
/// answer preflights (which carry no credentials) and refusals of unknown
/// keys, but an answer to a known `X-API-Key` keeps
/// `Access-Control-Allow-Origin` only when its origin is one of that
/// organization's — so one organization's site cannot read answers given
/// to another's credentials.
async fn cors_of_the_key<S: HubStorage>(
    State(hub): State<Arc<Hub<S>>>,
    request: Request,
    next: Next,
) -> Response {
    let preflight = request.method() == Method::OPTIONS;
    // Without a known key the answer is a refusal that carries nothing of
    // any organization: the origins configured may read it.
    let allowed = match crate::auth::organization_of(request.headers(), &hub.orgs) {
        None => true,
        Some(org) => request.headers().get(header::ORIGIN).is_some_and(|origin| {
            hub.orgs[org]
                .cors_origins
                .iter()
                .any(|o| o.as_bytes() == origin.as_bytes())
        }),
    };
    let mut response = next.run(request).await;
    if !preflight && !allowed {
        response
            .headers_mut()
            .remove(header::ACCESS_CONTROL_ALLOW_ORIGIN);
    }
    response
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
    )
}

/// Caps requests in flight (503 beyond), and counts every answer by route
/// and status.
async fn admit<S: HubStorage>(
    State(hub): State<Arc<Hub<S>>>,
    request: Request,
    next: Next,
) -> Response {
    let route = match request.uri().path() {
        "/health" => "/health",
        "/metrics" => "/metrics",
        "/sync/push" => "/sync/push",
        "/sync/pull" => "/sync/pull",
        path if path.starts_with("/users/") => command_route(path),
        _ => "other",
    };
    // /health and /metrics are never refused for another's load.
    let capped = !matches!(route, "/health" | "/metrics");
    let permit = if capped {
        match hub.requests.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => return count(&hub, route, busy("concurrent requests")),
        }
    } else {
        None
    };
    let response = match tokio::time::timeout(hub.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request took longer than {} s",
                hub.request_timeout.as_secs()
            ),
        ),
    };
    drop(permit);
    count(&hub, route, response)
}

/// Counts an answer by route and status.
fn count<S>(hub: &Hub<S>, route: &'static str, mut response: Response) -> Response {
    if response.status().is_client_error() || response.status().is_server_error() {
        // A refusal may come before the body was read (auth, caps, limits):
        // the connection cannot be reused then, and a client that pooled it
        // would send its next request into a closed socket. Say so.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    hub.metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

async fn auth<S: HubStorage>(
    State(hub): State<Arc<Hub<S>>>,
    mut request: Request,
    next: Next,
) -> Response {
    match authenticate(request.headers(), &hub.orgs).await {
        Ok(caller) => {
            // The organization's share of the capacity: one tenant's flood
            // is refused before it holds everyone's.
            let Ok(_share) = hub.per_org[caller.org].clone().try_acquire_owned() else {
                return busy("requests of this organization");
            };
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(Denied::NoBearer) => {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "an Authorization: Bearer <JWT> header is required",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        Err(Denied::UnknownKey) => error(
            StatusCode::FORBIDDEN,
            "the X-API-Key header is missing or names no organization",
        ),
        Err(Denied::BadToken(why)) => {
            let mut response = error(StatusCode::UNAUTHORIZED, why);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            response
        }
    }
}

/// Reads a body of at most `limit` bytes within `within`: a declared length
/// over the limit is refused before anything is read, a body that grows
/// past it as it comes, one that does not arrive in time with a 408; with
/// `batch`, bytes that cannot begin a batch of that kind are refused as
/// soon as its head has arrived. The bytes are gathered once, into a buffer
/// of the declared length.
async fn body(
    request: Request,
    limit: usize,
    within: Duration,
    batch: Option<BatchKind>,
) -> Result<Vec<u8>, Response> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body exceeds {limit} bytes"),
        )
    };
    let declared = declared_length(request.headers());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut stream = request.into_body().into_data_stream();
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0));
    let gather = async {
        let mut checked = batch.is_none();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| error(StatusCode::BAD_REQUEST, format!("the body broke off: {e}")))?;
            if bytes.len() + chunk.len() > limit {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
            if !checked && bytes.len() >= BATCH_HEAD_BYTES {
                checked = true;
                if let Some(kind) = batch {
                    spkey_store::check_head(&bytes, kind)
                        .map_err(|refused| hub_error(HubError::Refused(refused)))?;
                }
            }
        }
        Ok(())
    };
    match tokio::time::timeout(within, gather).await {
        Ok(Ok(())) => Ok(bytes),
        Ok(Err(response)) => Err(response),
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {} s", within.as_secs()),
        )),
    }
}

fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected))
}

/// The metrics label of a path under `/users/`: its command's route, or
/// `other` for a path that names no command.
fn command_route(path: &str) -> &'static str {
    static ROUTES: std::sync::OnceLock<Vec<(&'static str, String)>> = std::sync::OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        spkey_store::contract::COMMANDS
            .into_iter()
            .map(|c| (c, format!("/users/{{id}}/{c}")))
            .collect()
    });
    routes
        .iter()
        .find(|(name, _)| path.rsplit('/').next() == Some(name))
        .map_or("other", |(_, route)| route.as_str())
}

/// `POST /users/{id}/{command}`, for every command of the contract.
async fn command<S: HubStorage>(
    State(hub): State<Arc<Hub<S>>>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Response {
    let Ok(Path((id, name))) = path else {
        return error(
            StatusCode::BAD_REQUEST,
            "the path's user id is not valid UTF-8 once percent-decoded",
        );
    };
    let name = match spkey_store::contract::command_name(&name) {
        Ok(name) => name,
        Err(not_a_command) => return answer(not_a_command),
    };
    let caller = *request.extensions().get::<Caller>().expect("set by auth");
    // Before the body is read: a user's token acts only on its own user.
    if let Err(forbidden) = caller.scope.authorize_path(&id) {
        return answer(spkey_store::Response::from_outcome(&Outcome::Rejected(
            forbidden,
        )));
    }
    if !content_type_is(request.headers(), "application/json") {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be application/json",
        );
    }
    let bytes = match body(request, MAX_BODY_BYTES, hub.body_timeout, None).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    // No task of its own (as a push has): a command, once queued, is
    // decided and committed whether or not this request still waits.
    match hub.storage.execute(caller.org, name, id, bytes).await {
        Ok(response) => answer(response),
        Err(failure) => hub_error(failure),
    }
}

/// Runs a write in a task of its own: a client that hangs up drops its
/// request, but a write once begun finishes — committed (and published to
/// the long-polls) or rolled back whole, never abandoned half-way, and never
/// taking with it the group commit of the requests it leads.
async fn to_the_end<S: HubStorage, T: Send + 'static, F>(
    hub: &Arc<Hub<S>>,
    write: impl FnOnce(Arc<Hub<S>>) -> F,
) -> Result<T, HubError>
where
    F: Future<Output = Result<T, HubError>> + Send + 'static,
{
    tokio::spawn(write(hub.clone()))
        .await
        .unwrap_or_else(|e| Err(HubError::Unavailable(format!("the write failed: {e}"))))
}

/// The contract's answer as an HTTP response.
fn answer(response: spkey_store::Response) -> Response {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        response.to_json(),
    )
        .into_response()
}

fn batch_response(bytes: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                HeaderName::from_static(BATCH_FORMAT_HEADER),
                HeaderValue::from(u16::from(BATCH_FORMAT)),
            ),
        ],
        Body::from(bytes),
    )
        .into_response()
}

async fn push<S: HubStorage>(State(hub): State<Arc<Hub<S>>>, request: Request) -> Response {
    let caller = *request.extensions().get::<Caller>().expect("set by auth");
    // The bytes of pushes held at once are bounded: this one's declared
    // length (or the most a push may be) is reserved before it is read.
    let reserve = declared_length(request.headers())
        .unwrap_or(MAX_BATCH_BYTES)
        .min(MAX_BATCH_BYTES)
        .div_ceil(1024)
        .max(1);
    let Ok(held) = hub
        .push_budget
        .clone()
        .try_acquire_many_owned(u32::try_from(reserve).unwrap_or(u32::MAX))
    else {
        return busy("bytes of pushes in flight");
    };
    let bytes = match body(
        request,
        MAX_BATCH_BYTES,
        hub.body_timeout,
        Some(BatchKind::Push),
    )
    .await
    {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let reply = to_the_end(&hub, move |hub| async move {
        // The bytes stay reserved while the write holds them.
        let _held = held;
        hub.storage.accept(caller.org, caller.scope, bytes).await
    })
    .await;
    match reply {
        Ok(reply) => batch_response(reply),
        Err(failure) => hub_error(failure),
    }
}

#[derive(Deserialize)]
struct PullQuery {
    #[serde(default)]
    since: u64,
    #[serde(default)]
    wait: u64,
}

async fn pull<S: HubStorage>(
    State(hub): State<Arc<Hub<S>>>,
    query: Result<Query<PullQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Response {
    let caller = *request.extensions().get::<Caller>().expect("set by auth");
    let asked = request
        .headers()
        .get(BATCH_FORMAT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u8>().ok());
    if asked != Some(BATCH_FORMAT) {
        // A device of format 1 sent no header: it could not read the scoped
        // batch this hub sends.
        let asked = asked.unwrap_or(1);
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "the device reads batch format {asked}; this hub sends format {BATCH_FORMAT}: {}",
                who_upgrades(asked)
            ),
        );
    }
    let Ok(Query(query)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "since and wait must be whole numbers",
        );
    };
    if query.wait > MAX_WAIT_SECS {
        return error(
            StatusCode::BAD_REQUEST,
            format!("wait is at most {MAX_WAIT_SECS} seconds"),
        );
    }
    let _permit = if query.wait > 0 {
        match hub.long_polls.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => return busy("open long-polls"),
        }
    } else {
        None
    };
    // Counted while the request lives: a client that hangs up drops the
    // request, and the guard with it.
    let _open = (query.wait > 0).then(|| OpenPoll::new(hub.metrics.long_polls.clone()));
    let answer = hub
        .storage
        .pull(
            caller.org,
            caller.scope,
            query.since,
            Duration::from_secs(query.wait),
        )
        .await;
    match answer {
        Ok(batch) => batch_response(batch),
        Err(failure) => hub_error(failure),
    }
}

/// One open long-poll on the gauge, for as long as it is held.
struct OpenPoll(Gauge);

impl OpenPoll {
    fn new(gauge: Gauge) -> OpenPoll {
        gauge.inc();
        OpenPoll(gauge)
    }
}

impl Drop for OpenPoll {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn health<S: HubStorage>(State(hub): State<Arc<Hub<S>>>) -> Response {
    match hub.storage.health().await {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"status": "ok"}).to_string(),
        )
            .into_response(),
        Err(failure) => hub_error(failure),
    }
}

async fn serve_metrics<S: HubStorage>(State(hub): State<Arc<Hub<S>>>) -> Response {
    if !hub.serve_metrics {
        return not_found().await;
    }
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &hub.metrics.registry).is_err() {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics could not be encoded",
        );
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
