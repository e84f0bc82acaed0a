//! Renders a service's systemd units, sysusers entry, maintainer scripts and Debian
//! changelog from the templates in templates/debian/, then applies the user's
//! overrides from the crate's debian/ folder.
//!
//! The templates are embedded in the binary so `cargo install cargo-speedy` is all a
//! user needs; the placeholders are `{{name}}` and nothing else, which keeps the
//! rendered files greppable and the engine small enough to trust.

use crate::config::timespan::parse_timespan;
use crate::config::{Service, ServiceKind};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// One embedded template.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    pub name: &'static str,
    pub text: &'static str,
}

macro_rules! template {
    ($name:literal) => {
        Template {
            name: $name,
            text: include_str!(concat!("../../templates/debian/", $name)),
        }
    };
}

pub const DAEMON_SERVICE: Template = template!("daemon.service");
pub const DAEMON_SOCKET: Template = template!("daemon.socket");
pub const HEALTH_GATE: Template = template!("health-gate");
pub const JOB_SERVICE: Template = template!("job.service");
pub const JOB_TIMER: Template = template!("job.timer");
pub const HARDENING: Template = template!("hardening.conf");
pub const SYSUSERS: Template = template!("sysusers.conf");
pub const POSTINST: Template = template!("postinst");
pub const PRERM: Template = template!("prerm");
pub const POSTRM: Template = template!("postrm");
pub const CHANGELOG: Template = template!("changelog");
pub const LINTIAN_OVERRIDES: Template = template!("lintian-overrides");
pub const CHECK_COMMON: Template = template!("check-common");
pub const CHECK_DAEMON: Template = template!("check-daemon");
pub const CHECK_JOBS: Template = template!("check-jobs");
pub const NRPE_CFG: Template = template!("nrpe.cfg");
pub const REQUIRE_SECRETS: Template = template!("require-secrets");
pub const FLEET_APPLY: Template = template!("fleet-apply");

/// Where monitoring agents look for checks (monitoring-plugins' directory on Debian,
/// the `PluginDir` of Icinga 2 and the path of Nagios' and NRPE's definitions).
pub const PLUGIN_DIR: &str = "/usr/lib/nagios/plugins";
/// The folder Debian's NRPE includes (`include_dir=` in /etc/nagios/nrpe.cfg).
pub const NRPE_DIR: &str = "/etc/nagios/nrpe.d";

/// All templates, for `cargo speedy templates` style listings and for tests.
pub const ALL_TEMPLATES: &[Template] = &[
    DAEMON_SERVICE,
    DAEMON_SOCKET,
    HEALTH_GATE,
    JOB_SERVICE,
    JOB_TIMER,
    HARDENING,
    SYSUSERS,
    POSTINST,
    PRERM,
    POSTRM,
    CHANGELOG,
    LINTIAN_OVERRIDES,
    CHECK_COMMON,
    CHECK_DAEMON,
    CHECK_JOBS,
    NRPE_CFG,
    REQUIRE_SECRETS,
    FLEET_APPLY,
];

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template {template}: placeholder {{{{{placeholder}}}}} has no value")]
    UnknownPlaceholder {
        template: &'static str,
        placeholder: String,
    },
    #[error("template {template}: unterminated placeholder")]
    Unterminated { template: &'static str },
    #[error("cannot read the override {}: {cause}", path.display())]
    ReadOverride {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("the override {} is not UTF-8 text", path.display())]
    OverrideNotText { path: PathBuf },
}

/// Where a rendered file goes in the package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// A maintainer script or other member of control.tar.
    Control,
    /// Installed at this absolute path with this mode.
    Installed { path: String, mode: u32 },
    /// The Debian changelog, which cargo-deb compresses into usr/share/doc.
    Changelog,
}

/// Where the contents came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Template(&'static str),
    /// The user's file in the crate's debian/ folder, taken verbatim.
    Override(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// The file name, which is also the name an override must have in debian/.
    pub name: String,
    pub destination: Placement,
    pub contents: String,
    pub origin: Origin,
}

/// Values that do not come from the manifest.
#[derive(Debug, Clone)]
pub struct RenderContext {
    /// Unix time used for the changelog date (SOURCE_DATE_EPOCH).
    pub timestamp: u64,
}

