//! Debian version ordering, as dpkg implements it (`verrevcmp` in lib/dpkg/version.c),
//! so retention keeps the versions apt would consider newest.

use std::cmp::Ordering;

/// Splits `[epoch:]upstream[-revision]` without validating (Packages files written by
/// others are read as they are; validation happens where versions are made).
fn split(version: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match version.split_once(':') {
        Some((epoch, rest)) if epoch.bytes().all(|b| b.is_ascii_digit()) && !epoch.is_empty() => {
            (epoch.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, version),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

/// The sort weight of a non-digit character: `~` sorts before everything, even the
/// end of the string; letters sort before other characters.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // The non-digit prefix, character by character.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = order(a.get(i).copied().filter(|c| !c.is_ascii_digit()));
            let bc = order(b.get(j).copied().filter(|c| !c.is_ascii_digit()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            if i < a.len() && !a[i].is_ascii_digit() {
                i += 1;
            }
            if j < b.len() && !b[j].is_ascii_digit() {
                j += 1;
            }
        }
        // Then the numeric part, compared as a number of any length.
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// Compares two Debian versions like `dpkg --compare-versions`.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (epoch_a, upstream_a, revision_a) = split(a);
    let (epoch_b, upstream_b, revision_b) = split(b);
    epoch_a
        .cmp(&epoch_b)
        .then_with(|| verrevcmp(upstream_a, upstream_b))
        .then_with(|| verrevcmp(revision_a, revision_b))
}

/// A key whose order is [`compare`]'s: two versions compare as their keys do, so a
/// sort of thousands of entries parses each version once instead of once per
/// comparison.
///
/// The epoch, then upstream and revision each as the runs `verrevcmp` walks: every
/// non-digit as its weight ([`order`], shifted so that `~` is 1), the end of the
/// non-digit run as 2 (between `~` and everything else, as dpkg has it), then the
/// number (leading zeros dropped) as its digit count and its digits. The first run
/// is always there and every later one starts with a non-digit, and each part ends
/// with a 2: so no key is a prefix of another one, and a part that ends compares
/// against the other's next non-digit as dpkg's end of string does.
pub fn sort_key(version: &str) -> Vec<u32> {
    let mut key = Vec::with_capacity(version.len() + 8);
    push_sort_key(version, &mut key);
    key
}

/// [`sort_key`], appended to `key` (many keys in one buffer).
pub fn push_sort_key(version: &str, key: &mut Vec<u32>) {
    const END: u32 = 2;
    let weight = |c: u8| (order(Some(c)) + 2) as u32;
    let (epoch, upstream, revision) = split(version);
    key.push((epoch >> 32) as u32);
    key.push(epoch as u32);
    for part in [upstream, revision] {
        let bytes = part.as_bytes();
        let mut i = 0;
        loop {
            while i < bytes.len() && !bytes[i].is_ascii_digit() {
                key.push(weight(bytes[i]));
                i += 1;
            }
            key.push(END);
            while i < bytes.len() && bytes[i] == b'0' {
                i += 1;
            }
            let digits = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            key.push((i - digits) as u32);
            key.extend(bytes[digits..i].iter().map(|&d| u32::from(d)));
            if i >= bytes.len() {
                break;
            }
        }
        key.push(END);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::*;

    const CASES: &[(&str, &str, Ordering)] = &[
        ("1.0", "1.0", Equal),
        ("1.0-1", "1.0-2", Less),
        ("1.4.0-1", "1.4.1-1", Less),
        ("1.10", "1.9", Greater),
        ("1.0~rc1", "1.0", Less),
        ("1.0~rc1", "1.0~rc2", Less),
        ("1.0~~", "1.0~", Less),
        ("1.0", "1.0+b1", Less),
        ("1.0a", "1.0", Greater),
        ("1.0a", "1.0+", Less),
        ("1:0.1", "2.0", Greater),
        ("0:1.0", "1.0", Equal),
        ("1.0-1", "1.0", Greater),
        ("1.01", "1.1", Equal),
        ("2.0-1~bpo12+1", "2.0-1", Less),
        ("1.4.0~beta.1-1", "1.4.0-1", Less),
        ("10", "9", Greater),
        ("1.0.0", "1.0", Greater),
    ];

    #[test]
    fn table() {
        for (a, b, expected) in CASES {
            assert_eq!(compare(a, b), *expected, "{a} vs {b}");
            assert_eq!(compare(b, a), expected.reverse(), "{b} vs {a}");
        }
    }

    /// The table again, judged by dpkg itself (which every Debian machine has).
    #[test]
    fn agrees_with_dpkg() {
        for (a, b, expected) in CASES {
            let op = match expected {
                Less => "lt",
                Equal => "eq",
                Greater => "gt",
            };
            let status = std::process::Command::new("dpkg")
                .args(["--compare-versions", a, op, b])
                .status()
                .expect("dpkg is installed (apt-get install dpkg)");
            assert!(status.success(), "dpkg disagrees: {a} {op} {b}");
        }
    }

    /// The key orders as `compare` does: the table, and random versions made of the
    /// characters that matter (digits, zeros, `~`, letters, `.`, `+`, `-`, `:`).
    #[test]
    fn sort_keys_order_as_compare_does() {
        use rand::{Rng, SeedableRng};
        for (a, b, expected) in CASES {
            assert_eq!(sort_key(a).cmp(&sort_key(b)), *expected, "{a} vs {b}");
        }
        let pieces = [
            "0", "00", "1", "9", "10", "~", "~~", "a", "B", ".", "+", "-", "1:", ":", "\u{e9}",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        let mut random = || -> String {
            (0..rng.gen_range(0..7))
                .map(|_| pieces[rng.gen_range(0..pieces.len())])
                .collect()
        };
        for _ in 0..50_000 {
            let (a, b) = (random(), random());
            assert_eq!(
                sort_key(&a).cmp(&sort_key(&b)),
                compare(&a, &b),
                "{a:?} vs {b:?}"
            );
        }
    }
}
