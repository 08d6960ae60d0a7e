//! `custos dev` itself: one run per folder (a lock), the nodes then the service, serving
//! until Ctrl-C or SIGTERM, then the service drained and the nodes stopped.

use super::{DevLayout, DevOptions, NodeProcesses, node_binary, prepare};
use crate::Service;
use crate::config::ServiceConfig;
use anyhow::{Context, Result, anyhow, bail};
use custos_coordinator::cluster::private_dir;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

/// Resolves on Ctrl-C (SIGINT) or SIGTERM with the signal's name. The handlers are
/// installed when this is called, so a signal arriving before the future is polled is not
/// lost (and does not kill the process with children left behind).
pub fn shutdown_signal() -> Result<impl Future<Output = &'static str> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => "Ctrl-C",
            _ = term.recv() => "SIGTERM",
        }
    })
}

/// `custos dev`: prepares the dev folder, starts the 4 nodes and the service, serves until
/// Ctrl-C or SIGTERM, then drains the service and stops the nodes. An error (with the
/// nodes stopped) when anything fails to come up.
pub async fn run(mut opts: DevOptions) -> Result<()> {
    let mut signal = Box::pin(shutdown_signal()?);
    // Held until we return: a second `custos dev` on the same folder stops here, before
    // it rewrites the credentials or the configs of the running one.
    let _lock = lock_data_dir(&opts.data_dir)?;
    // Bound first: a taken port fails before anything starts, and port 0 gets its real
    // port into the credentials.
    let listener = tokio::net::TcpListener::bind(&opts.listen)
        .await
        .with_context(|| format!("binding the API to `{}`", opts.listen))?;
    let local = listener.local_addr().context("reading the API's address")?;
    if opts.listen.ends_with(":0") {
        opts.listen = local.to_string();
    }
    let binary = node_binary(opts.node_binary.as_deref())?;
    opts.node_binary = Some(binary.clone());
    let layout = {
        let o = opts.clone();
        tokio::task::spawn_blocking(move || prepare(&o))
            .await
            .context("the set-up task failed")?
            .with_context(|| format!("preparing `{}`", opts.data_dir.display()))?
    };

    let started = tokio::select! {
        r = start_all(&binary, &layout) => r,
        why = &mut signal => Err(anyhow!("stopped by {why} while starting")),
    };
    let (mut nodes, service) = started?;

    print_where_to_look(&layout, &opts.listen);
    let served = service
        .run(listener, async move {
            let why = signal.await;
            tracing::info!("{why}: stopping the service, then the nodes");
        })
        .await;
    nodes.shutdown().await;
    tracing::info!("custos dev stopped");
    served
}

/// An exclusive lock on `DIR/dev.lock` (released when the file is closed, also on a crash).
fn lock_data_dir(dir: &Path) -> Result<std::fs::File> {
    private_dir(dir)?;
    let path = dir.join("dev.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening `{}`", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "`{}` is in use by another `custos dev`; stop it first or pass another --data-dir",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking `{}`", path.display()))
        }
    }
}

async fn start_all(binary: &Path, layout: &DevLayout) -> Result<(NodeProcesses, Arc<Service>)> {
    let mut nodes = NodeProcesses::start(binary, &layout.cluster)
        .await
        .context("starting the TSS nodes")?;
    let started = async {
        let config = ServiceConfig::load(&layout.host_config)?;
        Service::start(&config).await
    }
    .await
    .context("starting the service");
    match started {
        Ok(s) => Ok((nodes, s)),
        Err(e) => {
            nodes.shutdown().await;
            Err(e)
        }
    }
}

fn print_where_to_look(layout: &DevLayout, listen: &str) {
    let base = format!("http://{listen}");
    let logs = layout
        .nodes()
        .iter()
        .map(|n| n.log.display().to_string())
        .collect::<Vec<_>>();
    println!("custos dev is up: 4 TSS nodes and the service");
    println!("  API          {base}/api/v1  (OpenAPI: {base}/api/v1/openapi.json)");
    println!("  health       {base}/healthz   metrics: {base}/metrics");
    println!(
        "  credentials  {}  (main client + 2 approvers; keep it private)",
        layout.credentials.display()
    );
    println!("  config       {}", layout.host_config.display());
    println!("  node logs    {}", logs.join("\n               "));
    println!(
        "  data         {}  (kept between runs; remove it to start afresh)",
        layout.dir.display()
    );
    println!("  stop         Ctrl-C or SIGTERM: drains requests, then stops the nodes");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_is_used_by_one_dev_run_at_a_time() {
        let tmp = tempfile::tempdir().unwrap();
        let held = lock_data_dir(tmp.path()).unwrap();
        let e = lock_data_dir(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("in use by another `custos dev`"), "{e}");
        drop(held);
        lock_data_dir(tmp.path()).unwrap();
    }
}
