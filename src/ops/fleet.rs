//! `fleet db`, `fleet maintenance` and `fleet status`: settings every server of a
//! suite follows within seconds, carried by the fleet package through the signed
//! repository (docs/ARCHITECTURE.md, "Fleet switches"). A change is a publish of a
//! new version of that package, so it is recorded in the suite's history and undone by
//! `rollback` like any other change.

use super::publish::SuiteWriter;
use super::{open_store, CommandError, PublishSummary, ReadOptions, RepoSettings, WriteOptions};
use crate::config::{resolve_role, ConfigError, ServiceKind};
use crate::keys::KeyPurpose;
use crate::listener::Listener;
use crate::package::fleet::{self, FleetPackage, FleetSettings, Since, EVERY_ROLE};
use crate::publish::{self, PublishError};
use crate::repo::index::PackageEntry;
use crate::workspace::Workspace;
use std::net::IpAddr;

/// One fleet switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetChange {
    /// Points `db` at this address.
    Db(IpAddr),
    /// Turns the maintenance page on (with a message) or off, on the servers of one
    /// role or, with `None`, of every role.
    Maintenance {
        on: bool,
        role: Option<String>,
        message: Option<String>,
    },
}

/// `write.suite` is the suite whose servers are switched (required by the CLI).
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub write: WriteOptions,
    pub change: FleetChange,
}

/// What a fleet switch did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetReport {
    pub suite: String,
    /// The settings servers follow now.
    pub settings: FleetSettings,
    /// `None`: the suite's servers had these settings already; nothing was published.
    pub published: Option<PublishSummary>,
}

/// Switches every server of the suite (or of one role).
pub fn fleet(options: &FleetOptions, listener: &dyn Listener) -> Result<FleetReport, CommandError> {
    let mut write = options.write.clone();
    // Never phased: a switch reaches every server of the suite or it is no switch.
    write.phased = None;
    let writer = SuiteWriter::open(&write, KeyPurpose::Publish, listener)?;
    let suite = writer.suite();
    check_configured_suite(&writer.settings, &suite)?;
    let workspace = fleet_workspace(&writer.settings)?;
    // Bad input changes nothing: the role and the message are checked before the
    // repository is read.
    let change = match &options.change {
        FleetChange::Maintenance { on, role, message } => {
            if let Some(role) = role {
                check_role(workspace, role)?;
            }
            let message = match message {
                Some(_) if !on => return Err(CommandError::MessageWithOff),
                Some(message) => Some(fleet::check_message(message)?),
                None => None,
            };
            FleetChange::Maintenance {
                on: *on,
                role: role.clone(),
                message,
            }
        }
        db => db.clone(),
    };
    let package = fleet_package(&writer.settings, workspace)?;
    let public_key = writer.keys.public_key();
    let current = current_fleet(writer.store.as_ref(), &public_key, &suite, &package.name)?;
    let (previous_version, settings) = match &current {
        Some((entry, settings)) => (Some(entry.version.as_str()), settings.clone()),
        None => (None, FleetSettings::default()),
    };
    let now = crate::clock::now();
    let (next, command) = switched(&settings, &change, now);
    if next == settings {
        listener.info(&format!(
            "The servers of {suite} follow these settings already; nothing to publish"
        ));
        return Ok(FleetReport {
            suite,
            settings,
            published: None,
        });
    }
    let version = package.version(&next, now, previous_version);
    let sign = writer
        .settings
        .signing
        .sign_debs
        .then_some(writer.keys.current());
    let built = package.build(&next, &version, now, &fleet_dir(workspace), sign)?;
    let incoming = publish::read_debs(std::slice::from_ref(&built.path))?;
    listener.info(&format!("Switching the servers of {suite}: {command}"));
    let summary = writer.add(&incoming, &command, listener)?;
    Ok(FleetReport {
        suite,
        settings: next,
        published: Some(summary),
    })
}

/// The settings after `change`, and the command as the history records it.
fn switched(current: &FleetSettings, change: &FleetChange, now: u64) -> (FleetSettings, String) {
    let mut next = current.clone();
    let command = match change {
        FleetChange::Db(address) => {
            if next.db.as_ref().map(|db| db.value) != Some(*address) {
                next.db = Some(Since {
                    value: *address,
                    since: now,
                });
            }
            format!("fleet db {address}")
        }
        FleetChange::Maintenance { on, role, message } => {
            let key = role.clone().unwrap_or_else(|| EVERY_ROLE.to_owned());
            let scope = match role {
                Some(role) => format!(" --role {role}"),
                None => String::new(),
            };
            if *on {
                let message = message.clone().unwrap_or_default();
                if next.maintenance.get(&key).map(|m| &m.value) != Some(&message) {
                    next.maintenance.insert(
                        key,
                        Since {
                            value: message.clone(),
                            since: now,
                        },
                    );
                }
                match message.is_empty() {
                    true => format!("fleet maintenance on{scope}"),
                    false => format!("fleet maintenance on{scope}: {message}"),
                }
            } else {
                match role {
                    // Off for the whole fleet: no role stays in maintenance.
                    None => next.maintenance.clear(),
                    Some(_) => {
                        next.maintenance.remove(&key);
                    }
                }
                format!("fleet maintenance off{scope}")
            }
        }
    };
    (next, command)
}

