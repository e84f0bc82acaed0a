//! The pure decisions of one publish attempt (`publish::Publish::apply` runs them
//! against a store): whether a change changes nothing, what a switch replaces and
//! drops, what was referenced before it, which by-hash copies are there already, when
//! one listing of the pool beats a HEAD per file, and which canonical writes are
//! indices and which the Release files
//! (docs/ARCHITECTURE.md, "The life of a publish"). The current state is passed in;
//! nothing here reads a store.

use super::{referenced_keys, Merge, PublishPlan, Step};
use crate::repo::index::{PackageEntry, Release};
use crate::repo::layout;
use foldhash::HashSet;
use std::collections::{BTreeMap, BTreeSet};

/// A suite as it is before the change: its Release and its packages.
#[derive(Debug, Clone, Copy)]
pub struct CurrentSuite<'a> {
    pub release: &'a Release,
    pub packages: &'a [PackageEntry],
}

/// What a switch replaced, for the history
/// (docs/ARCHITECTURE.md, "History and rollback").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    /// The Packages.gz the replaced Release lists, by path, with their SHA256.
    pub indices: BTreeMap<String, String>,
    /// The replaced state's pool files that the new state does not list.
    pub pool: Vec<String>,
}

/// Whether a merge leaves the suite as it is: the suite exists and nothing was added,
/// retired or changed. Decided before anything is compressed or signed, so a publish
/// of what is already there costs the reads and nothing else.
pub fn nothing_changed(suite_exists: bool, merge: &Merge) -> bool {
    suite_exists && merge.added.is_empty() && merge.retired.is_empty() && merge.changed.is_empty()
}

/// The merge's retired entries that came in with this change: they are older than
/// what retention keeps, and the publish warns about each.
pub fn retired_on_arrival<'a>(
    merge: &'a Merge,
    incoming: &[&PackageEntry],
) -> Vec<&'a PackageEntry> {
    let incoming: HashSet<(&str, &str, &str)> = incoming.iter().map(|e| e.id()).collect();
    merge
        .retired
        .iter()
        .filter(|entry| incoming.contains(&entry.id()))
        .collect()
}

/// The pool files `current` lists that `after` does not, in `current`'s order: a
/// history record lists only these. The suite's current files and the kept records'
/// lists cover every file a kept state names, and a record stays small however large
/// the suite.
pub fn dropped_pool(current: Option<&[PackageEntry]>, after: &[PackageEntry]) -> Vec<String> {
    let Some(current) = current else {
        return Vec::new();
    };
    let listed: HashSet<&str> = after.iter().map(|p| p.filename.as_str()).collect();
    current
        .iter()
        .filter(|p| !listed.contains(p.filename.as_str()))
        .map(|p| p.filename.clone())
        .collect()
}

/// What the suite and its history referenced before the change (`history`: the keys
/// its kept records reference): garbage collection without a sweep looks only at what
/// of it is referenced no more.
pub fn referenced_before(
    suite: &str,
    current: Option<CurrentSuite<'_>>,
    history: BTreeSet<String>,
) -> BTreeSet<String> {
    let mut keys = history;
    if let Some(current) = current {
        keys.extend(referenced_keys(suite, current.release, current.packages));
    }
    keys
}

/// What a switch from `current` to `after` replaces: the Packages.gz indices the
/// current Release lists and the pool files the change drops.
pub fn replaced(current: Option<CurrentSuite<'_>>, after: &[PackageEntry]) -> Replaced {
    Replaced {
        indices: current
            .map(|current| {
                current
                    .release
                    .files
                    .iter()
                    .filter(|f| f.path.ends_with("/Packages.gz"))
                    .map(|f| (f.path.clone(), f.sha256.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        pool: dropped_pool(current.map(|c| c.packages), after),
    }
}

/// The by-hash copies among `copies` (a plan's, [`PublishPlan::by_hash_copies`], or
/// a suite's indices', [`super::by_hash_copies`]) that must be written. By-hash copies
/// are content-addressed: one the current Release lists is there with these bytes,
/// and so is one this publish wrote already (`written`); the others are written
/// without asking first (same key, same bytes).
pub fn by_hash_to_write<'a>(
    suite: &str,
    copies: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    current: Option<&Release>,
    written: &HashSet<String>,
) -> Vec<(&'a str, &'a [u8])> {
    let present: HashSet<String> = current
        .map(|release| referenced_keys(suite, release, &[]).into_iter().collect())
        .unwrap_or_default();
    copies
        .into_iter()
        .filter(|(key, _)| !present.contains(*key) && !written.contains(*key))
        .collect()
}

/// Below this many new pool files, a HEAD each is as cheap as listing the pool.
pub const LIST_POOL_ABOVE: usize = 8;

/// Whether one listing of the pool (about 1,000 keys a request) costs fewer requests
/// than a HEAD for each of the `unlisted` new pool files that no signed index lists,
/// when the suites list `listed` pool files (a first publish, say).
pub fn list_the_pool(unlisted: usize, listed: usize) -> bool {
    unlisted > LIST_POOL_ABOVE.max(listed / 1000 + 1)
}

/// A plan's canonical writes: the indices go in any order among themselves (in
/// parallel), then the Release files in the plan's order (Release.gpg, Release).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalWrites<'a> {
    pub indices: Vec<(&'a str, &'a [u8])>,
    pub release: Vec<(&'a str, &'a [u8])>,
}

impl CanonicalWrites<'_> {
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty() && self.release.is_empty()
    }
}

