//! `doctor`: checks the signing keys against what apt will accept, and probes a
//! Spaces bucket the way publishing will use it.

use super::{CommandError, RepoTarget};
use crate::config::RepoLocation;
use crate::keys::KeyPurpose;
use crate::listener::Listener;
use crate::sign::{FindingSeverity, KeyHealth, PublicKey};
use crate::store::s3::{CheckStatus, Credentials, DoctorCheck, S3Store};
use crate::store::Store;

#[derive(Debug, Clone, serde::Serialize)]
pub struct DoctorReport {
    pub store: String,
    pub public_url: String,
    pub checks: Vec<DoctorCheck>,
}

impl DoctorReport {
    /// Whether publishing can work: warnings are fine, a failed check is not.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.status != CheckStatus::Fail)
    }
}

pub fn doctor(target: &RepoTarget, listener: &dyn Listener) -> Result<DoctorReport, CommandError> {
    let settings = target.settings()?;
    let mut checks = match settings.keys(target).resolve(KeyPurpose::Read, listener) {
        Ok(Some(found)) => key_checks(&found.repo_keys().public_key(), crate::clock::now()),
        Ok(None) => vec![DoctorCheck {
            check: KEY_CHECK,
            status: CheckStatus::Warn,
            detail: "no signing key found here (--key-file, $SPEEDY_SIGNING_KEY, `key-file`): publishing \
                     needs one, so run doctor where the release job runs"
                .to_owned(),
        }],
        Err(error) => vec![DoctorCheck {
            check: KEY_CHECK,
            status: CheckStatus::Fail,
            detail: error.to_string(),
        }],
    };
    match &settings.location {
        RepoLocation::Spaces {
            config, public_url, ..
        } => {
            let store = S3Store::new(config.clone(), Credentials::from_env()?)?;
            listener.detail(&format!("probing {}", store.describe()));
            checks.extend(store.doctor(public_url));
            checks.push(super::cdn::ttl_check(&settings.location, &settings.config));
            Ok(DoctorReport {
                store: store.describe(),
                checks,
                public_url: public_url.clone(),
            })
        }
        location @ RepoLocation::Local(_) => {
            checks.push(DoctorCheck {
                check: "repository",
                status: CheckStatus::Skip,
                detail: format!(
                    "{} is a local directory: no bucket to probe",
                    location.describe()
                ),
            });
            Ok(DoctorReport {
                store: location.describe(),
                public_url: location.public_url(),
                checks,
            })
        }
    }
}

const KEY_CHECK: &str = "signing key";

/// One row per finding of [`PublicKey::health`], or one passing row per sound key.
fn key_checks(keys: &PublicKey, now: u64) -> Vec<DoctorCheck> {
    keys.health(now)
        .into_iter()
        .flat_map(|health: KeyHealth| {
            if health.findings.is_empty() {
                return vec![DoctorCheck {
                    check: KEY_CHECK,
                    status: CheckStatus::Pass,
                    detail: format!(
                        "{}: accepted by gpgv (bookworm) and sqv (trixie), no expiry within 90 days",
                        health.fingerprint
                    ),
                }];
            }
            health
                .findings
                .into_iter()
                .map(|finding| DoctorCheck {
                    check: KEY_CHECK,
                    status: match finding.severity {
                        FindingSeverity::Error => CheckStatus::Fail,
                        FindingSeverity::Warning => CheckStatus::Warn,
                    },
                    detail: finding.message,
                })
                .collect()
        })
        .collect()
}
