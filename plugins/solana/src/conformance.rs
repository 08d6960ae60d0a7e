//! One table of public vectors and malformed inputs, run through two paths: the plain
//! Rust functions (this crate's tests) and the built component through the host runtime
//! (`host/plugin-runtime/tests`). Both implement [`Api`]; every check here runs on both.
//!
//! Signatures are checked here with ed25519-dalek `verify_strict` over message bytes this
//! file cuts out of the wire transaction itself, not with the plugin's reader.
//!
//! Test-only (feature `conformance`); never compiled into the component.

use custos_plugin_sdk::{
    AssetKind, ErrorCode, Intent, IntentKind, Signature, SignatureScheme, TransferRequest,
};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde_json::Value;

pub use custos_plugin_sdk::conformance::{
    Api, Failure, Malformed, Res, expect_plugin_error, expect_plugin_error_in, ok,
};
use custos_plugin_sdk::conformance::{check_refused, inputs, text, vectors};

/// The native path.
#[allow(non_upper_case_globals)]
pub const Native: custos_plugin_sdk::conformance::Native<crate::Solana> =
    custos_plugin_sdk::conformance::Native::new();

pub const TRANSACTIONS: &str = include_str!("../tests/vectors/transactions.json");
pub const KIT_LAYOUT: &str = include_str!("../tests/vectors/kit_message_layout.json");

const SYSTEM: &str = "11111111111111111111111111111111";
const TOKEN: &str = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
const TOKEN_2022: &str = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb";
const ATA: &str = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL";
const COMPUTE_BUDGET: &str = "ComputeBudget111111111111111111111111111111";
const MEMO: &str = "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr";
const BLOCKHASH: &str = "EETubP5AKHgjPAhzPAFcb8BAY1hMH639CWCFTqi3hq1k";

fn b58(b: &[u8]) -> String {
    bs58::encode(b).into_string()
}

fn key(b58_str: &str) -> [u8; 32] {
    bs58::decode(b58_str)
        .into_vec()
        .expect("base58")
        .try_into()
        .expect("32 bytes")
}

/// Standard base64 (the vector sources' encoding), strict about the alphabet.
pub fn base64(text: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = A.iter().position(|&a| a == c).expect("base64 character") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// A wire transaction cut into its signatures and message (signature count < 128).
pub fn split_wire(wire: &[u8]) -> (Vec<[u8; 64]>, Vec<u8>) {
    let n = usize::from(wire[0]);
    assert!(n < 0x80, "test helper handles one-byte counts");
    let sigs = (0..n)
        .map(|k| wire[1 + 64 * k..1 + 64 * (k + 1)].try_into().unwrap())
        .collect();
    (sigs, wire[1 + 64 * n..].to_vec())
}

/// The first `n` static account keys of a message (key count < 128).
fn message_keys(msg: &[u8], n: usize) -> Vec<[u8; 32]> {
    let at = if msg[0] & 0x80 != 0 { 4 } else { 3 };
    assert!(msg[at] < 0x80);
    (0..n)
        .map(|k| {
            msg[at + 1 + 32 * k..at + 1 + 32 * (k + 1)]
                .try_into()
                .unwrap()
        })
        .collect()
}

fn verify(pk: &[u8; 32], sig: &[u8; 64], msg: &[u8]) -> bool {
    VerifyingKey::from_bytes(pk)
        .map(|vk| {
            vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
                .is_ok()
        })
        .unwrap_or(false)
}

fn extra<'i>(i: &'i Intent, k: &str) -> Option<&'i str> {
    i.extra
        .iter()
        .find(|(name, _)| name == k)
        .map(|(_, v)| v.as_str())
}

fn check_transfers(name: &str, i: &Intent, want: &Value) {
    let want = want.as_array().expect("transfers");
    assert_eq!(i.transfers.len(), want.len(), "{name}: transfers {i:?}");
    for (t, w) in i.transfers.iter().zip(want) {
        assert_eq!(t.to, text(&w["to"]), "{name}: to");
        assert_eq!(t.amount, text(&w["amount"]), "{name}: amount");
        assert!(!t.is_change);
        match text(&w["kind"]).as_str() {
            "native" => {
                assert_eq!(t.asset.kind, AssetKind::Native, "{name}");
                assert_eq!(t.asset.symbol.as_deref(), Some("SOL"), "{name}");
                assert_eq!(t.asset.decimals, Some(9), "{name}");
                assert_eq!(t.asset.contract, None, "{name}");
            }
            _ => {
                assert_eq!(t.asset.kind, AssetKind::Token, "{name}");
                assert_eq!(
                    t.asset.contract.as_deref(),
                    w["contract"].as_str(),
                    "{name}"
                );
                assert_eq!(
                    t.asset.decimals.map(u64::from),
                    w["decimals"].as_u64(),
                    "{name}"
                );
                assert_eq!(t.asset.symbol.as_deref(), w["symbol"].as_str(), "{name}");
            }
        }
    }
}

fn fields(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), text(v))).collect())
        .unwrap_or_default()
}

