//! The Solana message wire format: legacy and v0, read strictly and written back.
//!
//! Layout (both versions): `[0x80 | version]` (v0 only), header (3 bytes), shortvec of
//! 32-byte account keys, 32-byte recent blockhash, shortvec of compiled instructions
//! (`u8` program id index, shortvec of `u8` account indexes, shortvec of data bytes), and
//! for v0 a shortvec of address-table lookups (32-byte table key, shortvec of `u8`
//! writable indexes, shortvec of `u8` readonly indexes).
//!
//! The reader refuses anything a validator would refuse to sanitize (indexes out of range,
//! a read-only or missing fee payer, a program loaded from a lookup table, ...) plus
//! non-canonical shortvecs and trailing bytes, so the bytes signed are exactly the bytes
//! that were shown.

use custos_plugin_sdk::{PluginError, PluginResult};

/// The most account keys a message may reference (static plus looked up): indexes are u8.
pub const MAX_ACCOUNTS: usize = 256;

pub type Key = [u8; 32];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub num_required_signatures: u8,
    pub num_readonly_signed: u8,
    pub num_readonly_unsigned: u8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instruction<'a> {
    pub program_index: u8,
    pub accounts: &'a [u8],
    pub data: &'a [u8],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup<'a> {
    pub table: Key,
    pub writable: &'a [u8],
    pub readonly: &'a [u8],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// None for a legacy message, Some(0) for v0.
    pub version: Option<u8>,
    pub header: Header,
    pub keys: Vec<Key>,
    pub blockhash: Key,
    pub instructions: Vec<Instruction<'a>>,
    pub lookups: Vec<Lookup<'a>>,
}

/// An account an instruction names: a static key, or an entry of an address lookup
/// table that only the chain can resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Account<'m> {
    Static(&'m Key),
    Lookup { table: &'m Key, index: u8 },
}

impl Account<'_> {
    /// Base58 for a static key; `lookup:<table>:<index>` for an unresolved table entry.
    pub fn render(&self) -> String {
        match self {
            Account::Static(k) => b58(&k[..]),
            Account::Lookup { table, index } => format!("lookup:{}:{index}", b58(&table[..])),
        }
    }

    pub fn key(&self) -> Option<&Key> {
        match self {
            Account::Static(k) => Some(k),
            Account::Lookup { .. } => None,
        }
    }
}

pub fn b58(bytes: &[u8]) -> String {
    bs58::encode(bytes).into_string()
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> PluginResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end.and_then(|e| self.buf.get(self.pos..e)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(PluginError::parse(format!(
                "message truncated reading {what} at byte {} (needs {n}, {} left)",
                self.pos,
                self.buf.len().saturating_sub(self.pos)
            ))),
        }
    }

    fn u8(&mut self, what: &str) -> PluginResult<u8> {
        Ok(self.take(1, what)?.first().copied().unwrap_or_default())
    }

    fn key(&mut self, what: &str) -> PluginResult<Key> {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.take(32, what)?);
        Ok(k)
    }

    /// A compact-u16 ("shortvec") length: 7 bits per byte, at most 3 bytes, canonical.
    fn shortvec(&mut self, what: &str) -> PluginResult<usize> {
        let at = self.pos;
        let mut value: u32 = 0;
        for i in 0..3 {
            let b = self.u8(what)?;
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(PluginError::parse(format!(
                        "non-canonical shortvec length for {what} at byte {at}"
                    )));
                }
                if value > u32::from(u16::MAX) {
                    return Err(PluginError::parse(format!(
                        "shortvec length for {what} at byte {at} overflows u16"
                    )));
                }
                return Ok(value as usize);
            }
        }
        Err(PluginError::parse(format!(
            "shortvec length for {what} at byte {at} is longer than 3 bytes"
        )))
    }

    fn bytes(&mut self, what: &str) -> PluginResult<&'a [u8]> {
        let n = self.shortvec(what)?;
        self.take(n, what)
    }
}

