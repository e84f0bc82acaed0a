//! cargo-speedy: turns the services of a Cargo workspace into signed Debian packages
//! with systemd units and maintainer scripts, and publishes them to a signed apt
//! repository.
//!
//! The binary (`cargo speedy`) is a thin layer over this library: [`ops`] has one
//! operation per command, [`output`] prints their reports. docs/ARCHITECTURE.md
//! draws the layers and says which may use which.

// The library never prints by itself: it reports through `listener::Listener`, and
// only `output` writes, to locked handles (checked by clippy in CI).
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod calendar;
pub mod cdn;
pub mod clock;
pub mod config;
pub mod debfile;
pub mod keys;
pub mod listener;
pub mod ops;
pub mod output;
pub mod package;
pub mod parallel;
pub mod publish;
pub mod repo;
pub mod shell;
pub mod sign;
pub mod store;
pub mod workspace;
