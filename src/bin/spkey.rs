//! `spkey`: the SmartphoneKey Users API over a local store file.
//!
//! Exit codes: 0 success; 1 the answer is "no" (a 4xx body, no such user, a
//! store that fails verification); 2 the command could not run (the file
//! cannot be opened, is damaged or locked, bad arguments).

use std::ffi::OsString;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use spkey_store::contract::{event_json, user_json};
use spkey_store::{MAX_BODY_BYTES, Store, StoreError};
use uuid::Uuid;

/// The SmartphoneKey Users API, answered by a local event store.
#[derive(Parser)]
#[command(name = "spkey", version)]
struct Cli {
    /// The store file; created when missing by the commands that write
    /// (reading commands open it read-only and change no byte).
    #[arg(long, global = true, value_name = "PATH", default_value = "spkey.redb")]
    db: PathBuf,
    /// Share the store with other processes: one writes while others read
    /// with --shared too (an app and its widget or sync service). Each
    /// write is synced to the store file; the journal is not kept.
    #[arg(long, global = true)]
    shared: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// POST /users/{ID}/CreateUser: prints the response body as one line of
    /// JSON; exits 0 for 200/201, 1 for any 4xx, 2 when the store fails.
    CreateUser {
        /// The path id: the user's UUID.
        id: String,
        /// The JSON body, or - to read it from stdin.
        #[arg(value_parser = clap::value_parser!(OsString))]
        body: OsString,
    },
    /// POST /users/{ID}/UpdateUser: any of email, firstName, lastName,
    /// phoneNumber (null clears an optional field); prints the response
    /// body; exits 0 for 200, 1 for any 4xx, 2 when the store fails.
    UpdateUser {
        /// The path id: the user's UUID.
        id: String,
        /// The JSON body, or - to read it from stdin.
        #[arg(value_parser = clap::value_parser!(OsString))]
        body: OsString,
    },
    /// POST /users/{ID}/DeleteUser: erases the user (its email is freed,
    /// its id stays taken); prints the response body; exits 0 for 200, 1
    /// for any 4xx, 2 when the store fails.
    DeleteUser {
        /// The path id: the user's UUID.
        id: String,
        /// The JSON body (`{}` or `{"userId": ID}`), or - to read it from stdin.
        #[arg(value_parser = clap::value_parser!(OsString), default_value = "{}")]
        body: OsString,
    },
    /// Prints the user's current state as JSON; exits 1 when there is none.
    User {
        /// The user's UUID, in any standard textual form.
        id: String,
    },
    /// Prints events as JSON, one per line, in ascending position.
    Events {
        /// The first position to print.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// The most events to print (default: all).
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Checks every event and index row; exits 0 when the store is sound,
    /// 1 with the findings when not.
    Verify,
    /// Device: writes a push batch of the pending events to stdout.
    Push,
    /// Hub: accepts a push batch (a file, or - for stdin) and writes the
    /// reply batch to stdout. Exits 1 when the batch is refused.
    Accept {
        /// The push batch.
        batch: PathBuf,
    },
    /// Device: applies the hub's reply (a file, or - for stdin).
    ApplyReply {
        /// The reply batch.
        reply: PathBuf,
    },
    /// Hub: writes a pull batch of its events after position N to stdout.
    Export {
        /// The device's cursor (`spkey cursor` on the device).
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// The most events in the batch.
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
    },
    /// Device: imports the hub's pull batch (a file, or - for stdin).
    Import {
        /// The pull batch.
        batch: PathBuf,
    },
    /// Device: the hub position imported up to, for `export --since`.
    Cursor,
    /// Device: the events the hub has not yet answered, one JSON per line.
    Pending,
    /// Device: the rejections the hub sent back, one event JSON per line.
    Rejections,
    /// Device: syncs with a hub over HTTP — push, apply the reply, pull
    /// until caught up — and prints
    /// {"pushed","accepted","rejected","pulled","cursor"}. Safe to run again
    /// after any failure. Exits 2 when the hub cannot be reached or refuses.
    Sync {
        /// The hub's base URL, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        hub: String,
        /// The organization's API key.
        #[arg(long)]
        api_key: String,
        /// The Bearer JWT.
        #[arg(long)]
        token: String,
    },
}

/// Why the command could not run (exit 2).
struct Failure(String);

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure(error.to_string())
    }
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Self {
        Failure(error.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(Failure(message)) => {
            eprintln!("spkey: {message}");
            ExitCode::from(2)
        }
    }
}

