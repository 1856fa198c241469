//! criterion benchmarks of each store operation. `cargo bench --bench store`;
//! `cargo test --benches` runs each once (CI does).

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use spkey_store::{CreateUser, Store};

fn command(n: u64) -> CreateUser {
    CreateUser::new(
        format!("00000000-0000-4000-8000-{n:012x}"),
        format!("bench{n}@example.com"),
    )
    .first_name("John")
    .phone_number("+1-555-0123")
}

/// A store holding `n` users.
fn filled(n: u64) -> Store {
    let store = Store::builder().durable(false).in_memory().unwrap();
    let commands: Vec<CreateUser> = (0..n).map(command).collect();
    for chunk in commands.chunks(1000) {
        store.execute_batch(chunk).unwrap();
    }
    store
}

fn operations(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let durable = Store::open(dir.path().join("bench.redb")).unwrap();
    let mut next = 0u64;
    c.bench_function("create_user, durable file", |b| {
        b.iter(|| {
            next += 1;
            durable.create_user(&command(next)).unwrap()
        })
    });

    let memory = Store::in_memory().unwrap();
    let mut next = 0u64;
    c.bench_function("create_user, in memory", |b| {
        b.iter(|| {
            next += 1;
            memory.create_user(&command(next)).unwrap()
        })
    });

    let mut next = 1_000_000u64;
    c.bench_function("execute_batch of 1000, in memory", |b| {
        b.iter_batched(
            || {
                let batch: Vec<CreateUser> = (next..next + 1000).map(command).collect();
                next += 1000;
                batch
            },
            |batch| memory.execute_batch(&batch).unwrap(),
            BatchSize::LargeInput,
        )
    });

    let store = filled(10_000);
    c.bench_function("events: scan and decode 10,000", |b| {
        b.iter(|| store.events(1, usize::MAX).unwrap().len())
    });
    let id = "00000000-0000-4000-8000-000000001234".parse().unwrap();
    c.bench_function("user by id", |b| b.iter(|| store.user(id).unwrap()));

    let body = br#"{"userId":"550e8400-e29b-41d4-a716-446655440000","email":"user@example.com","firstName":"John","lastName":"Doe","phoneNumber":"+1-555-0123"}"#;
    c.bench_function("parse + validate a CreateUser body", |b| {
        b.iter(|| {
            let id = "550e8400-e29b-41d4-a716-446655440000";
            spkey_store::contract::read_command("CreateUser", id, body)
                .unwrap()
                .validate()
                .unwrap()
        })
    });
}

criterion_group!(benches, operations);
criterion_main!(benches);