/// Every public vector: parse, payloads, the signatures in the source verified over the
/// message, assembly reproducing the source's wire bytes, fixed-seed keys reproducing
/// the source's signatures, and `build` reproducing the source's message bytes.
pub fn check_transaction_vectors(api: &dyn Api) {
    let vectors = vectors(TRANSACTIONS);
    assert!(vectors.len() >= 9);
    let (mut legacy, mut v0) = (0, 0);
    for v in &vectors {
        let name = text(&v["name"]);
        let name = name.as_str();
        let signed = v["wire_base64"].as_str().map(base64);
        let unsigned = v["unsigned_wire_base64"].as_str().map(base64);
        let (sigs, msg) = split_wire(signed.as_ref().or(unsigned.as_ref()).unwrap());
        if let (Some(_), Some(u)) = (&signed, &unsigned) {
            let (zero, m2) = split_wire(u);
            assert_eq!(
                m2, msg,
                "{name}: unsigned and signed carry the same message"
            );
            assert!(zero.iter().all(|z| z == &[0u8; 64]), "{name}");
        }
        match text(&v["version"]).as_str() {
            "legacy" => legacy += 1,
            _ => v0 += 1,
        }
        let stated = &v["stated"];
        let computed = &v["computed"];
        let expect = |k: &str| -> Value {
            if stated[k].is_null() {
                computed[k].clone()
            } else {
                stated[k].clone()
            }
        };
        let n_sig = computed["num_required_signatures"].as_u64().unwrap() as usize;
        let keys = message_keys(&msg, n_sig);
        let fee_payer = b58(&keys[0]);
        if !expect("fee_payer").is_null() {
            assert_eq!(fee_payer, text(&expect("fee_payer")), "{name}: fee payer");
        }
        if let Some(signers) = stated["signers"].as_array() {
            let got: Vec<String> = keys.iter().map(|k| b58(k)).collect();
            let want: Vec<String> = signers.iter().map(text).collect();
            assert_eq!(got, want, "{name}: signers");
        }
        // The source's signatures are made over exactly this message.
        if signed.is_some() {
            assert_eq!(sigs.len(), n_sig, "{name}");
            for (k, sig) in sigs.iter().enumerate() {
                assert!(verify(&keys[k], sig, &msg), "{name}: signature {k}");
            }
        }

        let intent = ok(api.parse(&msg, Some("mainnet"), None), name);
        assert_eq!(intent.chain, "solana");
        assert_eq!(intent.network, "mainnet");
        assert_eq!(
            intent.from, fee_payer,
            "{name}: from defaults to the fee payer"
        );
        assert_eq!(extra(&intent, "fee_payer"), Some(fee_payer.as_str()));
        assert_eq!(
            extra(&intent, "version"),
            Some(text(&v["version"]).as_str()),
            "{name}"
        );
        assert_eq!(
            extra(&intent, "recent_blockhash"),
            Some(text(&expect("recent_blockhash")).as_str()),
            "{name}"
        );
        assert_eq!(intent.nonce, Some(text(&expect("recent_blockhash"))));
        let kind = match text(&computed["kind"]).as_str() {
            "transfer" => IntentKind::Transfer,
            _ => IntentKind::ContractCall,
        };
        assert_eq!(intent.kind, kind, "{name}");
        assert_eq!(
            intent.fee_max.as_deref(),
            Some(text(&computed["fee_max"]).as_str()),
            "{name}: fee"
        );
        check_transfers(name, &intent, &expect("transfers"));
        if let Some(tables) = stated["lookup_tables"].as_array() {
            for (k, t) in tables.iter().enumerate() {
                let line = extra(&intent, &format!("lookup_table_{k}")).unwrap_or_default();
                assert!(line.starts_with(&text(t)), "{name}: lookup {k}: {line}");
            }
        }
        if let Some(lookups) = computed["lookups"].as_array() {
            for (k, l) in lookups.iter().enumerate() {
                let want = format!(
                    "{} writable={} readonly={}",
                    text(&l["table"]),
                    l["writable"].to_string().replace(',', ", "),
                    l["readonly"].to_string().replace(',', ", ")
                );
                assert_eq!(
                    extra(&intent, &format!("lookup_table_{k}")),
                    Some(want.as_str()),
                    "{name}"
                );
            }
        }
        if let Some(limit) = computed["compute_unit_limit"].as_str() {
            assert_eq!(extra(&intent, "compute_unit_limit"), Some(limit), "{name}");
        }
        if let Some(to) = computed["call_to"].as_str() {
            let call = intent.call.as_ref().expect("call");
            assert_eq!(call.to, to, "{name}");
            assert_eq!(call.selector, text(&computed["call_selector"]), "{name}");
            if let Some(first) = computed["call_first_accounts"].as_array() {
                let accounts = &call.args[0].value;
                let want: Vec<String> = first.iter().map(text).collect();
                assert!(
                    accounts.starts_with(&want.join(",")),
                    "{name}: call accounts {accounts}"
                );
            }
        }
        if let Some(nonce) = stated["nonce_account"].as_str() {
            assert_eq!(extra(&intent, "durable_nonce_account"), Some(nonce));
        }

        let pk0 = keys[0].to_vec();
        let with_key = ok(api.parse(&msg, None, Some(&pk0)), name);
        assert_eq!(
            with_key, intent,
            "{name}: the fee payer's key changes nothing"
        );
        if n_sig == 1 {
            let payloads = ok(
                api.signing_payloads(&msg, Some("mainnet"), Some(&pk0)),
                name,
            );
            assert_eq!(payloads.len(), 1);
            assert_eq!(payloads[0].index, 0);
            assert_eq!(payloads[0].scheme, SignatureScheme::Ed25519);
            assert_eq!(
                payloads[0].digest, msg,
                "{name}: the payload is the message"
            );
            if let Some(wire) = &signed {
                let out = ok(
                    api.assemble(
                        &msg,
                        Some("mainnet"),
                        &pk0,
                        &[Signature {
                            index: 0,
                            bytes: sigs[0].to_vec(),
                        }],
                    ),
                    name,
                );
                assert_eq!(&out.signed_tx, wire, "{name}: assembled wire tx");
                assert_eq!(out.tx_hash, b58(&sigs[0]), "{name}");
                if let Some(h) = stated["tx_hash"].as_str() {
                    assert_eq!(out.tx_hash, h, "{name}: tx hash as the source states");
                }
                assert_eq!(out.signatures[0].bytes, sigs[0].to_vec());
            }
        } else {
            expect_plugin_error_in(
                name,
                api.signing_payloads(&msg, None, Some(&pk0)),
                ErrorCode::Unsupported,
                &format!("message needs {n_sig} signatures"),
            );
            expect_plugin_error_in(
                name,
                api.assemble(
                    &msg,
                    None,
                    &pk0,
                    &[Signature {
                        index: 0,
                        bytes: sigs[0].to_vec(),
                    }],
                ),
                ErrorCode::Unsupported,
                &format!("message needs {n_sig} signatures"),
            );
            if let Some(h) = stated["tx_hash"].as_str() {
                assert_eq!(b58(&sigs[0]), h, "{name}: first signature is the tx id");
            }
            // Seen from the second signer, who does not own the token account, nothing
            // is paid by the signer.
            let other = ok(api.parse(&msg, Some("mainnet"), Some(&keys[1][..])), name);
            assert_eq!(other.from, b58(&keys[1]));
            assert!(other.transfers.is_empty(), "{name}");
            assert_eq!(extra(&other, "transfers_not_from_signer"), Some("1"));
        }
        if let Some(seed) = v["seed_fill_byte"].as_u64() {
            let sk = SigningKey::from_bytes(&[seed as u8; 32]);
            let pk = sk.verifying_key().to_bytes();
            assert_eq!(pk, keys[0], "{name}: the seed's key is the fee payer");
            assert_eq!(ok(api.derive_address(&pk, "mainnet"), name), fee_payer);
            if let Some(a) = stated["address"].as_str() {
                assert_eq!(fee_payer, a, "{name}: address as the source states");
            }
            // Deterministic ed25519: the seed signs the message to the source's signature.
            assert_eq!(sk.sign(&msg).to_bytes(), sigs[0], "{name}");
        }
        if let Some(b) = v.get("build").filter(|b| !b.is_null()) {
            let req = TransferRequest {
                network: "mainnet".into(),
                public_key: pk0.clone(),
                to: text(&b["to"]),
                amount: text(&b["amount"]),
                asset: b["asset"].as_str().map(String::from),
                fields: fields(&b["fields"]),
                utxos: vec![],
            };
            let built = ok(api.build(&req), name);
            assert_eq!(
                built.raw, msg,
                "{name}: build reproduces the source's message"
            );
            assert_eq!(built.intent, intent, "{name}: build intent");
        }
    }
    assert!(legacy >= 4 && v0 >= 5, "legacy and v0 vectors");
}

