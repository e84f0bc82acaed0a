//! `cargo speedy build` against the fixture workspace, inspected with the real Debian
//! tools: dpkg-deb, lintian, shellcheck.

use crate::support::*;
use std::path::Path;

const PACKAGES: [&str; 3] = ["speedy-app", "speedy-jobs", "speedy-notifier"];

#[test]
fn builds_one_deb_per_service_with_control_data() {
    let fixture = Fixture::new();
    let debs = fixture.build();
    let names: Vec<String> = debs
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "speedy-app_1.4.0-1_amd64.deb",
            "speedy-jobs_1.4.0-1_amd64.deb",
            "speedy-notifier_1.4.0-1_amd64.deb"
        ]
    );
    for name in PACKAGES {
        let deb = fixture.deb(name);
        let info = run("dpkg-deb", &["-f", deb.to_str().unwrap()]);
        let fields = control_fields(&info);
        assert_eq!(fields["Package"], name);
        assert_eq!(fields["Version"], "1.4.0-1");
        assert_eq!(fields["Architecture"], "amd64");
        assert_eq!(fields["Maintainer"], "Speedy Team <ops@speedy.example>");
        let depends = &fields["Depends"];
        assert!(depends.contains("libc6"), "shlibdeps found libc: {depends}");
        assert!(
            depends.contains("systemd | systemd-standalone-sysusers | systemd-sysusers"),
            "{depends}"
        );
        // Nothing but the .debs is left in the output directory.
        assert!(fixture
            .everything_in_debs_dir()
            .iter()
            .all(|p| p.extension().is_some_and(|e| e == "deb")));
    }
}

#[test]
fn daemon_packages_carry_a_hardened_service_and_debhelper_style_scripts() {
    let fixture = Fixture::new();
    fixture.build();
    let deb = fixture.deb("speedy-app");
    let listing = run("dpkg-deb", &["-c", deb.to_str().unwrap()]);
    for path in [
        "./usr/libexec/speedy/speedy-app",
        "./usr/lib/systemd/system/speedy-app.service",
        "./usr/lib/sysusers.d/speedy-app.conf",
        "./etc/speedy/app.conf",
        "./usr/share/doc/speedy-app/copyright",
        "./usr/share/doc/speedy-app/changelog.Debian.gz",
        "./usr/lib/nagios/plugins/check_speedy-app",
        "./etc/nagios/nrpe.d/speedy-app.cfg",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(path)),
            "{path} missing from:\n{listing}"
        );
    }
    for executable in ["speedy-app", "check_speedy-app"] {
        assert!(listing
            .lines()
            .any(|l| l.starts_with("-rwxr-xr-x 0/0") && l.ends_with(&format!("/{executable}"))));
    }

    // The control archive, read without unpacking.
    let members = String::from_utf8(run_bytes(
        "sh",
        &[
            "-c",
            &format!("dpkg-deb --ctrl-tarfile '{}' | tar -tvf -", deb.display()),
        ],
    ))
    .unwrap();
    for script in ["./postinst", "./prerm", "./postrm"] {
        assert!(
            members
                .lines()
                .any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with(script)),
            "{script} not executable in:\n{members}"
        );
    }

    let unpacked = Unpacked::new(&deb);
    assert_eq!(
        unpacked.control("conffiles"),
        "/etc/nagios/nrpe.d/speedy-app.cfg\n/etc/speedy/app.conf\n"
    );
    let unit = unpacked.file("/usr/lib/systemd/system/speedy-app.service");
    for line in [
        "ExecStart=/usr/libexec/speedy/speedy-app --config /etc/speedy/app.conf",
        "User=speedy",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=speedy/app",
        "WantedBy=multi-user.target",
        "Documentation=https://speedy.example",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "{line:?} missing from unit:\n{unit}"
        );
    }
    let sysusers = unpacked.file("/usr/lib/sysusers.d/speedy-app.conf");
    assert!(
        sysusers.contains("u speedy - \"speedy service user\" /nonexistent /usr/sbin/nologin"),
        "{sysusers}"
    );

    let postinst = unpacked.control("postinst");
    assert!(postinst.contains("systemd-sysusers speedy-app.conf"));
    assert!(postinst.contains("units=\"speedy-app.service\""));
    assert!(postinst.contains("deb-systemd-helper --quiet was-enabled \"$unit\""));
    assert!(postinst.contains("install -d -m 0750 -o speedy -g speedy /var/lib/speedy/app"));
    let postrm = unpacked.control("postrm");
    assert!(postrm.contains("rm -rf /var/lib/speedy/app"));
    assert!(postrm.contains("rmdir --ignore-fail-on-non-empty /var/lib/speedy"));
    let prerm = unpacked.control("prerm");
    assert!(prerm.contains("deb-systemd-invoke stop \"$unit\""));
}

