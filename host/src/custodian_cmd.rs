//! `custos custodian keygen`: a backup custodian's age X25519 identity (DESIGN §4a).
//!
//! The custodian keeps the key file; the printed line goes into the custodians file that
//! `custos-node backup --custodians` reads. The key is a standard age identity: the
//! custodian opens their share of a backup with `age -d -i KEY share.age`.

use anyhow::{Context, Result, bail};
use custos_node::age::Identity;
use custos_node::backup::{rfc3339, valid_custodian_id, write_new};
use std::path::Path;

pub fn keygen(id: &str, out: &Path) -> Result<()> {
    if !valid_custodian_id(id) {
        bail!("custodian id `{id}` is not 1–64 of [A-Za-z0-9._-]");
    }
    if out.exists() {
        bail!(
            "`{}` already exists; refusing to overwrite a key",
            out.display()
        );
    }
    let identity = Identity::generate();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let text = identity.to_key_file(&rfc3339(now));
    write_new(out, text.as_bytes()).with_context(|| format!("writing `{}`", out.display()))?;
    println!(
        "{}",
        serde_json::json!({ "id": id, "recipient": identity.recipient().to_string() })
    );
    eprintln!(
        "wrote custodian `{id}`'s age key to `{}` (owner only; keep it secret and offline). \
         Add the line above to the custodians file given to `custos-node backup --custodians`.",
        out.display()
    );
    Ok(())
}
