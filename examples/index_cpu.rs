//! The pure CPU work of an update at N entries, one architecture: parse the current
//! Packages, merge 3 new versions in, build the indices (render, gzip, hashes). Run by
//! bench/index-cpu.sh, once per N (each in its own process, so the peak RSS is that
//! N's): `cargo run --release --example index_cpu -- N [runs]` prints one table row.
//!
//! The entries look like the publish benchmark's (bench/fake-debs.py): 100 names,
//! N/100 versions each, real-looking hashes, so gzip sees what it sees in production.

use cargo_speedy::repo::index::{parse_packages, render_packages, PackageEntry};
use cargo_speedy::repo::plan::{self, ReleaseFields, SuiteChange};
use std::time::{Duration, Instant};

fn packages_text(n: usize) -> String {
    let mut entries = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("bench-pkg{:03}", i % 100);
        let version = format!("1.{}-1", i / 100);
        let control = format!(
            "Package: {name}\nVersion: {version}\nArchitecture: amd64\nMaintainer: Bench <bench@example.com>\nInstalled-Size: {}\nSection: misc\nPriority: optional\nDescription: benchmark package {i}\n A package made for the benchmark, with a longer description line here.\n",
            12 + i % 977
        );
        let sha256 = plan::sha256_hex(format!("{name} {version}").as_bytes());
        let md5 = &plan::sha256_hex(format!("md5 {name} {version}").as_bytes())[..32];
        let size = 1_000 + (i as u64 * 7_919) % 100_000;
        let entry = PackageEntry::from_control(&control, size, &sha256, md5, "bench")
            .unwrap_or_else(|e| panic!("{e}"));
        entries.push(entry);
    }
    cargo_speedy::repo::index::sort_entries(&mut entries);
    render_packages(&entries)
}

/// The fastest of `runs` (the machine is shared: the minimum is the least disturbed).
fn best<T>(runs: usize, mut work: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let result = work();
        best = best.min(start.elapsed());
        last = Some(result);
    }
    (best, last.expect("at least one run"))
}

fn peak_rss_mb() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or_else(|| "?".to_owned(), |kb| format!("{:.0}", kb as f64 / 1024.0))
}

fn ms(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1000.0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let text = packages_text(n);
    let (parse, current) = best(runs, || {
        parse_packages(&text, "Packages").unwrap_or_else(|e| panic!("{e}"))
    });
    let incoming: Vec<PackageEntry> = (0..3)
        .map(|i| {
            let name = format!("bench-pkg{i:03}");
            let control = format!("Package: {name}\nVersion: 2.0-1\nArchitecture: amd64\nMaintainer: Bench <bench@example.com>\nDescription: new\n");
            let sha256 = plan::sha256_hex(name.as_bytes());
            PackageEntry::from_control(&control, 1_234, &sha256, &sha256[..32], "bench")
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let change = SuiteChange::Add {
        incoming,
        retention: 1_000,
        phased: None,
        unphased: vec![],
    };
    let (merge, merged) = best(runs, || {
        plan::apply(&current, &change).unwrap_or_else(|e| panic!("{e}"))
    });
    let settings = ReleaseFields {
        origin: "Bench".into(),
        label: "Bench".into(),
        description: None,
        architectures: vec!["amd64".into()],
    };
    let (build, indices) = best(runs, || {
        plan::build_indices("dev", &merged.packages, &settings, "date", None)
    });
    let (render, plain) = best(runs, || render_packages(&merged.packages));
    let (gzip, gz) = best(runs, || plan::gzip(plain.as_bytes()));
    assert_eq!(indices.files[0].bytes.as_ref(), gz.as_slice());
    // What the size would be at gzip -9 in one stream (the level before issue 23).
    let level_9 = {
        use std::io::Write;
        let mut encoder = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::best());
        encoder.write_all(plain.as_bytes()).expect("in memory");
        encoder.finish().expect("in memory").len()
    };
    println!(
        "| {n} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        text.len() as f64 / 1e6,
        ms(parse),
        ms(merge),
        ms(build),
        ms(render),
        ms(gzip),
        gz.len() / 1000,
        level_9 / 1000,
        std::thread::available_parallelism().map_or(1, |p| p.get()),
        peak_rss_mb()
    );
}
