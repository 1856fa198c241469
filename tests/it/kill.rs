//! kill -9: a child process writes to a real store file and reports each
//! acknowledged position; it is SIGKILLed at a random moment; the parent
//! reopens the file and checks that every acknowledged event is there and
//! the store is sound. The same file goes through every round, so each
//! child also recovers from the previous kill.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
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
        // Mostly single commands, every fourth step a batch of three, and
        // a create followed by an update of it.
        let outcomes = if n % 16 == 12 {
            store
                .execute_batch(&[
                    command(round, n),
                    command(round, n + 1),
                    command(round, n + 2),
                ])
                .unwrap()
        } else if n % 16 == 8 {
            // A create, then an update moving it to another email.
            let created = command(round, n);
            let update = spkey_store::UpdateUser::new(created.user_id.clone())
                .email(format!("r{round}n{n}moved@example.com"));
            vec![
                store.create_user(&created).unwrap(),
                store.update_user(&update).unwrap(),
            ]
        } else {
            vec![store.create_user(&command(round, n)).unwrap()]
        };
        for outcome in outcomes {
            if let Outcome::Recorded(event) = outcome {
                // Only now, with the command durable, is it acknowledged.
                writeln!(out, "ack {} {}", event.position, event.aggregate_id()).unwrap();
            }
        }
        out.flush().unwrap();
    }
}

/// Runs this test binary again as the child `test`, its stdout piped.
fn spawn_child(test: &str, round: u64, plant: bool, files: &[(&str, &Path)]) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args(["--ignored", "--exact", test, "--nocapture"])
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (name, path) in files {
        child.env(name, path);
    }
    if plant {
        child.env(PLANT_ENV, "1");
    }
    child.spawn().unwrap()
}

/// Calls `on_ack` with what follows `ack ` on each line the child printed
/// whole: a line cut off by the kill was never fully reported.
fn each_ack(stdout: ChildStdout, mut on_ack: impl FnMut(&str)) {
    let mut lines = BufReader::new(stdout);
    let mut line = String::new();
    while lines.read_line(&mut line).unwrap_or(0) > 0 {
        if let Some(ack) = line.strip_suffix('\n').and_then(|l| l.strip_prefix("ack ")) {
            on_ack(ack);
        }
        line.clear();
    }
}

/// Runs one child until it is killed; returns the acknowledgements it
/// printed in full before it died.
fn kill_round(db: &Path, round: u64, plant: bool, rng: &mut fastrand::Rng) -> Vec<(u64, Uuid)> {
    let mut child = spawn_child("kill::kill_child_writer", round, plant, &[(DB_ENV, db)]);
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        each_ack(stdout, |ack| {
            let (position, id) = ack.split_once(' ').unwrap();
            acks.push((position.parse().unwrap(), id.parse().unwrap()));
            let _ = tx.send(());
        });
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

const HUB_ENV: &str = "SPKEY_KILL_HUB";

/// The child of the sync kill harness: a device and a hub, each on its own
/// file, creating users (every third device user takes an email the hub
/// just gave away) and syncing, forever. After each step it reports the
/// head of the store that step wrote, and that head's event id.
#[test]
#[ignore = "the child process of the sync kill -9 harness, run by it"]
fn kill_sync_child() {
    let durable = std::env::var_os(PLANT_ENV).is_none();
    let open = |path| Store::builder().durable(durable).open(path).unwrap();
    let device = open(std::env::var(DB_ENV).expect("run by the harness"));
    let hub = open(std::env::var(HUB_ENV).unwrap());
    let round: u64 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let mut out = std::io::stdout().lock();
    let mut report = |side: &str, store: &Store| {
        let head = store.head_position().unwrap();
        let id = store.events(head, 1).unwrap().first().map(|e| e.event_id);
        let cursor = store.pull_cursor().unwrap();
        writeln!(out, "ack {side} {head} {} {cursor}", id.unwrap_or_default()).unwrap();
        out.flush().unwrap();
    };
    for n in 0.. {
        let hub_email = format!("r{round}h{n}@example.com");
        hub.create_user(&command(round, 2 * n).clone_with_email(&hub_email))
            .unwrap();
        report("hub", &hub);
        let email = if n % 3 == 0 {
            hub_email
        } else {
            format!("r{round}d{n}@example.com")
        };
        device
            .create_user(&command(round, 2 * n + 1).clone_with_email(&email))
            .unwrap();
        report("dev", &device);
        let reply = hub.accept(&device.push().unwrap()).unwrap();
        report("hub", &hub);
        device.apply_reply(&reply).unwrap();
        report("dev", &device);
        let cursor = device.pull_cursor().unwrap();
        device.import(&hub.export(cursor, 1000).unwrap()).unwrap();
        report("dev", &device);
    }
}

trait WithEmail {
    fn clone_with_email(&self, email: &str) -> CreateUser;
}

impl WithEmail for CreateUser {
    fn clone_with_email(&self, email: &str) -> CreateUser {
        CreateUser::new(self.user_id.clone(), email)
    }
}

/// The last acknowledged state of one side: head, the event id there, and
/// the pull cursor.
type SideAck = (u64, Uuid, u64);

fn kill_sync_round(
    device: &Path,
    hub: &Path,
    round: u64,
    plant: bool,
    rng: &mut fastrand::Rng,
) -> (Option<SideAck>, Option<SideAck>) {
    let mut child = spawn_child(
        "kill::kill_sync_child",
        round,
        plant,
        &[(DB_ENV, device), (HUB_ENV, hub)],
    );
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut dev, mut hub) = (None, None);
        each_ack(stdout, |ack| {
            let parts: Vec<&str> = ack.split(' ').collect();
            let state = (
                parts[1].parse().unwrap(),
                parts[2].parse().unwrap(),
                parts[3].parse().unwrap(),
            );
            match parts[0] {
                "dev" => dev = Some(state),
                _ => hub = Some(state),
            }
        });
        (dev, hub)
    });
    std::thread::sleep(Duration::from_millis(rng.u64(20..120)));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap()
}