/// Reads one serialized message (not a transaction) and checks it is sane.
pub fn decode(raw: &[u8]) -> PluginResult<Message<'_>> {
    let first = *raw
        .first()
        .ok_or_else(|| PluginError::parse("empty message"))?;
    let mut r = Reader { buf: raw, pos: 0 };
    let version = if first & 0x80 != 0 {
        r.pos = 1;
        let v = first & 0x7f;
        if v != 0 {
            return Err(PluginError::unsupported(format!(
                "message version {v} (prefix byte `0x{first:02x}`) is not supported; only legacy and v0 are"
            )));
        }
        Some(v)
    } else {
        None
    };
    let header = Header {
        num_required_signatures: r.u8("header")?,
        num_readonly_signed: r.u8("header")?,
        num_readonly_unsigned: r.u8("header")?,
    };
    let n_keys = r.shortvec("account keys")?;
    // Bounded by the input length before anything is allocated.
    let key_bytes = r.take(n_keys.saturating_mul(32), "account keys")?;
    let keys: Vec<Key> = key_bytes
        .chunks_exact(32)
        .map(|c| {
            let mut k = [0u8; 32];
            k.copy_from_slice(c);
            k
        })
        .collect();
    let blockhash = r.key("recent blockhash")?;
    let n_ix = r.shortvec("instructions")?;
    let mut instructions = Vec::new();
    for i in 0..n_ix {
        let what = format!("instruction {i}");
        let program_index = r.u8(&what)?;
        let accounts = r.bytes(&what)?;
        let data = r.bytes(&what)?;
        instructions.push(Instruction {
            program_index,
            accounts,
            data,
        });
    }
    let mut lookups = Vec::new();
    if version.is_some() {
        let n = r.shortvec("address table lookups")?;
        for i in 0..n {
            let what = format!("address table lookup {i}");
            let table = r.key(&what)?;
            let writable = r.bytes(&what)?;
            let readonly = r.bytes(&what)?;
            lookups.push(Lookup {
                table,
                writable,
                readonly,
            });
        }
    }
    if r.pos != raw.len() {
        return Err(PluginError::parse(format!(
            "{} trailing bytes after the message",
            raw.len() - r.pos
        )));
    }
    let msg = Message {
        version,
        header,
        keys,
        blockhash,
        instructions,
        lookups,
    };
    msg.sanitize()?;
    Ok(msg)
}

impl<'a> Message<'a> {
    pub fn num_lookup_accounts(&self) -> usize {
        self.lookups
            .iter()
            .map(|l| l.writable.len() + l.readonly.len())
            .sum()
    }

    pub fn num_accounts(&self) -> usize {
        self.keys.len() + self.num_lookup_accounts()
    }

    /// The validator's sanitize rules, with messages naming what is wrong.
    fn sanitize(&self) -> PluginResult<()> {
        let h = self.header;
        let n_static = self.keys.len();
        if h.num_required_signatures == 0 {
            return Err(PluginError::parse(
                "header requires no signatures; a message needs a fee payer",
            ));
        }
        if h.num_readonly_signed >= h.num_required_signatures {
            return Err(PluginError::parse(format!(
                "header marks {} of {} signers read-only; the fee payer must be writable",
                h.num_readonly_signed, h.num_required_signatures
            )));
        }
        if usize::from(h.num_required_signatures) + usize::from(h.num_readonly_unsigned) > n_static
        {
            return Err(PluginError::parse(format!(
                "header counts {} signers and {} read-only unsigned accounts but the message has {} account keys",
                h.num_required_signatures, h.num_readonly_unsigned, n_static
            )));
        }
        let total = self.num_accounts();
        if total > MAX_ACCOUNTS {
            return Err(PluginError::parse(format!(
                "message references {total} accounts; at most {MAX_ACCOUNTS} are addressable"
            )));
        }
        for (i, l) in self.lookups.iter().enumerate() {
            if l.writable.is_empty() && l.readonly.is_empty() {
                return Err(PluginError::parse(format!(
                    "address table lookup {i} selects no accounts"
                )));
            }
        }
        let mut sorted = self.keys.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(PluginError::parse(format!(
                "account key `{}` appears twice",
                b58(&w[0][..])
            )));
        }
        for (i, ix) in self.instructions.iter().enumerate() {
            let p = usize::from(ix.program_index);
            if p == 0 {
                return Err(PluginError::parse(format!(
                    "instruction {i}: the fee payer cannot be the program"
                )));
            }
            if p >= n_static {
                return Err(PluginError::parse(format!(
                    "instruction {i}: program id index {p} is out of range ({n_static} static account keys)"
                )));
            }
            if let Some(a) = ix.accounts.iter().find(|&&a| usize::from(a) >= total) {
                return Err(PluginError::parse(format!(
                    "instruction {i}: account index {a} is out of range ({total} accounts)"
                )));
            }
        }
        Ok(())
    }

    /// Account `index` of the message's combined list: static keys, then every lookup's
    /// writable entries in order, then every lookup's read-only entries in order.
    pub fn account(&self, index: u8) -> Option<Account<'_>> {
        let mut i = usize::from(index);
        if let Some(k) = self.keys.get(i) {
            return Some(Account::Static(k));
        }
        i -= self.keys.len();
        for l in &self.lookups {
            if let Some(&e) = l.writable.get(i) {
                return Some(Account::Lookup {
                    table: &l.table,
                    index: e,
                });
            }
            i -= l.writable.len();
        }
        for l in &self.lookups {
            if let Some(&e) = l.readonly.get(i) {
                return Some(Account::Lookup {
                    table: &l.table,
                    index: e,
                });
            }
            i -= l.readonly.len();
        }
        None
    }

    /// The static key `index`, if it is one.
    pub fn static_key(&self, index: u8) -> Option<&Key> {
        self.keys.get(usize::from(index))
    }

    /// The keys that must sign, in signature order.
    pub fn signers(&self) -> &[Key] {
        let n = usize::from(self.header.num_required_signatures).min(self.keys.len());
        self.keys.get(..n).unwrap_or_default()
    }
}

