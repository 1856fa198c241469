//! `spkey-hub --config hub.toml`: prints `listening on http://ADDR` once it
//! accepts connections; stops on SIGTERM or Ctrl-C after answering the
//! requests in flight. A bad config exits 2 naming the key. Logs go to
//! stderr, filtered by `RUST_LOG` (default `warn`: storage failures, lost
//! database connections).
//!
//! `spkey-hub token --config hub.toml --org ID (--user UUID | --service)
//! [--ttl 1h]` prints a token signed with the organization's HS256 secret,
//! to try the hub with.
//!
//! `spkey-hub erase-maintenance --config hub.toml` rewrites a PostgreSQL
//! hub's tables, statistics and WAL after erasures.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use spkey_hub::Hub;
use spkey_hub::config::Config;

/// The spkey hub: the SmartphoneKey Users API and sync for devices.
#[derive(Parser)]
#[command(name = "spkey-hub", version)]
struct Cli {
    /// The config file (TOML).
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Prints a token signed with an organization's HS256 secret (and its
    /// configured iss/aud): a user's (`--user`) or a service's
    /// (`--service`).
    Token {
        /// The organization's id.
        #[arg(long)]
        org: String,
        /// The user id the token is for: it may act on this user only.
        #[arg(
            long,
            value_name = "UUID",
            conflicts_with = "service",
            required_unless_present = "service"
        )]
        user: Option<String>,
        /// A service's token: every user of the organization.
        #[arg(long)]
        service: bool,
        /// How long it is valid (`30m`, `1h`, `7d`).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
    /// After erasures on PostgreSQL: rewrites the hub's tables, statistics
    /// and WAL so that no live file of the database holds an erased user's
    /// values (see the README's "Erasure"). A hub on redb files needs no
    /// step: it rewrites an organization's file at each erasure.
    EraseMaintenance,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let Some(path) = cli.config else {
        eprintln!("spkey-hub: --config <PATH> is required");
        return ExitCode::from(2);
    };
    // Files the hub makes (stores, journals, checksums) are its alone.
    // SAFETY: umask only sets the process's file mode mask.
    unsafe {
        libc::umask(0o077);
    }
    warn_if_readable(&path);
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("spkey-hub: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Token {
        org,
        user,
        service: _,
        ttl,
    }) = cli.command
    {
        return token(&config, &org, user.as_deref(), ttl);
    }
    if let Some(Command::EraseMaintenance) = cli.command {
        let spkey_hub::config::Storage::Postgres(url) = &config.storage else {
            println!(
                "spkey-hub: the logs are redb files, rewritten at each erasure: nothing to do"
            );
            return ExitCode::SUCCESS;
        };
        return match spkey_hub::postgres::erase_maintenance(url).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("spkey-hub: erase-maintenance: {error}");
                ExitCode::from(1)
            }
        };
    }
    let hub = match Hub::bind(config).await {
        Ok(hub) => hub,
        Err(error) => {
            eprintln!("spkey-hub: {error}");
            return ExitCode::from(2);
        }
    };
    println!("listening on {}", hub.url());
    match hub.serve(shutdown()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("spkey-hub: {error}");
            ExitCode::from(1)
        }
    }
}

/// SIGTERM or Ctrl-C.
async fn shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

/// `spkey-hub token`: exit 0 with the token on stdout, or 2 saying why not.
fn token(config: &Config, org: &str, user: Option<&str>, ttl: std::time::Duration) -> ExitCode {
    let Some(organization) = config.organizations.iter().find(|o| o.id == org) else {
        eprintln!("spkey-hub token: no organization {org:?} in the config");
        return ExitCode::from(2);
    };
    let scope = match user.map(spkey_store::Scope::user).transpose() {
        Ok(scope) => scope.unwrap_or(spkey_store::Scope::All),
        Err(why) => {
            eprintln!("spkey-hub token: --user {why}");
            return ExitCode::from(2);
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match spkey_hub::auth::sign(organization, scope, ttl.as_secs(), now) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("spkey-hub token: {why}");
            ExitCode::from(2)
        }
    }
}

/// A config holds secrets (the HS256 secret, a database password): say so
/// when users other than the hub's may read it.
fn warn_if_readable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            eprintln!(
                "spkey-hub: warning: {} (mode {mode:o}) is readable by other users, and a config holds secrets: chmod 600 it",
                path.display()
            );
        }
    }
}
