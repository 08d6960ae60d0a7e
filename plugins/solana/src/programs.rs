//! What the instructions of a message do: system and SPL token transfers, compute budget,
//! associated token accounts, memos and signature precompiles are decoded; anything else
//! is an opaque program call.
//!
//! Instruction data of the programs decoded here must have exactly the length its
//! instruction needs: the programs themselves ignore trailing bytes, but a message that
//! carries any is not what a wallet builds and is refused rather than guessed at.

use crate::message::{Key, Message, b58};
use custos_plugin_sdk::{
    Allowance, Asset, AssetKind, CallArg, ContractCall, PluginError, PluginResult, Transfer,
};

pub const SYSTEM: &str = "11111111111111111111111111111111";
pub const TOKEN: &str = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
pub const TOKEN_2022: &str = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb";
pub const ASSOCIATED_TOKEN: &str = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL";
pub const COMPUTE_BUDGET: &str = "ComputeBudget111111111111111111111111111111";
const MEMO: &str = "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr";
const MEMO_V1: &str = "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo";
const ED25519_PRECOMPILE: &str = "Ed25519SigVerify111111111111111111111111111";
const SECP256K1_PRECOMPILE: &str = "KeccakSecp256k11111111111111111111111111111";
const SECP256R1_PRECOMPILE: &str = "Secp256r1SigVerify1111111111111111111111111";

/// Lamports per signature (the base fee).
pub const LAMPORTS_PER_SIGNATURE: u128 = 5_000;
/// The most compute units a transaction may ask for.
pub const MAX_COMPUTE_UNIT_LIMIT: u32 = 1_400_000;
/// Units a transaction gets per instruction when it sets no limit (an upper bound: the
/// runtime gives builtin programs less).
pub const DEFAULT_UNITS_PER_INSTRUCTION: u32 = 200_000;

/// Tokens whose symbol is shown (mainnet mints; decimals as the mint declares them).
fn known_token(network: &str, mint: &str) -> Option<(&'static str, u8)> {
    match (network, mint) {
        ("mainnet", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v") => Some(("USDC", 6)),
        ("mainnet", "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB") => Some(("USDT", 6)),
        _ => None,
    }
}

fn token_method(tag: u8) -> Option<&'static str> {
    Some(match tag {
        0 => "initializeMint",
        1 => "initializeAccount",
        2 => "initializeMultisig",
        3 => "transfer",
        4 => "approve",
        5 => "revoke",
        6 => "setAuthority",
        7 => "mintTo",
        8 => "burn",
        9 => "closeAccount",
        10 => "freezeAccount",
        11 => "thawAccount",
        12 => "transferChecked",
        13 => "approveChecked",
        14 => "mintToChecked",
        15 => "burnChecked",
        16 => "initializeAccount2",
        17 => "syncNative",
        18 => "initializeAccount3",
        _ => return None,
    })
}

fn system_method(tag: u32) -> Option<&'static str> {
    Some(match tag {
        0 => "createAccount",
        1 => "assign",
        2 => "transfer",
        3 => "createAccountWithSeed",
        4 => "advanceNonceAccount",
        5 => "withdrawNonceAccount",
        6 => "initializeNonceAccount",
        7 => "authorizeNonceAccount",
        8 => "allocate",
        9 => "allocateWithSeed",
        10 => "assignWithSeed",
        11 => "transferWithSeed",
        12 => "upgradeNonceAccount",
        _ => return None,
    })
}

/// What the instructions of a message amount to.
#[derive(Default)]
pub struct Summary {
    /// Value the signer pays.
    pub transfers: Vec<Transfer>,
    /// Delegations granted by SPL `approve` / `approveChecked`, whoever the owner is.
    pub allowances: Vec<Allowance>,
    /// The first instruction of a program (or method) this plugin does not decode.
    pub call: Option<ContractCall>,
    pub unknown_instructions: usize,
    /// Value moved by instructions whose source is not the signer.
    pub transfers_not_from_signer: usize,
    pub extra: Vec<(String, String)>,
    pub unit_limit: Option<u32>,
    pub unit_price: Option<u64>,
    pub precompile_signatures: u64,
    pub non_budget_instructions: u32,
}

