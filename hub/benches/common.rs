//! What the hub benchmarks share: the token, the HTTP client, user ids and
//! the throughput / latency summary.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};

/// The HS256 secret of the benchmark organizations.
pub const SECRET: &str = "bench-hs256-secret-bench-hs256-secret";

/// A token for the benchmark organizations, an hour to live.
pub fn token() -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    encode(
        &Header::new(Algorithm::HS256),
        &serde_json::json!({"sub": "bench", "exp": exp}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A keep-alive client that returns every status as it is.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// The `n`th user id.
pub fn id(n: usize) -> String {
    uuid::Uuid::from_u128(n as u128 | 1 << 90).to_string()
}

/// Calls per second over `took_secs`, and p50 / p99 of the latencies (ms).
pub fn summary(mut latencies: Vec<f64>, took_secs: f64) -> (f64, f64, f64) {
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    (latencies.len() as f64 / took_secs, at(0.5), at(0.99))
}