#[test]
fn jobs_package_has_a_oneshot_service_and_timer_per_job() {
    let fixture = Fixture::new();
    fixture.build();
    let unpacked = Unpacked::new(&fixture.deb("speedy-jobs"));
    for (job, schedule) in [("trending", "*:0/15"), ("purge-old-data", "*-*-* 03:30:00")] {
        let service = unpacked.file(&format!(
            "/usr/lib/systemd/system/speedy-jobs-{job}.service"
        ));
        assert!(service.contains("Type=oneshot"), "{service}");
        assert!(service.contains(&format!(
            "ExecStart=/usr/libexec/speedy/speedy-jobs --config /etc/speedy/jobs.conf {job}"
        )));
        assert!(service.contains("ConditionPathExists=!/etc/speedy/jobs.disabled"));
        assert!(
            !service.lines().any(|l| l == "[Install]"),
            "job services are started by their timers only"
        );
        let timer = unpacked.file(&format!("/usr/lib/systemd/system/speedy-jobs-{job}.timer"));
        assert!(
            timer.lines().any(|l| l == format!("OnCalendar={schedule}")),
            "{timer}"
        );
        assert!(timer.contains("Persistent=true"));
        assert!(timer.contains("RandomizedDelaySec=5min"));
        assert!(timer.contains(&format!("Unit=speedy-jobs-{job}.service")));
        assert!(timer.contains("WantedBy=timers.target"));
    }
    // Timers are enabled and started; the job services are not.
    let postinst = unpacked.control("postinst");
    assert!(
        postinst.contains("units=\"speedy-jobs-trending.timer speedy-jobs-purge-old-data.timer\""),
        "{postinst}"
    );
    assert!(!postinst.contains("speedy-jobs-trending.service"));
    let prerm = unpacked.control("prerm");
    assert!(prerm.contains(
        "stop_units=\"speedy-jobs-trending.timer speedy-jobs-purge-old-data.timer speedy-jobs-trending.service speedy-jobs-purge-old-data.service\""
    ));
    assert_eq!(
        unpacked.control("conffiles"),
        "/etc/nagios/nrpe.d/speedy-jobs.cfg\n/etc/speedy/jobs.conf\n"
    );
}

#[test]
fn every_package_ships_a_monitoring_check_and_its_nrpe_command() {
    let fixture = Fixture::new();
    fixture.build();
    for name in PACKAGES {
        let deb = fixture.deb(name);
        let unpacked = Unpacked::new(&deb);
        let check = unpacked.file(&format!("/usr/lib/nagios/plugins/check_{name}"));
        assert!(check.starts_with("#!/bin/sh\n"), "{check}");
        assert_eq!(
            unpacked
                .file(&format!("/etc/nagios/nrpe.d/{name}.cfg"))
                .lines()
                .last(),
            Some(format!("command[check_{name}]=/usr/lib/nagios/plugins/check_{name}").as_str())
        );
        // The daemon with a health URL asks it with curl, which it recommends.
        let fields = control_fields(&run("dpkg-deb", &["-f", deb.to_str().unwrap()]));
        if name == "speedy-app" {
            assert!(
                check.contains("\nhealth_url=http://127.0.0.1:8080/healthz\n"),
                "{check}"
            );
            assert_eq!(fields["Recommends"], "curl");
        } else {
            assert!(!fields.contains_key("Recommends"), "{name}: {fields:?}");
        }
    }
    let jobs = Unpacked::new(&fixture.deb("speedy-jobs"))
        .file("/usr/lib/nagios/plugins/check_speedy-jobs");
    for line in [
        "flag=/etc/speedy/jobs.disabled",
        "check_job speedy-jobs-trending '*:0/15' 300",
        "check_job speedy-jobs-purge-old-data '*-*-* 03:30:00' 300",
    ] {
        assert!(jobs.lines().any(|l| l == line), "{line:?} missing:\n{jobs}");
    }
}