impl Summary {
    /// Base fee for every signature plus the most the priority fee can be.
    pub fn fee_max(&self, num_required_signatures: u8) -> u128 {
        let sigs = u128::from(num_required_signatures) + u128::from(self.precompile_signatures);
        let limit = match self.unit_limit {
            Some(l) => l.min(MAX_COMPUTE_UNIT_LIMIT),
            None => self
                .non_budget_instructions
                .saturating_mul(DEFAULT_UNITS_PER_INSTRUCTION)
                .min(MAX_COMPUTE_UNIT_LIMIT),
        };
        let micro = u128::from(self.unit_price.unwrap_or(0)) * u128::from(limit);
        sigs * LAMPORTS_PER_SIGNATURE + micro.div_ceil(1_000_000)
    }
}

/// Little-endian u32 at `at` (callers checked the length; short data reads as 0).
fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

/// Little-endian u64 at `at` (callers checked the length; short data reads as 0).
fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

fn exact(i: usize, what: &str, data: &[u8], len: usize) -> PluginResult<()> {
    if data.len() != len {
        return Err(PluginError::parse(format!(
            "instruction {i}: {what} data must be {len} bytes, got {}",
            data.len()
        )));
    }
    Ok(())
}

fn min_accounts(i: usize, what: &str, accounts: &[u8], n: usize) -> PluginResult<()> {
    if accounts.len() < n {
        return Err(PluginError::parse(format!(
            "instruction {i}: {what} needs {n} accounts, got {}",
            accounts.len()
        )));
    }
    Ok(())
}

/// A bincode string inside system-program data: u64 length, then UTF-8 bytes.
fn seed_string(i: usize, data: &[u8], at: usize) -> PluginResult<(&[u8], usize)> {
    let bad = || PluginError::parse(format!("instruction {i}: seed string is truncated"));
    let len = data.get(at..at + 8).map(|b| le_u64(b, 0)).ok_or_else(bad)?;
    let len = usize::try_from(len).map_err(|_| bad())?;
    let end = (at + 8).checked_add(len).ok_or_else(bad)?;
    let s = data.get(at + 8..end).ok_or_else(bad)?;
    Ok((s, end))
}

struct Ctx<'m, 'a> {
    msg: &'m Message<'a>,
    signer: &'m Key,
    network: &'m str,
}

impl Ctx<'_, '_> {
    fn acc(&self, accounts: &[u8], n: usize) -> String {
        accounts
            .get(n)
            .and_then(|&a| self.msg.account(a))
            .map(|a| a.render())
            .unwrap_or_default()
    }

    fn is_signer(&self, accounts: &[u8], n: usize) -> bool {
        accounts
            .get(n)
            .and_then(|&a| self.msg.account(a))
            .and_then(|a| a.key().copied())
            .is_some_and(|k| &k == self.signer)
    }
}

fn native(to: String, lamports: u64) -> Transfer {
    Transfer {
        to,
        amount: lamports.to_string(),
        asset: Asset::native("SOL", 9),
        is_change: false,
    }
}

/// An SPL delegation of `amount` to `delegate` over `contract` (the mint when the
/// instruction names it, else the source token account); `checked` carries the symbol
/// when known and the decimals the instruction states. Unlimited only at `u64::MAX`: a
/// u64 has no room for "huge but bounded" values the way a uint256 does.
fn spl_allowance(
    delegate: String,
    contract: String,
    checked: Option<(Option<&str>, u8)>,
    amount: u64,
) -> Allowance {
    Allowance {
        spender: delegate,
        asset: Asset {
            kind: AssetKind::Token,
            symbol: checked.and_then(|(s, _)| s).map(String::from),
            contract: Some(contract),
            decimals: checked.map(|(_, d)| d),
        },
        amount: amount.to_string(),
        unlimited: amount == u64::MAX,
        expiry: None,
    }
}