/// The @solana/kit codec layouts: structurally fine, semantically refused.
pub fn check_kit_layouts(api: &dyn Api) {
    for v in vectors(KIT_LAYOUT) {
        let name = text(&v["name"]);
        let raw = hex::decode(text(&v["hex"])).unwrap();
        let r = api.parse(&raw, None, None);
        expect_plugin_error_in(
            &name,
            r,
            ErrorCode::ParseError,
            "header counts 3 signers and 1 read-only unsigned accounts but the message has 2 account keys",
        );
    }
}

/// A message written by hand (every length < 128).
pub struct Raw {
    pub version: Option<u8>,
    pub header: [u8; 3],
    pub keys: Vec<[u8; 32]>,
    pub blockhash: [u8; 32],
    pub instructions: Vec<(u8, Vec<u8>, Vec<u8>)>,
    pub lookups: Vec<([u8; 32], Vec<u8>, Vec<u8>)>,
}

impl Raw {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let len = |out: &mut Vec<u8>, n: usize| {
            assert!(n < 0x80);
            out.push(n as u8);
        };
        if let Some(v) = self.version {
            out.push(0x80 | v);
        }
        out.extend_from_slice(&self.header);
        len(&mut out, self.keys.len());
        for k in &self.keys {
            out.extend_from_slice(k);
        }
        out.extend_from_slice(&self.blockhash);
        len(&mut out, self.instructions.len());
        for (p, a, d) in &self.instructions {
            out.push(*p);
            len(&mut out, a.len());
            out.extend_from_slice(a);
            len(&mut out, d.len());
            out.extend_from_slice(d);
        }
        if self.version.is_some() {
            len(&mut out, self.lookups.len());
            for (t, w, r) in &self.lookups {
                out.extend_from_slice(t);
                len(&mut out, w.len());
                out.extend_from_slice(w);
                len(&mut out, r.len());
                out.extend_from_slice(r);
            }
        }
        out
    }
}

fn test_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn system_transfer(lamports: u64) -> Vec<u8> {
    let mut d = 2u32.to_le_bytes().to_vec();
    d.extend_from_slice(&lamports.to_le_bytes());
    d
}

/// A legacy SOL transfer from the test key `0x42` to `to`.
pub fn sample_transfer(to: [u8; 32], lamports: u64) -> Raw {
    Raw {
        version: None,
        header: [1, 0, 1],
        keys: vec![test_key(0x42).verifying_key().to_bytes(), to, key(SYSTEM)],
        blockhash: key(BLOCKHASH),
        instructions: vec![(2, vec![0, 1], system_transfer(lamports))],
        lookups: vec![],
    }
}

