//! createUser throughput on a native in-memory store: the baseline that
//! `wasm/bench/throughput.mjs` compares the JS builds against. Prints one
//! JSON line: {"ops": N, "seconds": S, "perSecond": R}.
//!
//! cargo run --release --example create_throughput -- 5000

use std::time::Instant;

use spkey_store::Store;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("a count"))
        .unwrap_or(5000);
    let store = Store::in_memory().expect("in-memory store");
    // The same requests the JS side sends: path id and body text.
    let requests: Vec<(String, String)> = (0..n)
        .map(|i| {
            let id = format!("00000000-0000-4000-8000-{i:012x}");
            let body = format!(
                r#"{{"userId":"{id}","email":"bench{i}@example.com","firstName":"Bench","phoneNumber":"+1-555-0123"}}"#
            );
            (id, body)
        })
        .collect();
    let start = Instant::now();
    for (id, body) in &requests {
        let response = store.create_user_wire(id, body.as_bytes());
        assert_eq!(response.status, 201, "{}", response.to_json());
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        r#"{{"ops":{n},"seconds":{seconds},"perSecond":{}}}"#,
        n as f64 / seconds
    );
}
