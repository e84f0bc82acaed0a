//! The CDN in front of a Spaces repository: after a publish, purge what it replaced;
//! in `doctor`, compare the endpoint's cache TTL with the grace period
//! (docs/ARCHITECTURE.md, "CDN purge").

use super::doctor::{CheckStatus, DoctorCheck};
use super::CommandError;
use crate::cdn::{self, ApiToken, CdnApi};
use crate::config::{RepoConfig, RepoLocation};
use crate::listener::Listener;
use crate::publish::PublishReport;

/// Whether and how a repository's CDN is purged, decided before the publish so that a
/// bad `$SPEEDY_DIGITALOCEAN_API` or token changes nothing.
#[derive(Debug)]
pub(super) enum CdnPurge {
    /// No CDN endpoint configured (or a local-directory repository).
    Off,
    /// An endpoint, but no token in the environment.
    NoToken { endpoint_id: String },
    On {
        api: CdnApi,
        endpoint_id: String,
        /// The bucket prefix: the CDN's paths are relative to the bucket.
        prefix: Option<String>,
    },
}

impl CdnPurge {
    pub(super) fn for_location(location: &RepoLocation) -> Result<Self, CommandError> {
        let RepoLocation::Spaces {
            config,
            cdn_endpoint_id: Some(endpoint_id),
            ..
        } = location
        else {
            return Ok(CdnPurge::Off);
        };
        let endpoint_id = endpoint_id.clone();
        let base = cdn::api_base_from_env()?;
        Ok(match ApiToken::from_env()? {
            None => CdnPurge::NoToken { endpoint_id },
            Some(token) => CdnPurge::On {
                api: CdnApi::new(&base, token),
                endpoint_id,
                prefix: config.prefix.clone(),
            },
        })
    }

    /// After the switch: purges the objects the publish replaced. A failure does not
    /// fail the publish (the new repository is live); it is reported as unfinished,
    /// with the command that finishes it. Returns the CDN paths purged.
    pub(super) fn after_publish(
        &self,
        report: &mut PublishReport,
        listener: &dyn Listener,
    ) -> Vec<String> {
        if report.replaced_mutable.is_empty() {
            return Vec::new();
        }
        match self {
            CdnPurge::Off => Vec::new(),
            CdnPurge::NoToken { endpoint_id } => {
                listener.warning(&format!(
                    "the CDN endpoint {endpoint_id} is not purged: ${} is not set; servers \
                     behind the CDN see this publish when their cached InRelease expires (the \
                     endpoint's TTL)",
                    cdn::TOKEN_VARIABLE
                ));
                Vec::new()
            }
            CdnPurge::On {
                api,
                endpoint_id,
                prefix,
            } => {
                let files: Vec<String> = report
                    .replaced_mutable
                    .iter()
                    .map(|key| match prefix {
                        Some(prefix) => format!("{prefix}/{key}"),
                        None => key.clone(),
                    })
                    .collect();
                listener.detail(&format!(
                    "purging {} path(s) from the CDN endpoint {endpoint_id}",
                    files.len()
                ));
                match api.purge(endpoint_id, &files, &cdn::WallClock::default()) {
                    Ok(outcome) => {
                        listener.info(&format!(
                            "Purged {} path(s) from the CDN cache in {} request(s)",
                            files.len(),
                            outcome.requests
                        ));
                        files
                    }
                    Err(error) => {
                        let what = format!(
                            "purging the CDN cache: {error}; servers behind the CDN may read \
                             the previous InRelease until the endpoint's TTL runs out. Purge by \
                             hand: doctl compute cdn flush {endpoint_id} --files {}",
                            files.join(",")
                        );
                        listener.warning(&format!("published, but not finished: {what}"));
                        report.unfinished.push(what);
                        Vec::new()
                    }
                }
            }
        }
    }
}

/// The longest TTL the Spaces CDN offers (1 min, 10 min, 1 h, 1 day, 1 week) that is
/// within `grace` seconds.
fn ttl_within(grace: u64) -> u64 {
    [604_800, 86_400, 3_600, 600, 60]
        .into_iter()
        .find(|ttl| *ttl <= grace)
        .unwrap_or(60)
}

/// `doctor`'s check of the CDN endpoint: a cached InRelease must not outlive the
/// by-hash files it names, which garbage collection deletes after the grace period.
pub(super) fn ttl_check(location: &RepoLocation, config: &RepoConfig) -> DoctorCheck {
    let check = |status, detail| DoctorCheck {
        check: "CDN cache TTL",
        status,
        detail,
    };
    let purge = match CdnPurge::for_location(location) {
        Ok(purge) => purge,
        Err(error) => return check(CheckStatus::Fail, error.to_string()),
    };
    let grace = config.grace_seconds;
    match purge {
        CdnPurge::Off => check(
            CheckStatus::Skip,
            "no cdn-endpoint-id in [workspace.metadata.speedy.repo.spaces]: with a CDN in \
             front of the bucket, set it so that publishes purge what they change"
                .into(),
        ),
        CdnPurge::NoToken { endpoint_id } => check(
            CheckStatus::Warn,
            format!(
                "set ${} to check the TTL of the CDN endpoint {endpoint_id}; publishes purge \
                 it only with the token",
                cdn::TOKEN_VARIABLE
            ),
        ),
        CdnPurge::On {
            api, endpoint_id, ..
        } => match api.endpoint(&endpoint_id) {
            Err(error) => check(CheckStatus::Fail, error.to_string()),
            Ok(endpoint) if endpoint.ttl > grace => check(
                CheckStatus::Warn,
                format!(
                    "the CDN caches for {} s, longer than grace-period ({grace} s): when a purge \
                     fails, a cached InRelease can name by-hash files already deleted. Lower the \
                     TTL (doctl compute cdn update {endpoint_id} --ttl {}, or the control panel) \
                     or raise grace-period in [workspace.metadata.speedy.repo] to at least {}s",
                    endpoint.ttl,
                    ttl_within(grace),
                    endpoint.ttl
                ),
            ),
            Ok(endpoint) => check(
                CheckStatus::Pass,
                format!(
                    "{} s, within grace-period ({grace} s); origin {}",
                    endpoint.ttl, endpoint.origin
                ),
            ),
        },
    }
}
