//! The `custos-node serve` processes of a local cluster: started, watched until they
//! answer health over mTLS, stopped cleanly, and never left behind.

use super::{ClusterLayout, LocalNode};
use crate::Coordinator;
use anyhow::{Context, Result, anyhow, bail};
use custos_wire::NodeId;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the nodes get to answer health after being started.
const NODE_START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a node gets after SIGTERM before it is killed.
const NODE_STOP_GRACE: Duration = Duration::from_secs(10);
/// Lines of a node's log shown when it fails to come up.
const LOG_TAIL_LINES: usize = 25;

/// The `custos-node` binary: `explicit` when given; else the one beside this executable
/// (or one folder up, since test binaries live in `target/*/deps`); else on PATH.
pub fn node_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    const NAME: &str = "custos-node";
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("node binary `{}` does not exist", p.display());
    }
    let exe = std::env::current_exe().ok();
    let beside = exe.as_deref().and_then(Path::parent);
    let candidates = beside
        .into_iter()
        .chain(beside.and_then(Path::parent))
        .map(|d| d.join(NAME))
        .chain(
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .map(|d| d.join(NAME)),
        );
    for c in candidates {
        if c.is_file() {
            return Ok(c);
        }
    }
    bail!(
        "`{NAME}` not found beside `{}` or on PATH; build it with `cargo build -p custos-node` \
         or pass --node-binary PATH",
        beside.map_or_else(|| "custos".into(), |d| d.display().to_string())
    )
}

struct Running {
    child: Child,
    /// Where this run's lines start in the (appended) log, for the failure report.
    log_from: u64,
}

/// The `custos-node serve` children of a cluster. Each runs in its own process group so a
/// terminal's Ctrl-C reaches only the supervisor (`custos dev` stops the service first and
/// the nodes after it), and each has as standard input a pipe the supervisor holds, so the
/// nodes stop by themselves if it dies, even by SIGKILL. Dropping this kills whatever
/// still runs.
pub struct NodeProcesses {
    binary: PathBuf,
    /// Extra environment for every node (tests: log level, message timeout).
    env: Vec<(String, String)>,
    nodes: BTreeMap<NodeId, LocalNode>,
    running: BTreeMap<NodeId, Running>,
    coordinator: Coordinator,
}

impl NodeProcesses {
    /// Starts every node of `layout` and waits until all answer health over mTLS. On
    /// failure the nodes are killed and the error names the node and shows its log tail.
    pub async fn start(binary: &Path, layout: &ClusterLayout) -> Result<Self> {
        Self::start_with_env(binary, layout, &[]).await
    }

