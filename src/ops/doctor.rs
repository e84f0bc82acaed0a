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

/// `read_credential_file`: a private repository's read credential to check (default:
/// `SPEEDY_READ_ACCESS_KEY_ID` and `SPEEDY_READ_SECRET_ACCESS_KEY`, when set).
pub fn doctor(
    target: &RepoTarget,
    read_credential_file: Option<&std::path::Path>,
    listener: &dyn Listener,
) -> Result<DoctorReport, CommandError> {
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
            let private = !config.public_read;
            checks.extend(bucket_checks(&store, public_url, private));
            checks.push(published_acl_check(&store, public_url, private));
            if private {
                let credential = match read_credential_file {
                    Some(path) => super::server_setup::read_credential_file(path).map(Some),
                    None => super::server_setup::read_credential_environment(&|name| {
                        std::env::var_os(name)
                    }),
                };
                checks.extend(read_credential_checks(
                    &store,
                    config,
                    &settings.config.default_suite,
                    credential,
                ));
            }
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
fn bucket_checks(store: &S3Store, public_url: &str, private: bool) -> Vec<DoctorCheck> {
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
        // A private repository's servers read with a credential: whether the bucket
        // could serve anyone does not matter.
        _ if private => check(
            "anonymous public read",
            CheckStatus::Skip,
            "acl = \"private\": servers read with their read credential".into(),
        ),
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

// --- Private repositories (docs/ARCHITECTURE.md, "Private repositories") ---

const ACL_CHECK: &str = "published objects' ACL";
/// Objects named in a finding; the count says how many more.
const NAMED_AT_MOST: usize = 10;

/// Asks for every object anonymously, as anyone on the internet can: in a private
/// repository each must be refused (one that is not is a FAIL, named); in a public
/// one each object apt reads must be served (a private one left by a move from
/// private is a WARN: the next publish re-ACLs it), and the bookkeeping refused.
fn published_acl_check(store: &S3Store, public_url: &str, private: bool) -> DoctorCheck {
    let check = |status, detail| DoctorCheck {
        check: ACL_CHECK,
        status,
        detail,
    };
    let keys: Vec<String> = match store.list("") {
        Ok(objects) => objects
            .into_iter()
            .map(|object| object.key)
            .filter(|key| !key.starts_with("speedy-doctor-"))
            .collect(),
        Err(e) => return check(CheckStatus::Fail, e.to_string()),
    };
    let statuses = crate::parallel::map(&keys, 16, |key| {
        anonymous_head(&format!("{public_url}{key}"))
    });
    let mut readable_private = Vec::new();
    let mut refused_public = Vec::new();
    let mut failed = Vec::new();
    for (key, status) in keys.iter().zip(statuses) {
        let meant_public = !private && !crate::repo::layout::is_private(key);
        match status {
            Ok(200) if !meant_public => readable_private.push(key.as_str()),
            Ok(200) => {}
            Ok(401 | 403) if meant_public => refused_public.push(key.as_str()),
            Ok(401 | 403) => {}
            Ok(status) => failed.push(format!("{key}: HTTP {status}")),
            Err(e) => failed.push(format!("{key}: {e}")),
        }
    }
    let named = |keys: &[&str]| {
        let mut text = keys
            .iter()
            .take(NAMED_AT_MOST)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        if keys.len() > NAMED_AT_MOST {
            text.push_str(&format!(" and {} more", keys.len() - NAMED_AT_MOST));
        }
        text
    };
    if !readable_private.is_empty() {
        return check(
            CheckStatus::Fail,
            format!(
                "{} of {} objects are readable by anyone at {public_url}: {}{}",
                readable_private.len(),
                keys.len(),
                named(&readable_private),
                if private {
                    " (acl = \"private\": the next publish gives every object the private ACL)"
                } else {
                    ""
                }
            ),
        );
    }
    if !refused_public.is_empty() {
        return check(
            CheckStatus::Warn,
            format!(
                "{} of {} objects still have the private ACL, so servers reading {public_url} \
                 cannot fetch them: {} (the next publish gives every object the public-read ACL)",
                refused_public.len(),
                keys.len(),
                named(&refused_public)
            ),
        );
    }
    if !failed.is_empty() {
        let failed: Vec<&str> = failed.iter().map(String::as_str).collect();
        return check(
            CheckStatus::Warn,
            format!("cannot tell for {}", named(&failed)),
        );
    }
    check(
        CheckStatus::Pass,
        if private {
            format!(
                "all {} objects refused to anonymous readers of {public_url}",
                keys.len()
            )
        } else {
            format!(
                "all {} objects as they should be at {public_url} (apt's public, the bookkeeping private)",
                keys.len()
            )
        },
    )
}

const READ_CREDENTIAL_CHECK: &str = "read credential";

/// The servers' credential can read the repository and cannot write to it.
fn read_credential_checks(
    store: &S3Store,
    config: &crate::store::s3::S3Config,
    suite: &str,
    credential: Result<Option<super::server_setup::ReadCredential>, CommandError>,
) -> Vec<DoctorCheck> {
    let check = |status, detail| DoctorCheck {
        check: READ_CREDENTIAL_CHECK,
        status,
        detail,
    };
    let credential = match credential {
        Ok(Some(credential)) => credential,
        Ok(None) => {
            return vec![check(
                CheckStatus::Warn,
                "not checked: set SPEEDY_READ_ACCESS_KEY_ID and SPEEDY_READ_SECRET_ACCESS_KEY \
                 (or pass --read-credential-file) to check the key the servers read with"
                    .into(),
            )]
        }
        Err(e) => return vec![check(CheckStatus::Fail, e.to_string())],
    };
    let reader = match S3Store::new(
        config.clone(),
        crate::store::s3::Credentials::new(
            &credential.access_key_id,
            &credential.secret_access_key,
        ),
    ) {
        Ok(reader) => reader,
        Err(e) => return vec![check(CheckStatus::Fail, e.to_string())],
    };
    let key = crate::repo::layout::in_release_key(suite);
    let mut checks = vec![match reader.get(&key) {
        Ok(Some(_)) => check(CheckStatus::Pass, format!("reads {key}")),
        Ok(None) => check(
            CheckStatus::Warn,
            format!("{key} is missing: release to suite {suite} first, then check again"),
        ),
        Err(e) => check(
            CheckStatus::Fail,
            format!("cannot read {key}, so servers cannot either: {e}"),
        ),
    }];
    let probe = format!("speedy-doctor-{:016x}-write.txt", rand::random::<u64>());
    checks.push(
        match reader.put_with_acl(&probe, b"speedy doctor probe", false) {
            Ok(()) => {
                let _ = store.delete(&probe);
                check(
                    CheckStatus::Fail,
                    "it can write to the bucket: give the servers a key with read permission only \
                 (docs/operations.md, \"Private repositories\")"
                        .into(),
                )
            }
            Err(_) => check(
                CheckStatus::Pass,
                "cannot write (a PUT with it was refused)".into(),
            ),
        },
    );
    checks
}

/// An anonymous HEAD: the status only.
fn anonymous_head(url: &str) -> Result<u16, String> {
    let response = anonymous_agent()
        .head(url)
        .call()
        .map_err(|e| e.to_string())?;
    Ok(response.status().as_u16())
}

/// An HTTP client without credentials, as anyone on the internet (or apt over http)
/// is, that returns every status as an answer.
fn anonymous_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(15)))
        .build()
        .into()
}

/// An anonymous GET, as apt on a server does it: (status, body).
fn anonymous_get(url: &str) -> Result<(u16, Vec<u8>), String> {
    let mut response = anonymous_agent()
        .get(url)
        .call()
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}
