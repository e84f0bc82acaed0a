//! `build`: the services into .debs, signed with a configured key when there is one.

use super::{CommandError, RepoTarget};
use crate::keys::{KeyPurpose, SigningKeys};
use crate::listener::{BuiltDeb, Listener};
use crate::package::{self, BuildOptions};
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct BuildCommandOptions {
    pub build: BuildOptions,
    /// `--key-file`, for the debsigs signature.
    pub key_file: Option<PathBuf>,
    /// Leave the .debs without a debsigs signature.
    pub no_sign: bool,
    /// Render and describe every file, build nothing.
    pub explain: bool,
}

#[derive(Debug, Clone)]
pub enum BuildOutcome {
    /// `--explain`: every file as it will land on a server.
    Explained(String),
    Built(Vec<BuiltDeb>),
}

pub fn build(
    options: &BuildCommandOptions,
    listener: &dyn Listener,
) -> Result<BuildOutcome, CommandError> {
    let plan = package::plan(&options.build, listener)?;
    if options.explain {
        return Ok(BuildOutcome::Explained(package::explain(&plan)));
    }
    let config = plan.workspace.repo_config()?;
    let signing = plan.workspace.signing_config()?;
    // A plain build signs with a configured key or an existing development key; it
    // never creates one.
    let signer = if options.no_sign || !signing.sign_debs {
        None
    } else {
        let target = RepoTarget::default();
        let location = config.location(&target.overrides)?;
        let keys = SigningKeys {
            flag: options.key_file.as_deref(),
            config: &signing,
            location: &location,
        };
        let found = keys.resolve(KeyPurpose::SignDebs, listener)?;
        if found.is_none() {
            listener.detail("no signing key configured: the .debs are not signed");
        }
        found.map(|f| f.key)
    };
    Ok(BuildOutcome::Built(package::build(
        &plan,
        &options.build,
        signer.as_ref(),
        listener,
    )?))
}
