//! The maintainer scripts, run for real by dpkg in a throwaway Debian root (chroot):
//! install, a second configure, admin choices, upgrade, remove and purge.
//!
//! Needs root, chroot and debootstrap (which .ci/run installs). The minimal Debian root
//! is bootstrapped once per target dir and cached as a tarball; each run unpacks a
//! fresh copy. SPEEDY_TEST_DEBIAN_MIRROR and SPEEDY_TEST_DEBIAN_SUITE choose where from.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Whether the chroot tests can run: as root; else skipped when
/// SPEEDY_SKIP_CHROOT_TESTS says so, and a failure otherwise.
fn may_chroot() -> bool {
    if is_root() {
        return true;
    }
    if std::env::var_os("SPEEDY_SKIP_CHROOT_TESTS").is_some() {
        eprintln!("skipped: not root and SPEEDY_SKIP_CHROOT_TESTS is set");
        return false;
    }
    panic!(
        "this test needs root for chroot; run as root (CI does) or set SPEEDY_SKIP_CHROOT_TESTS=1"
    );
}

/// A cached tarball of `debootstrap --variant=minbase --include=systemd`, made under a
/// file lock.
fn base_root_tarball() -> PathBuf {
    let suite = std::env::var("SPEEDY_TEST_DEBIAN_SUITE").unwrap_or_else(|_| "bookworm".into());
    let mirror = std::env::var("SPEEDY_TEST_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    let cache_dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let tarball = cache_dir.join(format!("speedy-chroot-{suite}.tar"));
    // The tests of this module run in parallel: one bootstraps, the others wait.
    let _lock = crate::support::server::FileLock::acquire(
        &cache_dir.join(format!("speedy-chroot-{suite}.lock")),
        std::time::Duration::from_secs(900),
    );
    if tarball.exists() {
        return tarball;
    }
    let build = tempfile::Builder::new()
        .prefix("debootstrap-")
        .tempdir_in(cache_dir)
        .expect("temp dir");
    let root = build.path().join("root");
    let output = Command::new("debootstrap")
        .args(["--variant=minbase", "--include=systemd", &suite])
        .arg(&root)
        .arg(&mirror)
        .output()
        .expect("debootstrap is installed (apt-get install debootstrap)");
    assert_success(&output);
    let partial = build.path().join("root.tar");
    run(
        "tar",
        &[
            "-C",
            root.to_str().unwrap(),
            "-cf",
            partial.to_str().unwrap(),
            ".",
        ],
    );
    std::fs::rename(&partial, &tarball).expect("cache the root");
    tarball
}

/// A fresh Debian root in a temp dir.
struct Chroot {
    dir: tempfile::TempDir,
}

impl Chroot {
    fn new() -> Self {
        let tarball = base_root_tarball();
        let dir = tempfile::Builder::new()
            .prefix("speedy-chroot-")
            .tempdir()
            .expect("temp dir");
        run(
            "tar",
            &[
                "-C",
                dir.path().to_str().unwrap(),
                "-xf",
                tarball.to_str().unwrap(),
            ],
        );
        Chroot { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Runs a shell command inside the root; returns (success, stdout + stderr).
    fn sh(&self, script: &str) -> (bool, String) {
        let output = Command::new("chroot")
            .arg(self.root())
            .args([
                "/usr/bin/env",
                "-i",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "LC_ALL=C",
                "DEBIAN_FRONTEND=noninteractive",
            ])
            .args(["/bin/sh", "-c", script])
            .output()
            .expect("chroot");
        let text = format!("{}{}", stdout(&output), stderr(&output));
        (output.status.success(), text)
    }

    fn ok(&self, script: &str) -> String {
        let (success, text) = self.sh(script);
        assert!(success, "`{script}` failed in the chroot:\n{text}");
        text
    }

    fn exists(&self, path: &str) -> bool {
        self.root()
            .join(path.trim_start_matches('/'))
            .symlink_metadata()
            .is_ok()
    }

    fn install(&self, debs: &[PathBuf]) -> String {
        let mut names = Vec::new();
        for deb in debs {
            let name = deb.file_name().unwrap().to_string_lossy().into_owned();
            std::fs::copy(deb, self.root().join("tmp").join(&name)).expect("copy deb");
            names.push(format!("/tmp/{name}"));
        }
        self.ok(&format!("dpkg -i {}", names.join(" ")))
    }
}

const WANTS: &str = "/etc/systemd/system/multi-user.target.wants";
const TIMERS: &str = "/etc/systemd/system/timers.target.wants";

#[test]
fn install_upgrade_remove_purge_in_a_debian_root() {
    if !may_chroot() {
        return;
    }
    let v1 = Fixture::new();
    let v1_debs = v1.build();
    let v2 = Fixture::new();
    v2.edit("Cargo.toml", "version = \"1.4.0\"", "version = \"1.4.1\"");
    let v2_debs = v2.build();
    let chroot = Chroot::new();

    // Install: user, state dirs, enablement, no job service enabled.
    chroot.install(&v1_debs);
    let passwd = chroot.ok("getent passwd speedy");
    assert!(
        passwd.contains(":/nonexistent:/usr/sbin/nologin"),
        "{passwd}"
    );
    for dir in ["app", "notifier", "jobs"] {
        let owner = chroot.ok(&format!("stat -c '%U:%G %a' /var/lib/speedy/{dir}"));
        assert_eq!(owner.trim(), "speedy:speedy 750", "/var/lib/speedy/{dir}");
    }
    for unit in ["speedy-app.service", "speedy-notifier.service"] {
        assert!(chroot.exists(&format!("{WANTS}/{unit}")), "{unit} enabled");
    }
    for timer in [
        "speedy-jobs-trending.timer",
        "speedy-jobs-purge-old-data.timer",
    ] {
        assert!(
            chroot.exists(&format!("{TIMERS}/{timer}")),
            "{timer} enabled"
        );
    }
    assert!(!chroot.exists(&format!("{WANTS}/speedy-jobs-trending.service")));
    assert_eq!(
        chroot.ok("dpkg-query -W -f '${Status}' speedy-app"),
        "install ok installed"
    );
    // systemd itself accepts the installed units.
    let verify = chroot.ok("systemd-analyze verify /usr/lib/systemd/system/speedy-*.service /usr/lib/systemd/system/speedy-*.timer");
    assert!(
        verify.trim().is_empty(),
        "systemd-analyze verify complained:\n{verify}"
    );
    // The job runs with the installed config as the service user.
    let output = chroot.ok(
        "cd /var/lib/speedy/jobs && su -s /bin/sh speedy -c 'STATE_DIRECTORY=/var/lib/speedy/jobs /usr/libexec/speedy/speedy-jobs --config /etc/speedy/jobs.conf trending'",
    );
    assert!(
        output.contains("/var/lib/speedy/jobs/trending-"),
        "{output}"
    );

    // Configuring twice changes nothing and does not fail.
    let state = "ls -l /etc/systemd/system/*.wants /var/lib/speedy; getent passwd speedy; getent group speedy";
    let before = chroot.ok(state);
    chroot.ok("/var/lib/dpkg/info/speedy-app.postinst configure 1.4.0-1 && /var/lib/dpkg/info/speedy-jobs.postinst configure 1.4.0-1");
    chroot.ok("/var/lib/dpkg/info/speedy-app.postinst configure 1.4.0-1");
    assert_eq!(before, chroot.ok(state));

    // The admin disables the notifier and edits a conffile; the upgrade keeps both.
    chroot.ok("systemctl disable speedy-notifier.service");
    assert!(!chroot.exists(&format!("{WANTS}/speedy-notifier.service")));
    chroot.ok("echo 'heartbeat_seconds = 60' >> /etc/speedy/notifier.conf");
    chroot.install(&v2_debs);
    assert_eq!(
        chroot.ok("dpkg-query -W -f '${Version}' speedy-notifier"),
        "1.4.1-1"
    );
    assert!(
        !chroot.exists(&format!("{WANTS}/speedy-notifier.service")),
        "an upgrade must not re-enable a disabled unit"
    );
    assert!(chroot.exists(&format!("{WANTS}/speedy-app.service")));
    assert!(chroot
        .ok("cat /etc/speedy/notifier.conf")
        .contains("heartbeat_seconds = 60"));

    // Remove, as debhelper does it: the unit goes and is masked, so the enablement
    // symlink left for a reinstall can start nothing; state and conffiles stay.
    chroot.ok("echo data > /var/lib/speedy/app/keep-me");
    chroot.ok("dpkg -r speedy-app");
    assert!(!chroot.exists("/usr/lib/systemd/system/speedy-app.service"));
    assert_eq!(
        chroot
            .ok("readlink /etc/systemd/system/speedy-app.service")
            .trim(),
        "/dev/null"
    );
    assert!(chroot.exists("/var/lib/speedy/app/keep-me"));
    assert!(chroot.exists("/etc/speedy/app.conf"));

    // Reinstall after remove: the mask is lifted and the unit is enabled.
    chroot.install(&v2_debs[..1]);
    assert!(!chroot.exists("/etc/systemd/system/speedy-app.service"));
    assert!(chroot.exists(&format!("{WANTS}/speedy-app.service")));

    // Purge: the package's state and conffiles go; the shared parent stays while others use it.
    chroot.ok("dpkg -P speedy-app");
    assert!(!chroot.exists(&format!("{WANTS}/speedy-app.service")));
    assert!(
        !chroot.exists("/etc/systemd/system/speedy-app.service"),
        "purge lifts the mask"
    );
    assert!(!chroot.exists("/var/lib/speedy/app"));
    assert!(!chroot.exists("/etc/speedy/app.conf"));
    assert!(chroot.exists("/var/lib/speedy/jobs"));
    assert!(
        !chroot.exists("/var/lib/systemd/deb-systemd-helper-enabled/speedy-app.service.dsh-also")
    );

    chroot.ok("dpkg -P speedy-jobs speedy-notifier");
    assert!(
        !chroot.exists("/var/lib/speedy"),
        "the last purge removes /var/lib/speedy"
    );
    assert!(!chroot.exists(&format!("{TIMERS}/speedy-jobs-trending.timer")));
    assert!(!chroot.exists("/etc/speedy"));
    // Debian policy: system users are not removed on purge.
    chroot.ok("getent passwd speedy");
    assert_eq!(v1_debs.len(), 3);
}

const SOCKETS: &str = "/etc/systemd/system/sockets.target.wants";

/// A daemon with `listen`: dpkg enables its socket beside its service, systemd
/// accepts both units, and removal masks both as debhelper does.
#[test]
fn a_daemon_that_listens_enables_and_masks_its_socket_in_a_debian_root() {
    if !may_chroot() {
        return;
    }
    let fixture = Fixture::new();
    fixture.edit(
        "speedy-app/Cargo.toml",
        "kind = \"daemon\"\n",
        "kind = \"daemon\"\nlisten = [\"0.0.0.0:80\"]\n",
    );
    fixture.build();
    let chroot = Chroot::new();
    chroot.install(&[fixture.deb("speedy-app")]);
    assert!(chroot.exists(&format!("{SOCKETS}/speedy-app.socket")));
    assert!(chroot.exists(&format!("{WANTS}/speedy-app.service")));
    let verify = chroot.ok(
        "systemd-analyze verify /usr/lib/systemd/system/speedy-app.socket /usr/lib/systemd/system/speedy-app.service",
    );
    assert!(
        verify.trim().is_empty(),
        "systemd-analyze verify complained:\n{verify}"
    );
    chroot.ok("dpkg -r speedy-app");
    for unit in ["speedy-app.socket", "speedy-app.service"] {
        assert_eq!(
            chroot
                .ok(&format!("readlink /etc/systemd/system/{unit}"))
                .trim(),
            "/dev/null",
            "{unit} masked on removal"
        );
    }
    chroot.ok("dpkg -P speedy-app");
    assert!(!chroot.exists(&format!("{SOCKETS}/speedy-app.socket")));
    assert!(!chroot.exists("/etc/systemd/system/speedy-app.socket"));
}
