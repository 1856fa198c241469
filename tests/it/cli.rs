//! The `spkey` CLI as a child process, on a real store file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use spkey_store::{MAX_BODY_BYTES, Store};

use crate::support::{ID, OTHER_ID, body};

struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    fn new() -> Cli {
        Cli {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("cli.redb")
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, None)
    }

    fn run_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let db = self.db();
        let mut full = vec!["--db", db.to_str().unwrap()];
        full.extend_from_slice(args);
        spkey(self.dir.path(), &full, stdin)
    }
}

fn spkey(cwd: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spkey"))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn spkey");
    {
        let mut pipe = child.stdin.take().unwrap();
        // The CLI stops reading an oversized body early: a broken pipe here
        // is the behaviour under test, not a failure.
        let _ = pipe.write_all(stdin.unwrap_or_default());
    }
    child.wait_with_output().expect("wait for spkey")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn json_line(output: &Output) -> Value {
    let text = stdout(output);
    assert_eq!(text.lines().count(), 1, "one line expected: {text}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn create_user_prints_one_json_line_and_exits_0_then_replays() {
    let cli = Cli::new();

    let first = cli.run(&["create-user", ID, &body(ID, "user@example.com")]);
    let again = cli.run(&["create-user", ID, &body(ID, "user@example.com")]);

    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let json = json_line(&first);
    assert_eq!(json["success"], true);
    assert_eq!(json["event"]["position"], 1);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(stdout(&again), stdout(&first));
}

#[test]
fn create_user_reads_the_body_from_stdin() {
    let cli = Cli::new();

    let output = cli.run_with_stdin(
        &["create-user", ID, "-"],
        Some(body(ID, "user@example.com").as_bytes()),
    );

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(json_line(&output)["userId"], ID);
}

#[test]
fn rejections_print_the_error_body_and_exit_1() {
    let cli = Cli::new();
    cli.run(&["create-user", ID, &body(ID, "user@example.com")]);

    let invalid = cli.run(&["create-user", ID, r#"{"userId":"x","firstname":"a"}"#]);
    let conflict = cli.run(&["create-user", OTHER_ID, &body(OTHER_ID, "USER@example.com")]);
    let too_large = cli.run_with_stdin(
        &["create-user", ID, "-"],
        Some(&vec![b' '; MAX_BODY_BYTES * 4]),
    );

    assert_eq!(invalid.status.code(), Some(1));
    let json = json_line(&invalid);
    assert_eq!(json["code"], 400);
    let fields: Vec<&str> = json["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["userId", "email", "firstname"]);
    assert_eq!(conflict.status.code(), Some(1));
    assert_eq!(json_line(&conflict)["details"][0]["field"], "email");
    assert_eq!(too_large.status.code(), Some(1));
    assert_eq!(json_line(&too_large)["code"], 413);
}

#[test]
fn user_prints_the_state_or_exits_1() {
    let cli = Cli::new();
    cli.run(&["create-user", ID, &body(ID, "user@example.com")]);

    let found = cli.run(&["user", &ID.to_uppercase()]);
    let missing = cli.run(&["user", OTHER_ID]);
    let not_a_uuid = cli.run(&["user", "nope"]);

    assert_eq!(found.status.code(), Some(0));
    let json = json_line(&found);
    assert_eq!(json["userId"], ID);
    assert_eq!(json["email"], "user@example.com");
    assert_eq!(json["version"], 1);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stdout(&missing).is_empty());
    assert_eq!(not_a_uuid.status.code(), Some(2));
    assert!(stderr(&not_a_uuid).contains("not a UUID"));
}

#[test]
fn events_prints_one_line_per_event_from_a_position() {
    let cli = Cli::new();
    let store = Store::open(cli.db()).unwrap();
    for n in 1..=5u128 {
        let id = uuid::Uuid::from_u128(n).to_string();
        store.create_user_wire(&id, body(&id, &format!("u{n}@example.com")).as_bytes());
    }
    drop(store);

    let all = cli.run(&["events"]);
    let page = cli.run(&["events", "--from", "2", "--limit", "3"]);

    assert_eq!(all.status.code(), Some(0));
    assert_eq!(stdout(&all).lines().count(), 5);
    let positions: Vec<u64> = stdout(&page)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["position"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(positions, [2, 3, 4]);
}

#[test]
fn verify_exits_0_when_sound_and_1_with_findings_when_damaged() {
    let cli = Cli::new();
    cli.run(&["create-user", ID, &body(ID, "user@example.com")]);

    let sound = cli.run(&["verify"]);
    {
        let db = redb::Database::open(cli.db()).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut emails = txn
                .open_table(redb::TableDefinition::<&[u8], &[u8]>::new("emails"))
                .unwrap();
            let mut row = b"user@example.com\xff".to_vec();
            row.extend_from_slice(uuid::Uuid::parse_str(ID).unwrap().as_bytes());
            emails.remove(&row[..]).unwrap();
        }
        txn.commit().unwrap();
    }
    let damaged = cli.run(&["verify"]);

    assert_eq!(sound.status.code(), Some(0));
    assert!(stdout(&sound).contains("sound: 1 events, 1 users"));
    assert_eq!(damaged.status.code(), Some(1));
    assert!(stdout(&damaged).contains("email row user@example.com"));
}

#[test]
fn a_file_that_is_not_a_store_exits_2_with_a_message() {
    let cli = Cli::new();
    std::fs::write(cli.db(), b"this is not a redb file, just some text").unwrap();

    let output = cli.run(&["create-user", ID, &body(ID, "user@example.com")]);

    assert_eq!(output.status.code(), Some(2));
    assert!(stdout(&output).is_empty());
    assert!(
        stderr(&output).contains("cannot open store"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_store_locked_by_another_process_exits_2() {
    let cli = Cli::new();
    let holder = Store::open(cli.db()).unwrap();

    let output = cli.run(&["create-user", ID, &body(ID, "user@example.com")]);

    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("locked"), "{}", stderr(&output));
    assert_eq!(holder.head_position().unwrap(), 0);
}

#[test]
fn the_default_store_is_spkey_redb_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();

    let output = spkey(
        dir.path(),
        &["create-user", ID, &body(ID, "user@example.com")],
        None,
    );

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let store = Store::open(dir.path().join("spkey.redb")).unwrap();
    assert_eq!(store.head_position().unwrap(), 1);
}

#[test]
fn update_user_changes_the_email_frees_the_old_one_and_exits_1_on_a_4xx() {
    let cli = Cli::new();
    cli.run(&["create-user", ID, &body(ID, "user@example.com")]);

    let update = cli.run(&[
        "update-user",
        ID,
        r#"{"email":"new@example.com","lastName":null}"#,
    ]);
    let again = cli.run(&[
        "update-user",
        ID,
        r#"{"email":"new@example.com","lastName":null}"#,
    ]);
    let unknown = cli.run(&["update-user", OTHER_ID, r#"{"firstName":"X"}"#]);
    let invalid = cli.run_with_stdin(&["update-user", ID, "-"], Some(b"{}"));
    let old_free = cli.run(&["create-user", OTHER_ID, &body(OTHER_ID, "USER@example.com")]);

    assert_eq!(update.status.code(), Some(0), "{}", stderr(&update));
    let json = json_line(&update);
    assert_eq!(
        (
            json["version"].as_u64(),
            json["event"]["eventType"].as_str()
        ),
        (Some(2), Some("UserUpdated"))
    );
    assert_eq!(
        (again.status.code(), stdout(&again)),
        (Some(0), stdout(&update))
    );
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(json_line(&unknown)["code"], 404);
    assert_eq!(invalid.status.code(), Some(1));
    assert_eq!(json_line(&invalid)["details"][0]["field"], "body");
    assert_eq!(old_free.status.code(), Some(0), "{}", stdout(&old_free));
    let user = json_line(&cli.run(&["user", ID]));
    assert_eq!(
        (user["email"].as_str(), user["version"].as_u64()),
        (Some("new@example.com"), Some(2))
    );
    assert!(user.get("lastName").is_none());
}

#[test]
fn help_documents_every_command() {
    let dir = tempfile::tempdir().unwrap();

    let output = spkey(dir.path(), &["--help"], None);

    let text = stdout(&output);
    for command in [
        "create-user",
        "update-user",
        "user",
        "events",
        "verify",
        "--db",
    ] {
        assert!(text.contains(command), "--help lacks {command}: {text}");
    }
    assert!(
        !dir.path().join("spkey.redb").exists(),
        "--help must not create a store"
    );
}

#[test]
fn two_store_files_sync_through_files_and_pipes() {
    let device = Cli::new();
    let hub = Cli::new();
    let dir = device.dir.path();
    device.run(&["create-user", ID, &body(ID, "user@example.com")]);
    let other = uuid::Uuid::from_u128(5).to_string();
    hub.run(&["create-user", &other, &body(&other, "hub@example.com")]);

    let push = device.run(&["push"]);
    std::fs::write(dir.join("push"), &push.stdout).unwrap();
    let reply = hub.run(&["accept", dir.join("push").to_str().unwrap()]);
    let applied = device.run_with_stdin(&["apply-reply", "-"], Some(&reply.stdout));
    let cursor = stdout(&device.run(&["cursor"]));
    let pull = hub.run(&["export", "--since", cursor.trim()]);
    let imported = device.run_with_stdin(&["import", "-"], Some(&pull.stdout));
    let mut damaged = push.stdout.clone();
    damaged[10] ^= 1;
    let refused = hub.run_with_stdin(&["accept", "-"], Some(&damaged));

    assert_eq!(reply.status.code(), Some(0), "{}", stderr(&reply));
    assert_eq!(json_line(&applied)["accepted"], 1);
    assert_eq!(json_line(&imported)["imported"], 1);
    assert_eq!(json_line(&imported)["own"], 1);
    assert!(stdout(&device.run(&["pending"])).is_empty());
    assert_eq!(device.run(&["user", &other]).status.code(), Some(0));
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("checksum"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        json_line(&hub.run(&["user", ID]))["email"],
        "user@example.com"
    );
}

#[test]
fn reading_a_store_not_yet_created_reads_empty_and_creates_nothing() {
    let cli = Cli::new();

    let user = cli.run(&["user", ID]);
    let events = cli.run(&["events"]);
    let cursor = cli.run(&["cursor"]);
    let verify = cli.run(&["verify"]);

    assert_eq!(user.status.code(), Some(1), "{}", stderr(&user));
    assert_eq!(events.status.code(), Some(0));
    assert!(stdout(&events).is_empty());
    assert_eq!(stdout(&cursor).trim(), "0");
    assert_eq!(
        verify.status.code(),
        Some(2),
        "verify must say there is no store"
    );
    assert!(!cli.db().exists(), "a reading command created the store");
}

#[test]
fn an_email_refusal_says_what_is_wrong() {
    let cli = Cli::new();

    let output = cli.run(&["create-user", ID, &body(ID, "me@[127.0.0.1]")]);

    assert_eq!(output.status.code(), Some(1));
    let answer = json_line(&output);
    assert_eq!(answer["details"][0]["field"], "email");
    assert_eq!(
        answer["details"][0]["message"],
        "Invalid email format: IP addresses are not accepted"
    );
}