/// Independent check of assembly: sign the payload with a test key, assemble, then cut
/// the wire transaction apart here and verify the signature over its message.
pub fn check_sign_and_assemble(api: &dyn Api) {
    let sk = test_key(0x42);
    let pk = sk.verifying_key().to_bytes();
    let legacy = sample_transfer([7; 32], 1_000_000_000).encode();
    // v0: the recipient comes from an address lookup table.
    let v0 = Raw {
        version: Some(0),
        header: [1, 0, 1],
        keys: vec![pk, key(SYSTEM)],
        blockhash: key(BLOCKHASH),
        instructions: vec![(1, vec![0, 2], system_transfer(5))],
        lookups: vec![([9; 32], vec![17], vec![])],
    }
    .encode();
    for (name, msg) in [("legacy", legacy), ("v0", v0)] {
        let payloads = ok(api.signing_payloads(&msg, Some("devnet"), Some(&pk)), name);
        assert_eq!(payloads.len(), 1);
        let sig = sk.sign(&payloads[0].digest).to_bytes();
        let out = ok(
            api.assemble(
                &msg,
                Some("devnet"),
                &pk,
                &[Signature {
                    index: 0,
                    bytes: sig.to_vec(),
                }],
            ),
            name,
        );
        let (sigs, body) = split_wire(&out.signed_tx);
        assert_eq!(sigs.len(), 1, "{name}: signature count");
        assert_eq!(body, msg, "{name}: the wire carries the message unchanged");
        assert!(verify(&pk, &sigs[0], &body), "{name}: verify_strict");
        assert_eq!(out.tx_hash, b58(&sigs[0]), "{name}: tx hash");
    }
    let v0 = Raw {
        version: Some(0),
        header: [1, 0, 1],
        keys: vec![pk, key(SYSTEM)],
        blockhash: key(BLOCKHASH),
        instructions: vec![(1, vec![0, 2], system_transfer(5))],
        lookups: vec![([9; 32], vec![17], vec![])],
    }
    .encode();
    let i = ok(api.parse(&v0, Some("devnet"), Some(&pk)), "v0 lookup");
    assert_eq!(i.network, "devnet");
    assert_eq!(i.transfers.len(), 1);
    assert_eq!(
        i.transfers[0].to,
        format!("lookup:{}:17", b58(&[9; 32])),
        "an account from a lookup table is shown unresolved"
    );
    assert_eq!(extra(&i, "lookup_accounts"), Some("1"));
}

fn req(
    pk: &[u8],
    to: &str,
    amount: &str,
    asset: Option<&str>,
    f: &[(&str, &str)],
) -> TransferRequest {
    TransferRequest {
        network: "mainnet".into(),
        public_key: pk.to_vec(),
        to: to.into(),
        amount: amount.into(),
        asset: asset.map(String::from),
        fields: f
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        utxos: vec![],
    }
}

