//! Block checksums beside the store: a store closed cleanly opens reading a
//! few blocks, every block read is checked, and anything that makes the
//! checksums doubtful (a process that died, a store written without them,
//! a damaged checksum file) falls back to redb's whole-file check — never
//! to a refusal of a sound store, never to trusting a damaged one. (Images
//! are compared with `==`, not `assert_eq!`, whose message would print
//! megabytes.)

use spkey_store::{CreateUser, Finding, ManualClock, Store, StoreError};
use uuid::Uuid;

use crate::disk::{Disk, Image, Keep};
use crate::support::NOW_MS;

fn open(disk: &Disk) -> Result<Store, StoreError> {
    Store::builder()
        .clock(ManualClock::new(NOW_MS))
        .journal(disk.journal())
        .checksums(disk.checksums())
        .backend(disk.backend())
}

fn command(n: u128) -> CreateUser {
    CreateUser::new(
        Uuid::from_u128(0x20_0000 + n).to_string(),
        format!("sums{n}@example.com"),
    )
    .first_name("Sam")
}

fn fill(store: &Store, from: u128, to: u128) {
    let commands: Vec<CreateUser> = (from..to).map(command).collect();
    for chunk in commands.chunks(500) {
        store.execute_batch(chunk).unwrap();
    }
}

/// Users in [`closed_store`].
const USERS: u128 = 3000;

/// A store of [`USERS`] users, closed cleanly.
fn closed_store() -> Image {
    let disk = Disk::default();
    let store = open(&disk).unwrap();
    fill(&store, 0, USERS);
    store.close().unwrap();
    disk.live()
}

/// Opens `disk` and returns the store with the bytes of the store file the
/// open read.
fn open_counting(disk: &Disk) -> (Store, u64) {
    let before = disk.bytes_read()[0];
    let store = open(disk).unwrap();
    (store, disk.bytes_read()[0] - before)
}

fn assert_holds(store: &Store, users: u128) {
    assert_eq!(store.head_position().unwrap(), users as u64);
    for n in [0, users / 2, users - 1] {
        let user = store.user(Uuid::from_u128(0x20_0000 + n)).unwrap();
        assert_eq!(user.unwrap().profile.email, format!("sums{n}@example.com"));
    }
    assert!(store.verify().unwrap().is_sound());
}

#[test]
fn a_store_closed_cleanly_opens_reading_a_few_blocks_and_one_that_died_is_checked_whole() {
    let image = closed_store();
    let len = image.store.len() as u64;
    let disk = Disk::with_image(image);

    let (store, read) = open_counting(&disk);
    assert!(
        read < len / 20,
        "a clean open read {read} of {len} bytes of the store"
    );
    eprintln!("a clean open read {read} of {len} bytes of the store");
    assert_holds(&store, USERS);
    fill(&store, USERS, USERS + 100);
    // The process dies: the OS keeps every write, no destructor runs.
    let died = disk.image(Keep::Everything);
    std::mem::forget(store);

    let disk = Disk::with_image(died);
    let (store, read) = open_counting(&disk);
    // redb's check of every page (the sums learned a chunk at a time).
    assert!(
        read > len + len / 2,
        "after a crash the open read only {read} of {len} bytes: it trusted checksums \
         a dead process left"
    );
    assert_holds(&store, USERS + 100);
    store.close().unwrap();

    let (store, read) = open_counting(&disk);
    assert!(
        read < len / 20,
        "the close after recovery wrote no checksums"
    );
    assert_holds(&store, USERS + 100);
}

#[test]
fn a_store_written_without_its_checksums_is_checked_whole_not_refused() {
    let image = closed_store();
    // Another program (an older version, redb's tools) writes the store and
    // leaves the checksum file as it was.
    let disk = Disk::with_image(image.clone());
    let store = Store::builder()
        .clock(ManualClock::new(NOW_MS))
        .backend(disk.backend())
        .unwrap();
    fill(&store, USERS, USERS + 10);
    store.close().unwrap();
    assert!(disk.live().checksums == image.checksums);

    let len = disk.live().store.len() as u64;
    let (store, read) = open_counting(&disk);

    assert!(read >= len, "stale checksums were trusted");
    assert_holds(&store, USERS + 10);
}

#[test]
fn a_damaged_checksum_file_means_a_whole_check_and_is_written_again() {
    let mut image = closed_store();
    let len = image.store.len() as u64;
    let at = image.checksums.len() / 2;
    image.checksums[at] ^= 0x20;
    let disk = Disk::with_image(image);

    let (store, read) = open_counting(&disk);
    assert!(read >= len);
    assert_holds(&store, USERS);
    store.close().unwrap();

    let (store, read) = open_counting(&disk);
    assert!(read < len / 20);
    assert_holds(&store, USERS);
}

/// Flips a bit of every copy of `email` in `bytes`.
fn change_every(bytes: &mut [u8], email: &str) {
    let email = email.as_bytes();
    let hits: Vec<usize> = (0..bytes.len() - email.len())
        .filter(|&i| &bytes[i..i + email.len()] == email)
        .collect();
    assert!(!hits.is_empty(), "no copy of the email in the file");
    for i in hits {
        bytes[i] ^= 0x01;
    }
}

