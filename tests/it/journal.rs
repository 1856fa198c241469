//! The journal: what a process that dies leaves there is replayed on the
//! next open; a torn last record is cut; damage and foreign journals are
//! refused, the journal untouched (images are compared with `==`, not
//! `assert_eq!`, whose message would print megabytes).

use spkey_store::{CreateUser, ManualClock, Outcome, Store, StoreError};
use uuid::Uuid;

use crate::disk::{Disk, Image};
use crate::support::NOW_MS;

fn open(disk: &Disk) -> Result<Store, StoreError> {
    Store::builder()
        .clock(ManualClock::new(NOW_MS))
        .journal(disk.journal())
        .backend(disk.backend())
}

fn create(store: &Store, n: u128) -> Outcome {
    let command = CreateUser::new(
        Uuid::from_u128(0x10_0000 + n).to_string(),
        format!("journal{n}@example.com"),
    );
    store.create_user(&command).unwrap()
}

/// What a process that died after `n` acknowledged creates leaves: the
/// files as the OS holds them, with redb's last durable commit before them
/// all, so only the journal holds them.
fn died_after(n: u128) -> Image {
    let disk = Disk::default();
    let store = open(&disk).unwrap();
    for i in 0..n {
        assert!(matches!(create(&store, i), Outcome::Recorded(_)));
    }
    let image = disk.live();
    // Not dropped: a process that dies runs no destructor.
    std::mem::forget(store);
    image
}

/// The offset of the end of each record in a journal image (the zeros of
/// its last chunk end them).
fn record_ends(journal: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut at = 32;
    while at + 20 <= journal.len() && journal[at..].starts_with(b"SPJR") {
        let len = u32::from_le_bytes(journal[at + 4..at + 8].try_into().unwrap()) as usize;
        at += 20 + len;
        ends.push(at);
    }
    ends
}

#[test]
fn what_only_the_journal_holds_is_replayed_on_open_and_the_store_goes_on_from_it() {
    let image = died_after(5);
    assert_eq!(
        record_ends(&image.journal).len(),
        5,
        "one record per command"
    );
    let without = open(&Disk::with_image(image.store.clone())).unwrap();
    assert_eq!(without.head_position().unwrap(), 0, "redb alone has none");

    let disk = Disk::with_image(image.clone());
    let store = open(&disk).unwrap();

    assert_eq!(store.head_position().unwrap(), 5);
    for n in 0..5 {
        let user = Uuid::from_u128(0x10_0000 + n);
        assert!(store.user(user).unwrap().is_some(), "user {n}");
    }
    assert!(store.verify().unwrap().is_sound());
    // The replayed store goes on from where the journal ended, its next
    // record over the first replayed one; a crash now loses nothing.
    assert!(matches!(create(&store, 5), Outcome::Recorded(e) if e.position == 6));
    assert!(matches!(create(&store, 0), Outcome::Replayed(_)));
    assert_eq!(
        record_ends(&disk.live().journal)[0],
        record_ends(&image.journal)[0]
    );
    let again = open(&Disk::with_image(disk.live())).unwrap();
    assert_eq!(again.head_position().unwrap(), 6);
    assert!(again.verify().unwrap().is_sound());
}

#[test]
fn a_torn_last_record_is_cut_and_everything_before_it_kept() {
    let image = died_after(3);
    let ends = record_ends(&image.journal);
    for cut in ends[1] + 1..ends[2] {
        let mut torn = image.clone();
        torn.journal.truncate(cut);
        let disk = Disk::with_image(torn);
        let store = open(&disk).unwrap();
        assert_eq!(store.head_position().unwrap(), 2, "cut at {cut}");
        assert!(store.verify().unwrap().is_sound());
    }
}

#[test]
fn a_damaged_record_before_a_whole_one_is_refused_and_left_untouched() {
    let image = died_after(3);
    let ends = record_ends(&image.journal);
    let mut damaged = image.clone();
    damaged.journal[ends[0] + 25] ^= 0x40;
    let disk = Disk::with_image(damaged.clone());

    let error = open(&disk).unwrap_err();

    assert!(matches!(error, StoreError::Damaged(_)), "{error:?}");
    assert!(error.to_string().contains("journal"), "{error}");
    // redb recovers its own file as after any crash; the journal, which
    // holds what may be the only copy of acknowledged commands, is kept.
    assert!(
        disk.live().journal == damaged.journal,
        "the journal changed"
    );
}