    /// [`NodeProcesses::start`], with `env` added to every node's environment (also when a
    /// node is started again).
    pub async fn start_with_env(
        binary: &Path,
        layout: &ClusterLayout,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let coordinator = Coordinator::new(&layout.group_file, &layout.host_tls())
            .context("setting up the connections to the nodes")?;
        let mut p = Self {
            binary: binary.to_path_buf(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            nodes: layout.nodes.iter().map(|n| (n.id, n.clone())).collect(),
            running: BTreeMap::new(),
            coordinator,
        };
        let ids: Vec<NodeId> = p.nodes.keys().copied().collect();
        let r = async {
            for id in &ids {
                p.spawn(*id)?;
            }
            p.wait_up(&ids).await
        }
        .await;
        if let Err(e) = r {
            p.kill_all();
            return Err(e);
        }
        Ok(p)
    }

    /// A coordinator on the same group (health checks, tests).
    pub fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    /// Nodes whose process is running (not yet seen exiting).
    pub fn running(&mut self) -> Vec<NodeId> {
        self.running
            .iter_mut()
            .filter_map(|(id, r)| matches!(r.child.try_wait(), Ok(None)).then_some(*id))
            .collect()
    }

    /// The process id of node `id`, while this supervisor runs it (benchmarks read its
    /// CPU time).
    pub fn pid(&self, id: NodeId) -> Option<u32> {
        self.running.get(&id).map(|r| r.child.id())
    }

    fn node(&self, id: NodeId) -> Result<&LocalNode> {
        self.nodes
            .get(&id)
            .ok_or_else(|| anyhow!("node {id} is not in the cluster"))
    }

    fn spawn(&mut self, id: NodeId) -> Result<()> {
        if self.running.contains_key(&id) {
            bail!("node {id} is already running");
        }
        let node = self.node(id)?;
        // A node left over from an earlier run would answer health in place of this one.
        if let Err(e) = std::net::TcpListener::bind(node.address()) {
            bail!(
                "node {id}: cannot use `{}` ({e}); is a node of an earlier `custos dev` still \
                 running?",
                node.address()
            );
        }
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("opening `{}`", node.log.display()))?;
        let log_from = log.metadata().map(|m| m.len()).unwrap_or(0);
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        writeln!(log, "=== starting node {id} (unix time {since}) ===")
            .with_context(|| format!("writing `{}`", node.log.display()))?;
        let out = log
            .try_clone()
            .with_context(|| format!("opening `{}`", node.log.display()))?;
        // The node's stdin is a pipe this process holds open (inside `child`): if this
        // process dies, even by SIGKILL, the node reads end of file and stops.
        let child = Command::new(&self.binary)
            .args(["serve", "--stop-on-stdin-eof", "--config"])
            .arg(&node.config_file)
            .stdin(Stdio::piped())
            // The log is a file: no colour codes in it.
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(out)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting `{}` for node {id}", self.binary.display()))?;
        self.running.insert(id, Running { child, log_from });
        Ok(())
    }