fn check_side(path: &Path, acked: Option<SideAck>) -> Result<Store, String> {
    let store = Store::open(path).map_err(|e| format!("reopen failed: {e}"))?;
    let report = store.verify().map_err(|e| e.to_string())?;
    if !report.is_sound() {
        return Err(format!("unsound after kill: {:?}", report.findings));
    }
    if let Some((head, id, cursor)) = acked {
        let at = store.events(head, 1).map_err(|e| e.to_string())?;
        if head > 0 && at.first().map(|e| e.event_id) != Some(id) {
            return Err(format!("acknowledged event {id} at position {head} lost"));
        }
        if store.pull_cursor().map_err(|e| e.to_string())? < cursor {
            return Err(format!("pull cursor went back below {cursor}"));
        }
    }
    Ok(store)
}

#[test]
fn kill_9_while_syncing_loses_no_acknowledged_step_and_converges() {
    let kills = if long_run() { 300 } else { 20 };
    let dir = tempfile::tempdir().unwrap();
    let (device, hub) = (dir.path().join("device.redb"), dir.path().join("hub.redb"));
    let mut rng = fastrand::Rng::with_seed(0x5eed5);
    let (mut dev_ack, mut hub_ack) = (None, None);
    for round in 0..kills {
        let (dev, hub_now) = kill_sync_round(&device, &hub, round, false, &mut rng);
        dev_ack = dev.or(dev_ack);
        hub_ack = hub_now.or(hub_ack);
        for (path, acked) in [(&device, dev_ack), (&hub, hub_ack)] {
            if let Err(problem) = check_side(path, acked) {
                panic!("after kill {}: {}: {problem}", round + 1, path.display());
            }
        }
    }
    assert!(
        dev_ack.is_some() && hub_ack.is_some(),
        "the children never got to sync"
    );
    let (device, hub) = (Store::open(&device).unwrap(), Store::open(&hub).unwrap());
    if let Err(problem) = crate::crash_sync::converge(&device, &hub) {
        panic!("after {kills} kills: {problem}");
    }
    eprintln!(
        "kill -9, sync: {kills} kills, device at position {}, hub at {}, 0 acknowledged steps lost, converged",
        device.head_position().unwrap(),
        hub.head_position().unwrap()
    );
}

#[test]
fn the_sync_kill_harness_catches_commits_that_do_not_wait_for_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (device, hub) = (dir.path().join("device.redb"), dir.path().join("hub.redb"));
    let mut rng = fastrand::Rng::with_seed(11);
    let (mut dev_ack, mut hub_ack) = (None, None);
    let mut caught = false;
    for round in 0..3 {
        let (dev, hub_now) = kill_sync_round(&device, &hub, round, true, &mut rng);
        dev_ack = dev.or(dev_ack);
        hub_ack = hub_now.or(hub_ack);
        caught |= check_side(&device, dev_ack).is_err() || check_side(&hub, hub_ack).is_err();
    }
    assert!(
        caught,
        "non-durable sync steps survived every kill: the harness cannot see loss"
    );
}

