//! `doctor`: checks the signing keys against what apt will accept, and probes a
//! Spaces bucket the way publishing will use it. The store answers what it can do
//! (as data); what that means for publishing, and the advice, is decided here.

use super::{CommandError, RepoTarget};
use crate::config::RepoLocation;
use crate::keys::KeyPurpose;
use crate::listener::Listener;
use crate::sign::{FindingSeverity, KeyHealth, PublicKey};
use crate::store::s3::{ChecksumHeaders, S3Store};
use crate::store::{ConditionalWrites, Store};

/// The outcome of one `cargo speedy doctor` check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    /// Works, but not as well as it could; publishing still works.
    Warn,
    Fail,
    Skip,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DoctorCheck {
    pub check: &'static str,
    pub status: CheckStatus,
    pub detail: String,
}

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
            let store = super::open_s3(config, listener)?;
            listener.detail(&format!("probing {}", store.describe()));
            checks.extend(bucket_checks(&store, public_url));
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

/// Probes the bucket the way publishing will use it; changes nothing but short-lived
/// probe objects, which it deletes.
fn bucket_checks(store: &S3Store, public_url: &str) -> Vec<DoctorCheck> {
    let check = |check, status, detail| DoctorCheck {
        check,
        status,
        detail,
    };
    let mut checks = Vec::new();
    if let Err(error) = store.check_access() {
        checks.push(check(
            "credentials and bucket",
            CheckStatus::Fail,
            error.to_string(),
        ));
        for name in [
            "conditional writes",
            "checksum headers",
            "anonymous public read",
            "private objects",
        ] {
            checks.push(check(name, CheckStatus::Skip, "needs the bucket".into()));
        }
        return checks;
    }
    checks.push(check(
        "credentials and bucket",
        CheckStatus::Pass,
        format!("listed {}", store.describe()),
    ));
    checks.push(match store.probe_conditional_writes_afresh() {
        Ok(ConditionalWrites {
            create: true,
            replace: true,
        }) => check(
            "conditional writes",
            CheckStatus::Pass,
            "If-None-Match and If-Match honoured: publishes take a lock, and a lock whose lease \
             expired is taken over safely"
                .into(),
        ),
        Ok(ConditionalWrites {
            create: true,
            replace: false,
        }) => check(
            "conditional writes",
            CheckStatus::Warn,
            "If-None-Match honoured, If-Match not: publishes take a lock, but a lock left by a \
             dead publisher on another host needs --break-lock"
                .into(),
        ),
        Ok(_) => check(
            "conditional writes",
            CheckStatus::Warn,
            "not honoured: publishes run without a lock, re-reading InRelease before and after \
             the switch"
                .into(),
        ),
        Err(e) => check("conditional writes", CheckStatus::Fail, e.to_string()),
    });
    checks.push(match store.probe_checksum_headers() {
        Ok(ChecksumHeaders::Accepted) => check(
            "checksum headers",
            CheckStatus::Pass,
            "accepted (checksums = \"when-supported\" would work)".into(),
        ),
        Ok(ChecksumHeaders::Rejected { code }) => check(
            "checksum headers",
            CheckStatus::Warn,
            format!("rejected ({code}): keep checksums = \"when-required\""),
        ),
        Err(e) => check("checksum headers", CheckStatus::Warn, e.to_string()),
    });
    let probe = |suffix: &str| format!("speedy-doctor-{:016x}-{suffix}", rand::random::<u64>());
    let public_key = probe("public.txt");
    let private_key = probe("private.txt");
    let body = b"speedy doctor probe";
    checks.push(match store.put_with_acl(&public_key, body, true) {
        Err(e) => check("anonymous public read", CheckStatus::Fail, e.to_string()),
        Ok(()) => {
            let url = format!("{public_url}{public_key}");
            match anonymous_get(&url) {
                Ok((200, got)) if got == body => check(
                    "anonymous public read",
                    CheckStatus::Pass,
                    format!("GET {url}: 200"),
                ),
                Ok((status, _)) => check(
                    "anonymous public read",
                    CheckStatus::Fail,
                    format!(
                        "GET {url}: HTTP {status}; servers could not read the repository (check \
                         public-url and the ACL)"
                    ),
                ),
                Err(e) => check(
                    "anonymous public read",
                    CheckStatus::Fail,
                    format!("GET {url}: {e}"),
                ),
            }
        }
    });
    checks.push(match store.put_with_acl(&private_key, body, false) {
        Err(e) => check("private objects", CheckStatus::Fail, e.to_string()),
        Ok(()) => {
            let url = format!("{public_url}{private_key}");
            match anonymous_get(&url) {
                Ok((200, _)) => check(
                    "private objects",
                    CheckStatus::Fail,
                    format!(
                        "GET {url}: 200: private objects (the publish lock) are readable by anyone"
                    ),
                ),
                Ok((status, _)) => check(
                    "private objects",
                    CheckStatus::Pass,
                    format!("GET {url}: HTTP {status}"),
                ),
                Err(e) => check(
                    "private objects",
                    CheckStatus::Warn,
                    format!("GET {url}: {e}"),
                ),
            }
        }
    });
    for key in [public_key, private_key] {
        // Best effort: the probes are tiny, and a failure here was reported above.
        let _ = store.delete(&key);
    }
    checks
}

/// An anonymous GET, as apt on a server does it: (status, body).
fn anonymous_get(url: &str) -> Result<(u16, Vec<u8>), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(15)))
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}
