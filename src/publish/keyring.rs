//! The repository's public key beside dists/ (`layout::KEYRING_KEY` and its armored
//! form), for servers to fetch with the repository. Written after the switch, only
//! when it differs from what the bookkeeping says was published last
//! (docs/ARCHITECTURE.md, "Publishing at the cost of what changed").

use super::{put_options, Publish, PublishError};
use crate::repo::layout;
use crate::repo::plan;
use crate::store::Body;

impl Publish<'_> {
    /// The SHA256 of the keyring beside dists/, as garbage collection's bookkeeping
    /// records the one published.
    pub(super) fn keyring_digest(&self) -> Result<String, PublishError> {
        Ok(plan::sha256_hex(&self.key.public_key().to_binary()?))
    }

    /// The public key beside dists/, for servers to fetch with the repository.
    /// Returns the keys it wrote (none when they held the key already) and the
    /// keyring's SHA256. `published` is the SHA256 the bookkeeping says was published
    /// last: when it is this keyring's, nothing is asked.
    pub(super) fn publish_keyring(
        &self,
        published: Option<&str>,
    ) -> Result<(Vec<String>, String), PublishError> {
        let mut written = Vec::new();
        let public_key = self.key.public_key();
        let binary = public_key.to_binary()?;
        let digest = plan::sha256_hex(&binary);
        if published == Some(digest.as_str()) {
            return Ok((written, digest));
        }
        for (key, bytes) in [
            (layout::KEYRING_KEY, binary),
            (
                layout::KEYRING_ASC_KEY,
                public_key.to_armored()?.into_bytes(),
            ),
        ] {
            if self.store.get(key)?.as_deref() != Some(bytes.as_slice()) {
                self.store
                    .put(key, Body::Bytes(&bytes), &put_options(key))?;
                written.push(key.to_owned());
            }
        }
        Ok((written, digest))
    }
}