fn assert_lintian_clean(debs: &[std::path::PathBuf]) {
    let mut args = vec!["--fail-on", "error,warning", "--no-tag-display-limit"];
    let paths: Vec<String> = debs.iter().map(|d| d.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    let output = std::process::Command::new("lintian")
        .args(&args)
        .output()
        .expect("lintian is installed");
    let text = stdout(&output);
    assert!(
        output.status.success(),
        "lintian failed:\n{text}\n{}",
        stderr(&output)
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("E:") || l.starts_with("W:")),
        "{text}"
    );
}

#[test]
fn lintian_reports_no_errors_or_warnings() {
    let fixture = Fixture::new();
    let debs = fixture.build();
    assert_lintian_clean(&debs);
    // Signed with a configured key: the debsigs member is the one override.
    let key = fixture.path("signing-key.asc");
    assert_success(&fixture.speedy(&["key", "generate", "--output", key.to_str().unwrap()]));
    let output = fixture.speedy(&[
        "build",
        "--quiet",
        "--no-build",
        "--key-file",
        key.to_str().unwrap(),
    ]);
    assert_success(&output);
    let deb = cargo_speedy::debfile::DebFile::read(&fixture.deb("speedy-app")).unwrap();
    assert!(deb.origin_signature().is_some(), "signed with --key-file");
    assert_lintian_clean(&fixture.debs());
}

#[test]
fn maintainer_scripts_monitoring_checks_and_the_setup_script_pass_shellcheck() {
    let fixture = Fixture::new();
    // With secrets on the app and the jobs, and none on the notifier: every block of
    // the templates is rendered somewhere.
    fixture.declare_secrets("speedy-app", &["DATABASE_URL", "API_TOKEN"]);
    fixture.declare_secrets("speedy-jobs", &["DATABASE_URL"]);
    fixture.build();
    for name in PACKAGES {
        let unpacked = Unpacked::new(&fixture.deb(name));
        for script in ["postinst", "prerm", "postrm"] {
            let path = unpacked.control_path(script);
            run(
                "shellcheck",
                &["--shell=sh", "--severity=style", path.to_str().unwrap()],
            );
        }
        let root = unpacked.dir.path().join("root");
        let mut scripts = vec![root.join(format!("usr/lib/nagios/plugins/check_{name}"))];
        if name != "speedy-notifier" {
            scripts.push(root.join(format!("usr/lib/{name}/require-secrets")));
        }
        for script in scripts {
            run(
                "shellcheck",
                &["--shell=sh", "--severity=style", script.to_str().unwrap()],
            );
        }
    }
    // The server-setup script, rendered from templates/server-setup.sh, for a role
    // that runs the jobs and one that does not, with a secret given and one not.
    assert_success(&fixture.speedy(&["release", "--quiet", "--no-build"]));
    let scripts = tempfile::tempdir().unwrap();
    for role in ["worker", "web"] {
        let output = fixture.speedy_env(
            &["server-setup", "--role", role, "--db-host", "127.0.0.5"],
            &[(
                "DATABASE_URL",
                "postgres://app:it's \"$ecret\" `x` \\@db/app\\",
            )],
        );
        assert_success(&output);
        let path = scripts.path().join(format!("setup-{role}.sh"));
        std::fs::write(&path, &output.stdout).unwrap();
        run(
            "shellcheck",
            &["--shell=sh", "--severity=style", path.to_str().unwrap()],
        );
    }
}

#[test]
fn builds_are_byte_reproducible_across_checkouts() {
    let first = Fixture::new();
    let second = Fixture::new();
    first.build();
    second.build();
    for name in PACKAGES {
        assert_eq!(
            sha256_file(&first.deb(name)),
            sha256_file(&second.deb(name)),
            "{name}"
        );
    }
    // A different SOURCE_DATE_EPOCH gives different bytes: the test can tell.
    let output = first.speedy_env(
        &["build", "--quiet", "--no-build"],
        &[("SOURCE_DATE_EPOCH", "1795000001")],
    );
    assert_success(&output);
    assert_ne!(
        sha256_file(&first.deb("speedy-app")),
        sha256_file(&second.deb("speedy-app"))
    );
}