#[derive(Debug, Clone)]
pub struct FleetStatusOptions {
    pub read: ReadOptions,
    pub suite: String,
}

/// The fleet settings of a suite, as its servers follow them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetStatus {
    pub suite: String,
    pub package: String,
    /// The fleet package's version in the suite; `None`: no switch yet.
    pub version: Option<String>,
    pub settings: FleetSettings,
    /// The roles of the workspace, each with its maintenance message when on.
    pub roles: Vec<RoleMaintenance>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RoleMaintenance {
    pub role: String,
    pub maintenance: Option<Since<String>>,
}

/// `fleet status`: read only.
pub fn fleet_status(
    options: &FleetStatusOptions,
    listener: &dyn Listener,
) -> Result<FleetStatus, CommandError> {
    let settings = options.read.repo.settings()?;
    check_configured_suite(&settings, &options.suite)?;
    let workspace = fleet_workspace(&settings)?;
    let package = fleet_package(&settings, workspace)?;
    let key = options.read.public_key(&settings, listener)?;
    let store = open_store(&settings.location, listener)?;
    let current = current_fleet(store.as_ref(), &key, &options.suite, &package.name)?;
    let (version, fleet_settings) = match current {
        Some((entry, settings)) => (Some(entry.version), settings),
        None => (None, FleetSettings::default()),
    };
    let roles = workspace
        .metadata
        .roles
        .iter()
        .flat_map(|roles| roles.keys())
        .map(|role| RoleMaintenance {
            role: role.clone(),
            maintenance: fleet_settings.maintenance_of(role).cloned(),
        })
        .collect();
    Ok(FleetStatus {
        suite: options.suite.clone(),
        package: package.name,
        version,
        settings: fleet_settings,
        roles,
    })
}

/// The newest fleet package of the suite and its settings, from the verified index.
fn current_fleet(
    store: &dyn crate::store::Store,
    key: &crate::sign::PublicKey,
    suite: &str,
    name: &str,
) -> Result<Option<(PackageEntry, FleetSettings)>, CommandError> {
    let Some(state) = publish::state::read_suite(store, key, suite)? else {
        return Ok(None);
    };
    let newest = state
        .packages
        .into_iter()
        .filter(|p| p.name == name)
        .max_by(|a, b| crate::repo::version::compare(&a.version, &b.version));
    let Some(entry) = newest else {
        return Ok(None);
    };
    let settings = FleetSettings::from_paragraph(&entry.paragraph, &entry.name, &entry.version)?;
    Ok(Some((entry, settings)))
}

fn fleet_workspace(settings: &RepoSettings) -> Result<&Workspace, CommandError> {
    settings.workspace.as_ref().ok_or_else(|| {
        CommandError::Config(ConfigError::new(
            std::path::Path::new("Cargo.toml"),
            "workspace.metadata.speedy.roles",
            "fleet needs the workspace that declares the services and roles: pass --manifest-path",
        ))
    })
}

fn check_role(workspace: &Workspace, role: &str) -> Result<(), CommandError> {
    let services = workspace.services(&[], &|_| None)?;
    let jobs_packages: Vec<String> = services
        .iter()
        .filter(|s| matches!(s.kind, ServiceKind::Jobs { .. }))
        .map(|s| s.deb_name.clone())
        .collect();
    resolve_role(
        &workspace.metadata,
        &workspace.root_manifest,
        role,
        &jobs_packages,
    )?;
    Ok(())
}

fn check_configured_suite(settings: &RepoSettings, suite: &str) -> Result<(), CommandError> {
    if settings.config.suites.iter().any(|s| s == suite) {
        Ok(())
    } else {
        Err(PublishError::UnknownSuite {
            suite: suite.to_owned(),
            configured: settings.config.suites.clone(),
        }
        .into())
    }
}

/// The fleet package of this repository for the workspace's services.
fn fleet_package(
    settings: &RepoSettings,
    workspace: &Workspace,
) -> Result<FleetPackage, CommandError> {
    let keyring = settings.keyring_package();
    let services = workspace.services(&[], &|_| None)?;
    Ok(FleetPackage::for_services(
        settings.fleet_package_name(),
        keyring.origin,
        keyring.maintainer,
        &services,
    ))
}

fn fleet_dir(workspace: &Workspace) -> std::path::PathBuf {
    workspace.target_dir.join("speedy").join("fleet")
}

/// How often the follower asks the repository: `OnCalendar=` of its timer. 20 s keeps
/// a switch within a minute of every server, at one conditional request per run.
pub const FOLLOW_CALENDAR: &str = "*:*:00/20";

