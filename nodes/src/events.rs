//! Operator events on this node (a backup taken, a restore), kept in the store and
//! reported in health so that the host audits each once (by its sequence number).

use crate::store::{Kind, Store, StoreError};
use custos_wire::{MAX_EVENTS, NodeEvent};

/// Records an event (synced) after the last one; returns its sequence number.
pub fn record(store: &Store, kind: &str, detail: &serde_json::Value) -> Result<u64, StoreError> {
    let last = store
        .list(Kind::Event)?
        .iter()
        .filter_map(|n| n.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let ev = NodeEvent {
        seq: last + 1,
        at: crate::service::now_secs(),
        kind: kind.to_string(),
        detail: detail.to_string(),
    };
    let bytes = postcard::to_stdvec(&ev).map_err(|e| StoreError::Db(e.to_string()))?;
    store.put(Kind::Event, &name(ev.seq), &bytes)?;
    Ok(ev.seq)
}

fn name(seq: u64) -> String {
    format!("{seq:020}")
}

/// The most recent events (at most [`MAX_EVENTS`]), oldest first. One that does not open
/// is skipped.
pub fn recent(store: &Store) -> Result<Vec<NodeEvent>, StoreError> {
    let names = store.list(Kind::Event)?;
    let mut out = Vec::new();
    for n in names.iter().rev().take(MAX_EVENTS).rev() {
        if let Ok(Some(b)) = store.get(Kind::Event, n)
            && let Ok(ev) = postcard::from_bytes::<NodeEvent>(&b)
        {
            out.push(ev);
        }
    }
    Ok(out)
}
