//! A booted Debian server for the integration tests: a minimal Debian root with
//! systemd as PID 1 in `systemd-nspawn`, driven like a server through `nsenter`, and
//! a small HTTP server that serves a repository directory to it.
//!
//! - [`DebianRoot::cached`]: the root, bootstrapped once per target dir and kept as a
//!   tarball in CARGO_TARGET_TMPDIR; a file lock makes parallel tests and test
//!   binaries bootstrap it once. SPEEDY_TEST_DEBIAN_MIRROR picks the mirror.
//! - [`DebianRoot::unpacked`]: that tarball unpacked once per target dir (beside it),
//!   read only: the lower dir of every boot's overlay.
//! - [`BootedServer::boot`]: a fresh overlay over the unpacked root (its own upper and
//!   work dirs, so no test sees another's changes; a copy of the root if the overlay
//!   cannot be mounted, said on stderr), booted; commands run inside with
//!   [`BootedServer::exec`]/[`BootedServer::sh`]. Dropping it powers the container off
//!   (and kills it if it does not stop), also when the test panics, then unmounts the
//!   overlay and removes its dirs.
//! - [`RepoHttpServer::serve`]: a directory over HTTP on 127.0.0.1, stopped on drop;
//!   [`BootedServer::use_apt_repo`] points the server's apt at it.
//!
//! Needs root, systemd-nspawn (systemd-container), nsenter (util-linux) and
//! debootstrap, which `.ci/deps` installs: a missing tool fails the test, it never
//! skips. The container shares the host's network, so 127.0.0.1 inside is the
//! host's: a service's port must be free on the host too (see [`free_port`]).
//! The root has no Debian sources: apt sees only the repositories a test adds, so it
//! works offline, and a package that needs more than the base system fails to install.

use super::{run, stderr, stdout};
use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The suite the server tests boot: Debian 13, whose systemd (257) boots in nspawn on
/// these hosts; it is also what new servers run.
pub const SUITE: &str = "trixie";

/// Beyond minbase (which has apt): systemd as init, D-Bus, curl for HTTP checks, and
/// unattended-upgrades, which `server-setup` configures, and PostgreSQL with what the
/// backup package needs (age, s3cmd): the root has no Debian sources to install them from.
const INCLUDE: &str = "systemd,systemd-sysv,dbus,curl,unattended-upgrades,postgresql,age,s3cmd";
/// Part of the cached tarball's name: bump it when INCLUDE or `prepare_root` change,
/// so target dirs that cached an older image bootstrap a new one.
const IMAGE_REVISION: u32 = 3;

/// Where [`BootedServer::use_apt_repo`] installs the archive keyring and the source.
pub const KEYRING: &str = "/usr/share/keyrings/speedy-archive-keyring.gpg";
pub const SOURCES: &str = "/etc/apt/sources.list.d/speedy.sources";

/// How long one command inside the server may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(200);

extern "C" {
    fn flock(fd: i32, operation: i32) -> i32;
    fn kill(pid: i32, signal: i32) -> i32;
}
const LOCK_EX: i32 = 2;
const LOCK_NB: i32 = 4;
const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

/// Fails the test unless it runs as root.
pub fn require_root() {
    let uid = run("id", &["-u"]);
    assert_eq!(
        uid.trim(),
        "0",
        "the booted-server tests need root (systemd-nspawn, debootstrap); run them as root, as CI does"
    );
}

/// Fails the test with an install hint unless `tool` is on PATH.
pub fn require_tool(tool: &str, package: &str) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|dir| dir.join(tool).is_file());
    assert!(
        found,
        "{tool} is not installed: apt-get install {package} (.ci/deps does)"
    );
}

/// A port on 127.0.0.1 that was free a moment ago, for a service in a booted server
/// (which shares the host's network).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port on 127.0.0.1")
        .port()
}

/// Polls `check` every 200 ms until it returns Some, or fails the test after `timeout`
/// with `what` and the last value `describe` gives.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
    describe: impl FnOnce() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        if start.elapsed() > timeout {
            panic!(
                "timed out after {} s waiting for {what}\n{}",
                timeout.as_secs(),
                describe()
            );
        }
        std::thread::sleep(POLL);
    }
}