#[test]
fn explain_shows_every_rendered_file_and_builds_nothing() {
    let fixture = Fixture::new();
    let output = fixture.speedy(&["build", "--explain"]);
    assert_success(&output);
    let text = stdout(&output);
    for header in [
        "==> /usr/lib/systemd/system/speedy-app.service (template daemon.service) <==",
        "==> /usr/lib/systemd/system/speedy-jobs-trending.timer (template job.timer) <==",
        "==> /usr/lib/sysusers.d/speedy-notifier.conf (template sysusers.conf) <==",
        "==> DEBIAN/postinst (template postinst) <==",
        "==> /usr/share/doc/speedy-jobs/changelog.Debian.gz (template changelog) <==",
        "==> /usr/lib/nagios/plugins/check_speedy-app (template check-daemon) <==",
        "==> /usr/lib/nagios/plugins/check_speedy-jobs (template check-jobs) <==",
        "==> /etc/nagios/nrpe.d/speedy-notifier.cfg (template nrpe.cfg) <==",
    ] {
        assert!(text.contains(header), "{header} missing:\n{text}");
    }
    assert!(text.contains("OnCalendar=*:0/15"));
    assert!(
        text.contains("# config/app.conf")
            || text.contains("speedy-app/config/app.conf -> /etc/speedy/app.conf (0644, conffile)"),
        "{text}"
    );
    assert!(!fixture.path("target").exists(), "--explain must not build");
}

#[test]
fn a_file_in_the_crates_debian_folder_overrides_the_rendered_one() {
    let fixture = Fixture::new();
    let custom = "[Unit]\nDescription=Custom app unit\n\n[Service]\nExecStart=/usr/libexec/speedy/speedy-app\n\n[Install]\nWantedBy=multi-user.target\n";
    fixture.write("speedy-app/debian/speedy-app.service", custom);
    fixture.write("speedy-app/debian/speedy-app.servce", "typo\n");
    let output = fixture.speedy(&["build", "--explain", "-p", "speedy-app"]);
    assert_success(&output);
    assert!(
        stdout(&output).contains("speedy-app.service (override "),
        "{}",
        stdout(&output)
    );
    assert!(
        stderr(&output).contains("speedy-app.servce matches no rendered file"),
        "{}",
        stderr(&output)
    );

    let output = fixture.speedy(&["build", "--quiet", "-p", "speedy-app"]);
    assert_success(&output);
    assert_eq!(fixture.debs().len(), 1, "-p builds only the named package");
    let unpacked = Unpacked::new(&fixture.deb("speedy-app"));
    assert_eq!(
        unpacked.file("/usr/lib/systemd/system/speedy-app.service"),
        custom
    );
}

#[test]
fn json_messages_report_each_deb_with_its_sha256() {
    let fixture = Fixture::new();
    let output = fixture.speedy(&["build", "--message-format", "json"]);
    assert_success(&output);
    let built: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("every stdout line is JSON"))
        .filter(|v| v["reason"] == "deb-built")
        .collect();
    assert_eq!(built.len(), 3);
    for event in built {
        let path = Path::new(event["path"].as_str().unwrap());
        assert_eq!(event["sha256"].as_str().unwrap(), sha256_file(path));
        assert_eq!(
            event["size"].as_u64().unwrap(),
            std::fs::metadata(path).unwrap().len()
        );
    }
}

#[test]
fn cargo_deb_metadata_keys_are_honoured() {
    let fixture = Fixture::new();
    fixture.edit(
        "speedy-notifier/Cargo.toml",
        "[package.metadata.speedy]",
        "[package.metadata.deb]\nsection = \"admin\"\nrecommends = \"curl\"\nassets = [[\"extra/notes.txt\", \"usr/share/doc/speedy-notifier/notes.txt\", \"644\"]]\n\n[package.metadata.speedy]",
    );
    fixture.write("speedy-notifier/extra/notes.txt", "read me\n");
    let output = fixture.speedy(&["build", "--quiet", "-p", "speedy-notifier"]);
    assert_success(&output);
    let deb = fixture.deb("speedy-notifier");
    let fields = control_fields(&run("dpkg-deb", &["-f", deb.to_str().unwrap()]));
    assert_eq!(fields["Section"], "admin");
    assert_eq!(fields["Recommends"], "curl");
    let unpacked = Unpacked::new(&deb);
    assert_eq!(
        unpacked.file("/usr/share/doc/speedy-notifier/notes.txt"),
        "read me\n"
    );
}

