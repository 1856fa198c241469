//! Integration tests: one binary, a module per concern. Tests read as
//! given / when / then through the helpers in `support`.

mod cli;
mod contract;
mod crash;
mod disk;
mod golden;
mod props;
mod store;
mod support;
