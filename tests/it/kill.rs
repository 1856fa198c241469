//! kill -9: a child process writes to a real store file and reports each
//! acknowledged position; it is SIGKILLed at a random moment; the parent
//! reopens the file and checks that every acknowledged event is there and
//! the store is sound. The same file goes through every round, so each
//! child also recovers from the previous kill.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use spkey_store::{CreateUser, Outcome, Store};
use uuid::Uuid;

use crate::support::long_run;

const DB_ENV: &str = "SPKEY_KILL_DB";
const ROUND_ENV: &str = "SPKEY_KILL_ROUND";
const PLANT_ENV: &str = "SPKEY_KILL_PLANT_NONDURABLE";

fn command(round: u64, n: u64) -> CreateUser {
    let id = Uuid::from_u128(((round as u128) << 64) | n as u128 | 1 << 127);
    CreateUser::new(id.to_string(), format!("r{round}n{n}@example.com")).first_name("Kill")
}

/// The child's side. Not a test of its own: the harness below runs this
/// binary again with `--ignored --exact kill::kill_child_writer`.
#[test]
#[ignore = "the child process of the kill -9 harness, run by it"]
fn kill_child_writer() {
    let db = std::env::var(DB_ENV).expect("run by the kill -9 harness");
    let round: u64 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let durable = std::env::var_os(PLANT_ENV).is_none();
    let store = Store::builder().durable(durable).open(db).unwrap();
    let mut out = std::io::stdout().lock();
    for n in (0..).step_by(4) {
        // Mostly single commands, every fourth step a batch of three.
        let outcomes = if n % 16 == 12 {
            store
                .execute_batch(&[
                    command(round, n),
                    command(round, n + 1),
                    command(round, n + 2),
                ])
                .unwrap()
        } else {
            vec![store.create_user(&command(round, n)).unwrap()]
        };
        for outcome in outcomes {
            if let Outcome::Created(event) = outcome {
                // Only now, with the command durable, is it acknowledged.
                writeln!(out, "ack {} {}", event.position, event.aggregate_id()).unwrap();
            }
        }
        out.flush().unwrap();
    }
}

/// Runs one child until it is killed; returns the acknowledgements it
/// printed in full before it died.
fn kill_round(db: &Path, round: u64, plant: bool, rng: &mut fastrand::Rng) -> Vec<(u64, Uuid)> {
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "--ignored",
            "--exact",
            "kill::kill_child_writer",
            "--nocapture",
        ])
        .env(DB_ENV, db)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if plant {
        child.env(PLANT_ENV, "1");
    }
    let mut child = child.spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        while lines.read_line(&mut line).unwrap_or(0) > 0 {
            // A line cut off by the kill was never fully reported.
            if let Some(ack) = line.strip_suffix('\n').and_then(|l| l.strip_prefix("ack ")) {
                let (position, id) = ack.split_once(' ').unwrap();
                acks.push((position.parse().unwrap(), id.parse().unwrap()));
                let _ = tx.send(());
            }
            line.clear();
        }
        acks
    });
    if plant {
        // The plant must be given something to lose.
        let _ = rx.recv_timeout(Duration::from_secs(10));
    }
    std::thread::sleep(Duration::from_millis(rng.u64(0..60)));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap()
}

/// Reopens the store and checks every acknowledgement so far.
fn check(db: &Path, acks: &[(u64, Uuid)]) -> Result<(), String> {
    let store = Store::open(db).map_err(|e| format!("reopen failed: {e}"))?;
    let report = store.verify().map_err(|e| e.to_string())?;
    if !report.is_sound() {
        return Err(format!("unsound after kill: {:?}", report.findings));
    }
    for (position, id) in acks {
        let event = store.events(*position, 1).map_err(|e| e.to_string())?;
        if event.first().map(|e| e.aggregate_id()) != Some(*id) {
            return Err(format!("acknowledged {id} at position {position} lost"));
        }
        if store.user(*id).map_err(|e| e.to_string())?.is_none() {
            return Err(format!("acknowledged user {id} missing"));
        }
    }
    Ok(())
}

#[test]
fn kill_9_at_random_moments_loses_no_acknowledged_event() {
    let kills = if long_run() { 1000 } else { 50 };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kill.redb");
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut acks = Vec::new();
    for round in 0..kills {
        acks.extend(kill_round(&db, round, false, &mut rng));
        if let Err(problem) = check(&db, &acks) {
            panic!("after kill {}: {problem}", round + 1);
        }
    }
    assert!(!acks.is_empty(), "the children never got to write");
    eprintln!(
        "kill -9: {kills} kills, {} acknowledged events, 0 lost",
        acks.len()
    );
}

#[test]
fn the_kill_harness_catches_commits_that_do_not_wait_for_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plant.redb");
    let mut rng = fastrand::Rng::with_seed(7);
    let mut acks = Vec::new();
    let mut caught = false;
    for round in 0..3 {
        acks.extend(kill_round(&db, round, true, &mut rng));
        caught |= check(&db, &acks).is_err();
    }
    assert!(
        caught,
        "non-durable commits survived every kill: the harness cannot see loss"
    );
}