/// The jobs check's lateness rule, run on this host against a stand-in `systemctl`
/// (every unit property from a file) and `date +%s` (the time now), with the real
/// `systemd-analyze` computing the schedule: a job whose last start was 1 min past a
/// quarter hour, on `*:0/15` with the fixture's 5 min randomized delay, is on time
/// until the second elapse after it plus the delay (34 min later), late (WARNING)
/// until the third plus the delay (49 min), then CRITICAL.
#[test]
fn the_jobs_check_warns_then_goes_critical_as_scheduled_runs_are_missed() {
    let fixture = Fixture::new();
    fixture.build();
    let unpacked = Unpacked::new(&fixture.deb("speedy-jobs"));
    let check = unpacked
        .dir
        .path()
        .join("root/usr/lib/nagios/plugins/check_speedy-jobs");
    let stubs = tempfile::tempdir().expect("temp dir");
    let write_stub = |name: &str, text: &str| {
        use std::os::unix::fs::PermissionsExt;
        let path = stubs.path().join(name);
        std::fs::write(&path, text).expect("write stub");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    };
    write_stub(
        "systemctl",
        r#"#!/bin/sh
# `show --property=NAME ... UNIT` and `is-enabled -- UNIT`, from "UNIT NAME=VALUE" lines.
property="" unit=""
for argument in "$@"; do
    case "$argument" in
        --property=*) property=${argument#--property=} ;;
        -*|show|is-enabled) ;;
        *) unit=$argument ;;
    esac
done
if [ "$1" = is-enabled ]; then
    property=UnitFileState
fi
value=$(grep -F "$unit $property=" "$STUB_UNITS" | cut -d= -f2-)
echo "$value"
[ "$1" != is-enabled ] || [ "$value" = enabled ]
"#,
    );
    write_stub(
        "date",
        "#!/bin/sh\nif [ \"$*\" = +%s ]; then echo \"$STUB_NOW\"; else exec /usr/bin/date \"$@\"; fi\n",
    );
    let quarter_hour = 1_795_000_000 / 900 * 900;
    let last_start = quarter_hour + 60;
    let units = stubs.path().join("units");
    let mut lines = String::new();
    for job in ["trending", "purge-old-data"] {
        lines.push_str(&format!(
            "speedy-jobs-{job}.timer UnitFileState=enabled\n\
             speedy-jobs-{job}.timer ActiveState=active\n\
             speedy-jobs-{job}.timer LastTriggerUSec=@{last_start}\n\
             speedy-jobs-{job}.service Result=success\n\
             speedy-jobs-{job}.service ExecMainStartTimestamp=@{last_start}\n"
        ));
    }
    std::fs::write(&units, lines).expect("write units");
    let run_at = |seconds_after: u64| {
        let output = std::process::Command::new(&check)
            .env_clear()
            .env("PATH", stubs.path())
            .env("STUB_UNITS", &units)
            .env("STUB_NOW", (last_start + seconds_after).to_string())
            .env("TZ", "UTC")
            .output()
            .expect("run the check");
        (output.status.code(), stdout(&output))
    };
    #[rustfmt::skip]
    let cases: [(u64, i32, &[&str]); 3] = [
        (600, 0, &["SPEEDY-JOBS OK - trending last ran ", "; purge-old-data last ran ",
                   " | trending_age=600s;2040;2940;0 purge-old-data_age=600s;"]),
        (2041, 1, &["SPEEDY-JOBS WARNING - trending last ran ",
                    " and is late: a run was due at ", "(schedule *:0/15)"]),
        (2941, 2, &["SPEEDY-JOBS CRITICAL - trending last ran ", " and missed the runs due since "]),
    ];
    for (seconds_after, expected_code, parts) in cases {
        let (code, text) = run_at(seconds_after);
        assert_eq!(code, Some(expected_code), "{text}");
        assert!(text.starts_with(parts[0]), "{text}");
        for part in &parts[1..] {
            assert!(text.contains(part), "{part:?} missing: {text}");
        }
    }
}