/// An exclusive flock on a file, released when dropped (or when the process dies).
pub struct FileLock {
    _file: std::fs::File,
}

impl FileLock {
    pub fn acquire(path: &Path, timeout: Duration) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("cannot open the lock file {}: {e}", path.display()));
        wait_for(
            &format!("the lock {}", path.display()),
            timeout,
            // SAFETY: flock on a file descriptor this function owns.
            || (unsafe { flock(file.as_raw_fd(), LOCK_EX | LOCK_NB) } == 0).then_some(()),
            || "another test is bootstrapping the Debian root".into(),
        );
        FileLock { _file: file }
    }
}

/// The cached minimal Debian root that servers boot from.
pub struct DebianRoot;

impl DebianRoot {
    /// The tarball of a `debootstrap --variant=minbase` root of `suite` with systemd,
    /// made on first use in this target dir and reused afterwards.
    pub fn cached(suite: &str) -> PathBuf {
        let cache_dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let tarball = cache_dir.join(format!("speedy-server-{suite}-r{IMAGE_REVISION}.tar"));
        let _lock = FileLock::acquire(
            &cache_dir.join(format!("speedy-server-{suite}.lock")),
            Duration::from_secs(900),
        );
        if tarball.exists() {
            return tarball;
        }
        require_root();
        require_tool("debootstrap", "debootstrap");
        let script = Path::new("/usr/share/debootstrap/scripts").join(suite);
        assert!(
            script.exists(),
            "this debootstrap does not know {suite} ({} is missing): install a newer debootstrap",
            script.display()
        );
        let mirror = std::env::var("SPEEDY_TEST_DEBIAN_MIRROR")
            .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
        let build = tempfile::Builder::new()
            .prefix("debootstrap-")
            .tempdir_in(cache_dir)
            .expect("temp dir");
        let root = build.path().join("root");
        let started = Instant::now();
        let output = Command::new("debootstrap")
            .args(["--variant=minbase", &format!("--include={INCLUDE}"), suite])
            .arg(&root)
            .arg(&mirror)
            .stdin(Stdio::null())
            .output()
            .expect("run debootstrap");
        if !output.status.success() {
            let log = std::fs::read_to_string(root.join("debootstrap/debootstrap.log"))
                .unwrap_or_default();
            panic!(
                "debootstrap {suite} from {mirror} failed ({}):\n{}{}\ndebootstrap.log (end):\n{}",
                output.status,
                tail(&stdout(&output), 20),
                tail(&stderr(&output), 20),
                tail(&log, 40)
            );
        }
        prepare_root(&root);
        let partial = build.path().join("root.tar");
        run(
            "tar",
            &[
                "--numeric-owner",
                "-C",
                root.to_str().expect("utf-8 path"),
                "-cf",
                partial.to_str().expect("utf-8 path"),
                ".",
            ],
        );
        std::fs::rename(&partial, &tarball).expect("cache the root");
        eprintln!(
            "bootstrapped {suite} in {} s: {}",
            started.elapsed().as_secs(),
            tarball.display()
        );
        tarball
    }
}

impl DebianRoot {
    /// The cached root of `suite` unpacked beside its tarball, once per target dir
    /// (again when the tarball is newer): the read-only lower dir that each boot
    /// overlays. Nothing may write to it; a boot writes to its own upper dir.
    pub fn unpacked(suite: &str) -> PathBuf {
        let tarball = Self::cached(suite);
        let lower = tarball.with_extension("root");
        let _lock = FileLock::acquire(
            &tarball.with_file_name(format!("speedy-server-{suite}.lock")),
            Duration::from_secs(900),
        );
        // Written after each unpack: tar gives the root the mtime it had in the tarball.
        let stamp = tarball.with_extension("root.unpacked");
        let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if lower.is_dir() && modified(&stamp) >= modified(&tarball) {
            return lower;
        }
        let _ = std::fs::remove_file(&stamp);
        let _ = std::fs::remove_dir_all(&lower);
        let partial = tarball.with_extension("root.partial");
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir(&partial).expect("mkdir the unpacked root");
        unpack(&tarball, &partial);
        std::fs::rename(&partial, &lower).expect("keep the unpacked root");
        std::fs::write(&stamp, "").expect("stamp the unpacked root");
        lower
    }
}

