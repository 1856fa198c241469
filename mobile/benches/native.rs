//! The baseline for the Kotlin SDK's figure: `createUser` on the wire path
//! (id and body as strings in, status and JSON body out) called natively,
//! with the same ids, bodies and rounds as `mobile/kotlin/bench`.
//! `bash mobile/bench.sh` runs both in one run and writes
//! `mobile/results/bench.md`; `cargo test --benches` runs it once, tiny.

use std::time::Instant;

use spkey_store::Store;

/// Best of three rounds of `n` creates on a fresh store: µs per create.
fn best_of_three(n: usize, open: impl Fn() -> Store) -> f64 {
    (0..3)
        .map(|_| {
            let store = open();
            let started = Instant::now();
            for i in 0..n {
                let id = format!("00000000-0000-4000-8000-{i:012}");
                let body = format!(
                    r#"{{"userId":"{id}","email":"bench{i}@example.com","firstName":"John Doe","lastName":"John Doe","phoneNumber":"+1-555-0123"}}"#
                );
                let answer = store.create_user_wire(&id, body.as_bytes());
                assert_eq!(answer.status, 201, "{}", answer.to_json());
                std::hint::black_box(answer.to_json());
            }
            started.elapsed().as_secs_f64() * 1e6 / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let (memory_n, file_n) = if full { (20_000, 2_000) } else { (100, 20) };
    let memory = best_of_three(memory_n, || Store::in_memory().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let round = std::sync::atomic::AtomicUsize::new(0);
    let file = best_of_three(file_n, || {
        let n = round.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Store::open(dir.path().join(format!("bench{n}.redb"))).unwrap()
    });
    println!("native memory {memory:.2} us/create ({memory_n} creates)");
    println!("native file {file:.2} us/create ({file_n} creates, durable)");
}
