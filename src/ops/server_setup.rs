//! What a server needs to use the repository, and `server-setup`: one script (or
//! cloud-init user data) that makes a fresh Debian server join the fleet in a role
//! (docs/ARCHITECTURE.md, "Servers").
//!
//! The script is idempotent: every file is written only when its contents differ,
//! the keyring file only until the keyring package owns it (the package may carry
//! newer keys than the script), and apt installs only what is missing.

use super::{CommandError, RepoSettings, RepoTarget};
use crate::config::{resolve_role, ConfigError, Role, ServiceKind};
use crate::keys::KeyPurpose;
use crate::listener::Listener;
use std::net::IpAddr;

/// The files that make apt on a server use one suite of the repository, follow its
/// rollbacks, and upgrade from it unattended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerFiles {
    /// The keyring package's name.
    pub keyring_package: String,
    /// Where the keyring lives (the keyring package installs it there too).
    pub keyring_path: String,
    pub sources_path: String,
    /// The deb822 source, `Signed-By:` the keyring.
    pub sources: String,
    pub preferences_path: String,
    /// The pins that make servers follow a rollback.
    pub preferences: String,
    pub apt_conf_path: String,
    /// Lets `apt-get -y` and unattended-upgrades carry out those downgrades.
    pub apt_conf: String,
    pub unattended_path: String,
    /// unattended-upgrades: this repository's suite, and the daily runs switched on.
    pub unattended: String,
}

impl ServerFiles {
    pub fn new(settings: &RepoSettings, url: &str, suite: &str) -> Self {
        let short = settings.config.short_name();
        let keyring = settings.keyring_package();
        let keyring_path = keyring.install_path();
        ServerFiles {
            sources_path: format!("/etc/apt/sources.list.d/{short}.sources"),
            sources: super::sources_entry(url, suite, &keyring_path),
            preferences_path: format!("/etc/apt/preferences.d/{short}.pref"),
            preferences: super::rollback_preferences(&settings.config, &keyring.name),
            apt_conf_path: format!("/etc/apt/apt.conf.d/50{short}-rollback"),
            apt_conf: super::rollback_apt_conf(),
            unattended_path: format!("/etc/apt/apt.conf.d/52{short}-unattended-upgrades"),
            unattended: unattended_upgrades_conf(&settings.config.release.origin, suite),
            keyring_package: keyring.name,
            keyring_path,
        }
    }
}

/// unattended-upgrades takes packages only from the origins it is told about, and
/// runs only when APT::Periodic says so.
fn unattended_upgrades_conf(origin: &str, suite: &str) -> String {
    // In an Origins-Pattern, a comma separates keys: escape the ones in values.
    let escape = |value: &str| value.replace(',', "\\,").replace('"', "");
    format!(
        "// cargo speedy: upgrade this repository's packages unattended, daily.\n\
         Unattended-Upgrade::Origins-Pattern {{\n    \"origin={},suite={}\";\n}};\n\
         APT::Periodic::Update-Package-Lists \"1\";\n\
         APT::Periodic::Unattended-Upgrade \"1\";\n",
        escape(origin),
        escape(suite)
    )
}

/// What `server-setup` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SetupFormat {
    /// A shell script to run as root on the server.
    #[default]
    Script,
    /// `#cloud-config` user data for a new droplet, running the same script.
    CloudInit,
}