/// What the decoded instructions mean: fees, token programs, ATA, memo, other programs,
/// and transfers the signer does not pay.
pub fn check_intents(api: &dyn Api) {
    let sk = test_key(0x42);
    let pk = sk.verifying_key().to_bytes();
    let to = b58(&[7; 32]);
    // Compute budget: fee = 5000 + ceil(price * limit / 1e6).
    for (limit, price, fee) in [
        ("200000", "1000", "5200"),
        ("1", "1", "5001"),
        ("1400000", "0", "5000"),
    ] {
        let b = ok(
            api.build(&req(
                &pk,
                &to,
                "1",
                None,
                &[
                    ("recent_blockhash", BLOCKHASH),
                    ("compute_unit_limit", limit),
                    ("compute_unit_price", price),
                ],
            )),
            "budget",
        );
        assert_eq!(b.intent.fee_max.as_deref(), Some(fee), "{limit} x {price}");
        assert_eq!(extra(&b.intent, "compute_unit_limit"), Some(limit));
        assert_eq!(
            extra(&b.intent, "compute_unit_price_micro_lamports"),
            Some(price)
        );
        assert_eq!(b.intent.kind, IntentKind::Transfer);
        assert_eq!(ok(api.parse(&b.raw, None, Some(&pk)), "reparse"), b.intent);
    }
    // Price without a limit: 200k units per non-budget instruction.
    let b = ok(
        api.build(&req(
            &pk,
            &to,
            "1",
            None,
            &[("recent_blockhash", BLOCKHASH), ("compute_unit_price", "7")],
        )),
        "price only",
    );
    assert_eq!(
        b.intent.fee_max.as_deref(),
        Some("5002"),
        "5000 + ceil(200000 * 7 / 1e6)"
    );

    // Token-2022 transferChecked through build, then read back.
    let mint = b58(&[5; 32]);
    let b = ok(
        api.build(&req(
            &pk,
            &to,
            "1234500",
            Some(&mint),
            &[
                ("recent_blockhash", BLOCKHASH),
                ("source_token_account", &b58(&[6; 32])),
                ("decimals", "6"),
                ("token_program", "spl-token-2022"),
            ],
        )),
        "token-2022",
    );
    let t = &b.intent.transfers[0];
    assert_eq!(t.to, to);
    assert_eq!(t.asset.contract.as_deref(), Some(mint.as_str()));
    assert_eq!(t.asset.symbol, None, "unknown mint has no symbol");
    assert_eq!(b.intent.to_json()["transfers"][0]["amount_units"], "1.2345");
    assert!(
        extra(&b.intent, "instruction_0")
            .unwrap()
            .starts_with("spl-token-2022 transferChecked 1234500")
    );

    // Hand-made: ATA create idempotent, token transfer (no mint), memo, transferWithSeed.
    let owner = pk;
    let mut seed_data = 11u32.to_le_bytes().to_vec();
    seed_data.extend_from_slice(&77u64.to_le_bytes());
    seed_data.extend_from_slice(&3u64.to_le_bytes());
    seed_data.extend_from_slice(b"abc");
    seed_data.extend_from_slice(&[8; 32]);
    let mut token_transfer = vec![3];
    token_transfer.extend_from_slice(&500u64.to_le_bytes());
    let keys = vec![
        owner,
        [1; 32], // ata / token destination
        [2; 32], // token source
        [3; 32], // seed-derived funding account
        [4; 32], // SOL recipient
        [5; 32], // wallet
        [6; 32], // mint
        key(ATA),
        key(TOKEN),
        key(MEMO),
        key(SYSTEM),
    ];
    let m = Raw {
        version: None,
        header: [1, 0, 6],
        keys,
        blockhash: key(BLOCKHASH),
        instructions: vec![
            (7, vec![0, 1, 5, 6, 10, 8], vec![1]),
            (8, vec![2, 1, 0], token_transfer.clone()),
            (9, vec![], b"invoice 42".to_vec()),
            (10, vec![3, 0, 4], seed_data),
        ],
        lookups: vec![],
    }
    .encode();
    let i = ok(api.parse(&m, None, None), "mixed");
    assert_eq!(i.kind, IntentKind::Transfer);
    assert!(
        extra(&i, "instruction_0")
            .unwrap()
            .starts_with("associated-token createIdempotent")
    );
    assert_eq!(extra(&i, "memo_2"), Some("invoice 42"));
    assert_eq!(i.transfers.len(), 2);
    assert_eq!(i.transfers[0].to, b58(&[1; 32]));
    assert_eq!(i.transfers[0].amount, "500");
    assert_eq!(i.transfers[0].asset.kind, AssetKind::Token);
    assert_eq!(
        i.transfers[0].asset.contract, None,
        "plain transfer names no mint"
    );
    assert_eq!(i.transfers[1].to, b58(&[4; 32]));
    assert_eq!(i.transfers[1].amount, "77");
    assert_eq!(i.fee_max.as_deref(), Some("5000"));

    // A transfer whose source is not the signer does not count as the signer paying,
    // and an unknown program makes it a contract call.
    let m = Raw {
        version: None,
        header: [1, 0, 2],
        keys: vec![pk, [1; 32], [2; 32], key(SYSTEM), [3; 32]],
        blockhash: key(BLOCKHASH),
        instructions: vec![
            (3, vec![1, 2], system_transfer(9)),
            (4, vec![0, 1], vec![0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5]),
        ],
        lookups: vec![],
    }
    .encode();
    let i = ok(api.parse(&m, None, None), "foreign");
    assert!(i.transfers.is_empty());
    assert_eq!(extra(&i, "transfers_not_from_signer"), Some("1"));
    assert_eq!(i.kind, IntentKind::ContractCall);
    let call = i.call.as_ref().unwrap();
    assert_eq!(call.to, b58(&[3; 32]));
    assert_eq!(call.selector, "0xdeadbeef01020304");
    assert_eq!(call.method, None);
    assert_eq!(i.to_json()["call"]["args"]["data"], "0xdeadbeef0102030405");

    // createAccount funds the new account from the signer: value leaving the signer. The
    // new account signs too, so the message is parsed but not signed here.
    let mut create = 0u32.to_le_bytes().to_vec();
    create.extend_from_slice(&2_039_280u64.to_le_bytes());
    create.extend_from_slice(&165u64.to_le_bytes());
    create.extend_from_slice(&key(TOKEN));
    let m = Raw {
        version: None,
        header: [2, 0, 1],
        keys: vec![pk, [1; 32], key(SYSTEM)],
        blockhash: key(BLOCKHASH),
        instructions: vec![(2, vec![0, 1], create)],
        lookups: vec![],
    }
    .encode();
    let i = ok(api.parse(&m, None, Some(&pk)), "createAccount");
    assert_eq!(i.transfers.len(), 1);
    assert_eq!(i.transfers[0].to, b58(&[1; 32]));
    assert_eq!(i.transfers[0].amount, "2039280");
    assert_eq!(i.fee_max.as_deref(), Some("10000"), "two signatures");
    assert!(extra(&i, "instruction_0").unwrap().contains(TOKEN));
    expect_plugin_error(
        api.signing_payloads(&m, None, Some(&pk)),
        ErrorCode::Unsupported,
        "message needs 2 signatures",
    );

    // A known program's other methods are calls with a method name.
    let m = Raw {
        version: None,
        header: [1, 0, 1],
        keys: vec![pk, [1; 32], key(TOKEN)],
        blockhash: key(BLOCKHASH),
        instructions: vec![(2, vec![1, 0], vec![5])],
        lookups: vec![],
    }
    .encode();
    let i = ok(api.parse(&m, None, None), "revoke");
    assert_eq!(i.kind, IntentKind::ContractCall);
    assert_eq!(
        i.call.as_ref().unwrap().method.as_deref(),
        Some("spl-token revoke")
    );
    assert_eq!(i.call.as_ref().unwrap().to, TOKEN);
    assert!(i.allowances.is_empty());

    // Every intent names SOL (9 decimals) as the fee's asset; no message binds a cluster.
    let fee = i.fee_asset.as_ref().expect("fee asset");
    assert_eq!(
        (fee.symbol.as_deref(), fee.decimals),
        (Some("SOL"), Some(9))
    );
    assert_eq!(fee.kind, AssetKind::Native);
    assert!(!i.network_bound);
}