/// The erasing child's user `n` of `round`: distinctive values a search of
/// the files can find.
fn erasable(round: u64, n: u64) -> CreateUser {
    let id = Uuid::from_u128(0xe7a5e << 64 | (round as u128) << 32 | n as u128);
    CreateUser::new(id.to_string(), format!("erase-r{round}n{n}@kill.example"))
        .first_name(format!("Killname{round}x{n}z"))
}

/// The child of the erasure kill harness: creates a user and erases it,
/// forever, reporting each erasure once it returned; every fifth user it
/// closes and reopens the store, which rewrites the file then.
#[test]
#[ignore = "the child process of the erasure kill -9 harness, run by it"]
fn kill_erasing_child() {
    let db = std::env::var(DB_ENV).expect("run by the kill -9 harness");
    let round: u64 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let mut store = Some(Store::open(&db).unwrap());
    let mut out = std::io::stdout().lock();
    for n in 0.. {
        let open = store.as_ref().unwrap();
        let created = erasable(round, n);
        open.create_user(&created).unwrap();
        let erased = open
            .delete_user(&spkey_store::DeleteUser::new(&created.id))
            .unwrap();
        assert!(matches!(erased, Outcome::Recorded(_)));
        writeln!(out, "ack {n}").unwrap();
        out.flush().unwrap();
        if n % 5 == 4 {
            store.take().unwrap().close().unwrap();
            store = Some(Store::open(&db).unwrap());
        }
    }
}

#[test]
fn kill_9_during_erasures_leaves_each_user_whole_or_erased_and_no_trace_of_the_erased() {
    let kills = if long_run() { 200 } else { 12 };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("erase.redb");
    let mut rng = fastrand::Rng::with_seed(0xe5a5e);
    let mut erased = 0;
    for round in 0..kills {
        let mut child = spawn_child("kill::kill_erasing_child", round, false, &[(DB_ENV, &db)]);
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            each_ack(stdout, |ack| acks.push(ack.parse::<u64>().unwrap()));
            acks
        });
        std::thread::sleep(Duration::from_millis(rng.u64(20..200)));
        child.kill().unwrap();
        child.wait().unwrap();
        let acks = reader.join().unwrap();
        erased += acks.len();

        // Opened again, the store has rewritten its file after the
        // erasures the kill left in its free pages and journal: no file
        // holds an erased user's values (searched for each, below).
        let store = Store::open(&db).unwrap();
        let files: Vec<(std::path::PathBuf, Vec<u8>)> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                (path, bytes)
            })
            .collect();
        let report = store.verify().unwrap();
        assert!(
            report.is_sound(),
            "after kill {round}: {:?}",
            report.findings
        );
        // Each user of the round: erased when acknowledged; otherwise
        // whole (its creation committed, its erasure not) or erased.
        let mut n = 0;
        loop {
            let created = erasable(round, n);
            let Some(user) = store.user(created.id.parse().unwrap()).unwrap() else {
                break;
            };
            if acks.contains(&n) {
                assert!(user.is_erased(), "acknowledged erasure {round}/{n} undone");
            }
            if !user.is_erased() {
                assert_eq!(user.profile.email, created.email, "half erased");
                assert_eq!(user.profile.first_name, created.first_name, "half erased");
            }
            n += 1;
        }
        for k in 0..n {
            let created = erasable(round, k);
            let user = store.user(created.id.parse().unwrap()).unwrap().unwrap();
            let name = created.first_name.clone().unwrap();
            let found: Vec<&std::path::PathBuf> = files
                .iter()
                .filter(|(_, bytes)| {
                    [created.email.as_bytes(), name.as_bytes()]
                        .iter()
                        .any(|value| bytes.windows(value.len()).any(|w| w == *value))
                })
                .map(|(path, _)| path)
                .collect();
            assert_eq!(
                found.is_empty(),
                user.is_erased(),
                "round {round} user {k}: erased {}, found in {found:?}",
                user.is_erased()
            );
        }
        drop(store);
    }
    assert!(erased > 0, "the children never got to erase");
    eprintln!("kill -9 during erasures: {kills} kills, {erased} acknowledged erasures");
}
