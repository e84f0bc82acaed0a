//! `[workspace.metadata.speedy.roles]`: which packages a kind of server runs, and
//! whether it is a host that runs the periodic jobs. `cargo speedy server-setup
//! --role NAME` turns a role into what a new server needs.
//!
//! ```toml
//! [workspace.metadata.speedy.roles]
//! single = ["postgresql", "speedy-app", "speedy-notifier", "speedy-jobs"]
//! web = ["speedy-app"]
//! worker = { packages = ["speedy-notifier", "speedy-jobs"], jobs = true }
//! ```
//!
//! A bare list runs the jobs when it installs one of the workspace's jobs packages.

use super::{ConfigError, WorkspaceMetadata};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RoleMetadata {
    Packages(Vec<String>),
    Table(RoleTable),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RoleTable {
    pub packages: Vec<String>,
    /// This role's servers run the periodic jobs (default: when it installs a jobs
    /// package).
    pub jobs: Option<bool>,
}

/// A validated role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    /// Ours and Debian's, in the order given.
    pub packages: Vec<String>,
    /// When false, servers of this role get the jobs-disabled flag file.
    pub runs_jobs: bool,
}

/// Reads the role `name`; `jobs_packages` are the workspace's jobs packages (for the
/// default of `jobs`).
pub fn resolve_role(
    workspace: &WorkspaceMetadata,
    manifest: &Path,
    name: &str,
    jobs_packages: &[String],
) -> Result<Role, ConfigError> {
    let table = "workspace.metadata.speedy.roles";
    let roles: &BTreeMap<String, RoleMetadata> = match &workspace.roles {
        Some(roles) if !roles.is_empty() => roles,
        _ => {
            return Err(ConfigError::new(
                manifest,
                table,
                format!(
                    "no roles are declared, so there is no role `{name}`: add one, e.g. \
                     `single = [\"speedy-app\", \"speedy-notifier\", \"speedy-jobs\"]`"
                ),
            ))
        }
    };
    let Some(metadata) = roles.get(name) else {
        return Err(ConfigError::new(
            manifest,
            format!("{table}.{name}"),
            format!(
                "no such role; the roles are: {}",
                roles.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    };
    // The name goes into the server-setup script, cloud-init's user data and
    // messages: a word, like the names of the suites.
    let word = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !word {
        return Err(ConfigError::new(
            manifest,
            format!("{table}.{name:?}"),
            format!(
                "{name:?} is not a role name: letters, digits, '.', '_' and '-', starting with a letter or digit"
            ),
        ));
    }
    let (packages, jobs) = match metadata {
        RoleMetadata::Packages(packages) => (packages, None),
        RoleMetadata::Table(table) => (&table.packages, table.jobs),
    };
    let key = format!("{table}.{name}");
    if packages.is_empty() {
        return Err(ConfigError::new(
            manifest,
            key,
            "a role installs at least one package",
        ));
    }
    for package in packages {
        crate::repo::syntax::check_package_name(package).map_err(|why| {
            ConfigError::new(
                manifest,
                key.clone(),
                format!("{package:?} is not a valid Debian package name: {why}"),
            )
        })?;
    }
    Ok(Role {
        name: name.to_owned(),
        packages: packages.clone(),
        runs_jobs: jobs.unwrap_or_else(|| packages.iter().any(|p| jobs_packages.contains(p))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(toml_text: &str) -> WorkspaceMetadata {
        let value: serde_json::Value = toml::from_str(toml_text).unwrap();
        super::super::parse_workspace_metadata(
            &serde_json::json!({ "speedy": value }),
            Path::new("Cargo.toml"),
        )
        .unwrap()
    }

    #[test]
    fn roles_as_lists_or_tables_with_the_jobs_default() {
        let workspace = metadata(
            r#"[roles]
single = ["postgresql", "speedy-app", "speedy-jobs"]
web = ["speedy-app"]
worker = { packages = ["speedy-notifier", "speedy-jobs"], jobs = false }
"#,
        );
        let jobs = vec!["speedy-jobs".to_owned()];
        let manifest = Path::new("Cargo.toml");
        let single = resolve_role(&workspace, manifest, "single", &jobs).unwrap();
        assert_eq!(single.packages, ["postgresql", "speedy-app", "speedy-jobs"]);
        assert!(single.runs_jobs);
        assert!(
            !resolve_role(&workspace, manifest, "web", &jobs)
                .unwrap()
                .runs_jobs
        );
        assert!(
            !resolve_role(&workspace, manifest, "worker", &jobs)
                .unwrap()
                .runs_jobs
        );

        let missing = resolve_role(&workspace, manifest, "db", &jobs)
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("workspace.metadata.speedy.roles.db"),
            "{missing}"
        );
        assert!(missing.contains("single, web, worker"), "{missing}");
    }

    #[test]
    fn bad_roles_name_the_key() {
        let manifest = Path::new("Cargo.toml");
        let empty = metadata("[roles]\nweb = []\n");
        let error = resolve_role(&empty, manifest, "web", &[])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("roles.web") && error.contains("at least one"),
            "{error}"
        );
        let bad = metadata("[roles]\nweb = [\"Speedy_App\"]\n");
        let error = resolve_role(&bad, manifest, "web", &[])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"Speedy_App\" is not a valid Debian package name"),
            "{error}"
        );
        let none = metadata("");
        let error = resolve_role(&none, manifest, "web", &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("no roles are declared"), "{error}");
        let odd = metadata("[roles]\n\"web\\nrm -rf /\" = [\"speedy-app\"]\n");
        let error = resolve_role(&odd, manifest, "web\nrm -rf /", &[])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"web\\nrm -rf /\" is not a role name"),
            "{error}"
        );
    }
}
