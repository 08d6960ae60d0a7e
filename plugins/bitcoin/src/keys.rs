//! Networks, secp256k1 public keys, P2WPKH scripts / addresses and signature checks (the
//! key and signature shapes are the SDK's, `custos_plugin_sdk::secp256k1`).

use bitcoin::{Address, CompressedPublicKey, Network, ScriptBuf};
use custos_plugin_sdk::secp256k1::{self, VerifyingKey};
use custos_plugin_sdk::{PluginError, PluginResult, Signature};
use k256::ecdsa::Signature as EcdsaSignature;
use k256::ecdsa::signature::hazmat::PrehashVerifier;

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
    let point = secp256k1::parse_public_key(bytes)?;
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
    let low = secp256k1::normalise_signature(sig)?.signature;
    key.point.verify_prehash(digest, &low).map_err(|_| {
        PluginError::signature(format!(
            "signature {} does not verify against the public key and the sighash of input {}",
            sig.index, sig.index
        ))
    })?;
    Ok(low)
}