#[test]
fn another_stores_journal_is_refused_and_left_untouched() {
    let mine = died_after(1);
    let theirs = died_after(2);
    let mixed = Image {
        store: mine.store,
        journal: theirs.journal,
        checksums: mine.checksums,
    };
    let disk = Disk::with_image(mixed.clone());

    let error = open(&disk).unwrap_err();

    assert!(matches!(error, StoreError::NotAStore(_)), "{error:?}");
    assert!(error.to_string().contains("belongs to store"), "{error}");
    assert!(disk.live().journal == mixed.journal, "the journal changed");
}

#[test]
fn a_file_that_is_not_a_journal_is_refused_and_left_untouched() {
    let image = Image {
        journal: b"my notes, not a journal; do not delete".to_vec(),
        ..died_after(1)
    };
    let disk = Disk::with_image(image.clone());

    let error = open(&disk).unwrap_err();

    assert!(matches!(error, StoreError::NotAStore(_)), "{error:?}");
    assert!(disk.live().journal == image.journal, "the file changed");
}

#[test]
fn a_store_file_opened_by_path_keeps_its_journal_beside_it_and_closes_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.redb");
    let journal = dir.path().join("users.redb-journal");
    let store = Store::open(&path).unwrap();
    for n in 0..3 {
        create(&store, n);
    }
    assert!(std::fs::metadata(&journal).unwrap().len() > 32);

    store.close().unwrap();

    assert_eq!(std::fs::metadata(&journal).unwrap().len(), 32);
    // The store file alone holds everything once closed.
    std::fs::remove_file(&journal).unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.head_position().unwrap(), 3);
    assert!(store.verify().unwrap().is_sound());
}

#[test]
fn a_read_only_open_replays_the_journal_in_memory_and_changes_no_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.redb");
    let journal = dir.path().join("users.redb-journal");
    let image = died_after(4);
    std::fs::write(&path, &image.store).unwrap();
    std::fs::write(&journal, &image.journal).unwrap();

    let store = Store::builder().open_read_only(&path).unwrap();

    assert_eq!(store.head_position().unwrap(), 4);
    assert!(store.verify().unwrap().is_sound());
    drop(store);
    assert!(
        std::fs::read(&path).unwrap() == image.store,
        "the store changed"
    );
    assert!(
        std::fs::read(&journal).unwrap() == image.journal,
        "the journal changed"
    );
}

#[test]
fn verify_finds_a_journal_that_says_otherwise_than_the_store() {
    use spkey_store::{Finding, StorageBackend};

    let disk = Disk::default();
    let store = open(&disk).unwrap();
    create(&store, 0);
    create(&store, 1);
    assert!(store.verify().unwrap().is_sound());
    // Rewrite a byte of the second record's last change (the last byte of
    // its email row's key: the record ends with that key, `Some` and an
    // empty value) and its checksum, as a bug writing the wrong bytes would.
    let journal = disk.live().journal;
    let ends = record_ends(&journal);
    let start = ends[0];
    let mut record = journal[start..ends[1]].to_vec();
    let last = record.len() - 3;
    record[last] ^= 0x01;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&record[4..16]);
    crc.update(&record[20..]);
    record[16..20].copy_from_slice(&crc.finalize().to_le_bytes());
    disk.journal().write(start as u64, &record).unwrap();

    let report = store.verify().unwrap();

    assert!(
        report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::JournalRowMismatch { .. })),
        "{:?}",
        report.findings
    );
}

#[test]
fn readers_never_see_a_commit_before_its_record_is_synced() {
    let disk = Disk::default();
    let store = open(&disk).unwrap();
    create(&store, 0);
    let gate = disk.hold_journal_syncs();
    let second = Uuid::from_u128(0x10_0001);

    std::thread::scope(|s| {
        let _open = gate.opened_on_drop();
        let writer = s.spawn(|| create(&store, 1));
        gate.wait_for_a_sync();
        // Committed in redb, written to the journal, not yet on the disk:
        // a power cut now would lose it, so no reader may act on it.
        assert_eq!(store.user(second).unwrap(), None);
        assert_eq!(store.head_position().unwrap(), 1);
        assert_eq!(store.events(1, 10).unwrap().len(), 1);
        gate.open();
        assert!(matches!(writer.join().unwrap(), Outcome::Recorded(_)));
    });

    assert!(store.user(second).unwrap().is_some());
    assert_eq!(store.head_position().unwrap(), 2);
}