/// Decodes every instruction of `msg` as paid for by `signer`.
pub fn summarize(msg: &Message<'_>, signer: &Key, network: &str) -> PluginResult<Summary> {
    let cx = Ctx {
        msg,
        signer,
        network,
    };
    let mut s = Summary::default();
    for (i, ix) in msg.instructions.iter().enumerate() {
        let program = msg
            .static_key(ix.program_index)
            .map(|k| b58(&k[..]))
            .unwrap_or_default();
        let (acc, data) = (ix.accounts, ix.data);
        let key = format!("instruction_{i}");
        if program != COMPUTE_BUDGET {
            s.non_budget_instructions = s.non_budget_instructions.saturating_add(1);
        }
        // (description, value paid, paid by the signer)
        let mut moved: Option<(Transfer, bool)> = None;
        let desc: String = match program.as_str() {
            SYSTEM => {
                if data.len() < 4 {
                    return Err(PluginError::parse(format!(
                        "instruction {i}: system instruction data is shorter than 4 bytes"
                    )));
                }
                let tag = le_u32(data, 0);
                match tag {
                    2 => {
                        exact(i, "system transfer", data, 12)?;
                        min_accounts(i, "system transfer", acc, 2)?;
                        let lamports = le_u64(data, 4);
                        let to = cx.acc(acc, 1);
                        moved = Some((native(to.clone(), lamports), cx.is_signer(acc, 0)));
                        format!(
                            "system transfer {lamports} lamports {} -> {to}",
                            cx.acc(acc, 0)
                        )
                    }
                    11 => {
                        let (seed, end) = seed_string(i, data, 12)?;
                        exact(i, "system transferWithSeed", data, end + 32)?;
                        min_accounts(i, "system transferWithSeed", acc, 3)?;
                        let lamports = le_u64(data, 4);
                        let to = cx.acc(acc, 2);
                        // The funded-from account is derived from the base key, which signs.
                        moved = Some((native(to.clone(), lamports), cx.is_signer(acc, 1)));
                        format!(
                            "system transferWithSeed {lamports} lamports {} (base {}, seed `{}`) -> {to}",
                            cx.acc(acc, 0),
                            cx.acc(acc, 1),
                            String::from_utf8_lossy(seed)
                        )
                    }
                    0 => {
                        exact(i, "system createAccount", data, 52)?;
                        min_accounts(i, "system createAccount", acc, 2)?;
                        let lamports = le_u64(data, 4);
                        let to = cx.acc(acc, 1);
                        moved = Some((native(to.clone(), lamports), cx.is_signer(acc, 0)));
                        format!(
                            "system createAccount {to} funded with {lamports} lamports by {}, space {}, owner {}",
                            cx.acc(acc, 0),
                            le_u64(data, 12),
                            b58(data.get(20..52).unwrap_or_default())
                        )
                    }
                    3 => {
                        let (_, end) = seed_string(i, data, 36)?;
                        exact(i, "system createAccountWithSeed", data, end + 48)?;
                        min_accounts(i, "system createAccountWithSeed", acc, 2)?;
                        let lamports = le_u64(data, end);
                        let to = cx.acc(acc, 1);
                        moved = Some((native(to.clone(), lamports), cx.is_signer(acc, 0)));
                        format!(
                            "system createAccountWithSeed {to} funded with {lamports} lamports by {}",
                            cx.acc(acc, 0)
                        )
                    }
                    4 => {
                        exact(i, "system advanceNonceAccount", data, 4)?;
                        min_accounts(i, "system advanceNonceAccount", acc, 3)?;
                        if i == 0 {
                            s.extra
                                .push(("durable_nonce_account".into(), cx.acc(acc, 0)));
                        }
                        format!(
                            "system advanceNonceAccount {} (authority {})",
                            cx.acc(acc, 0),
                            cx.acc(acc, 2)
                        )
                    }
                    _ => {
                        unknown(
                            &cx,
                            &mut s,
                            &program,
                            acc,
                            data,
                            system_method(tag).map(|m| format!("system {m}")),
                        );
                        format!(
                            "system {}",
                            system_method(tag).unwrap_or("unknown instruction")
                        )
                    }
                }
            }
            TOKEN | TOKEN_2022 => {
                let name = if program == TOKEN {
                    "spl-token"
                } else {
                    "spl-token-2022"
                };
                let tag = *data.first().ok_or_else(|| {
                    PluginError::parse(format!("instruction {i}: {name} instruction data is empty"))
                })?;
                match tag {
                    3 => {
                        exact(i, "token transfer", data, 9)?;
                        min_accounts(i, "token transfer", acc, 3)?;
                        let amount = le_u64(data, 1);
                        let to = cx.acc(acc, 1);
                        let t = Transfer {
                            to: to.clone(),
                            amount: amount.to_string(),
                            asset: Asset {
                                kind: AssetKind::Token,
                                symbol: None,
                                contract: None,
                                decimals: None,
                            },
                            is_change: false,
                        };
                        moved = Some((t, cx.is_signer(acc, 2)));
                        format!(
                            "{name} transfer {amount} from {} -> {to} (authority {}, mint not named)",
                            cx.acc(acc, 0),
                            cx.acc(acc, 2)
                        )
                    }
                    12 => {
                        exact(i, "token transferChecked", data, 10)?;
                        min_accounts(i, "token transferChecked", acc, 4)?;
                        let amount = le_u64(data, 1);
                        let decimals = data.get(9).copied().unwrap_or_default();
                        let mint = cx.acc(acc, 1);
                        let to = cx.acc(acc, 2);
                        let t = Transfer {
                            to: to.clone(),
                            amount: amount.to_string(),
                            asset: Asset {
                                kind: AssetKind::Token,
                                symbol: known_token(cx.network, &mint).map(|(s, _)| s.to_string()),
                                contract: Some(mint.clone()),
                                decimals: Some(decimals),
                            },
                            is_change: false,
                        };
                        moved = Some((t, cx.is_signer(acc, 3)));
                        format!(
                            "{name} transferChecked {amount} (decimals {decimals}, mint {mint}) from {} -> {to} (authority {})",
                            cx.acc(acc, 0),
                            cx.acc(acc, 3)
                        )
                    }
                    4 => {
                        // approve: [source, delegate, owner, ..multisig signers]. The mint
                        // is not named, so the asset is the source token account the
                        // delegate may debit (its contract), with no symbol or decimals.
                        exact(i, "token approve", data, 9)?;
                        min_accounts(i, "token approve", acc, 3)?;
                        let amount = le_u64(data, 1);
                        let source = cx.acc(acc, 0);
                        let delegate = cx.acc(acc, 1);
                        s.allowances.push(spl_allowance(
                            delegate.clone(),
                            source.clone(),
                            None,
                            amount,
                        ));
                        format!(
                            "{name} approve {amount} from {source} to delegate {delegate} (owner {}, mint not named)",
                            cx.acc(acc, 2)
                        )
                    }
                    13 => {
                        // approveChecked: [source, mint, delegate, owner, ..multisig signers].
                        exact(i, "token approveChecked", data, 10)?;
                        min_accounts(i, "token approveChecked", acc, 4)?;
                        let amount = le_u64(data, 1);
                        let decimals = data.get(9).copied().unwrap_or_default();
                        let source = cx.acc(acc, 0);
                        let mint = cx.acc(acc, 1);
                        let delegate = cx.acc(acc, 2);
                        let symbol = known_token(cx.network, &mint).map(|(s, _)| s);
                        s.allowances.push(spl_allowance(
                            delegate.clone(),
                            mint.clone(),
                            Some((symbol, decimals)),
                            amount,
                        ));
                        format!(
                            "{name} approveChecked {amount} (decimals {decimals}, mint {mint}) from {source} to delegate {delegate} (owner {})",
                            cx.acc(acc, 3)
                        )
                    }
                    _ => {
                        let m = token_method(tag).map(|m| format!("{name} {m}"));
                        unknown(&cx, &mut s, &program, acc, data, m.clone());
                        m.unwrap_or_else(|| format!("{name} unknown instruction {tag}"))
                    }
                }
            }
            ASSOCIATED_TOKEN => {
                let method = match data {
                    [] | [0] => Some("create"),
                    [1] => Some("createIdempotent"),
                    _ => None,
                };
                match method {
                    Some(m) => {
                        min_accounts(i, "associated-token create", acc, 4)?;
                        format!(
                            "associated-token {m} account {} for wallet {} mint {} (rent paid by {})",
                            cx.acc(acc, 1),
                            cx.acc(acc, 2),
                            cx.acc(acc, 3),
                            cx.acc(acc, 0)
                        )
                    }
                    None => {
                        let m = match data.first() {
                            Some(2) => Some("associated-token recoverNested".to_string()),
                            _ => None,
                        };
                        unknown(&cx, &mut s, &program, acc, data, m.clone());
                        m.unwrap_or_else(|| "associated-token unknown instruction".into())
                    }
                }
            }
            COMPUTE_BUDGET => {
                let tag = *data.first().ok_or_else(|| {
                    PluginError::parse(format!("instruction {i}: compute budget data is empty"))
                })?;
                let dup = || {
                    PluginError::unsupported(format!(
                        "instruction {i}: duplicate compute budget instruction {tag}"
                    ))
                };
                match tag {
                    1 => {
                        exact(i, "compute budget requestHeapFrame", data, 5)?;
                        let v = le_u32(data, 1);
                        if s.extra.iter().any(|(k, _)| k == "heap_frame_bytes") {
                            return Err(dup());
                        }
                        s.extra.push(("heap_frame_bytes".into(), v.to_string()));
                        format!("compute budget requestHeapFrame {v}")
                    }
                    2 => {
                        exact(i, "compute budget setComputeUnitLimit", data, 5)?;
                        let v = le_u32(data, 1);
                        if s.unit_limit.replace(v).is_some() {
                            return Err(dup());
                        }
                        format!("compute budget setComputeUnitLimit {v}")
                    }
                    3 => {
                        exact(i, "compute budget setComputeUnitPrice", data, 9)?;
                        let v = le_u64(data, 1);
                        if s.unit_price.replace(v).is_some() {
                            return Err(dup());
                        }
                        format!("compute budget setComputeUnitPrice {v} micro-lamports")
                    }
                    4 => {
                        exact(i, "compute budget setLoadedAccountsDataSizeLimit", data, 5)?;
                        let v = le_u32(data, 1);
                        if s.extra
                            .iter()
                            .any(|(k, _)| k == "loaded_accounts_data_size_limit")
                        {
                            return Err(dup());
                        }
                        s.extra
                            .push(("loaded_accounts_data_size_limit".into(), v.to_string()));
                        format!("compute budget setLoadedAccountsDataSizeLimit {v}")
                    }
                    _ => {
                        return Err(PluginError::unsupported(format!(
                            "instruction {i}: compute budget instruction {tag} is not supported"
                        )));
                    }
                }
            }
            MEMO | MEMO_V1 => {
                let text = match std::str::from_utf8(data) {
                    Ok(t) => t.to_string(),
                    Err(_) => {
                        return Err(PluginError::parse(format!(
                            "instruction {i}: memo is not valid UTF-8"
                        )));
                    }
                };
                s.extra.push((format!("memo_{i}"), text));
                "memo".into()
            }
            ED25519_PRECOMPILE | SECP256K1_PRECOMPILE | SECP256R1_PRECOMPILE => {
                let n = *data.first().ok_or_else(|| {
                    PluginError::parse(format!("instruction {i}: precompile data is empty"))
                })?;
                s.precompile_signatures += u64::from(n);
                format!("signature precompile {program}, {n} signatures")
            }
            _ => {
                unknown(&cx, &mut s, &program, acc, data, None);
                format!(
                    "program {program} selector 0x{} ({} accounts, {} data bytes)",
                    hex(selector(data)),
                    acc.len(),
                    data.len()
                )
            }
        };
        s.extra.push((key, desc));
        if let Some((t, by_signer)) = moved {
            if by_signer {
                s.transfers.push(t);
            } else {
                s.transfers_not_from_signer += 1;
            }
        }
    }
    if let Some(v) = s.unit_limit {
        s.extra.push(("compute_unit_limit".into(), v.to_string()));
    }
    if let Some(v) = s.unit_price {
        s.extra
            .push(("compute_unit_price_micro_lamports".into(), v.to_string()));
    }
    if s.transfers_not_from_signer > 0 {
        s.extra.push((
            "transfers_not_from_signer".into(),
            s.transfers_not_from_signer.to_string(),
        ));
    }
    if s.unknown_instructions > 0 {
        s.extra.push((
            "unknown_instructions".into(),
            s.unknown_instructions.to_string(),
        ));
    }
    Ok(s)
}

/// The first bytes of instruction data shown as its selector: up to 8 (an Anchor
/// discriminator is 8 bytes; native programs use 1 or 4).
fn selector(data: &[u8]) -> &[u8] {
    data.get(..8).unwrap_or(data)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Records an instruction this plugin does not turn into transfers; the first becomes
/// the intent's `call`.
fn unknown(
    cx: &Ctx<'_, '_>,
    s: &mut Summary,
    program: &str,
    accounts: &[u8],
    data: &[u8],
    method: Option<String>,
) {
    s.unknown_instructions += 1;
    if s.call.is_some() {
        return;
    }
    let accs: Vec<String> = (0..accounts.len()).map(|n| cx.acc(accounts, n)).collect();
    s.call = Some(ContractCall {
        to: program.to_string(),
        selector: format!("0x{}", hex(selector(data))),
        method,
        args: vec![
            CallArg {
                name: "accounts".into(),
                ty: "pubkey[]".into(),
                value: accs.join(","),
            },
            CallArg {
                name: "data".into(),
                ty: "bytes".into(),
                value: format!("0x{}", hex(data)),
            },
        ],
    });
}
