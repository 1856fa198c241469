//! Random command sequences against a plain model: a map of users.
//!
//! Small pools of ids, emails and names make duplicates, replays and email
//! collisions common. After every sequence: positions and versions run
//! without gaps, the email index is what the log implies, verify() is sound,
//! reopening shows the same log, and replaying every command is a no-op.

use std::collections::BTreeMap;

use proptest::prelude::*;
use spkey_store::{CreateUser, Outcome, Rejection, UserCreated, email_key};
use uuid::Uuid;

use crate::support::given_store;

const IDS: usize = 4;
const EMAILS: [&str; 4] = [
    "ann@example.com",
    "bob@example.com",
    "Ann@Example.com",
    "cy@example.org",
];
const NAMES: [&str; 3] = ["Ann", "Bob", "  Ann  "];

#[derive(Debug, Clone)]
struct Spec {
    id: usize,
    email: usize,
    name: Option<usize>,
    invalid: bool,
}

impl Spec {
    fn command(&self) -> CreateUser {
        let id = Uuid::from_u128(0x5000 + self.id as u128).to_string();
        let email = if self.invalid {
            "not-an-email"
        } else {
            EMAILS[self.email]
        };
        let mut command = CreateUser::new(id, email);
        if let Some(name) = self.name {
            command = command.first_name(NAMES[name]);
        }
        command
    }
}

#[derive(Debug, Clone)]
enum Op {
    One(Spec),
    Batch(Vec<Spec>),
    Reopen,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..IDS,
        0..EMAILS.len(),
        proptest::option::of(0..NAMES.len()),
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(id, email, name, invalid)| Spec {
            id,
            email,
            name,
            invalid,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => spec().prop_map(Op::One),
        2 => proptest::collection::vec(spec(), 0..5).prop_map(Op::Batch),
        1 => Just(Op::Reopen),
    ]
}

/// What the store should hold: users by id, nothing else.
#[derive(Default)]
struct Model {
    users: BTreeMap<Uuid, UserCreated>,
}

#[derive(Debug, PartialEq)]
enum Expect {
    Created,
    Replayed,
    Invalid,
    Conflict,
}

impl Model {
    fn execute(&mut self, command: &CreateUser) -> Expect {
        let Ok(profile) = command.validate() else {
            return Expect::Invalid;
        };
        if let Some(existing) = self.users.get(&profile.user_id) {
            return if *existing == profile {
                Expect::Replayed
            } else {
                Expect::Conflict
            };
        }
        let key = profile.email_key();
        if self.users.values().any(|u| u.email_key() == key) {
            return Expect::Conflict;
        }
        self.users.insert(profile.user_id, profile);
        Expect::Created
    }
}

fn kind(outcome: &Outcome) -> Expect {
    match outcome {
        Outcome::Recorded(_) => Expect::Created,
        Outcome::Replayed(_) => Expect::Replayed,
        Outcome::Rejected(Rejection::Invalid(_)) => Expect::Invalid,
        Outcome::Rejected(Rejection::Conflict(_)) => Expect::Conflict,
        Outcome::Rejected(Rejection::Forbidden(_) | Rejection::NotFound(_)) => {
            unreachable!("a store's own creations")
        }
    }
}

fn outcome_id(command: &CreateUser) -> Uuid {
    Uuid::parse_str(&command.user_id).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_sequences_match_the_model(ops in proptest::collection::vec(op(), 1..24)) {
        let mut given = given_store();
        let mut model = Model::default();
        let mut executed = Vec::new();

        for op in ops {
            match op {
                Op::One(spec) => {
                    let command = spec.command();
                    let outcome = given.store.create_user(&command).unwrap();
                    prop_assert_eq!(kind(&outcome), model.execute(&command), "{:?}", command);
                    executed.push(command);
                }
                Op::Batch(specs) => {
                    let commands: Vec<CreateUser> = specs.iter().map(Spec::command).collect();
                    let outcomes = given.store.execute_batch(&commands).unwrap();
                    prop_assert_eq!(outcomes.len(), commands.len());
                    for (command, outcome) in commands.iter().zip(&outcomes) {
                        prop_assert_eq!(kind(outcome), model.execute(command), "{:?}", command);
                    }
                    executed.extend(commands);
                }
                Op::Reopen => given = given.reopen(),
            }
        }

        let events = given.store.events(1, usize::MAX).unwrap();
        let positions: Vec<u64> = events.iter().map(|e| e.position).collect();
        prop_assert_eq!(positions, (1..=model.users.len() as u64).collect::<Vec<_>>());
        prop_assert!(events.iter().all(|e| e.version == 1));
        for (id, profile) in &model.users {
            let user = given.store.user(*id).unwrap().expect("modelled user exists");
            prop_assert_eq!(&user.profile, profile);
            prop_assert_eq!(given.store.aggregate_events(*id).unwrap().len(), 1);
        }
        for email in EMAILS {
            let owner = model
                .users
                .values()
                .find(|u| u.email_key() == email_key(email))
                .map(|u| u.user_id);
            prop_assert_eq!(given.store.user_id_by_email(email).unwrap(), owner);
        }
        prop_assert!(given.store.verify().unwrap().is_sound());

        let given = given.reopen();
        prop_assert_eq!(&given.store.events(1, usize::MAX).unwrap(), &events);
        let head = given.store.head_position().unwrap();
        for command in executed.iter().filter(|c| c.validate().is_ok()) {
            let outcome = given.store.create_user(command).unwrap();
            // Every valid command ever sent is now either the recorded user
            // (a replay) or a conflict with it; none records anything.
            let recorded = command.validate().ok() == model.users.get(&outcome_id(command)).cloned();
            let expected = if recorded { Expect::Replayed } else { Expect::Conflict };
            prop_assert_eq!(kind(&outcome), expected);
        }
        prop_assert_eq!(given.store.head_position().unwrap(), head);
    }
}
