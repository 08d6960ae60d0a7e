//! A real node group for tests: dev PKI, 4 `custos-node` processes on loopback with
//! mTLS, each with its own DEK file, identity key and RocksDB, and the host coordinator.
#![allow(dead_code)]

use custos_coordinator::{Coordinator, TlsFiles, pki};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const NODES: u16 = 4;

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub children: BTreeMap<u16, Child>,
    pub addresses: BTreeMap<u16, String>,
}

pub fn passphrase(id: u16) -> String {
    format!("correct horse battery staple {id}")
}

/// Outside the kernel's ephemeral range, so no outgoing connection takes it before the
/// node binds it.
fn free_port() -> u16 {
    custos_coordinator::ports::unused_loopback_port(&[]).unwrap()
}

impl Cluster {
    pub fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }
    pub fn node_dir(&self, id: u16) -> PathBuf {
        self.dir.path().join(format!("tss{id}"))
    }
    pub fn data_dir(&self, id: u16) -> PathBuf {
        self.node_dir(id).join("data")
    }
    pub fn config(&self, id: u16) -> PathBuf {
        self.node_dir(id).join("node.toml")
    }
    pub fn log(&self, id: u16) -> PathBuf {
        self.node_dir(id).join("node.log")
    }
    pub fn group_file(&self) -> PathBuf {
        self.dir.path().join("group.toml")
    }
    pub fn host_tls(&self) -> TlsFiles {
        let p = pki::paths(&self.certs(), pki::HOST_NAME);
        TlsFiles {
            ca_cert: pki::ca_cert(&self.certs()),
            cert: p.cert,
            key: p.key,
        }
    }

    /// Creates everything and starts the 4 nodes; waits until all answer health.
    pub async fn start(primes: bool) -> (Cluster, Coordinator) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cluster {
            dir,
            children: BTreeMap::new(),
            addresses: BTreeMap::new(),
        };
        pki::create(&c.certs(), NODES).unwrap();
        let mut identities = BTreeMap::new();
        for id in 1..=NODES {
            c.addresses.insert(id, format!("127.0.0.1:{}", free_port()));
            c.write_config(id, primes);
            let out = Command::new(env!("CARGO_BIN_EXE_custos-node"))
                .args(["init", "--config"])
                .arg(c.config(id))
                .env(format!("CUSTOS_TSS{id}_PASSPHRASE"), passphrase(id))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "init {id}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            identities.insert(
                id,
                String::from_utf8(out.stdout).unwrap().trim().to_string(),
            );
        }
        let mut group = String::new();
        for id in 1..=NODES {
            group.push_str(&format!(
                "[[nodes]]\nid = {id}\naddress = \"{}\"\nname = \"tss{id}\"\nidentity = \"{}\"\n\n",
                c.addresses[&id], identities[&id]
            ));
        }
        std::fs::write(c.group_file(), group).unwrap();
        for id in 1..=NODES {
            c.spawn(id);
        }
        let coord = Coordinator::new(&c.group_file(), &c.host_tls()).unwrap();
        c.wait_up(&coord, &(1..=NODES).collect::<Vec<_>>()).await;
        (c, coord)
    }

    pub fn write_config(&self, id: u16, primes: bool) {
        let certs = self.certs();
        let fixture = if primes {
            format!(
                "\n[cggmp21]\nprimes_pool = 1\nprimes_fixture = \"{}\"\n",
                Path::new(
                    &std::env::var("CARGO_MANIFEST_DIR")
                        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string())
                )
                .join(format!("tests/fixtures/primes-{id}.json"))
                .display()
            )
        } else {
            "\n[cggmp21]\nprimes_pool = 0\n".to_string()
        };
        let text = format!(
            "id = {id}\nlisten = \"{addr}\"\ndata_dir = \"{data}\"\ndek_file = \"{certs}/tss{id}/tss{id}.dek\"\nidentity_key = \"{certs}/tss{id}/tss{id}.identity\"\ngroup_file = \"{group}\"\n\n[tls]\nca_cert = \"{certs}/ca.cert\"\ncert = \"{certs}/tss{id}/tss{id}.cert\"\nkey = \"{certs}/tss{id}/tss{id}.key\"\nhost_name = \"gateway\"\n\n[passphrase]\nsource = \"env\"\nenv = \"CUSTOS_TSS{id}_PASSPHRASE\"\n{fixture}",
            addr = self.addresses[&id],
            data = self.data_dir(id).display(),
            certs = certs.display(),
            group = self.group_file().display(),
        );
        std::fs::create_dir_all(self.node_dir(id)).unwrap();
        std::fs::write(self.config(id), text).unwrap();
    }

    pub fn spawn_with(&mut self, id: u16, pass: &str) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(id))
            .unwrap();
        Command::new(env!("CARGO_BIN_EXE_custos-node"))
            .args(["serve", "--config"])
            .arg(self.config(id))
            .env(format!("CUSTOS_TSS{id}_PASSPHRASE"), pass)
            .env("CUSTOS_LOG", "debug")
            .env("CUSTOS_NODE_MESSAGE_TIMEOUT_SECS", "20")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    pub fn spawn(&mut self, id: u16) {
        let child = self.spawn_with(id, &passphrase(id));
        self.children.insert(id, child);
    }

    pub fn kill(&mut self, id: u16) {
        if let Some(mut c) = self.children.remove(&id) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait (the node shuts down cleanly and releases its RocksDB lock).
    pub fn stop(&mut self, id: u16) {
        if let Some(mut c) = self.children.remove(&id) {
            unsafe_sigterm(c.id());
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn wait_up(&self, coord: &Coordinator, ids: &[u16]) {
        let t0 = Instant::now();
        loop {
            let (up, _) = coord.survey().await;
            if ids.iter().all(|i| up.contains_key(i)) {
                return;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                let logs: String = ids
                    .iter()
                    .map(|i| std::fs::read_to_string(self.log(*i)).unwrap_or_default())
                    .collect();
                panic!("nodes {ids:?} did not come up; logs:\n{logs}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u16> = self.children.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }
}

/// Every file under `dir` (recursively) as (path, bytes).
pub fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push((p, b));
            }
        }
    }
    out
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
