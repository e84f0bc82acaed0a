//! The integration tests: one binary, one module per area (as cargo's own
//! `tests/testsuite`), so `support` is compiled and linked once and what is expensive
//! is shared by the whole run: one moto server (a bucket per test), one unpacked Debian
//! root that every booted server overlays.

mod architecture;
mod backup;
mod bad_input;
mod build;
mod cdn;
mod ci_example;
mod crash;
mod debsig;
mod flaky;
mod fleet;
mod fleet_switch;
mod getting_started;
mod maintainer_scripts;
mod private;
mod repo;
mod restarts;
mod s3;
mod server;
mod signing;
mod support;