impl Command {
    /// Whether the command only reads: it then opens the store read-only,
    /// changing no byte of the file (and working on one it cannot write),
    /// and a store not yet created reads as an empty one (for `verify`, it
    /// is an error). `export` is not among them: a pull batch carries the
    /// hub's store id, so it speaks for a store that exists.
    fn reads_only(&self) -> bool {
        matches!(
            self,
            Command::User { .. }
                | Command::Events { .. }
                | Command::Verify
                | Command::Cursor
                | Command::Pending
                | Command::Rejections
        )
    }
}

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let body = match &cli.command {
        Command::CreateUser { body, .. }
        | Command::UpdateUser { body, .. }
        | Command::DeleteUser { body, .. } => Some(read_body(body)?),
        _ => None,
    };
    let builder = Store::builder().shared(cli.shared);
    let missing = !cli.db.exists() && !matches!(cli.command, Command::Verify);
    let store = if cli.command.reads_only() && missing {
        builder.in_memory()
    } else if cli.command.reads_only() {
        builder.open_read_only(&cli.db)
    } else {
        builder.open(&cli.db)
    }
    .map_err(|e| Failure(format!("cannot open store {}: {e}", cli.db.display())))?;
    let mut out = BufWriter::new(io::stdout().lock());
    let code = match cli.command {
        Command::CreateUser { ref id, .. }
        | Command::UpdateUser { ref id, .. }
        | Command::DeleteUser { ref id, .. } => {
            let name = match cli.command {
                Command::CreateUser { .. } => "CreateUser",
                Command::DeleteUser { .. } => "DeleteUser",
                _ => "UpdateUser",
            };
            let response = store
                .try_command_wire(name, id, body.as_deref().unwrap_or_default())
                .map_err(|e| Failure(format!("the store failed; nothing was written: {e}")))?;
            writeln!(out, "{}", response.to_json())?;
            match response.status {
                200..=299 => ExitCode::SUCCESS,
                _ => ExitCode::from(1),
            }
        }
        Command::User { id } => {
            let id =
                Uuid::try_parse(&id).map_err(|e| Failure(format!("{id:?} is not a UUID: {e}")))?;
            match store.user(id)? {
                Some(user) => {
                    writeln!(out, "{}", to_json(&user_json(&user)))?;
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!("spkey: no user {id}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Events { from, limit } => {
            // Pages keep memory flat however long the log is.
            const PAGE: u64 = 1024;
            let (mut next, mut left) = (from, limit.unwrap_or(u64::MAX));
            while left > 0 {
                let page = store.events(next, PAGE.min(left) as usize)?;
                let Some(last) = page.last() else { break };
                next = last.position + 1;
                left -= page.len() as u64;
                for event in &page {
                    writeln!(out, "{}", to_json(&event_json(event)))?;
                }
            }
            ExitCode::SUCCESS
        }
        Command::Push => {
            out.write_all(&store.push()?)?;
            ExitCode::SUCCESS
        }
        Command::Accept { batch } => match store.accept(&read_batch(&batch)?) {
            Ok(reply) => {
                out.write_all(&reply)?;
                ExitCode::SUCCESS
            }
            Err(refused @ StoreError::Batch(_)) => return refuse(refused),
            Err(other) => return Err(other.into()),
        },
        Command::ApplyReply { reply } => match store.apply_reply(&read_batch(&reply)?) {
            Ok(summary) => {
                writeln!(out, "{}", to_json(&summary))?;
                ExitCode::SUCCESS
            }
            Err(refused @ StoreError::Batch(_)) => return refuse(refused),
            Err(other) => return Err(other.into()),
        },
        Command::Export { since, limit } => {
            out.write_all(&store.export(since, limit)?)?;
            ExitCode::SUCCESS
        }
        Command::Import { batch } => match store.import(&read_batch(&batch)?) {
            Ok(summary) => {
                writeln!(out, "{}", to_json(&summary))?;
                ExitCode::SUCCESS
            }
            Err(refused @ StoreError::Batch(_)) => return refuse(refused),
            Err(other) => return Err(other.into()),
        },
        Command::Sync {
            hub,
            api_key,
            token,
        } => {
            let summary = sync_over_http(&store, &hub, &api_key, &token)?;
            writeln!(out, "{summary}")?;
            ExitCode::SUCCESS
        }
        Command::Cursor => {
            writeln!(out, "{}", store.pull_cursor()?)?;
            ExitCode::SUCCESS
        }
        Command::Pending => {
            for event in store.pending()? {
                writeln!(out, "{}", to_json(&event_json(&event)))?;
            }
            ExitCode::SUCCESS
        }
        Command::Rejections => {
            for event in store.rejections()? {
                writeln!(out, "{}", to_json(&event_json(&event)))?;
            }
            ExitCode::SUCCESS
        }
        Command::Verify => {
            let report = store.verify()?;
            for finding in &report.findings {
                writeln!(out, "{finding}")?;
            }
            if report.is_sound() {
                writeln!(
                    out,
                    "sound: {} events, {} users",
                    report.events, report.users
                )?;
                ExitCode::SUCCESS
            } else {
                writeln!(out, "damaged: {} findings", report.findings.len())?;
                ExitCode::from(1)
            }
        }
    };
    out.flush()?;
    Ok(code)
}

/// A refused batch is an answer ("no"), not a failure to run: exit 1.
fn refuse(error: StoreError) -> Result<ExitCode, Failure> {
    eprintln!("spkey: {error}");
    Ok(ExitCode::from(1))
}

/// A batch from a file, or stdin for `-`; never more than the batch limit
/// plus one byte, so an oversized batch is refused without being read whole.
fn read_batch(path: &PathBuf) -> Result<Vec<u8>, Failure> {
    let limit = spkey_store::MAX_BATCH_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        io::stdin().lock().take(limit).read_to_end(&mut bytes)?;
    } else {
        std::fs::File::open(path)
            .map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))?
            .take(limit)
            .read_to_end(&mut bytes)?;
    }
    Ok(bytes)
}

