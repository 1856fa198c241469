//! Integration tests: one binary, a module per concern. Tests read as
//! given / when / then through the helpers in `support`.

mod alloc;
mod checksums;
mod cli;
mod concurrency;
mod contract;
mod crash;
mod crash_sync;
mod damage;
mod disk;
mod email;
mod erase;
mod fuzz_regressions;
mod golden;
mod hardening;
mod journal;
mod kill;
mod pipeline;
mod props;
mod scratch;
mod shared;
mod store;
mod subscribe;
mod support;
mod sync;
mod tidy;
mod update;
