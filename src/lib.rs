//! cargo-speedy: turns the services of a Cargo workspace into Debian packages with
//! systemd units and maintainer scripts.
//!
//! The binary (`cargo speedy`) is a thin layer over this library:
//! [`workspace::Workspace::load`] reads and validates the services,
//! [`package::plan`] renders their files, [`package::build`] builds the .debs.

pub mod calendar;
pub mod config;
pub mod debfile;
pub mod debian;
pub mod listener;
pub mod package;
pub mod publish;
pub mod repo;
pub mod repo_config;
pub mod sign;
pub mod store;
pub mod workspace;
