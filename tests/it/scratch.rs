//! A store on a backend that cannot be renamed (the browser's OPFS file,
//! bytes in memory), rewritten after an erasure through a scratch backend
//! (`StoreBuilder::backend_and_scratch`): the erased user's values leave
//! every byte of both, and a power cut at any I/O op of the erasure and
//! the rewrite leaves the whole user or none of their values, never half,
//! and loses no acknowledged event.

use std::panic::{AssertUnwindSafe, catch_unwind};

use spkey_store::{CreateUser, DeleteUser, ManualClock, MemoryBackend, Outcome, Store, StoreError};

use crate::crash::{cut_while, variants};
use crate::disk::{Disk, Fault, Image};
use crate::erase::{ERASED, KEPT, Person, create, held};
use crate::support::NOW_MS;

fn erase(store: &Store, person: &Person) -> Result<Outcome, StoreError> {
    store.delete_user(&DeleteUser::new(person.id.to_string()))
}

#[test]
fn a_store_in_memory_is_rewritten_through_its_scratch_and_keeps_no_erased_value() {
    let (main, scratch) = (MemoryBackend::new(), MemoryBackend::new());
    let open = || {
        Store::builder()
            .clock(ManualClock::new(NOW_MS))
            .backend_and_scratch(main.clone(), scratch.clone())
            .unwrap()
    };
    let store = open();
    create(&store, &ERASED);
    for person in &KEPT {
        create(&store, person);
    }
    assert!(matches!(erase(&store, &ERASED), Ok(Outcome::Recorded(_))));
    // The search finds what the rewrite must remove: the rows are erased,
    // the free pages are not yet.
    assert!(store.holds_erased_values());
    assert!(!held(&main.snapshot(), &ERASED).is_empty());

    store.close().unwrap();
    let bytes = main.snapshot();
    assert_eq!(held(&bytes, &ERASED), Vec::<&str>::new());
    for person in &KEPT {
        assert_eq!(held(&bytes, person).len(), 4, "{}", person.email);
    }
    assert!(scratch.snapshot().is_empty(), "the scratch is emptied");

    let store = open();
    assert!(!store.holds_erased_values());
    assert!(store.verify().unwrap().is_sound());
    let erased = store.user(ERASED.id).unwrap().unwrap();
    assert!(erased.is_erased());
    for person in &KEPT {
        let user = store.user(person.id).unwrap().unwrap();
        assert_eq!(user.profile.email, person.email);
        assert_eq!(user.profile.last_name.as_deref(), Some(person.last));
    }
    // Its id stays taken; its email is free.
    assert!(matches!(
        store.create_user(&CreateUser::new(
            ERASED.id.to_string(),
            "someone@example.com"
        )),
        Ok(Outcome::Rejected(_))
    ));
}

/// The store on `disk`, its scratch the disk's second file.
fn open(disk: &Disk) -> Result<Store, StoreError> {
    Store::builder()
        .clock(ManualClock::new(NOW_MS))
        .backend_and_scratch(disk.backend(), disk.journal())
}

/// Creates the three users, erases one and closes the store; whether all
/// three were acknowledged, and the erasure (`None`: the store never
/// opened).
fn run(disk: &Disk) -> Option<(bool, bool)> {
    let store = open(disk).ok()?;
    let created = std::iter::once(&ERASED).chain(&KEPT).all(|person| {
        let command = CreateUser::new(person.id.to_string(), person.email)
            .first_name(person.first)
            .last_name(person.last)
            .phone_number(person.phone);
        matches!(store.create_user(&command), Ok(Outcome::Recorded(_)))
    });
    let erased = created && matches!(erase(&store, &ERASED), Ok(Outcome::Recorded(_)));
    let _ = store.close();
    Some((created, erased))
}

/// After power returns: the store opens sound; the erased user is whole or
/// gone from every byte of both files (gone when the erasure was
/// acknowledged); the others are whole wherever they were all created.
fn check(image: Image, erasure_acked: bool, created: bool) -> Result<(), String> {
    let disk = Disk::with_image(image);
    let store = open(&disk).map_err(|e| format!("reopen failed: {e}"))?;
    let report = store.verify().map_err(|e| format!("verify failed: {e}"))?;
    if !report.is_sound() {
        return Err(format!("unsound: {:?}", report.findings));
    }
    let live = disk.live();
    let left = [held(&live.store, &ERASED), held(&live.journal, &ERASED)].concat();
    let problem = match store.user(ERASED.id).map_err(|e| e.to_string())? {
        Some(user) if user.is_erased() => {
            (!left.is_empty()).then(|| format!("erased, yet the files hold {left:?}"))
        }
        Some(_) if erasure_acked => Some("an acknowledged erasure was lost".into()),
        Some(user) if user.profile.email != ERASED.email => Some(format!("half a user: {user:?}")),
        None if erasure_acked => Some("the erased user's stream was lost".into()),
        _ => None,
    };
    if let Some(problem) = problem {
        return Err(problem);
    }
    if created {
        for person in &KEPT {
            let user = store.user(person.id).map_err(|e| e.to_string())?;
            if user.and_then(|u| u.profile.last_name).as_deref() != Some(person.last) {
                return Err(format!("{} lost", person.email));
            }
        }
    }
    if !disk.live().journal.is_empty() {
        return Err("the scratch was left holding a copy".into());
    }
    Ok(())
}

#[test]
fn a_power_cut_at_every_io_op_of_an_erasure_and_its_rewrite_leaves_all_or_nothing() {
    let probe = Disk::default();
    assert_eq!(run(&probe), Some((true, true)), "the workload must succeed");
    let total = probe.ops();
    let mut cases = 0;
    for at in 1..=total {
        let disk = Disk::default().with_fault(Fault::PowerCut(at));
        let Some(acked) = catch_unwind(AssertUnwindSafe(|| run(&disk))).ok() else {
            panic!("panic with power cut at op {at}");
        };
        let (created, erased) = acked.unwrap_or_default();
        for (keep, again) in variants(at * 1000) {
            let mut image = disk.image(keep);
            if let Some(keep_again) = again {
                image = cut_while(open, image, keep_again, at * 1000 + 7);
            }
            if let Err(problem) = check(image, erased, created) {
                panic!("power cut at op {at}/{total}, {keep:?} then {again:?}: {problem}");
            }
            cases += 1;
        }
    }
    eprintln!("scratch rewrite: {total} I/O points, {cases} cases, never half a user");
}