/// SPL Token / Token-2022 `approve` and `approveChecked` are allowances.
pub fn check_allowances(api: &dyn Api) {
    let pk = test_key(0x42).verifying_key().to_bytes();
    let (source, delegate, mint) = ([1u8; 32], [2u8; 32], [5u8; 32]);
    let approve = |amount: u64| {
        let mut d = vec![4];
        d.extend_from_slice(&amount.to_le_bytes());
        d
    };
    for (program, amount, unlimited) in [
        (TOKEN, u64::MAX, true),
        (TOKEN_2022, 1_000_000, false),
        (TOKEN, u64::MAX - 1, false),
    ] {
        // approve: [source, delegate, owner].
        let m = Raw {
            version: None,
            header: [1, 0, 1],
            keys: vec![pk, source, delegate, key(program)],
            blockhash: key(BLOCKHASH),
            instructions: vec![(3, vec![1, 2, 0], approve(amount))],
            lookups: vec![],
        }
        .encode();
        let i = ok(api.parse(&m, None, Some(&pk)), "approve");
        assert_eq!(i.kind, IntentKind::Allowance);
        assert!(i.call.is_none() && i.transfers.is_empty());
        let a = &i.allowances[0];
        assert_eq!(a.spender, b58(&delegate));
        assert_eq!(a.asset.kind, AssetKind::Token);
        // No mint in `approve`: the asset is the source token account.
        assert_eq!(a.asset.contract.as_deref(), Some(b58(&source).as_str()));
        assert_eq!((a.asset.symbol.as_deref(), a.asset.decimals), (None, None));
        assert_eq!(a.amount, amount.to_string());
        assert_eq!(a.unlimited, unlimited);
        assert_eq!(a.expiry, None);
        assert_eq!(i.to_json()["kind"], "allowance");
        assert!(extra(&i, "instruction_0").unwrap().contains("approve"));
    }

    // approveChecked: [source, mint, delegate, owner]; the mint and decimals are known.
    let mut data = vec![13];
    data.extend_from_slice(&2_500_000u64.to_le_bytes());
    data.push(6);
    let m = Raw {
        version: None,
        header: [1, 0, 2],
        keys: vec![pk, source, delegate, mint, key(TOKEN)],
        blockhash: key(BLOCKHASH),
        instructions: vec![(4, vec![1, 3, 2, 0], data.clone())],
        lookups: vec![],
    }
    .encode();
    let i = ok(api.parse(&m, None, Some(&pk)), "approveChecked");
    assert_eq!(i.kind, IntentKind::Allowance);
    let a = &i.allowances[0];
    assert_eq!(a.spender, b58(&delegate));
    assert_eq!(a.asset.contract.as_deref(), Some(b58(&mint).as_str()));
    assert_eq!(a.asset.decimals, Some(6));
    assert_eq!(a.amount, "2500000");
    assert!(!a.unlimited);
    assert_eq!(i.to_json()["allowances"][0]["amount_units"], "2.5");

    // Wrong data lengths or too few accounts are refused.
    let mut long = data.clone();
    long.push(0);
    for (ix, needle) in [
        (
            (4u8, vec![1, 3, 2, 0], long),
            "approveChecked data must be 10 bytes",
        ),
        (
            (4u8, vec![1, 3, 2], data),
            "approveChecked needs 4 accounts",
        ),
        (
            (4u8, vec![1, 2, 0], vec![4, 1]),
            "approve data must be 9 bytes",
        ),
        ((4u8, vec![1, 2], approve(1)), "approve needs 3 accounts"),
    ] {
        let m = Raw {
            version: None,
            header: [1, 0, 2],
            keys: vec![pk, source, delegate, mint, key(TOKEN)],
            blockhash: key(BLOCKHASH),
            instructions: vec![ix],
            lookups: vec![],
        }
        .encode();
        expect_plugin_error(api.parse(&m, None, None), ErrorCode::ParseError, needle);
    }
}

/// Builds from fields, and build errors.
pub fn check_build(api: &dyn Api) {
    let pk = test_key(0x42).verifying_key().to_bytes();
    let to = b58(&[7; 32]);
    let built = ok(
        api.build(&req(
            &pk,
            &to,
            "1000000000",
            None,
            &[("recent_blockhash", BLOCKHASH)],
        )),
        "build",
    );
    assert_eq!(built.raw, sample_transfer([7; 32], 1_000_000_000).encode());
    assert_eq!(built.intent.from, b58(&pk));
    assert_eq!(built.intent.to_json()["transfers"][0]["amount_units"], "1");
    let cases: Vec<(TransferRequest, ErrorCode, &str)> = vec![
        (
            req(&pk, &to, "1", None, &[]),
            ErrorCode::InvalidRequest,
            "field `recent_blockhash` is required",
        ),
        (
            req(
                &pk,
                &to,
                "1",
                None,
                &[("recent_blockhash", BLOCKHASH), ("nonce", "1")],
            ),
            ErrorCode::InvalidRequest,
            "unknown field `nonce`",
        ),
        (
            req(&pk, "0xdead", "1", None, &[("recent_blockhash", BLOCKHASH)]),
            ErrorCode::InvalidRequest,
            "field `to`: `0xdead` is not a base58 address",
        ),
        (
            req(&pk, "1111", "1", None, &[("recent_blockhash", BLOCKHASH)]),
            ErrorCode::InvalidRequest,
            "decodes to 4 bytes, not 32",
        ),
        (
            req(&pk, &to, "01", None, &[("recent_blockhash", BLOCKHASH)]),
            ErrorCode::InvalidRequest,
            "field `amount` must be a decimal integer",
        ),
        (
            req(
                &pk,
                &to,
                "18446744073709551616",
                None,
                &[("recent_blockhash", BLOCKHASH)],
            ),
            ErrorCode::InvalidRequest,
            "does not fit 64 bits",
        ),
        (
            req(
                &pk,
                &to,
                "1",
                Some(&b58(&[5; 32])),
                &[("recent_blockhash", BLOCKHASH), ("decimals", "6")],
            ),
            ErrorCode::InvalidRequest,
            "field `source_token_account` is required",
        ),
        (
            req(
                &pk,
                &to,
                "1",
                None,
                &[("recent_blockhash", BLOCKHASH), ("decimals", "6")],
            ),
            ErrorCode::InvalidRequest,
            "only for token transfers",
        ),
        (
            req(
                &pk,
                &to,
                "1",
                None,
                &[
                    ("recent_blockhash", BLOCKHASH),
                    ("compute_unit_limit", "1400001"),
                ],
            ),
            ErrorCode::InvalidRequest,
            "at most 1400000",
        ),
        (
            TransferRequest {
                network: "mainnet-beta".into(),
                ..req(&pk, &to, "1", None, &[("recent_blockhash", BLOCKHASH)])
            },
            ErrorCode::InvalidNetwork,
            "unknown network `mainnet-beta`",
        ),
        (
            req(
                &pk[..31],
                &to,
                "1",
                None,
                &[("recent_blockhash", BLOCKHASH)],
            ),
            ErrorCode::InvalidPublicKey,
            "32-byte",
        ),
    ];
    for (r, code, needle) in cases {
        expect_plugin_error_in(needle, api.build(&r), code, needle);
    }
}

