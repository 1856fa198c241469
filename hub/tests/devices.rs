//! Devices against a real hub: 32 devices creating users offline (some
//! emails colliding across devices) and syncing over HTTP; the hub binary
//! SIGKILLed at random moments while devices push and pull; and the `spkey
//! sync` command. Every run ends in the same state: every device agrees with
//! the hub on every user, every command is on the hub or visibly refused on
//! its device, nothing is on the hub twice, and the hub's store verifies.
//! Each runs on both backends (redb files, PostgreSQL).
//! Bounded in count and time; `SPKEY_LONG=1` runs the long size.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use spkey_store::{CreateUser, Store};
use support::*;

fn long_run() -> bool {
    std::env::var_os("SPKEY_LONG").is_some()
}

fn thirty_two_devices_syncing_over_http_converge_with_the_hub(backend: Backend) {
    let rounds = if long_run() { 25 } else { 4 };
    let hub = TestHub::start(backend);
    let url = hub.url.clone();
    let deadline = Instant::now() + Duration::from_secs(if long_run() { 600 } else { 120 });
    let workers: Vec<_> = (0..32)
        .map(|d| {
            let url = url.clone();
            std::thread::spawn(move || {
                let device = Store::in_memory().unwrap();
                let mut created = Vec::new();
                for round in 0..rounds {
                    for n in [2 * round, 2 * round + 1] {
                        let command = command(d, n);
                        // A create the device refuses at once (an email it
                        // already knows is taken) records nothing.
                        if device.create_user(&command).unwrap().event().is_some() {
                            created.push(command);
                        }
                    }
                    if Instant::now() > deadline {
                        break;
                    }
                    sync_until_done(&device, &url, deadline);
                }
                (device, created)
            })
        })
        .collect();
    let (devices, created): (Vec<Store>, Vec<Vec<CreateUser>>) =
        workers.into_iter().map(|w| w.join().unwrap()).unzip();
    // Everyone syncs once more, so the last pushes reach every device.
    for device in &devices {
        sync_until_done(device, &url, Instant::now() + Duration::from_secs(30));
    }

    check_converged(&devices, &created, &hub.log("acme"));
    let refused: usize = devices.iter().map(|d| d.rejections().unwrap().len()).sum();
    eprintln!(
        "32 devices, {} users created, {refused} refused (emails taken), converged",
        created.iter().map(Vec::len).sum::<usize>()
    );
    assert!(refused > 0, "the shared emails must have collided");
}

fn the_hub_killed_at_random_moments_loses_nothing_and_devices_converge(backend: Backend) {
    let kills = if long_run() { 200 } else { 20 };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        config_on(backend.storage_line(), dir.path(), "")
            .replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let mut hub = HubProcess::start(&config);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|d| {
            let (url, stop) = (url.clone(), stop.clone());
            std::thread::spawn(move || {
                let device = Store::in_memory().unwrap();
                let token = acme_token();
                let mut created = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let command = command(d, n);
                    if device.create_user(&command).unwrap().event().is_some() {
                        created.push(command);
                    }
                    n += 1;
                    // Failures are expected while the hub is down: retried
                    // by the next round.
                    let _ = spkey_store::http::sync(&device, &url, ACME_KEY, &token);
                }
                (device, created)
            })
        })
        .collect();
    let mut rng = fastrand::Rng::with_seed(0x4b11);
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(rng.u64(30..300)));
        hub.kill();
        hub.restart();
    }
    stop.store(true, Ordering::Relaxed);
    let (devices, created): (Vec<Store>, Vec<Vec<CreateUser>>) =
        workers.into_iter().map(|w| w.join().unwrap()).unzip();
    for device in &devices {
        sync_until_done(device, &url, Instant::now() + Duration::from_secs(30));
    }
    for device in &devices {
        sync_until_done(device, &url, Instant::now() + Duration::from_secs(30));
    }
    let log = mirror(&url, "acme");
    hub.terminate();
    if backend == Backend::Redb {
        let store = Store::open(dir.path().join("data/acme.redb")).unwrap();
        assert!(store.verify().unwrap().is_sound());
        assert_eq!(store.head_position().unwrap(), log.head_position().unwrap());
    }

    check_converged(&devices, &created, &log);
    eprintln!(
        "hub SIGKILLed {kills} times under 8 syncing devices: {} users created, converged",
        created.iter().map(Vec::len).sum::<usize>()
    );
}

/// The `spkey` CLI of this workspace, built once if this test run did not
/// build it.
fn spkey_cli() -> &'static Path {
    static CLI: OnceLock<PathBuf> = OnceLock::new();
    CLI.get_or_init(|| {
        // target/<profile>/deps/<this test>: build the CLI in the same profile.
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_owned();
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "--locked", "-p", "spkey-store", "--bin", "spkey"]);
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        assert!(build.status().unwrap().success());
        profile_dir.join("spkey")
    })
}

fn spkey_sync_pushes_pulls_and_prints_one_line_then_exits_2_when_the_hub_is_gone(backend: Backend) {
    let hub = TestHub::start(backend);
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one.redb"), dir.path().join("two.redb"));
    let token = acme_token();
    let run = |db: &Path, args: &[&str]| {
        Command::new(spkey_cli())
            .arg("--db")
            .arg(db)
            .args(args)
            .output()
            .unwrap()
    };
    let id = user_id(60);
    assert!(
        run(&one, &["create-user", &id, &body(&id, "cli@example.com")])
            .status
            .success()
    );
    let sync = |db: &Path, url: &str| {
        run(
            db,
            &[
                "sync",
                "--hub",
                url,
                "--api-key",
                ACME_KEY,
                "--token",
                &token,
            ],
        )
    };

    let pushed = sync(&one, &hub.url);
    let pulled = sync(&two, &hub.url);
    let again = sync(&one, &hub.url);
    let url = hub.url.clone();
    drop(hub);
    let gone = sync(&one, &url);

    let line = |out: &std::process::Output| -> serde_json::Value {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(
        line(&pushed),
        serde_json::json!({"pushed": 1, "accepted": 1, "rejected": 0, "pulled": 0, "cursor": 1})
    );
    assert_eq!(line(&pulled)["pulled"], 1);
    assert_eq!(
        line(&again),
        serde_json::json!({"pushed": 0, "accepted": 0, "rejected": 0, "pulled": 0, "cursor": 1})
    );
    assert_eq!(gone.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("cannot reach the hub"));
    let two = run(&two, &["user", &id]);
    assert!(String::from_utf8_lossy(&two.stdout).contains("cli@example.com"));
}

#[test]
fn a_bad_config_stops_the_binary_with_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.toml");
    let text = config_text(dir.path(), "").replace("jwt_audience", "jwt_audiance");
    std::fs::write(&config, text).unwrap();

    let run = Command::new(env!("CARGO_BIN_EXE_spkey-hub"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();

    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("jwt_audiance"), "{stderr}");
    assert!(run.stdout.is_empty(), "nothing listens");
}

crate::on_both_backends!(
    thirty_two_devices_syncing_over_http_converge_with_the_hub,
    the_hub_killed_at_random_moments_loses_nothing_and_devices_converge,
    spkey_sync_pushes_pulls_and_prints_one_line_then_exits_2_when_the_hub_is_gone,
);
