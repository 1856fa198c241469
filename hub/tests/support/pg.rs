//! A throwaway PostgreSQL cluster for the tests: `initdb` into a temporary
//! directory, `pg_ctl start` on a free port of 127.0.0.1, trust auth for
//! the user `spkey`, removed when dropped. `initdb` refuses root, so as
//! root every server command runs as the `postgres` user. A watchdog
//! process stops the server and removes the directory when the test
//! process exits however it exits (a shared cluster lives in a static,
//! which Rust never drops).

#![allow(
    dead_code,
    reason = "shared by the tests and the benchmark, which use different parts"
)]

use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct PgCluster {
    root: PathBuf,
    pub port: u16,
    bin: PathBuf,
    /// Whether the server fsyncs: off for the tests (a killed server
    /// loses nothing the OS has), on for the benchmark's figures.
    fsync: bool,
}

/// The newest installed server's binaries.
fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed by scripts/setup (apt-get install postgresql)")
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().expect("no /usr/lib/postgresql/*/bin/initdb").1
}

fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        let out = Command::new("id").arg("-u").output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "0"
    })
}

/// `program` run as the cluster's owner: `postgres` when we are root.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn owner_ids() -> (u32, u32) {
    let id = |flag: &str| {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (id("-u"), id("-g"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgCluster {
    /// A new cluster for the tests, started.
    pub fn start() -> PgCluster {
        PgCluster::start_with(false)
    }

    /// A new cluster, started; `fsync` as PostgreSQL's setting.
    pub fn start_with(fsync: bool) -> PgCluster {
        let bin = bin_dir();
        let root = tempfile::Builder::new()
            .prefix("spkey-pg-")
            .tempdir()
            .unwrap()
            .keep();
        if is_root() {
            let (uid, gid) = owner_ids();
            chown(&root, Some(uid), Some(gid)).unwrap();
        }
        let data = root.join("data");
        let made = as_owner(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "spkey", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        // The watchdog: once this process is gone, stop the server and
        // remove its directory.
        let stop = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {runas} {ctl} -D {data} stop -m immediate; rm -rf {root}",
            pid = std::process::id(),
            runas = if is_root() {
                "runuser -u postgres --"
            } else {
                ""
            },
            ctl = bin.join("pg_ctl").display(),
            data = data.display(),
            root = root.display(),
        );
        #[allow(
            clippy::zombie_processes,
            reason = "the watchdog must outlive this process, so it is never waited for"
        )]
        let _watchdog = Command::new("sh")
            .args(["-c", &stop])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut cluster = PgCluster {
            root,
            port: 0,
            bin,
            fsync,
        };
        for _ in 0..5 {
            cluster.port = free_port();
            if cluster.ctl(&["start"]) {
                return cluster;
            }
        }
        panic!(
            "PostgreSQL did not start: {}",
            std::fs::read_to_string(cluster.root.join("log")).unwrap_or_default()
        );
    }

    /// Runs `pg_ctl <args>` with this cluster's settings; whether it
    /// succeeded.
    fn ctl(&self, args: &[&str]) -> bool {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync={}",
            self.port,
            self.root.display(),
            if self.fsync { "on" } else { "off" }
        );
        as_owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.root.join("data"))
            .arg("-l")
            .arg(self.root.join("log"))
            .args(["-w", "-t", "60", "-o", &options])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// `pg_ctl restart -m immediate`: every connection cut, no checkpoint,
    /// recovery from the WAL on start — a crash and a restart.
    pub fn restart_immediate(&self) {
        assert!(self.ctl(&["restart", "-m", "immediate"]), "restart failed");
    }

    /// `pg_ctl stop -m immediate`.
    pub fn stop_immediate(&self) {
        assert!(self.ctl(&["stop", "-m", "immediate"]), "stop failed");
    }

    /// `pg_ctl start`.
    pub fn start_again(&self) {
        assert!(self.ctl(&["start"]), "start failed");
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.root.join("data")
    }

    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://spkey@127.0.0.1:{}/{db}", self.port)
    }

    /// A new, empty database; returns its URL.
    pub fn new_database(&self) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("t{}", N.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Runs `sql` in database `db` with psql; returns its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "spkey",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A psql session on database `db` reading SQL from its stdin: a
    /// transaction a test holds open while the hub waits on it.
    pub fn session(&self, db: &str) -> std::process::Child {
        Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", "spkey", "-d", db])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// The cluster this test binary shares: each test takes a database of
    /// its own.
    pub fn shared() -> &'static PgCluster {
        static SHARED: OnceLock<PgCluster> = OnceLock::new();
        SHARED.get_or_init(PgCluster::start)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.ctl(&["stop", "-m", "immediate"]);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