fn fails_its_checksum<T>(result: &Result<T, StoreError>) -> bool {
    matches!(result, Err(e) if e.to_string().contains("fails its checksum"))
}

#[test]
fn a_block_changed_behind_the_stores_back_is_an_error_when_read() {
    let mut image = closed_store();
    change_every(&mut image.store, "sums1500@example.com");
    let disk = Disk::with_image(image);
    let (store, _) = open_counting(&disk);

    let found = store.user(Uuid::from_u128(0x20_0000 + 1500));

    assert!(fails_its_checksum(&found), "{:?}", found.map(|_| "a user"));
    // redb then refuses everything until the store is reopened.
    assert!(store.events(1, usize::MAX).is_err());
    drop(store);
    let store = open(&disk).unwrap();
    assert!(fails_its_checksum(&store.events(1, usize::MAX)));
}

/// A store of `users` users in a real file, closed cleanly: its directory
/// and path.
fn real_store(users: u128) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.redb");
    let store = Store::open(&path).unwrap();
    fill(&store, 0, users);
    store.close().unwrap();
    (dir, path)
}

#[test]
fn a_file_that_is_not_a_checksum_file_is_refused_and_left_untouched() {
    let (dir, path) = real_store(1);
    let side = dir.path().join("users.redb-checksums");
    let notes = b"my notes, not checksums; do not delete".to_vec();
    std::fs::write(&side, &notes).unwrap();
    let before = std::fs::read(&path).unwrap();

    let error = Store::open(&path).unwrap_err();

    assert!(matches!(error, StoreError::NotAStore(_)), "{error:?}");
    assert_eq!(std::fs::read(&side).unwrap(), notes);
    assert!(std::fs::read(&path).unwrap() == before, "the store changed");
    std::fs::remove_file(&side).unwrap();
    std::fs::create_dir(&side).unwrap();
    let error = Store::open(&path).unwrap_err();
    assert!(matches!(error, StoreError::NotAStore(_)), "{error:?}");
}

#[test]
fn real_files_a_flipped_byte_is_refused_and_a_read_only_open_changes_nothing() {
    let (dir, path) = real_store(2000);
    let side = dir.path().join("users.redb-checksums");
    let files = || [&path, &side].map(|p| std::fs::read(p).unwrap()).to_vec();
    let closed = files();

    let store = Store::builder().open_read_only(&path).unwrap();
    assert_holds(&store, 2000);
    // A writer is locked out while it reads, as by redb's own locks.
    assert!(matches!(Store::open(&path), Err(StoreError::Locked)));
    drop(store);
    assert!(files() == closed, "a read-only open changed a file");

    // Every copy of one user's email in the file, changed on disk.
    let mut bytes = closed[0].clone();
    change_every(&mut bytes, "sums1234@example.com");
    std::fs::write(&path, &bytes).unwrap();
    let store = Store::open(&path).unwrap();

    let report = store.verify().unwrap();
    let found = store.user(Uuid::from_u128(0x20_0000 + 1234));

    assert!(!report.findings.is_empty());
    assert!(
        report
            .findings
            .iter()
            .all(|f| matches!(f, Finding::DamagedBlock { .. })),
        "{:?}",
        report.findings
    );
    assert!(fails_its_checksum(&found), "{:?}", found.map(|_| "a user"));
}

/// `verify` reads every block from the disk: damage in a block no read has
/// met (the store has it open, its pages in redb's cache or not) is found.
#[test]
fn verify_finds_a_block_damaged_while_the_store_is_open() {
    let disk = Disk::with_image(closed_store());
    let store = open(&disk).unwrap();
    assert_holds(&store, USERS);
    let block = disk.live().store.len() / 4096 / 2;

    disk.damage_store(block * 4096 + 7, 0x40);

    let report = store.verify().unwrap();
    assert_eq!(
        report.findings,
        vec![Finding::DamagedBlock {
            block: block as u64
        }]
    );
    assert!(
        report.findings[0]
            .to_string()
            .contains("fails its checksum")
    );
}

/// A store file with a huge sparse tail (a foreign file that starts with a
/// store, or a file grown behind the store's back): the checksums cost
/// memory for the blocks touched, not for the file's length, and a close
/// does not read the tail to learn its sums.
#[test]
fn a_store_file_with_a_huge_sparse_tail_costs_what_is_touched() {
    let (dir, path) = real_store(100);
    std::fs::remove_file(dir.path().join("users.redb-checksums")).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(file.metadata().unwrap().len() + (256 << 30))
        .unwrap();
    drop(file);

    let (outcome, peak) = crate::alloc::peak_bytes_during(|| {
        let store = Store::open(&path)?;
        let user = store.user(Uuid::from_u128(0x20_0000 + 7))?;
        store.close()?;
        Ok::<_, StoreError>(user)
    });

    match outcome {
        Ok(user) => assert_eq!(user.unwrap().profile.email, "sums7@example.com"),
        // Refused is fine too; what matters is the cost.
        Err(error) => eprintln!("refused: {error}"),
    }
    assert!(
        peak < 64 << 20,
        "{peak} bytes held for a 256 GiB sparse file"
    );
}