    async fn wait_up(&mut self, ids: &[NodeId]) -> Result<()> {
        let t0 = Instant::now();
        let mut pending: Vec<NodeId> = ids.to_vec();
        let mut last: BTreeMap<NodeId, String> = BTreeMap::new();
        loop {
            for id in &pending {
                let Some(r) = self.running.get_mut(id) else {
                    bail!("node {id} is not running");
                };
                if let Ok(Some(status)) = r.child.try_wait() {
                    bail!(
                        "node {id} exited while starting ({status}); its log `{}` ends with:\n{}",
                        self.nodes
                            .get(id)
                            .map_or_else(String::new, |n| n.log.display().to_string()),
                        self.log_tail(*id)
                    );
                }
            }
            let checks = pending.iter().map(|id| {
                let c = &self.coordinator;
                async move { (*id, c.health(*id).await) }
            });
            for (id, r) in futures::future::join_all(checks).await {
                match r {
                    Ok(_) => pending.retain(|p| *p != id),
                    Err(e) => {
                        last.insert(id, e.to_string());
                    }
                }
            }
            if pending.is_empty() {
                return Ok(());
            }
            if t0.elapsed() > NODE_START_DEADLINE {
                let mut msg = format!(
                    "node(s) {} did not answer health within {} s",
                    pending
                        .iter()
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    NODE_START_DEADLINE.as_secs()
                );
                for id in &pending {
                    msg.push_str(&format!(
                        "\nnode {id}: {}; its log `{}` ends with:\n{}",
                        last.get(id).map_or("no answer", String::as_str),
                        self.nodes
                            .get(id)
                            .map_or_else(String::new, |n| n.log.display().to_string()),
                        self.log_tail(*id)
                    ));
                }
                bail!(msg);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last lines this run wrote to node `id`'s log.
    fn log_tail(&self, id: NodeId) -> String {
        let (Some(node), Some(r)) = (self.nodes.get(&id), self.running.get(&id)) else {
            return String::new();
        };
        log_tail(&node.log, r.log_from, LOG_TAIL_LINES)
    }

    /// Tests: SIGKILL node `id` (no clean shutdown) and reap it.
    pub fn kill_node(&mut self, id: NodeId) -> Result<()> {
        let mut r = self
            .running
            .remove(&id)
            .ok_or_else(|| anyhow!("node {id} is not running"))?;
        let _ = r.child.kill();
        r.child
            .wait()
            .with_context(|| format!("waiting for node {id}"))?;
        Ok(())
    }

    /// Tests: start node `id` again and wait until it answers health. On failure (the
    /// node exits, or does not answer in time) it is killed and the error shows its log.
    pub async fn start_node(&mut self, id: NodeId) -> Result<()> {
        self.spawn(id)?;
        if let Err(e) = self.wait_up(&[id]).await {
            let _ = self.kill_node(id);
            return Err(e);
        }
        Ok(())
    }

    /// Stops node `id` cleanly (SIGTERM, then SIGKILL after the grace period).
    pub async fn stop_node(&mut self, id: NodeId) -> Result<()> {
        if !self.running.contains_key(&id) {
            bail!("node {id} is not running");
        }
        self.stop(&[id]).await;
        Ok(())
    }

    /// Stops every node: SIGTERM, up to 10 s to exit (they release their RocksDB), then
    /// SIGKILL for any still running.
    pub async fn shutdown(&mut self) {
        let ids: Vec<NodeId> = self.running.keys().copied().collect();
        self.stop(&ids).await;
    }

    async fn stop(&mut self, ids: &[NodeId]) {
        for id in ids {
            if let Some(r) = self.running.get_mut(id)
                && matches!(r.child.try_wait(), Ok(None))
            {
                // The child is not reaped yet, so its pid cannot have been reused.
                let sent = Command::new("kill")
                    .args(["-TERM", &r.child.id().to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if !sent {
                    let _ = r.child.kill();
                }
            }
        }
        let t0 = Instant::now();
        let mut left: Vec<NodeId> = ids.to_vec();
        while !left.is_empty() && t0.elapsed() < NODE_STOP_GRACE {
            left.retain(|id| {
                self.running
                    .get_mut(id)
                    .is_some_and(|r| matches!(r.child.try_wait(), Ok(None)))
            });
            if !left.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for id in ids {
            if let Some(mut r) = self.running.remove(id) {
                if matches!(r.child.try_wait(), Ok(None)) {
                    tracing::warn!(
                        node = id,
                        "node did not stop within {} s; killing it",
                        NODE_STOP_GRACE.as_secs()
                    );
                    let _ = r.child.kill();
                }
                let _ = r.child.wait();
            }
        }
    }

    fn kill_all(&mut self) {
        for (_, mut r) in std::mem::take(&mut self.running) {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }
}

impl Drop for NodeProcesses {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// The last `lines` lines of `path` written after byte `from` (at most 64 KiB read).
fn log_tail(path: &Path, from: u64, lines: usize) -> String {
    const MAX: u64 = 64 * 1024;
    let Ok(mut f) = std::fs::File::open(path) else {
        return "(no log)".into();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = from.max(len.saturating_sub(MAX));
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.take(MAX).read_to_end(&mut buf).is_err() {
        return "(log unreadable)".into();
    }
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    let tail: Vec<&str> = all
        .iter()
        .skip(all.len().saturating_sub(lines))
        .copied()
        .collect();
    if tail.is_empty() {
        "(empty)".into()
    } else {
        tail.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_binary_explicit_and_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("custos-node");
        let e = node_binary(Some(&missing)).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        std::fs::write(&missing, "").unwrap();
        assert_eq!(node_binary(Some(&missing)).unwrap(), missing);
    }

    #[test]
    fn log_tail_shows_only_this_run() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("node.log");
        std::fs::write(&p, "old 1\nold 2\n").unwrap();
        let from = std::fs::metadata(&p).unwrap().len();
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        for i in 0..40 {
            writeln!(f, "line {i}").unwrap();
        }
        let t = log_tail(&p, from, 3);
        assert_eq!(t, "line 37\nline 38\nline 39");
        assert_eq!(log_tail(&p, from, 100).lines().count(), 40);
    }
}