#[test]
fn an_answer_read_off_a_commit_not_yet_synced_waits_for_it() {
    let disk = Disk::default();
    let store = open(&disk).unwrap();
    let gate = disk.hold_journal_syncs();
    let taken = CreateUser::new(
        Uuid::from_u128(0x20_0000).to_string(),
        "journal0@example.com",
    );

    std::thread::scope(|s| {
        let _open = gate.opened_on_drop();
        let first = s.spawn(|| create(&store, 0));
        gate.wait_for_a_sync();
        // Decided against the first command's commit, which a power cut
        // could still undo: the 409 must not leave before that commit is
        // on the disk.
        let second = s.spawn(|| store.create_user(&taken).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            !second.is_finished(),
            "answered before the commit it read was durable"
        );
        gate.open();
        assert!(matches!(first.join().unwrap(), Outcome::Recorded(_)));
        assert!(matches!(second.join().unwrap(), Outcome::Rejected(_)));
    });
    assert!(store.verify().unwrap().is_sound());
}

#[test]
fn damaged_journals_give_a_clear_error_or_a_prefix_of_the_log_never_wrong_data() {
    let records = 6;
    let image = died_after(records);
    let original: Vec<_> = {
        let store = open(&Disk::with_image(image.clone())).unwrap();
        store.events(1, usize::MAX).unwrap()
    };
    let end = *record_ends(&image.journal).last().unwrap();
    let mut rng = fastrand::Rng::with_seed(0x10a);
    let copies = if crate::support::long_run() {
        20_000
    } else {
        2_000
    };
    let (mut refused, mut whole, mut tail_dropped) = (0, 0, 0);
    for i in 0..copies {
        let mut copy = image.clone();
        for _ in 0..rng.usize(1..=4) {
            // Within the header and records: damage to the zeros after them
            // changes nothing.
            let at = rng.usize(0..end);
            copy.journal[at] ^= rng.u8(1..=255);
        }
        let Ok(store) = open(&Disk::with_image(copy)) else {
            refused += 1;
            continue;
        };
        let events = store.events(1, usize::MAX).unwrap();
        assert!(store.verify().unwrap().is_sound(), "copy {i}");
        if events == original {
            whole += 1;
        } else {
            // The loss damage can cause: damaged records at the end, with no
            // whole record after them, read as a torn append (SQLite's WAL
            // drops everything after its first bad frame), so the events
            // are a prefix of the original. Never other data.
            assert!(
                events.len() < original.len() && events[..] == original[..events.len()],
                "copy {i}: wrong data"
            );
            tail_dropped += 1;
        }
    }
    eprintln!(
        "damaged journals: {copies} copies: {refused} refused, {whole} whole, \
         {tail_dropped} without their last records, 0 wrong"
    );
    assert!(refused > 0 && whole + tail_dropped > 0);
}

/// A file at the journal's path that claims to be 10 GiB and panics if
/// asked for more than a header's worth of it.
#[derive(Debug)]
struct Huge;

impl spkey_store::StorageBackend for Huge {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(10 << 30)
    }
    fn read(&self, _offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        assert!(
            out.len() <= 4096,
            "read {} bytes of a foreign file",
            out.len()
        );
        out.fill(b'x');
        Ok(())
    }
    fn set_len(&self, _: u64) -> Result<(), std::io::Error> {
        panic!("a foreign file was truncated")
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        Ok(())
    }
    fn write(&self, _: u64, _: &[u8]) -> Result<(), std::io::Error> {
        panic!("a foreign file was written")
    }
}

#[test]
fn a_huge_foreign_file_is_refused_after_reading_its_first_bytes() {
    let disk = Disk::default();
    let store = Store::builder()
        .clock(ManualClock::new(NOW_MS))
        .journal(Huge)
        .backend(disk.backend());

    assert!(matches!(store, Err(StoreError::NotAStore(_))), "{store:?}");
}

#[test]
fn a_journal_packed_with_would_be_records_is_refused_in_bounded_time() {
    let mut image = died_after(2);
    let ends = record_ends(&image.journal);
    // Damage the last record, then fill the rest of the chunk with record
    // magic, each claiming a payload up to the end of the file: checked one
    // by one, that is a CRC over half a megabyte 130,000 times.
    image.journal[ends[1] - 1] ^= 1;
    let len = image.journal.len();
    let mut at = ends[1];
    while at + 8 <= len {
        image.journal[at..at + 4].copy_from_slice(b"SPJR");
        let claim = len.saturating_sub(at + 20) as u32;
        image.journal[at + 4..at + 8].copy_from_slice(&claim.to_le_bytes());
        at += 8;
    }
    let started = std::time::Instant::now();

    let error = open(&Disk::with_image(image)).unwrap_err();

    assert!(matches!(error, StoreError::Damaged(_)), "{error:?}");
    assert!(error.to_string().contains("would-be records"), "{error}");
    eprintln!("refused in {:?}: {error}", started.elapsed());
}
