//! Which conditional writes the store honours, as the publish learns it: the probe
//! recorded in the repository (`.speedy/conditional-writes.json`) and trusted for a
//! week, else a fresh probe that is recorded for the next publish. The store only
//! answers the probe; remembering it is repository bookkeeping
//! (docs/ARCHITECTURE.md, "Publishing at the cost of what changed").

use crate::store::{Body, ConditionalWrites, Store, StoreError};

pub use crate::repo::layout::PROBE_RECORD_KEY;

/// How long a recorded probe is trusted before the store is probed again.
const PROBE_RECORD_TTL_SECONDS: u64 = 7 * 24 * 60 * 60;

/// A probe's result as recorded in the repository.
#[derive(serde::Serialize, serde::Deserialize)]
struct ProbeRecord {
    #[serde(flatten)]
    found: ConditionalWrites,
    /// Unix seconds.
    probed_at: u64,
}

/// The probe recorded in the repository, when it is younger than a week. Read-only:
/// a publish reads it alongside the recognition of the repository.
pub fn read_record(store: &dyn Store, now: u64) -> Result<Option<ConditionalWrites>, StoreError> {
    Ok(store
        .get(PROBE_RECORD_KEY)?
        .and_then(|bytes| serde_json::from_slice::<ProbeRecord>(&bytes).ok())
        .filter(|record| {
            record.probed_at <= now && now - record.probed_at < PROBE_RECORD_TTL_SECONDS
        })
        .map(|record| record.found))
}

/// Tells the store which conditional writes it honours: from `recorded` (the record
/// [`read_record`] found young enough), else from a probe, which is then recorded.
/// Nothing happens on a store with nothing to probe. A store that cannot be read
/// cannot be probed either: its error is the answer (and comes first, before
/// anything is written).
pub fn learn_from(
    store: &dyn Store,
    recorded: Option<ConditionalWrites>,
    now: u64,
) -> Result<(), StoreError> {
    // A store with nothing to probe has no record either: one read, nothing written.
    if let Some(found) = recorded {
        store.assume_conditional_writes(found);
        return Ok(());
    }
    let Some(found) = store.probe_conditional_writes()? else {
        return Ok(());
    };
    let record = ProbeRecord {
        found,
        probed_at: now,
    };
    if let Ok(bytes) = serde_json::to_vec(&record) {
        // Only saves the next publish its probe: a failure costs nothing more.
        let _ = store.put(
            PROBE_RECORD_KEY,
            Body::Bytes(&bytes),
            &super::put_options(PROBE_RECORD_KEY),
        );
    }
    Ok(())
}
