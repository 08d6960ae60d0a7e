//! The subset of the TRON protobuf schema custos reads, as hand-written prost messages.
//!
//! Field numbers follow java-tron `protocol/src/main/protos/core/Tron.proto`
//! (`Transaction`, `Transaction.raw`, `Transaction.Contract`),
//! `core/contract/balance_contract.proto` (`TransferContract`) and
//! `core/contract/smart_contract.proto` (`TriggerSmartContract`), plus
//! `google/protobuf/any.proto`.
//!
//! prost skips fields it does not know. custos must not: the txID is sha256 over the raw
//! bytes, so a field we did not show would be signed blind. [`decode_exact`] therefore
//! re-encodes what it decoded and refuses the input unless the bytes are identical. That
//! also refuses non-canonical encodings (fields out of order, a default value written
//! out, an over-long varint, a repeated scalar), which java-tron and the usual wallet
//! libraries never produce.

use custos_plugin_sdk::{PluginError, PluginResult};
use prost::Message;

/// `protocol.Transaction`: what `assemble` writes. `raw_data` is kept as the exact bytes
/// received (a length-delimited field, the same on the wire as the embedded message).
#[derive(Clone, PartialEq, Message)]
pub struct Transaction {
    #[prost(bytes = "vec", tag = "1")]
    pub raw_data: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub signature: Vec<Vec<u8>>,
}

/// `protocol.Transaction.raw`.
#[derive(Clone, PartialEq, Message)]
pub struct Raw {
    #[prost(bytes = "vec", tag = "1")]
    pub ref_block_bytes: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub ref_block_num: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub ref_block_hash: Vec<u8>,
    #[prost(int64, tag = "8")]
    pub expiration: i64,
    /// `repeated authority auths`: kept opaque; a transaction carrying any is refused.
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub auths: Vec<Vec<u8>>,
    /// The memo ("note").
    #[prost(bytes = "vec", tag = "10")]
    pub data: Vec<u8>,
    #[prost(message, repeated, tag = "11")]
    pub contract: Vec<Contract>,
    /// Unused by the chain; a transaction carrying any is refused.
    #[prost(bytes = "vec", tag = "12")]
    pub scripts: Vec<u8>,
    #[prost(int64, tag = "14")]
    pub timestamp: i64,
    #[prost(int64, tag = "18")]
    pub fee_limit: i64,
}

/// `protocol.Transaction.Contract`. `type` is the `ContractType` enum, read as its number
/// (the wire form of an enum) so an unknown type can be named in the error.
#[derive(Clone, PartialEq, Message)]
pub struct Contract {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub parameter: Option<Any>,
    #[prost(bytes = "vec", tag = "3")]
    pub provider: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub contract_name: Vec<u8>,
    #[prost(int32, tag = "5")]
    pub permission_id: i32,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `protocol.TransferContract` (balance_contract.proto).
#[derive(Clone, PartialEq, Message)]
pub struct TransferContract {
    #[prost(bytes = "vec", tag = "1")]
    pub owner_address: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub to_address: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub amount: i64,
}

/// `protocol.TriggerSmartContract` (smart_contract.proto).
#[derive(Clone, PartialEq, Message)]
pub struct TriggerSmartContract {
    #[prost(bytes = "vec", tag = "1")]
    pub owner_address: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub contract_address: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub call_value: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub data: Vec<u8>,
    #[prost(int64, tag = "5")]
    pub call_token_value: i64,
    #[prost(int64, tag = "6")]
    pub token_id: i64,
}

/// `ContractType` numbers custos handles.
pub const TRANSFER_CONTRACT: i32 = 1;
pub const TRIGGER_SMART_CONTRACT: i32 = 31;

/// The `type.googleapis.com/protocol.<Name>` URL java-tron packs each contract with.
pub const TYPE_URL_PREFIX: &str = "type.googleapis.com/protocol.";

/// Names of the common `ContractType` values (Tron.proto), for error messages only.
pub fn contract_type_name(ty: i32) -> Option<&'static str> {
    Some(match ty {
        0 => "AccountCreateContract",
        1 => "TransferContract",
        2 => "TransferAssetContract",
        4 => "VoteWitnessContract",
        5 => "WitnessCreateContract",
        6 => "AssetIssueContract",
        8 => "WitnessUpdateContract",
        9 => "ParticipateAssetIssueContract",
        10 => "AccountUpdateContract",
        11 => "FreezeBalanceContract",
        12 => "UnfreezeBalanceContract",
        13 => "WithdrawBalanceContract",
        30 => "CreateSmartContract",
        31 => "TriggerSmartContract",
        46 => "AccountPermissionUpdateContract",
        _ => return None,
    })
}

/// Decodes `bytes` as `M`, and refuses anything prost would not write back byte for byte
/// (unknown fields, non-canonical encodings). `what` names the message in errors.
pub fn decode_exact<M: Message + Default>(bytes: &[u8], what: &str) -> PluginResult<M> {
    let msg = M::decode(bytes).map_err(|e| {
        let e = e.to_string();
        let e = e
            .strip_prefix("failed to decode Protobuf message: ")
            .unwrap_or(&e);
        PluginError::parse(format!("{what} is not valid protobuf: {e}"))
    })?;
    if msg.encode_to_vec() != bytes {
        return Err(PluginError::parse(format!(
            "{what} has fields custos does not understand or is not canonically encoded; \
             every signed field must be shown"
        )));
    }
    Ok(msg)
}
