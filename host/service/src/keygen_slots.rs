//! At most N key generations in flight per client (`keygens_per_client` in the config):
//! a DKG holds every holder node for seconds, so one client must not be able to fill the
//! node group with them. The N+1th is refused at once (429 `RATE_LIMITED`), not queued.

use crate::error::{ApiError, Code};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Seconds a refused client is told to wait: about one DKG.
const RETRY_AFTER_SECS: u64 = 5;

/// Keygens in flight, by client access key. A count is taken with [`KeygenSlots::take`]
/// and given back when the [`KeygenSlot`] drops, however the keygen ends.
pub struct KeygenSlots {
    per_client: usize,
    busy: Arc<Mutex<HashMap<String, usize>>>,
}

/// One keygen in flight; dropping it frees the slot.
pub struct KeygenSlot {
    client: String,
    busy: Arc<Mutex<HashMap<String, usize>>>,
}

impl KeygenSlots {
    pub fn new(per_client: usize) -> Self {
        Self {
            per_client,
            busy: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A slot for `client` (access key), or 429 `RATE_LIMITED` with `Retry-After` when it
    /// already has `per_client` keygens in flight.
    pub fn take(&self, client: &str, name: &str) -> Result<KeygenSlot, ApiError> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let n = busy.entry(client.to_string()).or_insert(0);
        if *n >= self.per_client {
            let mut e = ApiError::new(
                Code::RateLimited,
                format!(
                    "client `{name}` already has {} key generations in flight (at most {} per client); retry when one has finished",
                    *n, self.per_client
                ),
            );
            e.retry_after = Some(RETRY_AFTER_SECS);
            return Err(e);
        }
        *n += 1;
        Ok(KeygenSlot {
            client: client.to_string(),
            busy: self.busy.clone(),
        })
    }
}

impl Drop for KeygenSlot {
    fn drop(&mut self) {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = busy.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                busy.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_cap_and_release_on_drop() {
        let s = KeygenSlots::new(2);
        let a1 = s.take("A", "a").unwrap();
        let _a2 = s.take("A", "a").unwrap();
        let e = s.take("A", "a").err().unwrap();
        assert_eq!(e.code, Code::RateLimited);
        assert_eq!(e.retry_after, Some(RETRY_AFTER_SECS));
        assert!(e.message.contains("at most 2 per client"), "{e}");
        // Another client is not held up.
        let _b = s.take("B", "b").unwrap();
        drop(a1);
        let _a3 = s.take("A", "a").unwrap();
    }
}