/// Unpacks a root tarball into `dir`, owners and modes as they are in the tarball.
fn unpack(tarball: &Path, dir: &Path) {
    run(
        "tar",
        &[
            "--numeric-owner",
            "-C",
            dir.to_str().expect("utf-8 path"),
            "-xf",
            tarball.to_str().expect("utf-8 path"),
        ],
    );
}

/// An overlayfs mounted at `merged`, unmounted when dropped.
struct OverlayMount {
    merged: PathBuf,
}

impl OverlayMount {
    /// `mount -t overlay` of `lower` with fresh `upper` and `work` dirs in `dir`.
    fn mount(lower: &Path, dir: &Path, merged: &Path) -> Result<Self, String> {
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        for sub in [&upper, &work] {
            std::fs::create_dir(sub).map_err(|e| format!("mkdir {}: {e}", sub.display()))?;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        let output = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(merged)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!("mount -t overlay: {}", stderr(&output).trim()));
        }
        Ok(OverlayMount {
            merged: merged.to_owned(),
        })
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        // Busy for a moment after the container's last process exits.
        for _ in 0..50 {
            let status = Command::new("umount").arg(&self.merged).status();
            if status.is_ok_and(|s| s.success()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("{} stays busy: detaching it lazily", self.merged.display());
        let _ = Command::new("umount").arg("-l").arg(&self.merged).status();
    }
}

/// Makes a fresh debootstrap root a quiet, hermetic server image.
fn prepare_root(root: &Path) {
    // No Debian sources: apt sees only the repositories the test adds.
    for sources in [
        "etc/apt/sources.list",
        "etc/apt/sources.list.d/debian.sources",
    ] {
        let _ = std::fs::remove_file(root.join(sources));
    }
    // Nothing runs apt behind the test's back.
    for unit in ["apt-daily.timer", "apt-daily-upgrade.timer"] {
        let link = root.join("etc/systemd/system").join(unit);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/null", &link).expect("mask a timer");
    }
    // Servers share the host's network: PostgreSQL starts only where a test starts it
    // (on a port of its own), or every boot would contend for 5432.
    let _ = std::fs::remove_file(
        root.join("etc/systemd/system/multi-user.target.wants/postgresql.service"),
    );
    // Not the name of the host that ran debootstrap (which copies /etc/hostname).
    std::fs::write(root.join("etc/hostname"), "speedy-server\n").expect("hostname");
    // Every boot gets its own machine id.
    std::fs::write(root.join("etc/machine-id"), "").expect("empty machine-id");
    let _ = std::fs::remove_file(root.join("var/lib/dbus/machine-id"));
}

/// A copy of the fixture whose app listens on a port free on the host (a booted
/// server shares the host's network with other tests), and that port; its health
/// URL, which the monitoring check asks, follows.
pub fn fixture_on_a_free_port() -> (super::Fixture, u16) {
    let port = free_port();
    let fixture = super::Fixture::new();
    fixture.edit(
        "speedy-app/config/app.conf",
        "port = 8080",
        &format!("port = {port}"),
    );
    fixture.edit(
        "speedy-app/Cargo.toml",
        "http://127.0.0.1:8080/healthz",
        &format!("http://127.0.0.1:{port}/healthz"),
    );
    (fixture, port)
}

/// A new signing key and its exported binary keyring, in their own temp dir:
/// (dir, secret key, keyring).
pub fn archive_key(
    fixture: &super::Fixture,
) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let keys = tempfile::tempdir().expect("temp dir");
    let key = keys.path().join("archive-key.asc");
    let keyring = keys.path().join("archive-keyring.gpg");
    super::assert_success(&fixture.speedy(&["key", "generate", "--output", key.to_str().unwrap()]));
    super::assert_success(&fixture.speedy(&[
        "key",
        "export",
        "--key-file",
        key.to_str().unwrap(),
        "--output",
        keyring.to_str().unwrap(),
    ]));
    (keys, key, keyring)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// An HTTP response as curl inside the server saw it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// A Debian root booted with systemd as PID 1 in systemd-nspawn.
pub struct BootedServer {
    nspawn: Child,
    /// The container's PID 1 as the host sees it; 0 until found.
    leader: u32,
    machine: String,
    root: PathBuf,
    log: PathBuf,
    /// The overlay at `root` (None: a copy); unmounted after the container stopped
    /// (fields drop after `drop`, in order) and before its dirs are removed.
    _overlay: Option<OverlayMount>,
    /// Holds the root (or the overlay's dirs).
    _dir: tempfile::TempDir,
}

impl BootedServer {
    /// Boots a fresh overlay over the cached `suite` root (or a fresh copy of it) and
    /// waits until systemd reports the system running (or degraded, with the failed
    /// units printed).
    pub fn boot(suite: &str) -> Self {
        require_root();
        require_tool("systemd-nspawn", "systemd-container");
        require_tool("nsenter", "util-linux");
        let lower = DebianRoot::unpacked(suite);
        let dir = tempfile::Builder::new()
            .prefix("speedy-server-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("mkdir root");
        let overlay = match OverlayMount::mount(&lower, dir.path(), &root) {
            Ok(overlay) => Some(overlay),
            Err(reason) => {
                eprintln!("no overlay ({reason}): booting a copy of the root instead");
                unpack(&DebianRoot::cached(suite), &root);
                None
            }
        };
        static BOOTS: AtomicUsize = AtomicUsize::new(0);
        let machine = format!(
            "speedy-{}-{}",
            std::process::id(),
            BOOTS.fetch_add(1, Ordering::SeqCst)
        );
        let log = dir.path().join("nspawn.log");
        let nspawn = spawn_nspawn(&root, &machine, &log);
        // From here on, Drop stops the container whatever happens.
        let mut server = BootedServer {
            nspawn,
            leader: 0,
            machine,
            root,
            log,
            _overlay: overlay,
            _dir: dir,
        };
        let started = Instant::now();
        server.leader = server.find_leader(Duration::from_secs(30));
        server.wait_running(Duration::from_secs(120));
        eprintln!(
            "booted {suite} as {} in {:.1} s",
            server.machine,
            started.elapsed().as_secs_f64()
        );
        server
    }

    /// Powers the server off cleanly (as `systemctl poweroff` would) and boots it
    /// again on the same root, after `while_off` ran: what a server that was off
    /// during a change finds when it comes back.
    pub fn power_cycle(&mut self, while_off: impl FnOnce()) {
        self.power_off();
        while_off();
        let started = Instant::now();
        self.nspawn = spawn_nspawn(&self.root, &self.machine, &self.log);
        self.leader = 0;
        self.leader = self.find_leader(Duration::from_secs(30));
        self.wait_running(Duration::from_secs(120));
        eprintln!(
            "booted {} again in {:.1} s",
            self.machine,
            started.elapsed().as_secs_f64()
        );
    }

    /// SIGTERM to systemd-nspawn powers the container off; a container that does not
    /// stop within 30 s is killed.
    fn power_off(&mut self) {
        if matches!(self.nspawn.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = self.nspawn.id() as i32;
        // SAFETY: signals a child process this handle owns and has not reaped.
        unsafe { kill(pid, SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if matches!(self.nspawn.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not power off within 30 s: killing it", self.machine);
        if self.leader != 0 {
            // SAFETY: killing the namespace's init ends every process in the container.
            unsafe { kill(self.leader as i32, SIGKILL) };
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }

    /// The container's root directory on the host.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The container's PID 1 as the host sees it.
    pub fn leader_pid(&self) -> u32 {
        self.leader
    }

    /// The end of systemd-nspawn's output (the container's console), for messages.
    pub fn console_tail(&self) -> String {
        tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 30)
    }

    fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.nspawn.try_wait() {
            panic!(
                "systemd-nspawn exited ({status}); its output:\n{}",
                self.console_tail()
            );
        }
    }

    /// The child of systemd-nspawn that is PID 1 in its own PID namespace, once its
    /// root is the container's root.
    fn find_leader(&mut self, timeout: Duration) -> u32 {
        let nspawn = self.nspawn.id();
        let start = Instant::now();
        loop {
            self.check_alive();
            // Until the init's root is the container's, nsenter would reach the host.
            let pid = children(nspawn).into_iter().find(|pid| {
                is_namespace_init(*pid) && same_file(format!("/proc/{pid}/root"), &self.root)
            });
            if let Some(pid) = pid {
                return pid;
            }
            if start.elapsed() > timeout {
                panic!(
                    "systemd-nspawn (pid {nspawn}) started no container init within {} s:\n{}",
                    timeout.as_secs(),
                    self.console_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_running(&mut self, timeout: Duration) {
        let start = Instant::now();
        loop {
            self.check_alive();
            // Fails until systemd listens on its socket; then reports the state.
            let output = self.exec(&["systemctl", "is-system-running"]);
            let state = stdout(&output).trim().to_owned();
            match state.as_str() {
                "running" => return,
                "degraded" => {
                    let failed = self.exec(&["systemctl", "--failed", "--no-legend"]);
                    eprintln!("the server booted degraded:\n{}", stdout(&failed));
                    return;
                }
                _ => {}
            }
            if start.elapsed() > timeout {
                let jobs = self.exec(&["systemctl", "list-jobs", "--no-pager"]);
                panic!(
                    "the server did not finish booting within {} s (state {state:?}); jobs:\n{}\nconsole:\n{}",
                    timeout.as_secs(),
                    stdout(&jobs),
                    self.console_tail()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    fn command(&self, argv: &[&str]) -> Command {
        assert!(self.leader != 0, "the server has not booted");
        let mut command = Command::new("nsenter");
        command
            .args(["-t", &self.leader.to_string()])
            .args(["-m", "-u", "-i", "-p", "--root", "--wd", "--"])
            // A clean environment: nothing of the host's leaks in.
            .args([
                "/usr/bin/env",
                "-i",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LC_ALL=C.UTF-8",
                "HOME=/root",
                "DEBIAN_FRONTEND=noninteractive",
            ])
            .args(argv);
        command
    }

    /// Runs a program inside the server (as root, clean environment, no stdin) and
    /// returns its output; fails the test if it takes longer than 5 minutes.
    pub fn exec(&self, argv: &[&str]) -> Output {
        self.exec_input(argv, &[])
    }

    /// Like [`exec`](Self::exec), with `input` on stdin.
    pub fn exec_input(&self, argv: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command(argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run nsenter: {e}"));
        let mut stdin = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let mut out = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let out_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            buf
        });
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            buf
        });
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for nsenter") {
                break status;
            }
            if start.elapsed() > COMMAND_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{argv:?} did not finish within {} s in the server",
                    COMMAND_TIMEOUT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = writer.join();
        Output {
            status,
            stdout: out_reader.join().expect("stdout reader"),
            stderr: err_reader.join().expect("stderr reader"),
        }
    }

    /// Runs a program inside the server that must succeed; returns its stdout.
    pub fn exec_ok(&self, argv: &[&str]) -> String {
        let output = self.exec(argv);
        assert!(
            output.status.success(),
            "{argv:?} failed in the server ({}):\nstdout:\n{}\nstderr:\n{}",
            output.status,
            stdout(&output),
            stderr(&output)
        );
        stdout(&output)
    }

    /// Runs a `/bin/sh -c` script inside the server.
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["/bin/sh", "-c", script])
    }

    /// Runs a script that must succeed; returns its stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        let output = self.sh(script);
        assert!(
            output.status.success(),
            "`{script}` failed in the server ({}):\nstdout:\n{}\nstderr:\n{}",
            output.status,
            stdout(&output),
            stderr(&output)
        );
        stdout(&output)
    }

    /// Whether a path exists inside the server (a dangling symlink counts).
    pub fn exists(&self, path: &str) -> bool {
        self.exec(&["test", "-e", path, "-o", "-L", path])
            .status
            .success()
    }

    /// Writes a file inside the server (parents created), owned by root.
    pub fn write_file(&self, path: &str, contents: &[u8], mode: u32) {
        let output = self.exec_input(
            &[
                "/bin/sh",
                "-c",
                r#"mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1""#,
                "sh",
                path,
                &format!("{mode:o}"),
            ],
            contents,
        );
        assert!(
            output.status.success(),
            "cannot write {path} in the server: {}",
            stderr(&output)
        );
    }

    /// `systemctl ARGS`, which must succeed; returns its stdout.
    pub fn systemctl(&self, args: &[&str]) -> String {
        let mut argv = vec!["systemctl", "--no-pager"];
        argv.extend_from_slice(args);
        let output = self.exec(&argv);
        if !output.status.success() {
            let units: Vec<&str> = args.iter().copied().filter(|a| a.contains('.')).collect();
            panic!(
                "systemctl {} failed ({}):\n{}{}\n{}",
                args.join(" "),
                output.status,
                stdout(&output),
                stderr(&output),
                self.diagnose(&units)
            );
        }
        stdout(&output)
    }

    /// One property of a unit (`systemctl show -p NAME --value`).
    pub fn show(&self, unit: &str, property: &str) -> String {
        self.systemctl(&["show", "-p", property, "--value", unit])
            .trim()
            .to_owned()
    }

    /// Status and journal of units, for failure messages.
    pub fn diagnose(&self, units: &[&str]) -> String {
        let mut text = String::new();
        for unit in units {
            let status = self.exec(&[
                "systemctl",
                "status",
                "--no-pager",
                "--full",
                "--lines=0",
                unit,
            ]);
            let journal = self.exec(&["journalctl", "--no-pager", "-n", "30", "-u", unit]);
            text.push_str(&format!(
                "--- systemctl status {unit}:\n{}--- journalctl -u {unit}:\n{}",
                stdout(&status),
                stdout(&journal)
            ));
        }
        text
    }

    /// Waits until a unit is active; fails at once, with its status and journal, if it
    /// failed or is waiting to be restarted after a failure, else after 60 s.
    pub fn wait_active(&self, unit: &str) {
        let start = Instant::now();
        loop {
            let state = self.show(unit, "ActiveState");
            let sub = self.show(unit, "SubState");
            if state == "active" {
                return;
            }
            let broken = state == "failed" || sub == "auto-restart";
            if broken || start.elapsed() > Duration::from_secs(60) {
                panic!(
                    "{unit} is not active: {state} ({sub}){}\n{}",
                    if broken { "" } else { " after 60 s" },
                    self.diagnose(&[unit])
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// The environment a unit's main process sees, from /proc/MAINPID/environ.
    pub fn main_process_environment(&self, unit: &str) -> Vec<(String, String)> {
        let pid = self.show(unit, "MainPID");
        assert!(pid != "0" && !pid.is_empty(), "{unit} has no main process");
        let output = self.exec(&["cat", &format!("/proc/{pid}/environ")]);
        assert!(output.status.success(), "{}", stderr(&output));
        output
            .stdout
            .split(|b| *b == 0)
            .filter(|entry| !entry.is_empty())
            .filter_map(|entry| {
                let entry = String::from_utf8_lossy(entry);
                entry
                    .split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect()
    }

    /// GET (or HEAD) with curl inside the server.
    pub fn http(&self, method: &str, url: &str) -> HttpResponse {
        let mut argv = vec![
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code} %{content_type}",
        ];
        if method == "HEAD" {
            argv.push("-I");
        } else {
            argv.extend(["-X", method]);
        }
        argv.push(url);
        let text = self.exec_ok(&argv);
        let (body, last) = text.rsplit_once('\n').expect("curl's status line");
        let (status, content_type) = last.split_once(' ').unwrap_or((last, ""));
        HttpResponse {
            status: status
                .parse()
                .unwrap_or_else(|_| panic!("curl {url}: no status in {last:?}")),
            content_type: content_type.to_owned(),
            body: body.to_owned(),
        }
    }

    /// Installs the binary archive keyring and a deb822 source for `url`/`suite`/main.
    pub fn use_apt_repo(&self, url: &str, suite: &str, keyring: &[u8]) {
        self.write_file(KEYRING, keyring, 0o644);
        let source = format!(
            "Types: deb\nURIs: {url}\nSuites: {suite}\nComponents: main\nSigned-By: {KEYRING}\n"
        );
        self.write_file(SOURCES, source.as_bytes(), 0o644);
    }

    /// The rollback pin and apt.conf of the "On a server" steps (docs/reference.md),
    /// so `apt-get upgrade` follows rollbacks and withdrawals of the repository.
    pub fn follow_rollbacks(&self) {
        let preferences = cargo_speedy::ops::rollback_preferences(
            &super::repo_config(5),
            "speedy-archive-keyring",
        );
        self.write_file(
            "/etc/apt/preferences.d/speedy.pref",
            preferences.as_bytes(),
            0o644,
        );
        self.write_file(
            "/etc/apt/apt.conf.d/50speedy-rollback",
            cargo_speedy::ops::rollback_apt_conf().as_bytes(),
            0o644,
        );
    }

    /// `speedy-app --version` on the server: which build's binary is installed.
    pub fn app_version(&self) -> String {
        self.exec_ok(&["/usr/libexec/speedy/speedy-app", "--version"])
            .trim()
            .to_owned()
    }

    /// `apt-get update`, which must succeed without errors or warnings.
    pub fn apt_update(&self) -> String {
        let text = self.apt_get(&["update"]);
        let complaints: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("E:") || l.starts_with("W:") || l.starts_with("Err:"))
            .collect();
        assert!(complaints.is_empty(), "apt-get update complained:\n{text}");
        text
    }

    /// `apt-get ARGS`, run again while it fails on a lock another apt holds, as an
    /// operator would: a server set up by server-setup has the fleet follower, whose
    /// `apt-get update` takes the lists' lock every 20 s (apt never waits for that
    /// lock; the setup script and the follower wait for it in `apt_get`).
    pub fn apt(&self, args: &[&str]) -> Output {
        let mut argv = vec!["apt-get"];
        argv.extend_from_slice(args);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let output = self.exec(&argv);
            if output.status.success()
                || !stderr(&output).contains("E: Could not get lock")
                || Instant::now() > deadline
            {
                return output;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `apt-get -y ARGS`, which must succeed; returns stdout and stderr.
    pub fn apt_get(&self, args: &[&str]) -> String {
        let output = self.apt(&[&["-y", "-q"], args].concat());
        let text = format!("{}{}", stdout(&output), stderr(&output));
        assert!(
            output.status.success(),
            "apt-get {} failed ({}):\n{text}",
            args.join(" "),
            output.status
        );
        text
    }
}

impl Drop for BootedServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "console of {} (end):\n{}",
                self.machine,
                self.console_tail()
            );
        }
        self.power_off();
    }
}

/// systemd-nspawn booting `root` as `machine`, its console appended to `log`.
fn spawn_nspawn(root: &Path, machine: &str, log: &Path) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("nspawn log");
    let mut nspawn = Command::new("systemd-nspawn");
    // Should the test process die without dropping this handle, SIGTERM powers
    // the container off all the same.
    super::signal_when_spawning_thread_ends(&mut nspawn, super::SIGTERM);
    nspawn
        .arg("--directory")
        .arg(root)
        // A unique name: nspawn keeps per-machine state under /run/systemd/nspawn.
        .arg(format!("--machine={machine}"))
        // No machined here: without --register=no nspawn fails to open the bus.
        .args([
            "--boot",
            "--register=no",
            "--keep-unit",
            "--console=passive",
        ])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log fd"))
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start systemd-nspawn: {e}"))
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn same_file(a: impl AsRef<Path>, b: impl AsRef<Path>) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Whether a process is PID 1 of a PID namespace below the host's (NSpid: HOST ... 1).
fn is_namespace_init(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .is_some_and(|ids| {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            ids.len() >= 2 && ids.last() == Some(&"1")
        })
}

/// A directory served over HTTP/1.1 on 127.0.0.1 at an ephemeral port: GET and HEAD
/// with Content-Length, 404 for anything else that is not a file. Stopped on drop.
pub struct RepoHttpServer {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub url: String,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl RepoHttpServer {
    pub fn serve(dir: &Path) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("non-blocking");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let dir = dir.to_owned();
        let thread = {
            let (stop, log) = (stop.clone(), log.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let line = match respond(stream, &dir) {
                                Ok(line) => line,
                                Err(e) => format!("error: {e}"),
                            };
                            log.lock().expect("log").push(line);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10))
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        RepoHttpServer {
            url,
            stop,
            log,
            thread: Some(thread),
        }
    }

    /// One line per request served so far: `METHOD /path -> STATUS`.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }
}

impl Drop for RepoHttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers one request on a connection, then closes it.
fn respond(mut stream: TcpStream, dir: &Path) -> std::io::Result<String> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = std::io::BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The headers are read and ignored.
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = percent_decode(target.split(['?', '#']).next().unwrap_or(""));
    let file = path.as_deref().and_then(|p| {
        let relative = p.strip_prefix('/')?;
        let safe = Path::new(relative)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        let file = dir.join(relative);
        (safe && file.is_file()).then_some(file)
    });
    let (status, reason, body) = match (method, file) {
        ("GET" | "HEAD", Some(file)) => (200, "OK", std::fs::read(file)?),
        ("GET" | "HEAD", None) => (404, "Not Found", b"not found\n".to_vec()),
        _ => (405, "Method Not Allowed", b"method not allowed\n".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        stream.write_all(&body)?;
    }
    stream.flush()?;
    Ok(format!("{method} {target} -> {status}"))
}

/// Decodes %XX escapes; None for a malformed escape or a result that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What a monitoring check said: its exit code and its status line, split up.
#[derive(Debug)]
pub struct CheckResult {
    pub code: i32,
    /// The whole status line.
    pub line: String,
    pub state: String,
    pub message: String,
    pub perfdata: String,
}

/// Runs `check_<package>` in the server as NRPE does: as an unprivileged user, with
/// a bare environment. Its output must be one status line in the monitoring-plugins
/// format, `LABEL STATE - MESSAGE[ | PERFDATA]`, whose state matches the exit code.
pub fn run_check(server: &BootedServer, package: &str, args: &[&str]) -> CheckResult {
    let check = format!("/usr/lib/nagios/plugins/check_{package}");
    let mut argv = vec!["runuser", "-u", "nobody", "--", "env", "-i", check.as_str()];
    argv.extend_from_slice(args);
    let output = server.exec(&argv);
    let text = stdout(&output);
    let code = output.status.code().expect("the check exited");
    assert_eq!(text.lines().count(), 1, "one status line: {text:?}");
    let line = text.trim_end();
    let label = package.to_ascii_uppercase();
    let rest = line
        .strip_prefix(&format!("{label} "))
        .unwrap_or_else(|| panic!("{line:?} starts with {label}"));
    let (state, rest) = rest.split_once(" - ").expect("STATE - MESSAGE");
    let (message, perfdata) = rest.split_once(" | ").unwrap_or((rest, ""));
    let expected_code = ["OK", "WARNING", "CRITICAL", "UNKNOWN"]
        .iter()
        .position(|word| *word == state)
        .unwrap_or_else(|| panic!("{state:?} is not a plugin state: {line:?}"));
    assert_eq!(code, expected_code as i32, "exit code of {line:?}");
    assert!(!message.is_empty() && !message.contains('|'), "{line:?}");
    // label=value[unit];[warn];[crit];[min]: single-quoted labels are not needed here.
    for item in perfdata.split_whitespace() {
        let (name, value) = item
            .split_once('=')
            .unwrap_or_else(|| panic!("{item:?} in {line:?}"));
        let fields: Vec<&str> = value.split(';').collect();
        assert!(
            !name.is_empty() && fields.len() == 4,
            "{item:?} in {line:?}"
        );
        let number = fields[0].trim_end_matches(|c: char| c.is_ascii_alphabetic());
        assert!(number.parse::<f64>().is_ok(), "{item:?} in {line:?}");
    }
    CheckResult {
        code,
        line: line.to_owned(),
        state: state.to_owned(),
        message: message.to_owned(),
        perfdata: perfdata.to_owned(),
    }
}
