//! What the commands print: human lines (progress on stderr, results on stdout) or,
//! with `--message-format json`, one JSON object per line on stdout, each a
//! [`Message`] with a `reason` field saying what it is.

use crate::listener::{BuiltDeb, Listener, Retrying};
use crate::ops::{
    CheckStatus, DebsigPolicy, DoctorReport, HistoryReport, KeyExported, KeyGenerated, ListReport,
    PublishSummary, VerifyOutcome,
};
use crate::publish::PackageRef;
use std::error::Error;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::Mutex;

/// `--message-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to color stderr: `auto` means on a terminal, unless `NO_COLOR` is set.
    pub fn enabled(self) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        }
    }

    /// The same choice for a cargo command run underneath.
    pub fn cargo_flag(self) -> &'static str {
        match self {
            ColorChoice::Auto => "--color=auto",
            ColorChoice::Always => "--color=always",
            ColorChoice::Never => "--color=never",
        }
    }
}

/// Every line of `--message-format json`.
#[derive(Debug, serde::Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Message<'a> {
    Warning {
        message: &'a str,
    },
    Info {
        message: &'a str,
    },
    Detail {
        message: &'a str,
    },
    Error {
        message: &'a str,
    },
    /// A request to the store is being retried (`Retrying`'s fields).
    Retrying(&'a Retrying),
    DebBuilt(&'a BuiltDeb),
    Explain {
        text: &'a str,
    },
    Published(&'a PublishSummary),
    List(&'a ListReport),
    Verify(&'a VerifyOutcome),
    Doctor(&'a DoctorReport),
    ServerSetup(&'a crate::ops::ServerSetup),
    History(&'a HistoryReport),
    Fleet(&'a crate::ops::FleetReport),
    FleetStatus(&'a crate::ops::FleetStatus),
    KeyGenerated(&'a KeyGenerated),
    KeyExported(&'a KeyExported),
    DebsigPolicy(&'a DebsigPolicy),
    BackupSetup(&'a crate::ops::BackupSetupReport),
    BackupList(&'a crate::ops::BackupList),
    Restored(&'a crate::ops::Restored),
    Pruned(&'a crate::ops::Pruned),
}

/// Prints for the CLI and is the library's [`Listener`]. A clone prints to the same
/// place and shares the progress bar ([`Listener::shared`]).
#[derive(Clone)]
pub struct Reporter {
    format: Format,
    verbose: bool,
    quiet: bool,
    color: bool,
    bar: Arc<Mutex<Option<indicatif::ProgressBar>>>,
}

impl Reporter {
    pub fn new(format: Format, verbose: bool, quiet: bool, color: bool) -> Self {
        Reporter {
            format,
            verbose,
            quiet,
            color,
            bar: Arc::new(Mutex::new(None)),
        }
    }

    fn json(&self, message: &Message<'_>) {
        let line = serde_json::to_string(message).unwrap_or_default();
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }

    fn human(&self, label: &str, style: &str, message: &str) {
        let mut stderr = std::io::stderr().lock();
        if self.color {
            let _ = writeln!(stderr, "\x1b[{style}m{label:>12}\x1b[0m {message}");
        } else {
            let _ = writeln!(stderr, "{label:>12} {message}");
        }
    }

    /// A command's result: on stdout in both formats.
    pub fn result(&self, message: &Message<'_>) {
        match self.format {
            Format::Json => self.json(message),
            Format::Human => {
                let _ = write!(std::io::stdout().lock(), "{}", human_result(message));
            }
        }
    }

    /// After a publish, in human output: how a server starts using the repository. At
    /// length when the publish created the suite; after that, one line pointing to
    /// `server-setup`. Every command printed runs as printed (after filling in the
    /// upper-case words): it carries the flags that chose this repository.
    pub fn next_steps(&self, summary: &PublishSummary) {
        if self.quiet || self.format == Format::Json || summary.report.dry_run {
            return;
        }
        let server_setup = format!(
            "`{}` (ROLE: a role of [workspace.metadata.speedy.roles]; ADDRESS: where `db` \
             points, which a role that installs postgresql does not need)",
            next_command(
                "server-setup",
                summary,
                &["--role", "ROLE", "--db-host", "ADDRESS"]
            )
        );
        if summary.private {
            self.human(
                "Next",
                "1;36",
                &format!(
                    "to make a server use {} (a private repository: with the bucket's read-only \
                     key in SPEEDY_READ_ACCESS_KEY_ID and SPEEDY_READ_SECRET_ACCESS_KEY): {server_setup}",
                    summary.report.suite
                ),
            );
        } else if !summary.report.created_suite {
            self.human(
                "Next",
                "1;36",
                &format!(
                    "to make a server use {}: {server_setup}",
                    summary.report.suite
                ),
            );
        } else {
            let fetch = if summary.keyring.starts_with("http") {
                format!(
                    "curl -fsSL {} -o {}",
                    crate::shell::quote(&summary.keyring),
                    crate::shell::quote(&summary.keyring_path)
                )
            } else {
                format!(
                    "install -m 0644 {} {}",
                    crate::shell::quote(&summary.keyring),
                    crate::shell::quote(&summary.keyring_path)
                )
            };
            let indent = |text: &str| -> String {
                text.lines()
                    .map(|line| format!("\n               {line}"))
                    .collect()
            };
            self.human(
                "Next",
                "1;36",
                &format!(
                    "on a server, install the public key, this apt source, and the preferences \
                     and configuration that let apt follow a rollback:\n             {fetch}\n             \
                     {}:{}\n             {}:{}\n             {}:{}\n             \
                     or all of it, unattended upgrades and a role's packages included, as one script: \
                     {server_setup}",
                    summary.sources_path,
                    indent(&summary.sources),
                    summary.preferences_path,
                    indent(&summary.preferences),
                    summary.apt_conf_path,
                    indent(&summary.apt_conf),
                ),
            );
        }
        if let Some(path) = &summary.development_key {
            let below_target = path.components().any(|c| c.as_os_str() == "target");
            self.warning(&format!(
                "this repository is signed with the development key {}: it is not for servers{}",
                path.display(),
                if below_target {
                    ", and it lives below target/: `cargo clean` deletes it, and servers would \
                     then refuse the next publish"
                } else {
                    ""
                }
            ));
        }
    }

    /// The error that ended the command, with its causes.
    pub fn error(&self, error: &dyn Error) {
        let message = error_with_causes(error);
        match self.format {
            Format::Json => self.json(&Message::Error { message: &message }),
            Format::Human => {
                let mut stderr = std::io::stderr().lock();
                if self.color {
                    let _ = writeln!(stderr, "\x1b[1;31merror\x1b[0m: {message}");
                } else {
                    let _ = writeln!(stderr, "error: {message}");
                }
            }
        }
    }
}

/// An error's message and, a line each, the causes it does not state itself. A
/// message that states its cause's text keeps the cause to itself (the field is not
/// its `source`), so each text is printed once.
pub fn error_with_causes(error: &dyn Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    message
}

impl Listener for Reporter {
    fn warning(&self, message: &str) {
        match self.format {
            Format::Json => self.json(&Message::Warning { message }),
            Format::Human => self.human("warning", "1;33", message),
        }
    }

    fn info(&self, message: &str) {
        if self.quiet {
            return;
        }
        match self.format {
            Format::Json => self.json(&Message::Info { message }),
            Format::Human => {
                let (label, rest) = message.split_once(' ').unwrap_or((message, ""));
                self.human(label, "1;32", rest);
            }
        }
    }

    fn detail(&self, message: &str) {
        if !self.verbose {
            return;
        }
        match self.format {
            Format::Json => self.json(&Message::Detail { message }),
            Format::Human => self.human("", "2", message),
        }
    }

    fn transfer_start(&self, total_bytes: u64) {
        if self.quiet || self.format == Format::Json || !std::io::stderr().is_terminal() {
            self.info(&format!("Writing {total_bytes} bytes of packages"));
            return;
        }
        let bar = indicatif::ProgressBar::new(total_bytes);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>12.green.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix("Uploading");
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn retrying(&self, notice: &Retrying) {
        match self.format {
            Format::Json => self.json(&Message::Retrying(notice)),
            Format::Human => {
                let line = notice.to_string();
                // Above a progress bar, not through it.
                let bar = self.bar.lock().ok().and_then(|slot| slot.clone());
                match bar {
                    Some(bar) => bar.suspend(|| self.human("Retrying", "1;33", &line)),
                    None => self.human("Retrying", "1;33", &line),
                }
            }
        }
    }

    fn shared(&self) -> Option<Arc<dyn Listener>> {
        Some(Arc::new(self.clone()))
    }

    fn transfer_progress(&self, bytes: u64) {
        if let Ok(slot) = self.bar.lock() {
            if let Some(bar) = slot.as_ref() {
                bar.inc(bytes);
            }
        }
    }

    fn transfer_finish(&self) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        }
    }

    fn deb_built(&self, deb: &BuiltDeb) {
        match self.format {
            Format::Json => self.json(&Message::DebBuilt(deb)),
            Format::Human => {
                if !self.quiet {
                    self.human(
                        "Finished",
                        "1;32",
                        &format!("{} ({} bytes)", deb.path.display(), deb.size),
                    );
                }
                let _ = writeln!(std::io::stdout().lock(), "{}", deb.path.display());
            }
        }
    }
}

/// The human form of a result.
fn human_result(message: &Message<'_>) -> String {
    match message {
        Message::Warning { message }
        | Message::Info { message }
        | Message::Detail { message }
        | Message::Error { message } => format!("{message}\n"),
        Message::Retrying(notice) => format!("retrying {notice}\n"),
        Message::DebBuilt(deb) => format!("{}\n", deb.path.display()),
        Message::Explain { text } => (*text).to_owned(),
        Message::Published(summary) => human_published(summary),
        Message::List(report) => human_list(report),
        Message::Verify(outcome) => human_verify(outcome),
        Message::Doctor(report) => human_doctor(report),
        Message::ServerSetup(setup) => setup.text.clone(),
        Message::BackupSetup(setup) => format!(
            "s3://{}/{}/: versioning on, backups and the versions they replaced expire after {} days\n",
            setup.bucket, setup.prefix, setup.retention_days
        ),
        Message::BackupList(list) => human_backup_list(list),
        Message::Restored(restored) => format!(
            "restored {} ({} bytes, sha256 {} verified) into {}\n",
            restored.key, restored.size, restored.sha256, restored.into
        ),
        Message::Pruned(pruned) => format!(
            "{} backup(s) older than {} days deleted, {} kept\n{}",
            pruned.deleted.len(),
            pruned.retention_days,
            pruned.kept,
            pruned
                .deleted
                .iter()
                .map(|key| format!("  deleted {key}\n"))
                .collect::<String>()
        ),
        Message::History(report) => human_history(report),
        Message::Fleet(report) => human_fleet(report),
        Message::FleetStatus(status) => human_fleet_status(status),
        Message::KeyGenerated(key) => format!(
            "created {} ({}) with fingerprint {}\n  keep it secret; configure it with `key-file` in \
             [workspace.metadata.speedy.signing] or ${} in CI\n  export the public key: cargo speedy \
             key export --key-file {} --output archive-keyring.gpg\n",
            key.path.display(),
            if key.encrypted {
                "passphrase-protected"
            } else {
                "no passphrase"
            },
            key.fingerprint,
            crate::keys::KEY_ENV,
            crate::shell::quote(&key.path.to_string_lossy())
        ),
        Message::KeyExported(key) => format!(
            "wrote the public {} {} to {}\n",
            if key.fingerprints.len() > 1 { "keys" } else { "key" },
            key.fingerprints.join(" and "),
            key.path.display()
        ),
        Message::DebsigPolicy(policy) => format!(
            "{}\n<!-- install as {}, with the binary public keyring as {} -->\n",
            policy.policy, policy.policy_path, policy.keyring_path
        ),
    }
}

/// `cargo speedy COMMAND` for the suite of a publish, with the flags that chose its
/// repository, then `args` (already sh words).
fn next_command(command: &str, summary: &PublishSummary, args: &[&str]) -> String {
    let mut words = vec!["cargo", "speedy", command];
    words.extend(summary.repository_flags.iter().map(String::as_str));
    let suite = crate::shell::quote(&summary.report.suite);
    words.extend(["--suite", &suite]);
    words.extend(args);
    words.join(" ")
}

fn human_published(summary: &PublishSummary) -> String {
    let report = &summary.report;
    let mut out = String::new();
    let verb = if report.dry_run {
        "would publish"
    } else {
        "published"
    };
    let lines = [
        (verb, &report.added, "to"),
        ("unchanged", &report.unchanged, "in"),
        ("retired", &report.retired, "from"),
        ("changed", &report.changed, "in"),
    ];
    for (what, packages, preposition) in lines {
        for p in packages {
            out.push_str(&format!(
                "{what} {} ({}){} {preposition} {}\n",
                describe_package(p),
                p.architecture,
                phase_note(p.phase),
                report.suite
            ));
        }
    }
    // Undoing the first change would empty the suite: no hint to copy for that.
    match report.history_id {
        Some(id) if id > 1 => out.push_str(&format!(
            "recorded as change {id} of {} (`{}` undoes it and what came after)\n",
            report.suite,
            next_command("rollback", summary, &["--to", &(id - 1).to_string()])
        )),
        Some(id) => out.push_str(&format!("recorded as change {id} of {}\n", report.suite)),
        None => {}
    }
    if report.dry_run {
        out.push_str("plan (dry run, nothing was changed):\n");
        for step in &report.plan {
            out.push_str(&format!("  {step}\n"));
        }
    }
    for key in &report.deleted {
        out.push_str(&format!(
            "deleted {key} (unreferenced for longer than the grace period)\n"
        ));
    }
    for what in &report.unfinished {
        out.push_str(&format!(
            "unfinished after the switch: {what}; the next publish finishes it\n"
        ));
    }
    out
}

fn human_list(report: &ListReport) -> String {
    let mut out = String::new();
    for suite in &report.suites {
        out.push_str(&format!(
            "{} ({}, {} packages)\n",
            suite.suite,
            suite.date,
            suite.packages.len()
        ));
        for p in &suite.packages {
            out.push_str(&format!(
                "  {} {} {}{}\n",
                p.name,
                p.version,
                p.architecture,
                phase_note(p.phase)
            ));
        }
    }
    if report.suites.is_empty() {
        out.push_str(&format!("{}: no suites published yet\n", report.repository));
    }
    out
}

fn describe_package(p: &PackageRef) -> String {
    format!("{} {}", p.name, p.version)
}

/// ` (phased 10%)` for a phased entry, nothing for a fully released one.
fn phase_note(phase: Option<u8>) -> String {
    phase.map(|p| format!(" (phased {p}%)")).unwrap_or_default()
}

fn human_history(report: &HistoryReport) -> String {
    let mut out = String::new();
    for history in &report.suites {
        out.push_str(&format!("{}:\n", history.suite));
        if history.records.is_empty() {
            out.push_str("  no recorded changes\n");
        }
        for record in &history.records {
            let when = crate::repo::syntax::rfc2822(record.time, "UTC");
            let ci = record
                .ci_run
                .as_ref()
                .map(|run| format!(" in {run}"))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {:>4}  {when}  {} by {}@{}{ci}\n",
                record.id, record.command, record.user, record.host
            ));
            let lists = [
                ("+", &record.added),
                ("-", &record.retired),
                ("~", &record.changed),
            ];
            for (sign, packages) in lists {
                for p in packages {
                    out.push_str(&format!(
                        "        {sign} {} ({}){}\n",
                        describe_package(p),
                        p.architecture,
                        phase_note(p.phase)
                    ));
                }
            }
        }
    }
    out
}

/// `fleet db` / `fleet maintenance`: what the servers follow now.
fn human_fleet(report: &crate::ops::FleetReport) -> String {
    let mut out = match &report.published {
        Some(summary) => human_published(summary),
        None => String::new(),
    };
    out.push_str(&human_fleet_settings(&report.settings));
    out
}

fn human_fleet_settings(settings: &crate::ops::FleetSettings) -> String {
    let when = |since: u64| crate::repo::syntax::rfc2822(since, "UTC");
    let mut out = match &settings.db {
        Some(db) => format!("db: {} since {}\n", db.value, when(db.since)),
        None => "db: as server-setup --db-host set it\n".to_owned(),
    };
    if settings.maintenance.is_empty() {
        out.push_str("maintenance: off\n");
    }
    for (role, maintenance) in &settings.maintenance {
        let who = if role == crate::ops::EVERY_ROLE {
            "every role".to_owned()
        } else {
            format!("role {role}")
        };
        let message = if maintenance.value.is_empty() {
            String::new()
        } else {
            format!(": {:?}", maintenance.value)
        };
        out.push_str(&format!(
            "maintenance: on for {who} since {}{message}\n",
            when(maintenance.since)
        ));
    }
    out
}

fn human_fleet_status(status: &crate::ops::FleetStatus) -> String {
    let mut out = format!(
        "{} ({}):\n",
        status.suite,
        match &status.version {
            Some(version) => format!("{} {version}", status.package),
            None => format!("no {} yet: no fleet switch", status.package),
        }
    );
    out.push_str(&human_fleet_settings(&status.settings));
    for role in &status.roles {
        out.push_str(&format!(
            "  {}: {}\n",
            role.role,
            match &role.maintenance {
                Some(m) if m.value.is_empty() => "maintenance".to_owned(),
                Some(m) => format!("maintenance ({:?})", m.value),
                None => "serving".to_owned(),
            }
        ));
    }
    out
}

fn human_verify(outcome: &VerifyOutcome) -> String {
    let mut out = String::new();
    for suite in &outcome.report.suites {
        let status = if suite.problems.is_empty() {
            "ok"
        } else {
            "FAILED"
        };
        out.push_str(&format!(
            "{}: {status} ({} packages)\n",
            suite.suite, suite.packages
        ));
        for problem in &suite.problems {
            out.push_str(&format!("  problem: {problem}\n"));
        }
        for note in &suite.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
    }
    if outcome.report.suites.is_empty() {
        out.push_str(&format!(
            "{}: no suites published yet\n",
            outcome.repository
        ));
    }
    for key in &outcome.keys {
        if key.findings.is_empty() {
            out.push_str(&format!("key {}: ok\n", key.fingerprint));
        }
        for finding in &key.findings {
            let label = match finding.severity {
                crate::ops::FindingSeverity::Error => "problem",
                crate::ops::FindingSeverity::Warning => "warning",
            };
            out.push_str(&format!(
                "key {}: {label}: {}\n",
                key.fingerprint, finding.message
            ));
        }
    }
    out
}

fn human_doctor(report: &DoctorReport) -> String {
    let mut out = format!("{:<24} {:<6} detail\n", "check", "result");
    for check in &report.checks {
        let status = match check.status {
            CheckStatus::Pass => "ok",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Skip => "skip",
        };
        out.push_str(&format!(
            "{:<24} {:<6} {}\n",
            check.check, status, check.detail
        ));
    }
    out
}

/// One line per backup, oldest first: when, which database, from where, how big, and
/// whether its run finished (the checksum object is there).
fn human_backup_list(list: &crate::ops::BackupList) -> String {
    let mut text = format!("{}\n", list.location);
    if list.entries.is_empty() {
        text.push_str("  no backups yet\n");
    }
    for entry in &list.entries {
        text.push_str(&format!(
            "  {}  {:<16} {:<16} {:>12} bytes  {}  {}\n",
            entry.time,
            entry.database,
            entry.host,
            entry.size,
            if entry.complete {
                "checksum present"
            } else {
                "NO CHECKSUM (unfinished)"
            },
            entry.key
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::CommandError;
    use crate::publish::PublishError;
    use crate::store::StoreError;

    #[test]
    fn each_cause_is_printed_once() {
        let io = || std::io::Error::from_raw_os_error(30); // EROFS
        let text = io().to_string();
        let errors: Vec<Box<dyn Error>> = vec![
            Box::new(CommandError::Store(StoreError::Io {
                store: "/srv/repo".into(),
                key: ".speedy/lock".into(),
                cause: io(),
            })),
            Box::new(CommandError::Publish(PublishError::Store(StoreError::Io {
                store: "/srv/repo".into(),
                key: ".speedy/lock".into(),
                cause: io(),
            }))),
            Box::new(CommandError::Publish(PublishError::ReadDeb {
                path: "/tmp/a.deb".into(),
                cause: io(),
            })),
        ];
        for error in errors {
            let message = error_with_causes(error.as_ref());
            assert_eq!(message.matches(&text).count(), 1, "{message}");
        }
    }
}
