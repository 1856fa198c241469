//! The spkey hub as a network service: the seed's own endpoint,
//! `POST /users/{id}/CreateUser` with its auth (a Bearer JWT checked under
//! the key material of the organization its `X-API-Key` names), and sync
//! for devices over HTTP (`POST /sync/push`, `GET /sync/pull?since=N&wait=S`).
//!
//! Layers: [`server`] (HTTP, auth, limits, metrics) over the storage seam
//! [`storage::HubStorage`], with two backends: redb (one store file per
//! organization, one hub process) and [`postgres`] (one database, any
//! number of stateless hub processes). The rules are the core's: every
//! command and every pushed event is decided by `spkey_store`'s one write
//! pipeline, whichever engine keeps the log.

#![deny(missing_docs)]

pub mod auth;
mod batcher;
pub mod config;
pub mod jwks;
pub mod listen;
pub mod postgres;
pub mod server;
pub mod storage;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::{Config, Storage};
use crate::postgres::PostgresHub;
use crate::server::Metrics;
use crate::storage::{Observer, RedbHub};

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An organization's store could not be opened.
    #[error("cannot open the store of organization {0}: {1}")]
    Store(String, spkey_store::StoreError),
    /// The PostgreSQL database could not be reached or migrated.
    #[error("{0}")]
    Postgres(#[from] postgres::PgStartError),
    /// The listen address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Listen(std::net::SocketAddr, std::io::Error),
    /// The certificate or key of `tls_cert_pem` / `tls_key_pem` was refused.
    #[error("config keys `tls_cert_pem` / `tls_key_pem`: {0}")]
    Tls(std::io::Error),
}

enum Backend {
    Redb(RedbHub),
    Postgres(PostgresHub),
}

/// A hub bound to its address, ready to serve.
pub struct Hub {
    listener: TcpListener,
    app: axum::Router,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
}

impl Hub {
    /// Opens every organization's log (redb stores, or the PostgreSQL
    /// database, migrated) and binds the listen address.
    ///
    /// # Errors
    ///
    /// [`StartError::Store`] when a store cannot be opened (locked by another
    /// hub, damaged, not a store); [`StartError::Postgres`] when the
    /// database cannot be reached or migrated; [`StartError::Listen`] when
    /// the address cannot be bound.
    pub async fn bind(config: Config) -> Result<Hub, StartError> {
        if let Some(limit) = listen::raise_descriptor_limit() {
            tracing::info!(limit, "open descriptors");
        }
        let metrics = Arc::new(Metrics::new());
        let observed = metrics.clone();
        let ids: Vec<String> = config.organizations.iter().map(|o| o.id.clone()).collect();
        let observe: Observer = Arc::new(move |took, appended| {
            observed.commits.observe(took.as_secs_f64());
            observed.events_accepted.inc_by(appended);
        });
        let storage = match &config.storage {
            Storage::Redb(dir) => Backend::Redb(
                RedbHub::open(dir, &ids, observe)
                    .map_err(|(org, error)| StartError::Store(org, error))?,
            ),
            Storage::Postgres(url) => Backend::Postgres(
                PostgresHub::open(url, config.limits.postgres_connections, &ids, observe).await?,
            ),
        };
        // The identity providers' keys, fetched once before serving; a
        // provider that is down now is fetched again when a token needs it.
        for org in &config.organizations {
            if let Some(jwks) = &org.jwks
                && let Err(why) = jwks.refresh().await
            {
                tracing::warn!(org = %org.id, url = %jwks.url(), %why, "cannot fetch the JWKS at start");
            }
        }
        let tls = match &config.tls {
            Some(tls) => Some(
                axum_server::tls_rustls::RustlsConfig::from_pem(
                    tls.cert_pem.clone(),
                    tls.key_pem.clone(),
                )
                .await
                .map_err(StartError::Tls)?,
            ),
            None => None,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| StartError::Listen(config.listen, e))?;
        let app = match storage {
            Backend::Redb(storage) => server::router(config, storage, metrics),
            Backend::Postgres(storage) => server::router(config, storage, metrics),
        };
        Ok(Hub { listener, app, tls })
    }

    /// The hub's base URL: `http://ADDR`, or `https://ADDR` when it serves
    /// TLS itself.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr())
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then answers the requests in
    /// flight and closes the stores.
    ///
    /// # Errors
    ///
    /// The I/O error that ended serving.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let tls = self
            .tls
            .map(|config| tokio_rustls::TlsAcceptor::from(config.get_inner()));
        listen::serve(self.listener, self.app, tls, shutdown).await
    }
}
