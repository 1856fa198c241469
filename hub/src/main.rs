//! `spkey-hub --config hub.toml`: prints `listening on http://ADDR` once it
//! accepts connections; stops on SIGTERM or Ctrl-C after answering the
//! requests in flight. A bad config exits 2 naming the key. Logs go to
//! stderr, filtered by `RUST_LOG` (default `warn`: storage failures, lost
//! database connections).

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
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
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
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("spkey-hub: {error}");
            return ExitCode::from(2);
        }
    };
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