/// Replaces every `{{name}}`. A line that holds nothing but one placeholder whose value
/// is empty disappears, so optional blocks leave no blank lines behind.
pub fn fill(template: &Template, vars: &BTreeMap<&str, String>) -> Result<String, RenderError> {
    let mut out = String::with_capacity(template.text.len() + 256);
    for line in template.text.split_inclusive('\n') {
        let trimmed = line.trim();
        if let Some(name) = trimmed
            .strip_prefix("{{")
            .and_then(|t| t.strip_suffix("}}"))
        {
            if !name.contains("{{") && vars.get(name).is_some_and(String::is_empty) {
                continue;
            }
        }
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or(RenderError::Unterminated {
                template: template.name,
            })?;
            let name = &after[..end];
            let value = vars
                .get(name)
                .ok_or_else(|| RenderError::UnknownPlaceholder {
                    template: template.name,
                    placeholder: name.to_owned(),
                })?;
            // Indent continuation lines of a multi-line value like the placeholder.
            let indent: String = line.chars().take_while(|c| *c == ' ').collect();
            let mut first = true;
            for value_line in value.split('\n') {
                if !first {
                    out.push('\n');
                    if !value_line.is_empty() {
                        out.push_str(&indent);
                    }
                }
                out.push_str(value_line);
                first = false;
            }
            rest = &after[end + 2..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

/// Quotes one argument for `ExecStart=` (systemd.service(5), "Command lines"): `%`
/// would start a specifier and `$` an environment variable, so both are doubled.
pub fn systemd_quote(arg: &str) -> String {
    quote_escaped(arg.replace('%', "%%").replace('$', "$$"))
}

/// Quotes a value whose specifiers are already escaped: as it is when it holds only
/// plain characters, else in double quotes with `"`, `\` and tabs escaped.
fn quote_escaped(escaped: String) -> String {
    let plain = !escaped.is_empty()
        && escaped
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@".contains(c));
    if plain {
        return escaped;
    }
    let mut quoted = String::with_capacity(escaped.len() + 2);
    quoted.push('"');
    for c in escaped.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\t' => quoted.push_str("\\t"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

fn exec_start(service: &Service, args: &[String]) -> String {
    std::iter::once(service.install_path.clone())
        .chain(args.iter().map(|a| systemd_quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `Environment=` lines. systemd expands specifiers (`%`) there but not `$`
/// (systemd.exec(5)), so only `%` is doubled: the service sees the value as written.
fn environment_lines(service: &Service) -> String {
    service
        .environment
        .iter()
        .map(|(name, value)| {
            let escaped = format!("{name}={value}").replace('%', "%%");
            format!("Environment={}", quote_escaped(escaped))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where a package with secrets installs its `require-secrets` check.
pub fn require_secrets_path(service: &Service) -> String {
    format!("/usr/lib/{}/require-secrets", service.deb_name)
}

/// The units' secrets (docs/ARCHITECTURE.md, "Servers"): systemd reads the file as
/// root before it drops to `User=` (`-`: a missing file is the check's to report,
/// by name), and the check fails the start naming each secret that is not set.
/// Names, paths and the package name are validated plain words.
fn secrets_unit_lines(service: &Service) -> String {
    if service.secrets.is_empty() {
        return String::new();
    }
    format!(
        "# Secrets, outside the package: {file} on the server (0600 root:root).\n\
         EnvironmentFile=-{file}\n\
         ExecStartPre={check} {names}",
        file = service.secrets_file,
        check = require_secrets_path(service),
        names = service.secrets.join(" "),
    )
}

/// The postinst's lines that create the secrets file: empty, root's only, and only
/// when it is missing, so an upgrade never touches what the server holds.
fn create_secrets_file(service: &Service) -> String {
    if service.secrets.is_empty() {
        return String::new();
    }
    let file = crate::shell::quote(&service.secrets_file);
    let dir = Path::new(&service.secrets_file)
        .parent()
        .map(|p| crate::shell::quote(&p.to_string_lossy()))
        .unwrap_or_default();
    format!(
        "# The secrets of the units' EnvironmentFile=: no package ships the file, so it\n\
         # is created empty, for root only, when missing, and never overwritten.\n\
         if [ ! -e {file} ]; then\n    \
             mkdir -p {dir}\n    \
             install -m 0600 -o root -g root /dev/null {file}\n\
         fi"
    )
}

fn sysusers_lines(service: &Service) -> String {
    let gecos = format!("\"{} service user\"", service.user);
    if service.user == service.group {
        format!(
            "u {} - {gecos} /nonexistent /usr/sbin/nologin",
            service.user
        )
    } else {
        format!(
            "g {group} -\nu {user} -:{group} {gecos} /nonexistent /usr/sbin/nologin",
            user = service.user,
            group = service.group
        )
    }
}

fn rendered(
    template: Template,
    name: impl Into<String>,
    destination: Placement,
    vars: &BTreeMap<&str, String>,
) -> Result<RenderedFile, RenderError> {
    Ok(RenderedFile {
        name: name.into(),
        destination,
        contents: fill(&template, vars)?,
        origin: Origin::Template(template.name),
    })
}

fn base_vars(service: &Service) -> BTreeMap<&'static str, String> {
    let mut vars = BTreeMap::new();
    vars.insert("package", service.deb_name.clone());
    vars.insert("version", service.version.to_string());
    vars.insert("upstream_version", service.version.upstream.clone());
    vars.insert("user", service.user.clone());
    vars.insert("group", service.group.clone());
    vars.insert("state_directory", service.state_directory.clone());
    vars.insert("jobs_disabled_flag", service.jobs_disabled_flag.clone());
    vars.insert(
        "documentation",
        service
            .documentation
            .as_ref()
            .map(|url| format!("Documentation={url}"))
            .unwrap_or_default(),
    );
    vars.insert("environment", environment_lines(service));
    vars.insert("secrets", secrets_unit_lines(service));
    vars.insert("secrets_file", service.secrets_file.clone());
    vars.insert(
        "secrets_file_quoted",
        crate::shell::quote(&service.secrets_file),
    );
    vars
}

/// Renders every file of the service, before overrides.
pub fn render_service(
    service: &Service,
    context: &RenderContext,
) -> Result<Vec<RenderedFile>, RenderError> {
    let vars = base_vars(service);
    let hardening = fill(&HARDENING, &vars)?.trim_end().to_owned();
    let unit_dir = "/usr/lib/systemd/system";
    let mut files = Vec::new();
    // A unit file: installed below /usr/lib/systemd/system, with the unit's own
    // description, command line and the shared hardening.
    let unit_file = |template: Template,
                     unit: &str,
                     description: &str,
                     args: &[String],
                     extra: &[(&'static str, String)]|
     -> Result<RenderedFile, RenderError> {
        let mut v = vars.clone();
        v.insert("unit", unit.to_owned());
        v.insert("description", description.to_owned());
        v.insert("exec_start", exec_start(service, args));
        v.insert("hardening", hardening.clone());
        v.extend(extra.iter().cloned());
        rendered(
            template,
            unit,
            Placement::Installed {
                path: format!("{unit_dir}/{unit}"),
                mode: 0o644,
            },
            &v,
        )
    };
    // What the maintainer scripts do with the units: enable, start (sockets, never
    // restarted), start or restart, and stop (in this order).
    let mut lifecycle = UnitLifecycle::default();
    match &service.kind {
        ServiceKind::Daemon {
            args,
            listen,
            notify,
            ..
        } => {
            let unit = format!("{}.service", service.deb_name);
            let socket = format!("{}.socket", service.deb_name);
            let socket_dependency = if listen.is_empty() {
                String::new()
            } else {
                // Requires=: stopping the socket stops the service, but restarting the
                // service leaves the socket, and the connections waiting in it, alone.
                format!("Requires={socket}\nAfter={socket}")
            };
            let service_type = if *notify { "notify" } else { "simple" };
            files.push(unit_file(
                DAEMON_SERVICE,
                &unit,
                &service.description,
                args,
                &[
                    ("socket_dependency", socket_dependency),
                    ("service_type", service_type.to_owned()),
                ],
            )?);
            if !listen.is_empty() {
                files.push(unit_file(
                    DAEMON_SOCKET,
                    &socket,
                    &service.description,
                    args,
                    &[
                        ("service", unit.clone()),
                        ("listen_streams", listen_streams(listen)),
                    ],
                )?);
                lifecycle.enable.push(socket.clone());
                lifecycle.start.push(socket.clone());
                // The socket first, so no connection starts the service again.
                lifecycle.stop.push(socket);
            }
            lifecycle.enable.push(unit.clone());
            lifecycle.restart.push(unit.clone());
            lifecycle.stop.push(unit);
        }
        ServiceKind::Jobs { jobs } => {
            let mut timers = Vec::new();
            let mut services = Vec::new();
            for job in jobs {
                let base = service.job_unit_base(job);
                let service_unit = format!("{base}.service");
                let timer_unit = format!("{base}.timer");
                let job_vars = [
                    ("service", service_unit.clone()),
                    ("timer", timer_unit.clone()),
                    ("schedule", job.schedule.clone()),
                    ("randomized_delay", job.randomized_delay.clone()),
                ];
                for (template, unit) in [(JOB_SERVICE, &service_unit), (JOB_TIMER, &timer_unit)] {
                    files.push(unit_file(
                        template,
                        unit,
                        &job.description,
                        &job.args,
                        &job_vars,
                    )?);
                }
                timers.push(timer_unit);
                services.push(service_unit);
            }
            // Stop the timers first so they cannot start a job that is being stopped.
            lifecycle.stop = timers.iter().chain(services.iter()).cloned().collect();
            lifecycle.restart.clone_from(&timers);
            lifecycle.enable = timers;
        }
    }

    let mut v = vars.clone();
    v.insert("sysusers", sysusers_lines(service));
    files.push(rendered(
        SYSUSERS,
        format!("{}.sysusers", service.deb_name),
        Placement::Installed {
            path: format!("/usr/lib/sysusers.d/{}.conf", service.deb_name),
            mode: 0o644,
        },
        &v,
    )?);

    // Unit names are validated to contain no shell metacharacters.
    v.insert("enable_units", lifecycle.enable.join(" "));
    v.insert("socket_units", lifecycle.start.join(" "));
    v.insert("restart_units", lifecycle.restart.join(" "));
    v.insert("stop_units", lifecycle.stop.join(" "));
    let gate = health_gate(service, &v)?;
    v.insert("health_gate_function", gate.function);
    v.insert("health_gate_before", gate.before);
    v.insert("health_gate_call", gate.call);
    let remove_parent = match Path::new(&service.state_directory).parent() {
        Some(parent) if !parent.as_os_str().is_empty() => format!(
            "rmdir --ignore-fail-on-non-empty /var/lib/{} 2>/dev/null || true",
            parent.display()
        ),
        _ => String::new(),
    };
    v.insert("remove_state_parent", remove_parent);
    v.insert("create_secrets_file", create_secrets_file(service));
    v.insert(
        "remove_secrets_file",
        if service.secrets.is_empty() {
            String::new()
        } else {
            let file = crate::shell::quote(&service.secrets_file);
            let dir = Path::new(&service.secrets_file)
                .parent()
                .map(|p| crate::shell::quote(&p.to_string_lossy()))
                .unwrap_or_default();
            format!(
                "# The server's secrets, which no package ships.\n\
                 rm -f {file}\n\
                 rmdir --ignore-fail-on-non-empty {dir} 2>/dev/null || true"
            )
        },
    );
    for template in [POSTINST, PRERM, POSTRM] {
        files.push(rendered(
            template,
            template.name.to_owned(),
            Placement::Control,
            &v,
        )?);
    }

    files.push(rendered(
        LINTIAN_OVERRIDES,
        "lintian-overrides".to_owned(),
        Placement::Installed {
            path: format!("/usr/share/lintian/overrides/{}", service.deb_name),
            mode: 0o644,
        },
        &v,
    )?);

    files.extend(monitoring_check(service, &vars)?);

    if !service.secrets.is_empty() {
        files.push(rendered(
            REQUIRE_SECRETS,
            "require-secrets",
            Placement::Installed {
                path: require_secrets_path(service),
                mode: 0o755,
            },
            &vars,
        )?);
    }

    v.insert("maintainer", service.maintainer.clone());
    v.insert(
        "date",
        crate::repo::syntax::rfc2822(context.timestamp, "+0000"),
    );
    files.push(rendered(
        CHANGELOG,
        "changelog".to_owned(),
        Placement::Changelog,
        &v,
    )?);
    Ok(files)
}

/// The units a package's maintainer scripts handle, by what they do with them.
#[derive(Debug, Default)]
struct UnitLifecycle {
    /// Enabled on install (unless the admin disabled them), masked on removal.
    enable: Vec<String>,
    /// Listening sockets: started, never restarted.
    start: Vec<String>,
    /// Started on a fresh install, restarted on an upgrade.
    restart: Vec<String>,
    /// Stopped on removal, in this order.
    stop: Vec<String>,
}

/// `ListenStream=` lines of a socket unit: IPv6 addresses in brackets, as systemd
/// and `SocketAddr` both write them.
fn listen_streams(listen: &[SocketAddr]) -> String {
    listen
        .iter()
        .map(|address| format!("ListenStream={address}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The postinst's health gate (docs/ARCHITECTURE.md, "Restarts and the health gate").
#[derive(Debug, Default)]
struct HealthGate {
    /// The shell function that waits for the health URL.
    function: String,
    /// Before the restart: whether the old version ran, since only a server that was
    /// serving is one the upgrade could leave unhealthy.
    before: String,
    /// After the restart: the call.
    call: String,
}

/// The gate's three parts, all empty for a service without a health URL or with the
/// gate turned off.
fn health_gate(
    service: &Service,
    vars: &BTreeMap<&'static str, String>,
) -> Result<HealthGate, RenderError> {
    let ServiceKind::Daemon {
        health_url: Some(url),
        health_timeout,
        ..
    } = &service.kind
    else {
        return Ok(HealthGate::default());
    };
    if *health_timeout == 0 {
        return Ok(HealthGate::default());
    }
    let unit = format!("{}.service", service.deb_name);
    let mut v = vars.clone();
    v.insert("service", unit.clone());
    v.insert("health_timeout", health_timeout.to_string());
    v.insert("health_url_quoted", crate::shell::quote(url));
    let function = fill(&HEALTH_GATE, &v)?.trim_end().to_owned();
    // Upgrades and downgrades ($action) of a daemon that was running: a first
    // install, or a server whose daemon was down already (say, waiting for its
    // secrets), is not the upgrade's to judge.
    let before = format!(
        "was_running=no\n\
         if systemctl --quiet is-active {unit}; then\n    \
         was_running=yes\n\
         fi"
    );
    let call = format!(
        "if [ \"$action\" = restart ] && [ \"$was_running\" = yes ]; then\n    \
         health_gate\n\
         elif [ \"$action\" = restart ]; then\n    \
         echo \"{package}: {unit} was not running before the upgrade, so its health is not checked\" >&2\n\
         fi",
        package = service.deb_name,
    );
    Ok(HealthGate {
        function,
        before,
        call,
    })
}

/// The monitoring check, `check_<package>` in the plugin folder, and its NRPE command
/// definition, a conffile (docs/ARCHITECTURE.md, "Monitoring checks").
fn monitoring_check(
    service: &Service,
    vars: &BTreeMap<&'static str, String>,
) -> Result<[RenderedFile; 2], RenderError> {
    let mut v = vars.clone();
    v.insert("check_label", service.deb_name.to_ascii_uppercase());
    let body = match &service.kind {
        ServiceKind::Daemon { health_url, .. } => {
            let unit = format!("{}.service", service.deb_name);
            let summary = match health_url {
                Some(_) => format!("{unit} is active and its health URL answers 200"),
                None => format!("{unit} is active"),
            };
            v.extend([
                (
                    "check_settings",
                    format!(
                        "unit={unit}\nhealth_url={}",
                        crate::shell::quote(health_url.as_deref().unwrap_or_default())
                    ),
                ),
                ("check_summary", summary),
                ("usage_options", " [-u URL]".to_owned()),
                (
                    "usage_lines",
                    " \\\n\"  -u URL      the health URL to ask (default: ${health_url:-none})\""
                        .to_owned(),
                ),
                ("getopts", "u:t:hV".to_owned()),
                ("getopts_cases", "\nu) health_url=$OPTARG ;;".to_owned()),
            ]);
            CHECK_DAEMON
        }
        ServiceKind::Jobs { jobs } => {
            let job_checks = jobs
                .iter()
                .map(|job| {
                    // Validated in config, so the fallback never applies.
                    let delay = parse_timespan(&job.randomized_delay).unwrap_or_default();
                    format!(
                        "check_job {} {} {delay}",
                        service.job_unit_base(job),
                        crate::shell::quote(&job.schedule)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            v.extend([
                (
                    "check_settings",
                    format!("flag={}", crate::shell::quote(&service.jobs_disabled_flag)),
                ),
                (
                    "check_summary",
                    "each timer is enabled, and its job's last run succeeded and is not late"
                        .to_owned(),
                ),
                ("usage_options", String::new()),
                ("usage_lines", String::new()),
                ("getopts", "t:hV".to_owned()),
                ("getopts_cases", String::new()),
                ("job_checks", job_checks),
            ]);
            CHECK_JOBS
        }
    };
    let common = fill(&CHECK_COMMON, &v)?;
    v.insert("check_common", common.trim_end().to_owned());
    let check_name = format!("check_{}", service.deb_name);
    Ok([
        rendered(
            body,
            check_name.clone(),
            Placement::Installed {
                path: format!("{PLUGIN_DIR}/{check_name}"),
                mode: 0o755,
            },
            &v,
        )?,
        rendered(
            NRPE_CFG,
            format!("{}.nrpe.cfg", service.deb_name),
            Placement::Installed {
                path: format!("{NRPE_DIR}/{}.cfg", service.deb_name),
                mode: 0o644,
            },
            &v,
        )?,
    ])
}

/// Replaces rendered files with same-named files from `overrides_dir` (the crate's
/// debian/ folder). Returns the names of files in that folder that match nothing, so
/// the caller can warn about a typo instead of silently ignoring it.
pub fn apply_overrides(
    files: &mut [RenderedFile],
    overrides_dir: &Path,
) -> Result<Vec<String>, RenderError> {
    let entries = match std::fs::read_dir(overrides_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RenderError::ReadOverride {
                path: overrides_dir.to_owned(),
                cause: source,
            })
        }
    };
    let mut unmatched = Vec::new();
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    for path in paths {
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        let Some(file) = files.iter_mut().find(|f| f.name == name) else {
            unmatched.push(name);
            continue;
        };
        let bytes = std::fs::read(&path).map_err(|source| RenderError::ReadOverride {
            path: path.clone(),
            cause: source,
        })?;
        file.contents = String::from_utf8(bytes)
            .map_err(|_| RenderError::OverrideNotText { path: path.clone() })?;
        file.origin = Origin::Override(path);
    }
    Ok(unmatched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_replaces_and_drops_empty_placeholder_lines() {
        let t = Template {
            name: "t",
            text: "a={{a}}\n{{empty}}\n  {{multi}}\nend\n",
        };
        let vars = BTreeMap::from([
            ("a", "1".to_owned()),
            ("empty", String::new()),
            ("multi", "x\ny".to_owned()),
        ]);
        assert_eq!(fill(&t, &vars).unwrap(), "a=1\n  x\n  y\nend\n");
    }

    #[test]
    fn fill_reports_unknown_placeholders() {
        let t = Template {
            name: "t",
            text: "{{nope}}",
        };
        let error = fill(&t, &BTreeMap::new()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "template t: placeholder {{nope}} has no value"
        );
        let t = Template {
            name: "t",
            text: "{{open",
        };
        assert!(matches!(
            fill(&t, &BTreeMap::new()),
            Err(RenderError::Unterminated { .. })
        ));
    }

    #[test]
    fn quoting_for_exec_start() {
        assert_eq!(systemd_quote("--config"), "--config");
        assert_eq!(
            systemd_quote("/etc/speedy/app.conf"),
            "/etc/speedy/app.conf"
        );
        assert_eq!(systemd_quote("a b"), "\"a b\"");
        assert_eq!(systemd_quote("100%"), "\"100%%\"");
        assert_eq!(systemd_quote("$HOME"), "\"$$HOME\"");
        assert_eq!(systemd_quote("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(systemd_quote(""), "\"\"");
    }

    /// The fixture's app as config resolves it, with an environment that needs escaping.
    fn app_service() -> Service {
        Service {
            package: "speedy-app".into(),
            deb_name: "speedy-app".into(),
            cargo_version: "1.4.0".into(),
            manifest_path: PathBuf::from("/ws/speedy-app/Cargo.toml"),
            crate_dir: PathBuf::from("/ws/speedy-app"),
            version: crate::repo::syntax::DebianVersion::parse("1.4.0-1").unwrap(),
            description: "Speedy web application server".into(),
            kind: ServiceKind::Daemon {
                args: Vec::new(),
                health_url: None,
                health_timeout: 30,
                listen: Vec::new(),
                notify: false,
            },
            binary: "speedy-app".into(),
            binary_source: PathBuf::from("/ws/speedy-app/src/main.rs"),
            install_path: "/usr/libexec/speedy/speedy-app".into(),
            user: "speedy".into(),
            group: "speedy".into(),
            state_directory: "speedy/app".into(),
            // systemd does not expand `$` in Environment=: `$$5` would reach the service.
            environment: BTreeMap::from([
                ("PRICE".to_owned(), "$5 for 100%".to_owned()),
                ("PLAIN".to_owned(), "info".to_owned()),
                ("QUOTES".to_owned(), "say \"hi\" \\ ${HOME}".to_owned()),
            ]),
            secrets: Vec::new(),
            secrets_file: "/etc/speedy/speedy-app.secrets".into(),
            config_files: Vec::new(),
            maintainer: "Speedy Team <ops@speedy.example>".into(),
            documentation: None,
            jobs_disabled_flag: "/etc/speedy/jobs-disabled".into(),
            deb_metadata: None,
            overrides_dir: PathBuf::from("/ws/speedy-app/debian"),
            fleet: Default::default(),
        }
    }

    #[test]
    fn quoting_for_environment() {
        assert_eq!(
            environment_lines(&app_service()),
            "Environment=PLAIN=info\n\
             Environment=\"PRICE=$5 for 100%%\"\n\
             Environment=\"QUOTES=say \\\"hi\\\" \\\\ ${HOME}\""
        );
    }

    fn rendered_file<'a>(files: &'a [RenderedFile], name: &str) -> &'a RenderedFile {
        files
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} not rendered"))
    }

    fn render(service: &Service) -> Vec<RenderedFile> {
        render_service(service, &RenderContext { timestamp: 0 }).unwrap()
    }

    /// Every line is in the rendered text, which has no placeholder left.
    fn assert_has_lines(text: &str, lines: &[&str]) {
        for line in lines {
            assert!(
                text.lines().any(|l| l == *line),
                "{line:?} missing:\n{text}"
            );
        }
        assert!(!text.contains("{{"), "{text}");
    }

    #[test]
    fn a_daemon_check_asks_systemd_and_its_health_url() {
        let mut service = app_service();
        let files = render(&service);
        let check = rendered_file(&files, "check_speedy-app");
        assert_eq!(
            check.destination,
            Placement::Installed {
                path: "/usr/lib/nagios/plugins/check_speedy-app".into(),
                mode: 0o755
            }
        );
        assert_eq!(check.origin, Origin::Template("check-daemon"));
        assert!(
            check.contents.starts_with("#!/bin/sh\n"),
            "{}",
            check.contents
        );
        assert_has_lines(
            &check.contents,
            &[
                "label=\"SPEEDY-APP\"",
                "unit=speedy-app.service",
                "health_url=''",
                "while getopts 'u:t:hV' option; do",
                "        u) health_url=$OPTARG ;;",
            ],
        );
        let nrpe = rendered_file(&files, "speedy-app.nrpe.cfg");
        assert_eq!(
            nrpe.destination,
            Placement::Installed {
                path: "/etc/nagios/nrpe.d/speedy-app.cfg".into(),
                mode: 0o644
            }
        );
        assert!(nrpe
            .contents
            .ends_with("\ncommand[check_speedy-app]=/usr/lib/nagios/plugins/check_speedy-app\n"));

        service.kind = ServiceKind::Daemon {
            args: Vec::new(),
            health_url: Some("http://127.0.0.1:8080/healthz?x=1&y=2".into()),
            health_timeout: 30,
            listen: Vec::new(),
            notify: false,
        };
        let files = render(&service);
        let check = &rendered_file(&files, "check_speedy-app").contents;
        assert!(
            check
                .lines()
                .any(|l| l == "health_url='http://127.0.0.1:8080/healthz?x=1&y=2'"),
            "{check}"
        );
    }

    #[test]
    fn a_jobs_check_knows_each_timer_schedule_and_delay() {
        let mut service = app_service();
        service.deb_name = "speedy-jobs".into();
        service.jobs_disabled_flag = "/etc/speedy/jobs.disabled".into();
        let job = |name: &str, schedule: &str, delay: &str| crate::config::Job {
            name: name.into(),
            schedule: schedule.into(),
            args: Vec::new(),
            description: name.into(),
            randomized_delay: delay.into(),
        };
        service.kind = ServiceKind::Jobs {
            jobs: vec![
                job("trending", "*:0/15", "5min"),
                job("weekly", "Mon..Fri 09:00", "1h 30min"),
            ],
        };
        let files = render(&service);
        let check = rendered_file(&files, "check_speedy-jobs");
        assert_eq!(check.origin, Origin::Template("check-jobs"));
        assert_has_lines(
            &check.contents,
            &[
                "label=\"SPEEDY-JOBS\"",
                "flag=/etc/speedy/jobs.disabled",
                "while getopts 't:hV' option; do",
                "check_job speedy-jobs-trending '*:0/15' 300",
                "check_job speedy-jobs-weekly 'Mon..Fri 09:00' 5400",
            ],
        );
        assert!(!check.contents.contains("health_url"), "{}", check.contents);
    }

    #[test]
    fn secrets_come_from_a_file_the_package_creates_and_a_check_requires() {
        let mut service = app_service();
        let files = render(&service);
        assert!(files.iter().all(|f| f.name != "require-secrets"));
        for name in ["speedy-app.service", "postinst", "postrm"] {
            let text = &rendered_file(&files, name).contents;
            assert!(!text.contains("secrets"), "{name}:\n{text}");
        }

        service.secrets = vec!["DATABASE_URL".into(), "API_TOKEN".into()];
        let files = render(&service);
        assert_has_lines(
            &rendered_file(&files, "speedy-app.service").contents,
            &[
                "EnvironmentFile=-/etc/speedy/speedy-app.secrets",
                "ExecStartPre=/usr/lib/speedy-app/require-secrets DATABASE_URL API_TOKEN",
            ],
        );
        let check = rendered_file(&files, "require-secrets");
        assert_eq!(
            check.destination,
            Placement::Installed {
                path: "/usr/lib/speedy-app/require-secrets".into(),
                mode: 0o755
            }
        );
        assert_has_lines(
            &check.contents,
            &["package=speedy-app", "file=/etc/speedy/speedy-app.secrets"],
        );
        assert_has_lines(
            &rendered_file(&files, "postinst").contents,
            &[
                "        if [ ! -e /etc/speedy/speedy-app.secrets ]; then",
                "            mkdir -p /etc/speedy",
                "            install -m 0600 -o root -g root /dev/null /etc/speedy/speedy-app.secrets",
                "        fi",
            ],
        );
        assert_has_lines(
            &rendered_file(&files, "postrm").contents,
            &[
                "    rm -f /etc/speedy/speedy-app.secrets",
                "    rmdir --ignore-fail-on-non-empty /etc/speedy 2>/dev/null || true",
            ],
        );

        // Each job's service reads the same file and runs the same check.
        service.kind = ServiceKind::Jobs {
            jobs: vec![crate::config::Job {
                name: "nightly".into(),
                schedule: "daily".into(),
                args: Vec::new(),
                description: "nightly".into(),
                randomized_delay: "5min".into(),
            }],
        };
        let files = render(&service);
        assert_has_lines(
            &rendered_file(&files, "speedy-app-nightly.service").contents,
            &[
                "EnvironmentFile=-/etc/speedy/speedy-app.secrets",
                "ExecStartPre=/usr/lib/speedy-app/require-secrets DATABASE_URL API_TOKEN",
            ],
        );
        assert!(!rendered_file(&files, "speedy-app-nightly.timer")
            .contents
            .contains("secrets"));
    }

    #[test]
    fn a_daemon_that_listens_ships_a_socket_its_service_requires() {
        let mut service = app_service();
        let files = render(&service);
        assert!(files.iter().all(|f| !f.name.ends_with(".socket")));
        let unit = &rendered_file(&files, "speedy-app.service").contents;
        assert!(!unit.contains("socket"), "{unit}");
        assert_has_lines(unit, &["Type=simple"]);
        assert_has_lines(
            &rendered_file(&files, "postinst").contents,
            &["sockets=\"\"", "restart_units=\"speedy-app.service\""],
        );

        service.kind = ServiceKind::Daemon {
            args: Vec::new(),
            health_url: None,
            health_timeout: 30,
            listen: vec!["0.0.0.0:80".parse().unwrap(), "[::]:80".parse().unwrap()],
            notify: true,
        };
        let files = render(&service);
        let socket = rendered_file(&files, "speedy-app.socket");
        assert_eq!(
            socket.destination,
            Placement::Installed {
                path: "/usr/lib/systemd/system/speedy-app.socket".into(),
                mode: 0o644
            }
        );
        assert_has_lines(
            &socket.contents,
            &[
                "ListenStream=0.0.0.0:80",
                "ListenStream=[::]:80",
                "Accept=no",
                "Service=speedy-app.service",
                "BindIPv6Only=ipv6-only",
                "WantedBy=sockets.target",
            ],
        );
        assert_has_lines(
            &rendered_file(&files, "speedy-app.service").contents,
            &[
                "Requires=speedy-app.socket",
                "After=speedy-app.socket",
                "Type=notify",
            ],
        );
        assert_has_lines(
            &rendered_file(&files, "postinst").contents,
            &[
                "units=\"speedy-app.socket speedy-app.service\"",
                "sockets=\"speedy-app.socket\"",
                "restart_units=\"speedy-app.service\"",
            ],
        );
        assert_has_lines(
            &rendered_file(&files, "prerm").contents,
            &["stop_units=\"speedy-app.socket speedy-app.service\""],
        );
        assert_has_lines(
            &rendered_file(&files, "postrm").contents,
            &["units=\"speedy-app.socket speedy-app.service\""],
        );
    }

    #[test]
    fn the_health_gate_waits_for_the_url_after_an_upgrade_only_when_asked() {
        let mut service = app_service();
        let postinst = rendered_file(&render(&service), "postinst")
            .contents
            .clone();
        let postinst = &postinst;
        assert!(!postinst.contains("health_gate"), "{postinst}");

        let with_url = |timeout: u64| ServiceKind::Daemon {
            args: Vec::new(),
            health_url: Some("http://127.0.0.1:8080/healthz?a=1&b=$x".into()),
            health_timeout: timeout,
            listen: Vec::new(),
            notify: false,
        };
        service.kind = with_url(0);
        let postinst = rendered_file(&render(&service), "postinst")
            .contents
            .clone();
        let postinst = &postinst;
        assert!(!postinst.contains("health_gate"), "{postinst}");

        service.kind = with_url(45);
        let postinst = rendered_file(&render(&service), "postinst")
            .contents
            .clone();
        let postinst = &postinst;
        assert_has_lines(
            postinst,
            &[
                "health_gate() {",
                "    health_url='http://127.0.0.1:8080/healthz?a=1&b=$x'",
                "    deadline=$(($(date +%s) + 45))",
                "        if systemctl --quiet is-active speedy-app.service; then",
                "            was_running=yes",
                "        if [ \"$action\" = restart ] && [ \"$was_running\" = yes ]; then",
                "            health_gate",
                "            echo \"speedy-app: speedy-app.service was not running before the upgrade, so its health is not checked\" >&2",
            ],
        );
        // Whether it ran is asked before the restart, the gate runs after it.
        let before = postinst.find("was_running=no").unwrap();
        let restart = postinst.find("\"$action\" \"$unit\"").unwrap();
        let gate = postinst.find("            health_gate\n").unwrap();
        assert!(before < restart && restart < gate, "{postinst}");
    }

    #[test]
    fn every_template_ends_with_a_newline() {
        for t in ALL_TEMPLATES {
            assert!(t.text.ends_with('\n'), "{}", t.name);
        }
    }
}
