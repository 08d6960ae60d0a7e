//! Dev PKI (rcgen): an internal CA, the host's (gateway's) client certificate and one
//! certificate per node, in the layout of the operations runbook:
//!
//! ```text
//! DIR/ca.cert  DIR/ca.key
//! DIR/gateway/gateway.cert  DIR/gateway/gateway.key
//! DIR/tss1/tss1.cert  DIR/tss1/tss1.key   … one folder per node
//! ```
//!
//! The CA is valid 10 years, leaves 1 year. Node certificates carry their node name
//! (`tssN`) as DNS name, for server and client use; the gateway's carries `gateway`. Keys
//! are ECDSA P-256, written owner-only. Rotation = replace the files and restart.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

pub const HOST_NAME: &str = "gateway";

pub fn node_name(id: u16) -> String {
    format!("tss{id}")
}

/// Paths of one entity's certificate and key.
#[derive(Clone, Debug)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn ca_cert(dir: &Path) -> PathBuf {
    dir.join("ca.cert")
}

pub fn paths(dir: &Path, name: &str) -> CertPaths {
    CertPaths {
        cert: dir.join(name).join(format!("{name}.cert")),
        key: dir.join(name).join(format!("{name}.key")),
    }
}

fn write(path: &Path, bytes: &[u8], private: bool) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let _ = private;
    let mut f = o.open(path)?;
    f.write_all(bytes)?;
    Ok(())
}

fn leaf(
    name: &str,
    issuer: &Issuer<'_, KeyPair>,
    now: OffsetDateTime,
) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(vec![name.to_string()])?;
    p.distinguished_name.push(DnType::CommonName, name);
    p.distinguished_name
        .push(DnType::OrganizationName, "custos");
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    p.not_before = now - Duration::minutes(5);
    p.not_after = now + Duration::days(365);
    let cert = p.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Creates the CA, the gateway certificate and certificates for nodes `1..=nodes` under
/// `dir`. Refuses to overwrite an existing CA.
pub fn create(dir: &Path, nodes: u16) -> anyhow::Result<()> {
    if ca_cert(dir).exists() {
        anyhow::bail!(
            "`{}` already holds a CA; remove it to create a new PKI",
            dir.display()
        );
    }
    let now = OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "custos internal CA");
    ca.distinguished_name
        .push(DnType::OrganizationName, "custos");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = now - Duration::minutes(5);
    ca.not_after = now + Duration::days(3650);
    let ca_cert_pem = ca.self_signed(&ca_key)?.pem();
    write(&dir.join("ca.key"), ca_key.serialize_pem().as_bytes(), true)?;
    let issuer = Issuer::new(ca, ca_key);
    for name in std::iter::once(HOST_NAME.to_string()).chain((1..=nodes).map(node_name)) {
        let (cert, key) = leaf(&name, &issuer, now)?;
        let p = paths(dir, &name);
        write(&p.cert, cert.as_bytes(), false)?;
        write(&p.key, key.as_bytes(), true)?;
    }
    write(&ca_cert(dir), ca_cert_pem.as_bytes(), false)?;
    Ok(())
}

/// A second, unrelated CA with one leaf named `name` (tests: a certificate the nodes must
/// refuse). Returns (ca.cert, leaf cert, leaf key) paths under `dir`.
#[doc(hidden)]
pub fn create_foreign(dir: &Path, name: &str) -> anyhow::Result<(PathBuf, CertPaths)> {
    let now = OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "some other CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca, ca_key);
    let (cert, key) = leaf(name, &issuer, now)?;
    let p = paths(dir, name);
    write(&p.cert, cert.as_bytes(), false)?;
    write(&p.key, key.as_bytes(), true)?;
    let ca_path = dir.join("ca.cert");
    write(&ca_path, ca_pem.as_bytes(), false)?;
    Ok((ca_path, p))
}