/// Appends `n` as a compact-u16.
pub fn put_shortvec(out: &mut Vec<u8>, n: u16) {
    let mut v = n;
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// One account an instruction to build uses.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub key: Key,
    pub signer: bool,
    pub writable: bool,
}

/// An instruction to build, before compiling to indexes.
pub struct NewInstruction {
    pub program: Key,
    pub accounts: Vec<Meta>,
    pub data: Vec<u8>,
}

/// Compiles instructions into a legacy message the way the Solana SDKs do: the fee payer
/// first, then writable signers, read-only signers, writable non-signers and read-only
/// non-signers, each in first-use order, duplicates merged with the strongest role.
pub fn compile_legacy(
    payer: Key,
    blockhash: Key,
    instructions: &[NewInstruction],
) -> PluginResult<Vec<u8>> {
    let mut metas: Vec<Meta> = vec![Meta {
        key: payer,
        signer: true,
        writable: true,
    }];
    let mut add = |m: Meta| match metas.iter_mut().find(|e| e.key == m.key) {
        Some(e) => {
            e.signer |= m.signer;
            e.writable |= m.writable;
        }
        None => metas.push(m),
    };
    for ix in instructions {
        for a in &ix.accounts {
            add(*a);
        }
        add(Meta {
            key: ix.program,
            signer: false,
            writable: false,
        });
    }
    let class = |m: &Meta| match (m.signer, m.writable) {
        (true, true) => 0,
        (true, false) => 1,
        (false, true) => 2,
        (false, false) => 3,
    };
    // Stable: keeps first-use order within each class; the payer stays first.
    metas.sort_by_key(class);
    if metas.len() > MAX_ACCOUNTS {
        return Err(PluginError::request("too many accounts for one message"));
    }
    let count = |c: u8| metas.iter().filter(|m| class(m) == c).count();
    let num_signers = count(0) + count(1);
    let mut out = Vec::new();
    for n in [num_signers, count(1), count(3)] {
        out.push(
            u8::try_from(n).map_err(|_| PluginError::request("too many accounts for a header"))?,
        );
    }
    put_shortvec(&mut out, metas.len() as u16);
    for m in &metas {
        out.extend_from_slice(&m.key);
    }
    out.extend_from_slice(&blockhash);
    let index = |k: &Key| -> PluginResult<u8> {
        metas
            .iter()
            .position(|m| &m.key == k)
            .and_then(|p| u8::try_from(p).ok())
            .ok_or_else(|| PluginError::internal("compiled account missing"))
    };
    let n_ix = u16::try_from(instructions.len())
        .map_err(|_| PluginError::request("too many instructions"))?;
    put_shortvec(&mut out, n_ix);
    for ix in instructions {
        out.push(index(&ix.program)?);
        let n = u16::try_from(ix.accounts.len())
            .map_err(|_| PluginError::request("too many instruction accounts"))?;
        put_shortvec(&mut out, n);
        for a in &ix.accounts {
            out.push(index(&a.key)?);
        }
        let n = u16::try_from(ix.data.len())
            .map_err(|_| PluginError::request("instruction data too long"))?;
        put_shortvec(&mut out, n);
        out.extend_from_slice(&ix.data);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortvec_round_trip_and_canonical() {
        for n in [0u16, 1, 127, 128, 255, 16383, 16384, u16::MAX] {
            let mut v = Vec::new();
            put_shortvec(&mut v, n);
            let mut r = Reader { buf: &v, pos: 0 };
            assert_eq!(r.shortvec("x").unwrap(), usize::from(n));
            assert_eq!(r.pos, v.len());
        }
        for bad in [
            &[0x80u8, 0x00][..],
            &[0xff, 0xff, 0x04],
            &[0x80, 0x80, 0x80, 0x01],
        ] {
            let mut r = Reader { buf: bad, pos: 0 };
            assert!(r.shortvec("x").is_err(), "{bad:?}");
        }
    }
}