/// The follower server-setup installs (docs/ARCHITECTURE.md, "Fleet switches"): a
/// script, its oneshot service (also run at boot before the role's daemons) and a
/// timer, as `{{name}}` values of the server-setup script.
pub(super) fn follower_vars(
    settings: &RepoSettings,
    sources_path: &str,
    role_packages: &[String],
) -> Result<Vec<(&'static str, String)>, crate::package::render::RenderError> {
    let quote = |value: &str| crate::shell::quote(value);
    let short = settings.config.short_name();
    let package = settings.fleet_package_name();
    let unit = format!("{package}-follow");
    let script_path = format!("/usr/local/sbin/{unit}");
    let script = crate::package::render::fill(
        &FOLLOW_TEMPLATE,
        &[
            (
                "apt_get",
                super::server_setup::APT_GET_FUNCTION.trim_end().to_owned(),
            ),
            ("unit", format!("{unit}.timer")),
            ("sources_path", quote(sources_path)),
            ("fleet_package", quote(&package)),
        ]
        .into_iter()
        .collect(),
    )?;
    let before: Vec<String> = role_packages
        .iter()
        .map(|p| format!("{p}.service"))
        .collect();
    let service = format!(
        "# cargo speedy server-setup: follow the fleet settings of the {short} repository.\n\
         [Unit]\n\
         Description=Follow the fleet settings of the {short} apt repository (cargo speedy fleet)\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         # At boot the settings of a switch made while this server was off arrive first.\n\
         Before={before}\n\n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={script_path}\n\
         TimeoutStartSec=90\n\n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        before = before.join(" "),
    );
    let timer = format!(
        "# cargo speedy server-setup: follow the fleet settings of the {short} repository.\n\
         [Unit]\n\
         Description=Follow the fleet settings of the {short} apt repository every 20 s\n\n\
         [Timer]\n\
         OnCalendar={FOLLOW_CALENDAR}\n\
         AccuracySec=1s\n\
         # Spread the fleet's requests a little.\n\
         RandomizedDelaySec=5\n\n\
         [Install]\n\
         WantedBy=timers.target\n"
    );
    Ok(vec![
        ("fleet_package", quote(&package)),
        (
            "fleet_settings_path",
            quote(&format!("/usr/share/{package}/settings")),
        ),
        ("fleet_role_file", quote(&fleet::role_file(&package))),
        (
            "fleet_initial_db_file",
            quote(&fleet::initial_db_file(&package)),
        ),
        ("follower_unit", quote(&unit)),
        ("follower_script_path", quote(&script_path)),
        ("follower_script", quote(&script)),
        (
            "follower_service_path",
            quote(&format!("/etc/systemd/system/{unit}.service")),
        ),
        ("follower_service", quote(&service)),
        (
            "follower_timer_path",
            quote(&format!("/etc/systemd/system/{unit}.timer")),
        ),
        ("follower_timer", quote(&timer)),
    ])
}

/// The follower script, filled like the other templates.
const FOLLOW_TEMPLATE: crate::package::render::Template = crate::package::render::Template {
    name: "fleet-follow.sh",
    text: include_str!("../../templates/fleet-follow.sh"),
};

#[cfg(test)]
mod tests {
    use super::*;

    fn maintenance(on: bool, role: Option<&str>, message: Option<&str>) -> FleetChange {
        FleetChange::Maintenance {
            on,
            role: role.map(str::to_owned),
            message: message.map(str::to_owned),
        }
    }

    #[test]
    fn switches_keep_what_they_do_not_change_and_since_when() {
        let empty = FleetSettings::default();
        let (db, command) = switched(&empty, &FleetChange::Db("127.0.0.7".parse().unwrap()), 10);
        assert_eq!(command, "fleet db 127.0.0.7");
        assert_eq!(db.db.as_ref().unwrap().since, 10);
        // The same address again: no change, so the same settings.
        let (again, _) = switched(&db, &FleetChange::Db("127.0.0.7".parse().unwrap()), 20);
        assert_eq!(again, db);
        let (web, command) = switched(
            &db,
            &maintenance(true, Some("web"), Some("Back at 14:00")),
            30,
        );
        assert_eq!(command, "fleet maintenance on --role web: Back at 14:00");
        assert_eq!(web.db, db.db);
        assert_eq!(web.maintenance_of("web").unwrap().value, "Back at 14:00");
        assert!(web.maintenance_of("worker").is_none());
        let (all, _) = switched(&web, &maintenance(true, None, None), 40);
        assert_eq!(all.maintenance_of("worker").unwrap().value, "");
        let (web_off, command) = switched(&all, &maintenance(false, Some("web"), None), 50);
        assert_eq!(command, "fleet maintenance off --role web");
        // Every role's entry still covers web.
        assert!(web_off.maintenance_of("web").is_some());
        let (off, command) = switched(&all, &maintenance(false, None, None), 60);
        assert_eq!(command, "fleet maintenance off");
        assert!(off.maintenance.is_empty());
        assert_eq!(off.db, db.db);
    }
}
