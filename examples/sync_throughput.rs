//! Sync throughput: a device's 10,000 pending events accepted by a hub in
//! one batch, and the hub's pull batch of them imported by another device.
//! Stores on files in a temporary directory, durable commits on.
//!
//! cargo run --release --example sync_throughput -- 10000

use std::time::Instant;

use spkey_store::{CreateUser, Store};

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("a count"))
        .unwrap_or(10_000);
    let dir = std::env::temp_dir().join(format!("spkey-sync-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let open = |name: &str| Store::open(dir.join(name)).expect("open store");
    let (device, hub, other) = (open("device.redb"), open("hub.redb"), open("other.redb"));

    let commands: Vec<CreateUser> = (0..n)
        .map(|i| {
            CreateUser::new(
                format!("00000000-0000-4000-8000-{i:012x}"),
                format!("sync{i}@example.com"),
            )
            .first_name("Sync")
            .phone_number("+1-555-0123")
        })
        .collect();
    for chunk in commands.chunks(1000) {
        device.execute_batch(chunk).expect("record");
    }
    let push = device.push().expect("push");

    let start = Instant::now();
    let reply = hub.accept(&push).expect("accept");
    let accept = start.elapsed().as_secs_f64();
    device.apply_reply(&reply).expect("apply");

    let pull = hub.export(0, n as usize).expect("export");
    let start = Instant::now();
    let summary = other.import(&pull).expect("import");
    let import = start.elapsed().as_secs_f64();
    assert_eq!(summary.imported as u64, n);

    println!(
        r#"{{"events":{n},"batchBytes":{},"acceptPerSecond":{:.0},"importPerSecond":{:.0}}}"#,
        push.len(),
        n as f64 / accept,
        n as f64 / import
    );
    drop((device, hub, other));
    let _ = std::fs::remove_dir_all(&dir);
}