#[derive(Debug, Clone, Default)]
pub struct ServerSetupOptions {
    pub repo: RepoTarget,
    pub role: String,
    /// Default: the default suite.
    pub suite: Option<String>,
    /// Where `db` points; default 127.0.0.1 for a role that installs `postgresql`.
    pub db_host: Option<IpAddr>,
    /// The repository URL servers use, when not the configured one (a local
    /// repository served over HTTP, a CDN name).
    pub url: Option<String>,
    pub format: SetupFormat,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerSetup {
    pub role: String,
    pub suite: String,
    pub url: String,
    pub packages: Vec<String>,
    pub runs_jobs: bool,
    pub db_host: String,
    /// The script or the user data.
    pub text: String,
}

/// The role's setup for a new server.
pub fn server_setup(
    options: &ServerSetupOptions,
    listener: &dyn Listener,
) -> Result<ServerSetup, CommandError> {
    let settings = options.repo.settings()?;
    let workspace = settings.workspace.as_ref().ok_or_else(|| {
        CommandError::Config(ConfigError::new(
            std::path::Path::new("Cargo.toml"),
            "workspace.metadata.speedy.roles",
            "server-setup needs the workspace that declares the roles: pass --manifest-path",
        ))
    })?;
    let services = workspace.services(&[], &|_| None)?;
    let jobs_services: Vec<_> = services
        .iter()
        .filter(|s| matches!(s.kind, ServiceKind::Jobs { .. }))
        .collect();
    let jobs_packages: Vec<String> = jobs_services.iter().map(|s| s.deb_name.clone()).collect();
    // The flag the jobs packages test; every service resolves the same workspace
    // setting, so any service says it when the workspace has no jobs package.
    let jobs_flag = jobs_services
        .first()
        .copied()
        .or(services.first())
        .map(|s| s.jobs_disabled_flag.clone())
        .unwrap_or_else(|| "/etc/speedy/jobs.disabled".to_owned());
    let role = resolve_role(
        &workspace.metadata,
        &workspace.root_manifest,
        &options.role,
        &jobs_packages,
    )?;
    let suite = options
        .suite
        .clone()
        .unwrap_or_else(|| settings.config.default_suite.clone());
    let db_host = match options.db_host {
        Some(address) => address,
        None if role.packages.iter().any(|p| p == "postgresql") => IpAddr::from([127, 0, 0, 1]),
        None => return Err(CommandError::DbHostNeeded { role: role.name }),
    };
    let url = options
        .url
        .clone()
        .unwrap_or_else(|| settings.location.public_url());
    let keys = settings.repo_keys(&options.repo, KeyPurpose::Read, listener)?;
    let keyring = keys.public_key().to_binary()?;
    let files = ServerFiles::new(&settings, &url, &suite);
    let script = setup_script(&SetupScript {
        role: &role,
        files: &files,
        keyring: &keyring,
        db_host,
        jobs_flag: &jobs_flag,
        suite: &suite,
        url: &url,
    });
    let text = match options.format {
        SetupFormat::Script => script,
        SetupFormat::CloudInit => cloud_config(&role.name, &script),
    };
    Ok(ServerSetup {
        role: role.name.clone(),
        suite,
        url,
        packages: role.packages.clone(),
        runs_jobs: role.runs_jobs,
        db_host: db_host.to_string(),
        text,
    })
}

struct SetupScript<'a> {
    role: &'a Role,
    files: &'a ServerFiles,
    keyring: &'a [u8],
    db_host: IpAddr,
    jobs_flag: &'a str,
    suite: &'a str,
    url: &'a str,
}

/// Where cloud-init leaves the script on a droplet (and where it can be run again).
pub const CLOUD_INIT_SCRIPT_PATH: &str = "/usr/local/sbin/speedy-server-setup";

fn setup_script(setup: &SetupScript<'_>) -> String {
    let files = setup.files;
    let role = setup.role;
    let mut packages = vec![
        "unattended-upgrades".to_owned(),
        files.keyring_package.clone(),
    ];
    packages.extend(role.packages.iter().cloned());
    let jobs = if role.runs_jobs {
        format!(
            "# This role runs the periodic jobs.\nrm -f {flag}\n",
            flag = shell_quote(setup.jobs_flag)
        )
    } else {
        format!(
            "# Not a jobs host: the jobs packages skip their runs while this file exists.\n\
             mkdir -p {dir}\n\
             printf '%s\\n' '# cargo speedy server-setup: role {role} does not run the periodic jobs' | write_file {flag} 0644\n",
            dir = shell_quote(
                std::path::Path::new(setup.jobs_flag)
                    .parent()
                    .and_then(|p| p.to_str())
                    .unwrap_or("/")
            ),
            role = role.name,
            flag = shell_quote(setup.jobs_flag)
        )
    };
    format!(
        r#"#!/bin/sh
# cargo speedy server-setup: a {role} server of {url} (suite {suite}).
# Run as root on a fresh Debian server; running it again changes nothing.
set -eu
umask 022
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" != 0 ]; then
    echo "speedy server-setup: run this as root" >&2
    exit 1
fi

# write_file PATH MODE: standard input to PATH, replaced atomically, only if it differs.
write_file() {{
    tmp=$(mktemp "$1.speedy-XXXXXX")
    cat >"$tmp"
    chmod "$2" "$tmp"
    if [ -f "$1" ] && cmp -s "$tmp" "$1"; then
        rm -f "$tmp"
    else
        mv -f "$tmp" "$1"
    fi
}}

# The archive keyring, until the keyring package owns it: the package may carry
# newer keys than this script.
if ! dpkg-query -W -f '${{db:Status-Status}}' {keyring_package} 2>/dev/null | grep -qx installed; then
    mkdir -p /usr/share/keyrings
    base64 -d <<'SPEEDY_KEYRING' | write_file {keyring_path} 0644
{keyring_base64}SPEEDY_KEYRING
fi

mkdir -p /etc/apt/sources.list.d /etc/apt/preferences.d /etc/apt/apt.conf.d
write_file {sources_path} 0644 <<'SPEEDY_SOURCES'
{sources}SPEEDY_SOURCES
write_file {preferences_path} 0644 <<'SPEEDY_PREFERENCES'
{preferences}SPEEDY_PREFERENCES
write_file {apt_conf_path} 0644 <<'SPEEDY_APT_CONF'
{apt_conf}SPEEDY_APT_CONF
write_file {unattended_path} 0644 <<'SPEEDY_UNATTENDED'
{unattended}SPEEDY_UNATTENDED

# The database is always reached as `db`: this block comes first in /etc/hosts, so a
# failover is repointing it. cloud-init's template gets it too, or a reboot of a
# droplet would drop it.
SPEEDY_HOSTS_BLOCK='# BEGIN cargo-speedy server-setup
{db_host} db
# END cargo-speedy server-setup'
export SPEEDY_HOSTS_BLOCK
hosts_with_block() {{
    awk '
        /^# BEGIN cargo-speedy server-setup$/ {{ skip = 1; next }}
        skip && /^# END cargo-speedy server-setup$/ {{ skip = 0; next }}
        skip {{ next }}
        NR == 1 && /^## template:/ {{ print; print ENVIRON["SPEEDY_HOSTS_BLOCK"]; done = 1; next }}
        !done {{ print ENVIRON["SPEEDY_HOSTS_BLOCK"]; done = 1 }}
        {{ print }}
        END {{ if (!done) print ENVIRON["SPEEDY_HOSTS_BLOCK"] }}
    ' "$1"
}}
[ -e /etc/hosts ] || : >/etc/hosts
hosts_with_block /etc/hosts >/etc/hosts.speedy-new
# In place, not renamed: /etc/hosts may be a bind mount (containers).
if cmp -s /etc/hosts.speedy-new /etc/hosts; then rm -f /etc/hosts.speedy-new; else cat /etc/hosts.speedy-new >/etc/hosts && rm -f /etc/hosts.speedy-new; fi
template=/etc/cloud/templates/hosts.debian.tmpl
if [ -f "$template" ]; then
    hosts_with_block "$template" | write_file "$template" 0644
fi

{jobs}
apt-get update
apt-get install -y -o Dpkg::Options::=--force-confold {packages}
echo "speedy server-setup: {role} server ready ({packages_plain})"
"#,
        role = role.name,
        url = setup.url,
        suite = setup.suite,
        keyring_package = files.keyring_package,
        keyring_path = files.keyring_path,
        keyring_base64 = base64_lines(setup.keyring),
        sources_path = files.sources_path,
        sources = files.sources,
        preferences_path = files.preferences_path,
        preferences = files.preferences,
        apt_conf_path = files.apt_conf_path,
        apt_conf = files.apt_conf,
        unattended_path = files.unattended_path,
        unattended = files.unattended,
        db_host = setup.db_host,
        jobs = jobs,
        packages = packages
            .iter()
            .map(|p| shell_quote(p))
            .collect::<Vec<_>>()
            .join(" "),
        packages_plain = role.packages.join(", "),
    )
}