/// The body argument's bytes; `-` reads stdin, but never more than one byte
/// past the limit, so an oversized body is answered 413 without being read
/// whole.
fn read_body(arg: &OsString) -> Result<Vec<u8>, Failure> {
    if arg != "-" {
        return Ok(arg.clone().into_encoded_bytes());
    }
    let mut body = Vec::new();
    io::stdin()
        .lock()
        .take(MAX_BODY_BYTES as u64 + 1)
        .read_to_end(&mut body)?;
    Ok(body)
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // The JSON shapes are plain structs of strings and integers.
    serde_json::to_string(value).expect("JSON shapes serialize infallibly")
}

/// `spkey sync`: the whole exchange with a hub over HTTP; the summary's JSON.
#[cfg(not(target_family = "wasm"))]
fn sync_over_http(store: &Store, hub: &str, api_key: &str, token: &str) -> Result<String, Failure> {
    let summary = spkey_store::http::sync(store, hub, api_key, token)
        .map_err(|e| Failure(format!("sync with {hub} failed: {e}")))?;
    Ok(to_json(&summary))
}

/// The HTTP client's TLS stack builds for no wasm target.
#[cfg(target_family = "wasm")]
fn sync_over_http(_: &Store, hub: &str, _: &str, _: &str) -> Result<String, Failure> {
    Err(Failure(format!(
        "sync with {hub}: this build has no HTTP client (WASI); use push, apply-reply and import"
    )))
}