/// Malformed messages: each must give a plugin-error with the right code and a message
/// saying what was wrong. (name, raw message, expected code, message fragment)
pub fn malformed_messages() -> Vec<Malformed> {
    let good = sample_transfer([7; 32], 49);
    let raw = good.encode();
    let with = |f: &dyn Fn(&mut Raw)| {
        let mut m = sample_transfer([7; 32], 49);
        f(&mut m);
        m.encode()
    };
    let mut trailing = raw.clone();
    trailing.push(0);
    let mut bad_version = vec![0x81];
    bad_version.extend_from_slice(&raw);
    // Key count 3 written as two bytes 0x83 0x00.
    let mut non_canonical = raw[..3].to_vec();
    non_canonical.extend_from_slice(&[0x83, 0x00]);
    non_canonical.extend_from_slice(&raw[4..]);
    let v0_empty_lookup = Raw {
        version: Some(0),
        lookups: vec![([9; 32], vec![], vec![])],
        ..sample_transfer([7; 32], 1)
    }
    .encode();
    let v0_program_from_lookup = Raw {
        version: Some(0),
        instructions: vec![(3, vec![0, 1], system_transfer(1))],
        lookups: vec![([9; 32], vec![], vec![4])],
        ..sample_transfer([7; 32], 1)
    }
    .encode();
    let mut budget = vec![2];
    budget.extend_from_slice(&1000u32.to_le_bytes());
    let dup_budget = Raw {
        keys: vec![
            test_key(0x42).verifying_key().to_bytes(),
            [7; 32],
            key(SYSTEM),
            key(COMPUTE_BUDGET),
        ],
        header: [1, 0, 2],
        instructions: vec![
            (3, vec![], budget.clone()),
            (3, vec![], budget),
            (2, vec![0, 1], system_transfer(1)),
        ],
        ..sample_transfer([7; 32], 1)
    }
    .encode();
    vec![
        ("empty", vec![], ErrorCode::ParseError, "empty message"),
        (
            "truncated",
            raw[..raw.len() - 1].to_vec(),
            ErrorCode::ParseError,
            "message truncated reading instruction 0",
        ),
        (
            "truncated keys",
            raw[..40].to_vec(),
            ErrorCode::ParseError,
            "message truncated reading account keys",
        ),
        (
            "trailing bytes",
            trailing,
            ErrorCode::ParseError,
            "1 trailing bytes",
        ),
        (
            "bad version byte",
            bad_version,
            ErrorCode::Unsupported,
            "message version 1 (prefix byte `0x81`)",
        ),
        (
            "non-canonical shortvec",
            non_canonical,
            ErrorCode::ParseError,
            "non-canonical shortvec length for account keys",
        ),
        (
            "program index out of range",
            with(&|m| m.instructions[0].0 = 5),
            ErrorCode::ParseError,
            "instruction 0: program id index 5 is out of range",
        ),
        (
            "account index out of range",
            with(&|m| m.instructions[0].1 = vec![0, 9]),
            ErrorCode::ParseError,
            "instruction 0: account index 9 is out of range (3 accounts)",
        ),
        (
            "fee payer as program",
            with(&|m| m.instructions[0].0 = 0),
            ErrorCode::ParseError,
            "fee payer cannot be the program",
        ),
        (
            "no signers",
            with(&|m| m.header = [0, 0, 1]),
            ErrorCode::ParseError,
            "requires no signatures",
        ),
        (
            "read-only fee payer",
            with(&|m| m.header = [1, 1, 1]),
            ErrorCode::ParseError,
            "fee payer must be writable",
        ),
        (
            "header over key count",
            with(&|m| m.header = [2, 0, 2]),
            ErrorCode::ParseError,
            "but the message has 3 account keys",
        ),
        (
            "duplicate key",
            with(&|m| m.keys[1] = m.keys[0]),
            ErrorCode::ParseError,
            "appears twice",
        ),
        (
            "empty lookup",
            v0_empty_lookup,
            ErrorCode::ParseError,
            "address table lookup 0 selects no accounts",
        ),
        (
            "program from a lookup table",
            v0_program_from_lookup,
            ErrorCode::ParseError,
            "program id index 3 is out of range (3 static account keys)",
        ),
        (
            "short transfer data",
            with(&|m| m.instructions[0].2.truncate(11)),
            ErrorCode::ParseError,
            "instruction 0: system transfer data must be 12 bytes, got 11",
        ),
        (
            "transfer with too few accounts",
            with(&|m| m.instructions[0].1 = vec![0]),
            ErrorCode::ParseError,
            "system transfer needs 2 accounts, got 1",
        ),
        (
            "duplicate compute budget",
            dup_budget,
            ErrorCode::Unsupported,
            "instruction 1: duplicate compute budget instruction 2",
        ),
    ]
}

