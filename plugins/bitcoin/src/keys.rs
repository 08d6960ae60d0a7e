//! Networks, secp256k1 public keys, P2WPKH scripts / addresses and signature checks.

use bitcoin::{Address, CompressedPublicKey, Network, ScriptBuf};
use custos_plugin_sdk::{PluginError, PluginResult, Signature};
use k256::ecdsa::signature::hazmat::PrehashVerifier;
use k256::ecdsa::{Signature as EcdsaSignature, VerifyingKey};

/// The network names this plugin accepts, in the order `info()` lists them.
pub const NETWORKS: &[&str] = &["mainnet", "testnet", "testnet4", "signet", "regtest"];

/// The network a request names; `None` means mainnet.
pub fn parse_network(network: Option<&str>) -> PluginResult<(Network, &str)> {
    let name = network.unwrap_or("mainnet");
    let net = match name {
        "mainnet" => Network::Bitcoin,
        "testnet" => Network::Testnet,
        "testnet4" => Network::Testnet4,
        "signet" => Network::Signet,
        "regtest" => Network::Regtest,
        other => {
            return Err(PluginError::network(format!(
                "unknown network `{other}`; known networks: {}",
                NETWORKS.join(", ")
            )));
        }
    };
    Ok((net, name))
}

/// A signer's key: the curve point and the forms Bitcoin uses.
#[derive(Clone, Debug)]
pub struct Key {
    pub point: VerifyingKey,
    /// 33-byte SEC1 compressed form (what P2WPKH commits to and the witness carries).
    pub compressed: CompressedPublicKey,
}

impl Key {
    /// The P2WPKH output script of this key.
    pub fn p2wpkh_script(&self) -> ScriptBuf {
        ScriptBuf::new_p2wpkh(&self.compressed.wpubkey_hash())
    }

    /// The P2WPKH address of this key on `network`.
    pub fn p2wpkh_address(&self, network: Network) -> String {
        Address::p2wpkh(&self.compressed, network).to_string()
    }

    pub fn compressed_bytes(&self) -> [u8; 33] {
        self.compressed.to_bytes()
    }
}

/// Parses a SEC1 public key (33-byte compressed or 65-byte uncompressed); P2WPKH always
/// uses the compressed form of the point.
pub fn parse_public_key(bytes: &[u8]) -> PluginResult<Key> {
    if bytes.len() != 33 && bytes.len() != 65 {
        return Err(PluginError::public_key(format!(
            "expected a 33-byte compressed or 65-byte uncompressed secp256k1 public key, got {} bytes",
            bytes.len()
        )));
    }
    let point = VerifyingKey::from_sec1_bytes(bytes)
        .map_err(|_| PluginError::public_key("public key is not a point on secp256k1"))?;
    let encoded = point.to_encoded_point(true);
    let compressed = CompressedPublicKey::from_slice(encoded.as_bytes())
        .map_err(|_| PluginError::internal("compressed public key refused by rust-bitcoin"))?;
    Ok(Key { point, compressed })
}

/// Checks a 65-byte r || s || recovery-id signature over the BIP-143 `digest` of input
/// `sig.index` against `key`, and returns it low-s (BIP-62 / standardness rule).
pub fn check_signature(
    sig: &Signature,
    digest: &[u8; 32],
    key: &Key,
) -> PluginResult<EcdsaSignature> {
    let bytes: &[u8; 65] = sig.bytes.as_slice().try_into().map_err(|_| {
        PluginError::signature(format!(
            "signature {} must be 65 bytes (r || s || recovery id), got {}",
            sig.index,
            sig.bytes.len()
        ))
    })?;
    let (rs, v) = bytes.split_at(64);
    let v = v.first().copied().unwrap_or(0xff);
    if v > 1 {
        return Err(PluginError::signature(format!(
            "signature {}: recovery id must be 0 or 1, got {v}",
            sig.index
        )));
    }
    let parsed = EcdsaSignature::from_slice(rs).map_err(|_| {
        PluginError::signature(format!(
            "signature {}: r or s is zero or not below the curve order",
            sig.index
        ))
    })?;
    let low = parsed.normalize_s().unwrap_or(parsed);
    key.point.verify_prehash(digest, &low).map_err(|_| {
        PluginError::signature(format!(
            "signature {} does not verify against the public key and the sighash of input {}",
            sig.index, sig.index
        ))
    })?;
    Ok(low)
}
