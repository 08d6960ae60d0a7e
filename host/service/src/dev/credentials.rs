//! The dev API clients: `host/clients.json` (generated once: the main client and two
//! approvers, DESIGN §7) and `credentials.json` (derived from it for `custos call` and the
//! tests, with each approver's id and Ed25519 approver key from the cluster's dev
//! authority). Both owner-only; secrets are never printed.

use super::DevLayout;
use crate::client::{ApproverCredentials, Credentials, StatementSigner};
use anyhow::{Context, Result, anyhow, bail};
use custos_authority::keys::KeyFile;
use custos_coordinator::cluster::{APPROVERS, write_file};
use rand_core::{OsRng, RngCore};
use std::path::Path;
use zeroize::Zeroizing;

/// The clients `custos dev` creates (names in `clients.json`); the approvers' names are
/// their ids in the nodes' approver pins.
const MAIN_CLIENT: &str = "main";
const MAIN_ROLES: [&str; 3] = ["signer", "admin", "auditor"];
const APPROVER_ROLES: [&str; 1] = ["approver"];
const LOOPBACK_ALLOWLIST: [&str; 2] = ["127.0.0.0/8", "::1/128"];
/// Generous, so the load benchmark measures the service rather than the limiter.
const RATE_PER_SECOND: u32 = 1000;
const RATE_BURST: u32 = 2000;

fn random_hex(bytes: usize) -> Zeroizing<String> {
    let mut b = Zeroizing::new(vec![0u8; bytes]);
    OsRng.fill_bytes(&mut b);
    Zeroizing::new(hex::encode(&*b))
}

fn client_entry(name: &str, roles: &[&str]) -> serde_json::Value {
    let mut ak = [0u8; 10];
    OsRng.fill_bytes(&mut ak);
    serde_json::json!({
        "name": name,
        "access_key": format!("AK{}", hex::encode_upper(ak)),
        "secret_key": random_hex(32).as_str(),
        "roles": roles,
        "ip_allowlist": LOOPBACK_ALLOWLIST,
        "rate_limit": {"per_second": RATE_PER_SECOND, "burst": RATE_BURST},
    })
}

/// (access key, secret, roles) of the client called `name` in a clients file.
fn client_keys(
    clients: &serde_json::Value,
    name: &str,
    file: &Path,
) -> Result<(String, Zeroizing<String>, Vec<String>)> {
    let missing = || {
        anyhow!(
            "`{}` has no usable client `{name}`; remove it to generate new dev credentials",
            file.display()
        )
    };
    let c = clients
        .get("clients")
        .and_then(|c| c.as_array())
        .and_then(|a| {
            a.iter()
                .find(|c| c.get("name").and_then(|n| n.as_str()) == Some(name))
        })
        .ok_or_else(missing)?;
    let s = |k: &str| c.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let roles = c
        .get("roles")
        .and_then(|r| r.as_array())
        .map(|r| {
            r.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .ok_or_else(missing)?;
    Ok((
        s("access_key").ok_or_else(missing)?,
        Zeroizing::new(s("secret_key").ok_or_else(missing)?),
        roles,
    ))
}

/// The secret key (hex) of dev approver `i`, whose id must be `id`, from its key file
/// (`{"id","role","secret_key"}`, custos_authority::keys), checked to be the key the
/// nodes pin.
fn approver_signing_key(layout: &DevLayout, i: usize, id: &str) -> Result<Zeroizing<String>> {
    #[derive(serde::Deserialize)]
    struct Secret {
        secret_key: String,
    }
    let authority = &layout.cluster.authority;
    let file = authority
        .approver_keys
        .get(i)
        .ok_or_else(|| anyhow!("the dev cluster has no approver key {}", i + 1))?;
    let key = KeyFile::read(file)?;
    if key.id != id {
        bail!(
            "`{}` is the key of `{}`, not of the dev approver `{id}`",
            file.display(),
            key.id
        );
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(file).with_context(|| format!("reading `{}`", file.display()))?,
    );
    // No serde message: it may quote the secret.
    let secret = Zeroizing::new(
        serde_json::from_str::<Secret>(&text)
            .map_err(|_| anyhow!("`{}` is not a custos key file", file.display()))?
            .secret_key,
    );
    let signer = StatementSigner::from_hex(&secret)
        .with_context(|| format!("`{}` is not a custos key file", file.display()))?;
    if signer.public_hex() != key.public_hex() {
        bail!("`{}` does not read back as the same key", file.display());
    }
    Ok(secret)
}

/// `host/clients.json` (generated once) and `credentials.json` (derived from it, with
/// `base_url` = `http://LISTEN`; rewritten only when it differs). Both owner-only.
pub(super) fn write_credentials_and_clients(layout: &DevLayout, listen: &str) -> Result<()> {
    let file = &layout.clients_file;
    let clients = if file.exists() {
        let text = Zeroizing::new(
            std::fs::read_to_string(file)
                .with_context(|| format!("reading `{}`", file.display()))?,
        );
        serde_json::from_str::<serde_json::Value>(&text)
            .with_context(|| format!("clients file `{}`", file.display()))?
    } else {
        let mut list = vec![client_entry(MAIN_CLIENT, &MAIN_ROLES)];
        list.extend(APPROVERS.iter().map(|a| client_entry(a, &APPROVER_ROLES)));
        let v = serde_json::json!({ "clients": list });
        let text =
            Zeroizing::new(serde_json::to_string_pretty(&v).context("encoding the clients file")?);
        write_file(file, text.as_bytes(), true)?;
        v
    };
    let (access_key, secret_key, roles) = client_keys(&clients, MAIN_CLIENT, file)?;
    let mut approvers = Vec::new();
    for (i, a) in APPROVERS.iter().enumerate() {
        let (access_key, secret_key, roles) = client_keys(&clients, a, file)?;
        approvers.push(ApproverCredentials {
            access_key,
            secret_key: secret_key.to_string(),
            roles,
            approver_id: Some(a.to_string()),
            signing_key: Some(approver_signing_key(layout, i, a)?.to_string()),
        });
    }
    let creds = Credentials {
        base_url: format!("http://{listen}"),
        access_key,
        secret_key: secret_key.to_string(),
        roles,
        approvers,
    };
    let text = Zeroizing::new(
        serde_json::to_string_pretty(&creds).context("encoding the credentials")? + "\n",
    );
    let current = std::fs::read_to_string(&layout.credentials)
        .ok()
        .map(Zeroizing::new);
    if current.as_deref().map(String::as_str) != Some(text.as_str()) {
        write_file(&layout.credentials, text.as_bytes(), true)?;
    }
    Ok(())
}