pub fn check_malformed(api: &dyn Api) {
    check_refused(api, malformed_messages());
    let sk = test_key(0x42);
    let pk = sk.verifying_key().to_bytes();
    let msg = sample_transfer([7; 32], 49).encode();
    let sig = sk.sign(&msg).to_bytes().to_vec();
    let one = |bytes: Vec<u8>| vec![Signature { index: 0, bytes }];
    // Wrong signature: made over other bytes, or by another key, or bit-flipped.
    let other_msg = sample_transfer([7; 32], 50).encode();
    let wrong = sk.sign(&other_msg).to_bytes().to_vec();
    expect_plugin_error(
        api.assemble(&msg, None, &pk, &one(wrong)),
        ErrorCode::InvalidSignature,
        "signature is not valid for this message and the given public key",
    );
    let mut flipped = sig.clone();
    flipped[63] ^= 0x10;
    expect_plugin_error(
        api.assemble(&msg, None, &pk, &one(flipped)),
        ErrorCode::InvalidSignature,
        "not valid",
    );
    expect_plugin_error(
        api.assemble(&msg, None, &pk, &one(sig[..63].to_vec())),
        ErrorCode::InvalidSignature,
        "an ed25519 signature is 64 bytes, got 63",
    );
    expect_plugin_error(
        api.assemble(&msg, None, &pk, &[]),
        ErrorCode::InvalidSignature,
        "expected exactly 1 signature, got 0",
    );
    expect_plugin_error(
        api.assemble(
            &msg,
            None,
            &pk,
            &[Signature {
                index: 1,
                bytes: sig.clone(),
            }],
        ),
        ErrorCode::InvalidSignature,
        "got one for payload 1",
    );
    // Key not a signer: the recipient's key, and another valid key.
    let other = test_key(0x43).verifying_key().to_bytes();
    for api_call in [
        api.assemble(&msg, None, &other, &one(sig.clone()))
            .map(|_| ()),
        api.signing_payloads(&msg, None, Some(&other)).map(|_| ()),
        api.parse(&msg, None, Some(&other)).map(|_| ()),
    ] {
        expect_plugin_error(
            api_call,
            ErrorCode::InvalidPublicKey,
            "is not a required signer of this message",
        );
    }
    // Invalid network, everywhere a network is taken.
    for n in ["mainnet-beta", "Mainnet", "", "1"] {
        let needle = format!("unknown network `{n}`");
        expect_plugin_error(
            api.parse(&msg, Some(n), None),
            ErrorCode::InvalidNetwork,
            &needle,
        );
        expect_plugin_error(
            api.signing_payloads(&msg, Some(n), None),
            ErrorCode::InvalidNetwork,
            &needle,
        );
        expect_plugin_error(
            api.assemble(&msg, Some(n), &pk, &one(sig.clone())),
            ErrorCode::InvalidNetwork,
            &needle,
        );
        expect_plugin_error(
            api.derive_address(&pk, n),
            ErrorCode::InvalidNetwork,
            &needle,
        );
    }
    // Public keys: wrong length, not a point, small order.
    expect_plugin_error(
        api.derive_address(&pk[..31], "mainnet"),
        ErrorCode::InvalidPublicKey,
        "must be a 32-byte ed25519 key, got 31 bytes",
    );
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    expect_plugin_error(
        api.derive_address(&not_a_point, "mainnet"),
        ErrorCode::InvalidPublicKey,
        "is not a point on ed25519",
    );
    let mut identity = [0u8; 32];
    identity[0] = 1;
    expect_plugin_error(
        api.derive_address(&identity, "testnet"),
        ErrorCode::InvalidPublicKey,
        "small-order",
    );
    assert_eq!(ok(api.derive_address(&pk, "devnet"), "derive"), b58(&pk));
    // Unsupported: there is no off-chain message format here.
    expect_plugin_error(
        api.parse_message(
            &custos_plugin_sdk::Message::Personal(b"hi".to_vec()),
            None,
            None,
        ),
        ErrorCode::Unsupported,
        "no off-chain message format",
    );
}

/// Everything above, in order.
pub fn check_all(api: &dyn Api) {
    check_allowances(api);
    check_transaction_vectors(api);
    check_kit_layouts(api);
    check_sign_and_assemble(api);
    check_intents(api);
    check_build(api);
    check_malformed(api);
}

/// Inputs for the "never a trap" property: valid messages mutated at random.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vectors(TRANSACTIONS)
        .iter()
        .map(|v| {
            let wire = v["wire_base64"]
                .as_str()
                .or(v["unsigned_wire_base64"].as_str())
                .unwrap();
            split_wire(&base64(wire)).1
        })
        .collect();
    for v in vectors(KIT_LAYOUT) {
        out.push(hex::decode(text(&v["hex"])).unwrap());
    }
    out.extend(inputs(malformed_messages()));
    out
}
