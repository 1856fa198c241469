//! Where the time of one device sync goes, phase by phase (the README's
//! profile of `sync` of 10,000 pending events): push, the hub's accept,
//! apply-reply, export and import, all in process without HTTP.
use std::time::Instant;

use spkey_store::{CreateUser, Store};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let hub = Store::open(dir.path().join("hub.redb")).unwrap();
    let device = Store::in_memory().unwrap();
    let commands: Vec<CreateUser> = (0..n)
        .map(|i| {
            CreateUser::new(
                uuid::Uuid::from_u128(i as u128 | 1 << 90).to_string(),
                format!("p{i}@example.com"),
            )
        })
        .collect();
    device.execute_batch(&commands).unwrap();
    let t = Instant::now();
    let push = device.push().unwrap();
    let pushed = t.elapsed();
    let t = Instant::now();
    let reply = hub.accept(&push).unwrap();
    let accepted = t.elapsed();
    let t = Instant::now();
    device.apply_reply(&reply).unwrap();
    let applied = t.elapsed();
    let t = Instant::now();
    let batch = hub.export(0, 10_000).unwrap();
    let exported = t.elapsed();
    let t = Instant::now();
    device.import(&batch).unwrap();
    let imported = t.elapsed();
    println!(
        "{n} events, push batch {} bytes: push {pushed:?}, accept {accepted:?}, apply_reply {applied:?}, export {exported:?}, import {imported:?}",
        push.len()
    );
}