/// `#cloud-config` that installs the script and runs it once, at first boot.
fn cloud_config(role: &str, script: &str) -> String {
    let indented: String = script
        .lines()
        .map(|line| {
            if line.is_empty() {
                "\n".to_owned()
            } else {
                format!("      {line}\n")
            }
        })
        .collect();
    format!(
        "#cloud-config\n\
         # cargo speedy server-setup --role {role} --format cloud-init: user data for a new droplet.\n\
         # The script stays at {CLOUD_INIT_SCRIPT_PATH}; running it again changes nothing.\n\
         write_files:\n  \
           - path: {CLOUD_INIT_SCRIPT_PATH}\n    \
             owner: root:root\n    \
             permissions: '0755'\n    \
             content: |\n{indented}\
         runcmd:\n  \
           - [{CLOUD_INIT_SCRIPT_PATH}]\n"
    )
}

/// Base64 in lines of 76 characters, each ending in a newline, for a here-document.
fn base64_lines(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = String::with_capacity(bytes.len() * 4 / 3 + 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                encoded.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                encoded.push('=');
            }
        }
    }
    let mut out = String::new();
    for line in encoded.as_bytes().chunks(76) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out
}

/// Single-quotes a word for sh unless it is plainly safe.
fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64_lines(b""), "");
        assert_eq!(base64_lines(b"f"), "Zg==\n");
        assert_eq!(base64_lines(b"fo"), "Zm8=\n");
        assert_eq!(base64_lines(b"foo"), "Zm9v\n");
        assert_eq!(base64_lines(&[0xff, 0xfe, 0xfd, 0x00]), "//79AA==\n");
        let long = base64_lines(&[0u8; 100]);
        assert!(long.lines().all(|l| l.len() <= 76));
        assert_eq!(long.lines().count(), 2);
    }

    #[test]
    fn origins_pattern_escapes_commas() {
        let conf = unattended_upgrades_conf("Speedy, Inc", "dev");
        assert!(
            conf.contains("\"origin=Speedy\\, Inc,suite=dev\";"),
            "{conf}"
        );
    }

    #[test]
    fn words_are_quoted_for_sh() {
        assert_eq!(shell_quote("speedy-app"), "speedy-app");
        assert_eq!(
            shell_quote("/etc/speedy/jobs.disabled"),
            "/etc/speedy/jobs.disabled"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("a b"), "'a b'");
    }
}
