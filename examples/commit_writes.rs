//! How many page writes one durable `create_user` costs: run under strace
//! and compare with and without the single commands, e.g.
//!
//!   cargo build --release --example commit_writes
//!   strace -f -c -e trace=pwrite64 target/release/examples/commit_writes 0
//!   strace -f -c -e trace=pwrite64 target/release/examples/commit_writes 2000
//!
//! The difference in `pwrite64` calls over 2,000 is the writes per commit,
//! with 5,000 users stored first in batches.

use spkey_store::{CreateUser, Store};

fn main() {
    let singles: usize = std::env::args()
        .nth(1)
        .map_or(0, |n| n.parse().expect("a count of single commands"));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(dir.path().join("writes.redb")).expect("a new store");
    let mut rng = fastrand::Rng::with_seed(7);
    let mut command = || {
        let id = uuid::Uuid::from_u128(rng.u128(..) & !(0xf << 76) | (4 << 76));
        CreateUser::new(id.to_string(), format!("{:016x}@example.com", rng.u64(..)))
    };
    for _ in 0..5 {
        let batch: Vec<CreateUser> = (0..1000).map(|_| command()).collect();
        store.execute_batch(&batch).expect("a batch of new users");
    }
    for _ in 0..singles {
        store.create_user(&command()).expect("a new user");
    }
}
