//! The pure model of a Debian repository: no IO, so every rule can be tested
//! exhaustively. [`syntax`] says which names, versions and dates Debian accepts,
//! [`version`] orders versions as dpkg does, [`index`] reads and writes Packages and
//! Release, [`layout`] says where things live, [`plan`] merges packages into a suite
//! and orders the writes of a publish. It depends on no other module of the crate
//! (docs/ARCHITECTURE.md, "Layers").

pub mod index;
pub mod layout;
pub mod plan;
pub mod syntax;
pub mod version;
