//! The service config of the dev folder, `host/host.toml`.

use super::DevLayout;
use super::layout::utf8;
use crate::config::ServiceConfig;
use anyhow::{Context, Result};
use custos_coordinator::cluster::write_file;
use std::path::Path;

const HOST_TOML_HEADER: &str = "# custos dev: the service config. Kept between runs; `listen` follows the\n\
     # `custos dev` command line and `[authority]` the dev cluster's signed policy bundle and\n\
     # pins (the same files the nodes name).\n";

/// `host/host.toml`. Written as a table so keys a user added survive an update. A config
/// from before signed bundles loses its `policies_dir` for `[authority]`.
pub(super) fn write_host_config(layout: &DevLayout, listen: &str) -> Result<()> {
    let path = &layout.host_config;
    let s = |p: &Path| utf8(p).map(|s| toml::Value::String(s.to_string()));
    let listen = toml::Value::String(listen.to_string());
    let mut table = if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading `{}`", path.display()))?;
        text.parse::<toml::Table>()
            .with_context(|| format!("service config `{}`", path.display()))?
    } else {
        let tls = layout.host_tls();
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
    let a = &layout.cluster.authority;
    let mut authority = toml::Table::new();
    authority.insert("policy_bundle".into(), s(&a.policy_bundle)?);
    authority.insert("policy_admins".into(), s(&a.policy_admins)?);
    authority.insert("approvers".into(), s(&a.approvers)?);
    table.insert("listen".into(), listen);
    table.remove("policies_dir");
    table.insert("authority".into(), toml::Value::Table(authority));
    if !path.exists() || table != before {
        let text = format!(
            "{HOST_TOML_HEADER}{}",
            toml::to_string(&table).context("encoding the service config")?
        );
        write_file(path, text.as_bytes(), false)?;
    }
    ServiceConfig::load(path).map(|_| ())
}