/// Splits the plan's canonical writes (`Step::Replace`) into indices and Release
/// files, each in the plan's order.
pub fn canonical_writes(plan: &PublishPlan) -> CanonicalWrites<'_> {
    let (indices, release) = plan
        .steps
        .iter()
        .filter_map(|step| match step {
            Step::Replace { key, bytes } => Some((key.as_str(), &bytes[..])),
            _ => None,
        })
        .partition(|(key, _)| layout::is_collectable(key));
    CanonicalWrites { indices, release }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{entry, settings};
    use super::super::{build_indices, merge, publish_plan};
    use super::*;

    fn plan_of(current: &[PackageEntry], incoming: &[PackageEntry]) -> (PublishPlan, Release) {
        let merged = merge(current, incoming, 5).unwrap();
        let indices = build_indices("dev", &merged.packages, &settings(), "d", None);
        let release = indices.release.clone();
        let plan = publish_plan(
            "dev",
            merged,
            vec![],
            &indices,
            b"s".to_vec(),
            b"i".to_vec(),
        );
        (plan, release)
    }

    #[test]
    fn nothing_changed_needs_an_existing_suite_and_an_empty_merge() {
        let current = vec![entry("pa", "1-1", "amd64", 1)];
        let same = merge(&current, &current, 5).unwrap();
        assert!(nothing_changed(true, &same));
        // A first publish of nothing still creates the suite.
        assert!(!nothing_changed(false, &merge(&[], &[], 5).unwrap()));
        let added = merge(&current, &[entry("pa", "2-1", "amd64", 2)], 5).unwrap();
        assert!(!nothing_changed(true, &added));
        let retired = merge(&current, &[entry("pa", "2-1", "amd64", 2)], 1).unwrap();
        assert!(!retired.retired.is_empty() && !nothing_changed(true, &retired));
        let mut changed = same.clone();
        changed.changed.push(current[0].clone());
        assert!(!nothing_changed(true, &changed));
    }

    #[test]
    fn only_incoming_entries_retired_on_arrival_are_named() {
        let current = vec![
            entry("pa", "3-1", "amd64", 3),
            entry("pa", "2-1", "amd64", 2),
        ];
        let old = entry("pa", "1-1", "amd64", 1);
        let merged = merge(&current, std::slice::from_ref(&old), 1).unwrap();
        assert_eq!(merged.retired.len(), 2);
        let named: Vec<&str> = retired_on_arrival(&merged, &[&old])
            .iter()
            .map(|e| e.version.as_str())
            .collect();
        assert_eq!(named, ["1-1"]);
        assert!(retired_on_arrival(&merged, &[]).is_empty());
    }

    #[test]
    fn dropped_pool_is_what_the_current_state_lists_and_the_new_one_not() {
        let a = entry("pa", "1-1", "amd64", 1);
        let b = entry("pb", "1-1", "amd64", 2);
        let c = entry("pc", "1-1", "amd64", 3);
        let current = [a.clone(), b.clone(), c.clone()];
        assert_eq!(
            dropped_pool(Some(&current), std::slice::from_ref(&b)),
            [a.filename.clone(), c.filename.clone()]
        );
        assert!(dropped_pool(None, &[]).is_empty());
        assert!(dropped_pool(Some(&current), &current).is_empty());
        // A phase change keeps the file: nothing is dropped.
        assert!(dropped_pool(Some(&current), &[a.with_phase(Some(10)), b, c]).is_empty());
    }

    #[test]
    fn referenced_before_is_the_suite_and_its_history() {
        let packages = vec![entry("pa", "1-1", "amd64", 1)];
        let (_, release) = plan_of(&[], &packages);
        let history: BTreeSet<String> = ["pool/main/old.deb".to_owned()].into();
        assert_eq!(referenced_before("dev", None, history.clone()), history);
        let current = CurrentSuite {
            release: &release,
            packages: &packages,
        };
        let before = referenced_before("dev", Some(current), history.clone());
        let mut expected = referenced_keys("dev", &release, &packages);
        expected.extend(history);
        assert_eq!(before, expected);
        assert!(before.contains(&packages[0].filename));
        assert!(before.contains("dists/dev/main/binary-amd64/Packages.gz"));
    }

    #[test]
    fn a_switch_replaces_the_current_packages_gz_and_the_dropped_pool() {
        let packages = vec![entry("pa", "1-1", "amd64", 1)];
        let (_, release) = plan_of(&[], &packages);
        let none = replaced(None, &packages);
        assert!(none.indices.is_empty() && none.pool.is_empty());
        let current = CurrentSuite {
            release: &release,
            packages: &packages,
        };
        let after = [entry("pa", "2-1", "amd64", 2)];
        let switched = replaced(Some(current), &after);
        // The plain Packages is listed, never written: only Packages.gz is recorded.
        let gz = release.file("main/binary-amd64/Packages.gz").unwrap();
        assert_eq!(
            switched.indices,
            BTreeMap::from([(gz.path.clone(), gz.sha256.clone())])
        );
        assert_eq!(switched.pool, [packages[0].filename.clone()]);
    }

    #[test]
    fn by_hash_copies_the_current_release_lists_are_not_written_again() {
        let first = vec![entry("pa", "1-1", "amd64", 1)];
        let (plan, release) = plan_of(&[], &first);
        let none = HashSet::default();
        let to_write = |plan: &'_ PublishPlan, current, written| {
            by_hash_to_write("dev", plan.by_hash_copies(), current, written)
                .iter()
                .map(|(key, _)| key.to_string())
                .collect::<Vec<String>>()
        };
        let all = to_write(&plan, None, &none);
        assert_eq!(all.len(), 1);
        assert!(all[0].starts_with("dists/dev/main/binary-amd64/by-hash/SHA256/"));
        // The same indices again: their copies are there.
        assert!(to_write(&plan, Some(&release), &none).is_empty());
        // A new state: its copy is new, unless this publish wrote it already.
        let (next, _) = plan_of(&first, &[entry("pa", "2-1", "amd64", 2)]);
        let new = to_write(&next, Some(&release), &none);
        assert_eq!(new.len(), 1);
        let written: HashSet<String> = new.into_iter().collect();
        assert!(to_write(&next, Some(&release), &written).is_empty());
        assert_eq!(to_write(&plan, None, &written), all);
    }

    #[test]
    fn the_pool_is_listed_only_when_that_saves_requests() {
        assert!(!list_the_pool(0, 0));
        assert!(!list_the_pool(LIST_POOL_ABOVE, 0));
        assert!(list_the_pool(LIST_POOL_ABOVE + 1, 0));
        // A large pool costs a request per 1,000 keys to list.
        assert!(!list_the_pool(9, 10_000));
        assert!(!list_the_pool(11, 10_000));
        assert!(list_the_pool(12, 10_000));
    }

    #[test]
    fn canonical_writes_are_the_indices_then_the_release_files_in_order() {
        let (plan, _) = plan_of(&[], &[entry("pa", "1-1", "amd64", 1)]);
        let writes = canonical_writes(&plan);
        assert!(!writes.is_empty());
        let keys = |w: &[(&str, &[u8])]| w.iter().map(|(k, _)| k.to_string()).collect::<Vec<_>>();
        assert_eq!(
            keys(&writes.indices),
            ["dists/dev/main/binary-amd64/Packages.gz"]
        );
        assert_eq!(
            keys(&writes.release),
            ["dists/dev/Release.gpg", "dists/dev/Release"]
        );
        assert_eq!(writes.release[0].1, b"s");
        // Neither by-hash copies nor the switch are canonical writes.
        assert!(writes
            .indices
            .iter()
            .chain(&writes.release)
            .all(|(key, _)| !key.contains("by-hash") && !key.ends_with("InRelease")));
    }
}
