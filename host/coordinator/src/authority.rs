//! The host's calls into the nodes' authority: installing a signed policy bundle on every
//! node, and reading a node's signing journal (for `GET /audit/reconcile`).

use crate::{CoordError, Coordinator};
use custos_wire::{BundleInstalled, InstallBundle, JournalPage, JournalRequest, NodeId};
use std::collections::BTreeMap;

impl Coordinator {
    /// Sends the signed bundle to every node; each verifies it against its own pinned
    /// admins. Returns each node's answer (a node that is down or refuses says why).
    pub async fn install_bundle(
        &self,
        bundle: &[u8],
    ) -> BTreeMap<NodeId, Result<BundleInstalled, String>> {
        let calls = self.node_ids().into_iter().map(|id| async move {
            let r = async {
                let mut c = self.client(id).map_err(|e| e.to_string())?;
                tokio::time::timeout(
                    self.health_timeout,
                    c.install_bundle(InstallBundle {
                        bundle: bundle.to_vec(),
                    }),
                )
                .await
                .map_err(|_| format!("node {id} did not answer in time"))?
                .map(|r| r.into_inner())
                .map_err(|s| format!("node {id}: {}", s.message()))
            }
            .await;
            (id, r)
        });
        futures::future::join_all(calls).await.into_iter().collect()
    }

    /// One page of node `id`'s signing journal after `after_seq`.
    pub async fn journal(
        &self,
        id: NodeId,
        after_seq: u64,
        limit: u32,
    ) -> Result<JournalPage, CoordError> {
        let mut c = self.client(id)?;
        tokio::time::timeout(
            self.health_timeout * 4,
            c.journal(JournalRequest { after_seq, limit }),
        )
        .await
        .map_err(|_| CoordError::Timeout {
            secs: (self.health_timeout * 4).as_secs(),
            waiting: vec![id],
        })?
        .map(|r| r.into_inner())
        .map_err(|s| CoordError::Node {
            node: id,
            message: s.message().to_string(),
        })
    }
}
