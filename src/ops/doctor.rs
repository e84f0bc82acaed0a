//! `doctor`: probes a Spaces bucket the way publishing will use it.

use super::{CommandError, RepoTarget};
use crate::config::RepoLocation;
use crate::listener::Listener;
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
    let RepoLocation::Spaces {
        config, public_url, ..
    } = &settings.location
    else {
        return Err(CommandError::NotSpaces);
    };
    let store = S3Store::new(config.clone(), Credentials::from_env()?)?;
    listener.detail(&format!("probing {}", store.describe()));
    let mut checks = store.doctor(public_url);
    checks.push(super::cdn::ttl_check(&settings.location, &settings.config));
    Ok(DoctorReport {
        store: store.describe(),
        checks,
        public_url: public_url.clone(),
    })
}
