//! The pure model of a Debian repository: no IO, so every rule can be tested
//! exhaustively. [`index`] reads and writes Packages and Release, [`layout`] says where
//! things live, [`plan`] merges packages into a suite and orders the writes of a
//! publish, [`version`] orders Debian versions.

pub mod index;
pub mod layout;
pub mod plan;
pub mod version;
