//! A repository moved between public and private is re-ACL'd by one publish
//! (docs/ARCHITECTURE.md, "Private repositories"): after the switch, when the ACL
//! the bookkeeping records is not the configured one, every object gets its own.

use super::{put_options, unfinished, Publish, PublishReport};
use crate::listener::Listener;
use crate::repo::plan;

impl Publish<'_> {
    /// Gives every object the ACL of the current setting when the bookkeeping says
    /// they may have the other (`recorded`), and returns the ACL to record: the
    /// configured one once done, the recorded one when this failed (so the next
    /// publish tries again), `None` for a store without ACLs.
    pub(super) fn reapply_acl(
        &self,
        recorded: Option<&str>,
        report: &mut PublishReport,
        listener: &dyn Listener,
    ) -> Option<String> {
        let configured = self.store.public_acl()?;
        if !plan::acl_must_be_reapplied(recorded, configured) {
            return Some(configured.to_owned());
        }
        let applied = self.store.list("").map_err(Into::into).and_then(|objects| {
            let keys: Vec<String> = objects.into_iter().map(|object| object.key).collect();
            listener.info(&format!(
                "giving the {} objects of {} the ACL of acl = \"{configured}\" (the last publish gave {})",
                keys.len(),
                self.store.describe(),
                recorded.unwrap_or("public-read")
            ));
            self.each_in_parallel(&keys, |key| Ok(self.store.set_acl(key, &put_options(key))?))
        });
        match applied {
            Ok(_) => Some(configured.to_owned()),
            Err(error) => {
                unfinished(
                    report,
                    listener,
                    format!("giving every object the ACL of acl = \"{configured}\": {error}"),
                );
                recorded.map(str::to_owned)
            }
        }
    }
}
