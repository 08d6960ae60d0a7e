//! The service config of the dev folder, `host/host.toml`.

use super::DevLayout;
use super::layout::utf8;
use crate::config::ServiceConfig;
use anyhow::{Context, Result};
use custos_coordinator::cluster::write_file;
use std::path::Path;

const HOST_TOML_HEADER: &str = "# custos dev: the service config. Kept between runs; only `listen` and\n\
     # `policies_dir` follow the `custos dev` command line.\n";

/// `host/host.toml`. Written as a table so keys a user added survive an update.
pub(super) fn write_host_config(layout: &DevLayout, listen: &str, policies: &Path) -> Result<()> {
    let path = &layout.host_config;
    let policies = toml::Value::String(utf8(policies)?.to_string());
    let listen = toml::Value::String(listen.to_string());
    let mut table = if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading `{}`", path.display()))?;
        text.parse::<toml::Table>()
            .with_context(|| format!("service config `{}`", path.display()))?
    } else {
        let tls = layout.host_tls();
        let s = |p: &Path| utf8(p).map(|s| toml::Value::String(s.to_string()));
        let mut t = toml::Table::new();
        t.insert("data_dir".into(), s(&layout.host_data)?);
        t.insert("clients_file".into(), s(&layout.clients_file)?);
        t.insert("group_file".into(), s(&layout.cluster.group_file)?);
        let mut tt = toml::Table::new();
        tt.insert("ca_cert".into(), s(&tls.ca_cert)?);
        tt.insert("cert".into(), s(&tls.cert)?);
        tt.insert("key".into(), s(&tls.key)?);
        t.insert("tls".into(), toml::Value::Table(tt));
        t
    };
    let before = table.clone();
    table.insert("listen".into(), listen);
    table.insert("policies_dir".into(), policies);
    if !path.exists() || table != before {
        let text = format!(
            "{HOST_TOML_HEADER}{}",
            toml::to_string(&table).context("encoding the service config")?
        );
        write_file(path, text.as_bytes(), false)?;
    }
    ServiceConfig::load(path).map(|_| ())
}