/// A service's secrets come from a file on the server that no package ships: its
/// units read it and refuse to start without each secret; the packages stay
/// lintian-clean.
#[test]
fn secrets_are_read_from_a_file_that_no_package_ships() {
    let fixture = Fixture::new();
    fixture.declare_secrets("speedy-app", &["DATABASE_URL", "API_TOKEN"]);
    fixture.declare_secrets("speedy-jobs", &["DATABASE_URL"]);
    let debs = fixture.build();
    let checks = [
        (
            "speedy-app",
            vec!["speedy-app.service"],
            "DATABASE_URL API_TOKEN",
        ),
        (
            "speedy-jobs",
            vec![
                "speedy-jobs-trending.service",
                "speedy-jobs-purge-old-data.service",
            ],
            "DATABASE_URL",
        ),
    ];
    for (name, units, names) in checks {
        let deb = fixture.deb(name);
        let unpacked = Unpacked::new(&deb);
        for unit in units {
            let text = unpacked.file(&format!("/usr/lib/systemd/system/{unit}"));
            for line in [
                format!("EnvironmentFile=-/etc/speedy/{name}.secrets"),
                format!("ExecStartPre=/usr/lib/{name}/require-secrets {names}"),
            ] {
                assert!(text.lines().any(|l| l == line), "{line:?} missing:\n{text}");
            }
        }
        let listing = run("dpkg-deb", &["-c", deb.to_str().unwrap()]);
        assert!(
            listing.lines().any(|l| l.starts_with("-rwxr-xr-x 0/0")
                && l.ends_with(&format!("./usr/lib/{name}/require-secrets"))),
            "{listing}"
        );
        let postinst = unpacked.control("postinst");
        assert!(
            postinst.contains(&format!(
                "install -m 0600 -o root -g root /dev/null /etc/speedy/{name}.secrets"
            )),
            "{postinst}"
        );
        assert!(unpacked
            .control("postrm")
            .contains(&format!("rm -f /etc/speedy/{name}.secrets")));
        assert!(!unpacked.control("conffiles").contains("secrets"));
    }
    // No package ships a secrets file, nor any file under a name like it.
    for deb in &debs {
        let listing = run("dpkg-deb", &["-c", deb.to_str().unwrap()]);
        assert!(!listing.contains(".secrets"), "{listing}");
    }
    let notifier = Unpacked::new(&fixture.deb("speedy-notifier"));
    let unit = notifier.file("/usr/lib/systemd/system/speedy-notifier.service");
    assert!(!unit.contains("EnvironmentFile"), "{unit}");
    assert_lintian_clean(&debs);
}

/// A daemon that declares `listen` and `notify`: its package ships the socket unit
/// next to the service, both lintian-clean, and maintainer scripts that pass
/// shellcheck with the socket handling and the health gate in them.
#[test]
fn a_daemon_that_listens_ships_a_socket_unit_lintian_accepts() {
    let fixture = Fixture::new();
    fixture.edit(
        "speedy-app/Cargo.toml",
        "kind = \"daemon\"\n",
        "kind = \"daemon\"\nlisten = [\"127.0.0.1:8080\", \"[::1]:8080\"]\nhealth-timeout = \"20s\"\n",
    );
    fixture.build();
    let deb = fixture.deb("speedy-app");
    assert_lintian_clean(std::slice::from_ref(&deb));
    let unpacked = Unpacked::new(&deb);
    let socket = unpacked.file("/usr/lib/systemd/system/speedy-app.socket");
    for line in [
        "ListenStream=127.0.0.1:8080",
        "ListenStream=[::1]:8080",
        "Accept=no",
        "Service=speedy-app.service",
        "WantedBy=sockets.target",
    ] {
        assert!(socket.lines().any(|l| l == line), "{line:?}:\n{socket}");
    }
    let service = unpacked.file("/usr/lib/systemd/system/speedy-app.service");
    for line in [
        "Requires=speedy-app.socket",
        "After=speedy-app.socket",
        "Type=notify",
    ] {
        assert!(service.lines().any(|l| l == line), "{line:?}:\n{service}");
    }
    let postinst = std::fs::read_to_string(unpacked.control_path("postinst")).unwrap();
    assert!(
        postinst.contains("deadline=$(($(date +%s) + 20))"),
        "{postinst}"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let path = unpacked.control_path(script);
        run(
            "shellcheck",
            &["--shell=sh", "--severity=style", path.to_str().unwrap()],
        );
    }
}
