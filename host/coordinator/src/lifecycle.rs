//! A key's generations across its holders (DESIGN §4a): staging sessions (refresh,
//! repair, move), then commit or drop on every holder.
//!
//! The host is the one that decides. A staging session ends with every participant
//! reporting the same output, public-key package digest included (`relay` refuses a
//! disagreement), so a generation is committed only when every holder confirmed the same
//! package. The caller records the new generation in its own store first, then calls
//! [`Coordinator::commit`]; a holder missed then is resolved later from its health
//! (`staged`), by the same record. A failed session drops what was staged on every
//! participant it can reach; the others drop it when they are resolved.

use crate::{CoordError, Coordinator};
use custos_wire::{Algo, NodeId, Op, Output, RepairOp, Resolution, ResolveRequest};

/// A generation staged on every participant of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedOutcome {
    pub public_key: Vec<u8>,
    pub generation: u64,
    pub package: [u8; 32],
}

/// What a commit (or drop) reached.
#[derive(Clone, Debug, Default)]
pub struct Commit {
    pub done: Vec<(NodeId, Resolution)>,
    /// Holders that could not be reached or refused, with why.
    pub missed: Vec<(NodeId, String)>,
}

impl Coordinator {
    /// Commits (or drops) `generation` of `key_id` on one node.
    pub async fn resolve(
        &self,
        node: NodeId,
        key_id: &str,
        generation: u64,
        commit: bool,
    ) -> Result<Resolution, CoordError> {
        let mut c = self.client(node)?;
        let r = tokio::time::timeout(
            self.health_timeout * 4,
            c.resolve(ResolveRequest {
                key_id: key_id.to_string(),
                generation,
                commit,
            }),
        )
        .await
        .map_err(|_| CoordError::Node {
            node,
            message: "resolve timed out".into(),
        })?
        .map_err(|s| CoordError::Node {
            node,
            message: s.message().to_string(),
        })?;
        Ok(r.into_inner().resolution)
    }

    async fn resolve_all(
        &self,
        key_id: &str,
        generation: u64,
        nodes: &[NodeId],
        commit: bool,
    ) -> Commit {
        let calls = nodes
            .iter()
            .map(|n| async move { (*n, self.resolve(*n, key_id, generation, commit).await) });
        let mut out = Commit::default();
        for (n, r) in futures::future::join_all(calls).await {
            match r {
                Ok(res) => out.done.push((n, res)),
                Err(e) => out.missed.push((n, e.to_string())),
            }
        }
        out
    }

    /// Commits `generation` of `key_id` on `nodes` (after the caller recorded it).
    pub async fn commit(&self, key_id: &str, generation: u64, nodes: &[NodeId]) -> Commit {
        let c = self.resolve_all(key_id, generation, nodes, true).await;
        for (n, why) in &c.missed {
            tracing::warn!(
                node = n,
                key = key_id,
                generation,
                "commit not confirmed: {why}; resolved when the node is next seen"
            );
        }
        c
    }

    /// Drops a staged `generation` of `key_id` on `nodes`, as far as they can be reached.
    pub async fn drop_staged(&self, key_id: &str, generation: u64, nodes: &[NodeId]) -> Commit {
        let c = self.resolve_all(key_id, generation, nodes, false).await;
        for (n, why) in &c.missed {
            tracing::warn!(
                node = n,
                key = key_id,
                generation,
                "staged generation not dropped: {why}; dropped when the node is next resolved"
            );
        }
        c
    }

    /// A refresh from committed `generation`: every holder (all must be up) stages
    /// `generation + 1`. On failure nothing is committed and what was staged is dropped.
    pub async fn refresh(
        &self,
        algo: Algo,
        key_id: &str,
        generation: u64,
        holders: &[NodeId],
    ) -> Result<StagedOutcome, CoordError> {
        let all = self.pick(key_id, holders, holders.len()).await?;
        self.staging(
            algo,
            Op::Refresh {
                key_id: key_id.to_string(),
                generation,
            },
            &all,
            key_id,
            generation + 1,
        )
        .await
    }

    /// Rebuilds `r.replaces`'s share on `r.target` and refreshes among `r.holders` (all
    /// must be up): every one stages `r.generation + 1`.
    pub async fn repair(&self, algo: Algo, r: RepairOp) -> Result<StagedOutcome, CoordError> {
        let mut participants = r.holders.clone();
        participants.sort_unstable();
        let all = self
            .pick(&r.key_id, &participants, participants.len())
            .await?;
        let key_id = r.key_id.clone();
        let next = r.generation + 1;
        self.staging(algo, Op::Repair(Box::new(r)), &all, &key_id, next)
            .await
    }

    async fn staging(
        &self,
        algo: Algo,
        op: Op,
        participants: &[NodeId],
        key_id: &str,
        next: u64,
    ) -> Result<StagedOutcome, CoordError> {
        let what = op.name();
        match self.run(algo, op, participants).await {
            Ok(Output::Refreshed {
                public_key,
                generation,
                package,
            }) if generation == next => Ok(StagedOutcome {
                public_key,
                generation,
                package,
            }),
            Ok(other) => {
                self.drop_staged(key_id, next, participants).await;
                Err(CoordError::Config(format!(
                    "unexpected {what} output {other:?}"
                )))
            }
            Err(e) => {
                self.drop_staged(key_id, next, participants).await;
                Err(e)
            }
        }
    }
}
