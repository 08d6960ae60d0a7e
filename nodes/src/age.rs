//! The age v1 file format (<https://age-encryption.org/v1>), X25519 recipients only:
//! enough to seal a backup's key share to a custodian so that the custodian opens it with
//! the standard `age` tool (`age -d -i key.txt share.age`), and to open what a custodian
//! sealed with `age -e -r age1…`.
//!
//! - Keys: an identity is `AGE-SECRET-KEY-1…` (Bech32, upper case), its recipient `age1…`.
//! - Header: `age-encryption.org/v1`, one `-> X25519 <ephemeral share>` stanza per
//!   recipient wrapping the 16-byte file key (HKDF-SHA256 over the X25519 shared secret,
//!   salt = ephemeral share ‖ recipient, then ChaCha20-Poly1305 with a zero nonce), and
//!   `--- <HMAC-SHA256 of the header>` under a key derived from the file key.
//! - Payload: a 16-byte nonce, then STREAM: ChaCha20-Poly1305 over 64 KiB chunks, the
//!   nonce an 11-byte big-endian counter and a last-chunk flag, keyed by HKDF of the file
//!   key and the nonce.
//! - Armor: PEM-like `-----BEGIN AGE ENCRYPTED FILE-----`, standard Base64 in 64 columns.
//!
//! Parsing is strict (canonical Base64, LF line ends, exact argument counts): checked
//! against the C2SP CCTV age test vectors (`tests/fixtures/age-testkit`). File keys,
//! shared secrets and plaintexts are zeroized; identities have no `Debug`.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use bech32::Bech32;
use bech32::primitives::decode::CheckedHrpstring;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

const VERSION_LINE: &[u8] = b"age-encryption.org/v1\n";
const X25519_LABEL: &[u8] = b"age-encryption.org/v1/X25519";
const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
const FILE_KEY: usize = 16;
const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
const ARMOR_END: &str = "-----END AGE ENCRYPTED FILE-----";
const COLUMNS: usize = 64;
const RECIPIENT_HRP: &str = "age";
const IDENTITY_HRP: &str = "age-secret-key-";

/// Why an age file or key was refused. Messages never include secret material.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AgeError {
    #[error("not a valid age key: {0}")]
    Key(&'static str),
    #[error("not a valid age header: {0}")]
    Header(&'static str),
    #[error("none of the given identities opens this age file (sealed to someone else)")]
    NoMatch,
    #[error("the age header fails its MAC (the file was altered)")]
    Hmac,
    #[error("the age payload does not decrypt: {0}")]
    Payload(&'static str),
    #[error("not valid age ASCII armor: {0}")]
    Armor(&'static str),
}

/// An X25519 age identity (the secret key a custodian keeps). No `Debug`, no `Clone`;
/// x25519-dalek wipes the scalar on drop.
pub struct Identity {
    secret: StaticSecret,
}

/// An X25519 age recipient (`age1…`): a public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recipient([u8; 32]);

fn bech32_decode(s: &str, hrp: &str) -> Result<Zeroizing<Vec<u8>>, AgeError> {
    let checked = CheckedHrpstring::new::<Bech32>(s).map_err(|_| AgeError::Key("bad Bech32"))?;
    if checked.hrp().to_lowercase() != hrp {
        return Err(AgeError::Key("wrong prefix"));
    }
    checked
        .validate_segwit_padding()
        .map_err(|_| AgeError::Key("bad Bech32 padding"))?;
    Ok(Zeroizing::new(checked.byte_iter().collect()))
}

fn to_32(b: &[u8]) -> Option<[u8; 32]> {
    <[u8; 32]>::try_from(b).ok()
}

impl Identity {
    /// A fresh identity from the OS CSPRNG.
    pub fn generate() -> Self {
        Self {
            secret: StaticSecret::random_from_rng(OsRng),
        }
    }

    /// Parses `AGE-SECRET-KEY-1…` (upper case, as age writes it; lower case accepted).
    pub fn parse(s: &str) -> Result<Self, AgeError> {
        let bytes = bech32_decode(s.trim(), IDENTITY_HRP)?;
        let mut k = Zeroizing::new(to_32(&bytes).ok_or(AgeError::Key("not 32 bytes"))?);
        let secret = StaticSecret::from(*k);
        k.zeroize();
        Ok(Self { secret })
    }

    /// The identities of an age key file: every line `AGE-SECRET-KEY-1…`; `#` comments
    /// and blank lines skipped; any other line is an error.
    pub fn parse_file(text: &str) -> Result<Vec<Self>, AgeError> {
        let mut out = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            out.push(Self::parse(line)?);
        }
        if out.is_empty() {
            return Err(AgeError::Key("no AGE-SECRET-KEY-1 line in the key file"));
        }
        Ok(out)
    }

    /// `AGE-SECRET-KEY-1…`, upper case.
    pub fn to_bech32(&self) -> Zeroizing<String> {
        let bytes = Zeroizing::new(self.secret.to_bytes());
        Zeroizing::new(
            bech32::encode_upper::<Bech32>(bech32::Hrp::parse_unchecked(IDENTITY_HRP), &*bytes)
                // 32 bytes under a valid prefix always encode.
                .unwrap_or_default(),
        )
    }

    /// A key file as `age-keygen` writes it: a comment with the public key, then the key.
    pub fn to_key_file(&self, created: &str) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "# created: {created}\n# public key: {}\n{}\n",
            self.recipient(),
            &*self.to_bech32()
        ))
    }

    pub fn recipient(&self) -> Recipient {
        Recipient(PublicKey::from(&self.secret).to_bytes())
    }

    /// Unwraps the file key from an X25519 stanza meant for this identity; `Ok(None)` when
    /// it was meant for another.
    fn unwrap(
        &self,
        share: &[u8; 32],
        body: &[u8],
    ) -> Result<Option<Zeroizing<[u8; FILE_KEY]>>, AgeError> {
        let shared = self.secret.diffie_hellman(&PublicKey::from(*share));
        if !shared.was_contributory() {
            return Err(AgeError::Header("X25519 share is a low-order point"));
        }
        let key = wrap_key(shared.as_bytes(), share, &self.recipient().0);
        let cipher =
            ChaCha20Poly1305::new_from_slice(&*key).map_err(|_| AgeError::Header("wrap key"))?;
        let Ok(plain) = cipher.decrypt(&Nonce::default(), body) else {
            return Ok(None);
        };
        let plain = Zeroizing::new(plain);
        let mut fk = Zeroizing::new([0u8; FILE_KEY]);
        if plain.len() != FILE_KEY {
            return Err(AgeError::Header("wrapped file key is not 16 bytes"));
        }
        fk.copy_from_slice(&plain);
        Ok(Some(fk))
    }
}

impl Recipient {
    /// Parses `age1…` (lower case, as age writes it).
    pub fn parse(s: &str) -> Result<Self, AgeError> {
        let s = s.trim();
        if s.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(AgeError::Key("an age recipient is lower case"));
        }
        let bytes = bech32_decode(s, RECIPIENT_HRP)?;
        Ok(Self(to_32(&bytes).ok_or(AgeError::Key("not 32 bytes"))?))
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Display for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s =
            bech32::encode_lower::<Bech32>(bech32::Hrp::parse_unchecked(RECIPIENT_HRP), &self.0)
                .map_err(|_| std::fmt::Error)?;
        f.write_str(&s)
    }
}

fn hkdf32(ikm: &[u8], salt: Option<&[u8]>, info: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's limit: expand cannot fail.
    let _ = Hkdf::<Sha256>::new(salt, ikm).expand(info, &mut *out);
    out
}

fn wrap_key(shared: &[u8; 32], share: &[u8; 32], recipient: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(share);
    salt[32..].copy_from_slice(recipient);
    hkdf32(shared, Some(&salt), X25519_LABEL)
}

fn header_mac(file_key: &[u8; FILE_KEY], header: &[u8]) -> Result<Hmac<Sha256>, AgeError> {
    let key = hkdf32(file_key, None, b"header");
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(&*key).map_err(|_| AgeError::Header("mac key"))?;
    mac.update(header);
    Ok(mac)
}

fn chunk_nonce(counter: u64, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    Nonce::from(n)
}

/// Encodes a stanza body: Base64 without padding in lines of 64 columns, the last line
/// always shorter than 64 (empty when the body fills whole lines).
fn body_lines(body: &[u8], out: &mut Vec<u8>) {
    let text = STANDARD_NO_PAD.encode(body);
    let mut rest = text.as_bytes();
    loop {
        let n = rest.len().min(COLUMNS);
        let (line, tail) = rest.split_at(n);
        out.extend_from_slice(line);
        out.push(b'\n');
        rest = tail;
        if n < COLUMNS {
            break;
        }
    }
}

/// Encrypts `plaintext` to `recipients` (binary age file).
pub fn encrypt(recipients: &[Recipient], plaintext: &[u8]) -> Result<Vec<u8>, AgeError> {
    if recipients.is_empty() {
        return Err(AgeError::Key("no recipients"));
    }
    let mut file_key = Zeroizing::new([0u8; FILE_KEY]);
    OsRng.fill_bytes(&mut *file_key);
    let mut header = VERSION_LINE.to_vec();
    for r in recipients {
        let ephemeral = StaticSecret::random_from_rng(OsRng);
        let share = PublicKey::from(&ephemeral).to_bytes();
        let shared = ephemeral.diffie_hellman(&PublicKey::from(r.0));
        if !shared.was_contributory() {
            return Err(AgeError::Key("recipient is a low-order point"));
        }
        let key = wrap_key(shared.as_bytes(), &share, &r.0);
        let body = ChaCha20Poly1305::new_from_slice(&*key)
            .map_err(|_| AgeError::Key("wrap key"))?
            .encrypt(&Nonce::default(), &file_key[..])
            .map_err(|_| AgeError::Key("wrapping the file key failed"))?;
        header.extend_from_slice(b"-> X25519 ");
        header.extend_from_slice(STANDARD_NO_PAD.encode(share).as_bytes());
        header.push(b'\n');
        body_lines(&body, &mut header);
    }
    header.extend_from_slice(b"---");
    let mac = header_mac(&file_key, &header)?.finalize().into_bytes();
    header.push(b' ');
    header.extend_from_slice(STANDARD_NO_PAD.encode(mac).as_bytes());
    header.push(b'\n');

    let mut nonce = [0u8; 16];
    OsRng.fill_bytes(&mut nonce);
    let key = hkdf32(&*file_key, Some(&nonce), b"payload");
    let cipher =
        ChaCha20Poly1305::new_from_slice(&*key).map_err(|_| AgeError::Payload("stream key"))?;
    let mut out = header;
    out.extend_from_slice(&nonce);
    // An empty plaintext is one empty last chunk; else full chunks, the last flagged.
    let chunks: Vec<&[u8]> = if plaintext.is_empty() {
        vec![&[]]
    } else {
        plaintext.chunks(CHUNK).collect()
    };
    let count = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let ct = cipher
            .encrypt(&chunk_nonce(i as u64, i + 1 == count), chunk)
            .map_err(|_| AgeError::Payload("encryption failed"))?;
        out.extend_from_slice(&ct);
    }
    Ok(out)
}

/// A parsed recipient stanza.
struct Stanza<'a> {
    args: Vec<&'a str>,
    body: Vec<u8>,
}

/// Reads one line (without its `\n`); `None` at the end of input without a newline.
fn line<'a>(input: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let rest = input.get(*pos..)?;
    let n = rest.iter().position(|&b| b == b'\n')?;
    *pos += n + 1;
    rest.get(..n)
}

fn decode_b64(text: &[u8], what: &'static str) -> Result<Vec<u8>, AgeError> {
    STANDARD_NO_PAD
        .decode(text)
        .map_err(|_| AgeError::Header(what))
}

/// Parses the header: stanzas, the MAC, the offset of the `---` line's end of "---" (what
/// the MAC covers) and of the payload.
#[allow(clippy::type_complexity)]
fn parse_header(input: &[u8]) -> Result<(Vec<Stanza<'_>>, [u8; 32], usize, usize), AgeError> {
    if !input.starts_with(VERSION_LINE) {
        return Err(AgeError::Header("not age-encryption.org/v1"));
    }
    let mut pos = VERSION_LINE.len();
    let mut stanzas = Vec::new();
    loop {
        let start = pos;
        let l = line(input, &mut pos).ok_or(AgeError::Header("truncated"))?;
        if let Some(mac) = l.strip_prefix(b"--- ") {
            let mac = decode_b64(mac, "MAC is not canonical Base64")?;
            let mac = to_32(&mac).ok_or(AgeError::Header("MAC is not 32 bytes"))?;
            return Ok((stanzas, mac, start + 3, pos));
        }
        let Some(args) = l.strip_prefix(b"-> ") else {
            return Err(AgeError::Header("expected a stanza or the MAC line"));
        };
        let args = std::str::from_utf8(args).map_err(|_| AgeError::Header("stanza arguments"))?;
        let args: Vec<&str> = args.split(' ').collect();
        if args
            .iter()
            .any(|a| a.is_empty() || !a.bytes().all(|b| (0x21..=0x7e).contains(&b)))
        {
            return Err(AgeError::Header("empty or invalid stanza argument"));
        }
        let mut text = Vec::new();
        loop {
            let l = line(input, &mut pos).ok_or(AgeError::Header("truncated stanza body"))?;
            if l.len() > COLUMNS {
                return Err(AgeError::Header("stanza body line over 64 columns"));
            }
            text.extend_from_slice(l);
            if l.len() < COLUMNS {
                break;
            }
        }
        let body = decode_b64(&text, "stanza body is not canonical Base64")?;
        stanzas.push(Stanza { args, body });
    }
}

/// Decrypts an age file (binary or armored) with any of `identities`.
pub fn decrypt(identities: &[Identity], file: &[u8]) -> Result<Zeroizing<Vec<u8>>, AgeError> {
    let dearmored;
    let file = if is_armored(file) {
        dearmored = dearmor(file)?;
        &dearmored[..]
    } else {
        file
    };
    let (stanzas, mac, mac_covers, payload_at) = parse_header(file)?;
    // Every X25519 stanza must be well-formed, whoever it is for.
    let mut x25519 = Vec::new();
    for s in &stanzas {
        if s.args.first() != Some(&"X25519") {
            continue;
        }
        if s.args.len() != 2 {
            return Err(AgeError::Header("X25519 stanza takes one argument"));
        }
        let share = decode_b64(s.args[1].as_bytes(), "X25519 share is not canonical Base64")?;
        let share = to_32(&share).ok_or(AgeError::Header("X25519 share is not 32 bytes"))?;
        if s.body.len() != FILE_KEY + TAG {
            return Err(AgeError::Header("X25519 body is not 32 bytes"));
        }
        x25519.push((share, &s.body));
    }
    let mut file_key = None;
    'found: for (share, body) in &x25519 {
        for id in identities {
            if let Some(k) = id.unwrap(share, body)? {
                file_key = Some(k);
                break 'found;
            }
        }
    }
    let file_key = file_key.ok_or(AgeError::NoMatch)?;
    header_mac(&file_key, file.get(..mac_covers).unwrap_or_default())?
        .verify_slice(&mac)
        .map_err(|_| AgeError::Hmac)?;

    let payload = file.get(payload_at..).unwrap_or_default();
    if payload.len() < 16 {
        return Err(AgeError::Header("no payload nonce"));
    }
    let (nonce, mut rest) = payload.split_at(16);
    let key = hkdf32(&*file_key, Some(nonce), b"payload");
    let cipher =
        ChaCha20Poly1305::new_from_slice(&*key).map_err(|_| AgeError::Payload("stream key"))?;
    if rest.is_empty() {
        return Err(AgeError::Payload("no chunks"));
    }
    let mut out = Zeroizing::new(Vec::with_capacity(rest.len()));
    let mut counter = 0u64;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(CHUNK + TAG));
        let last = tail.is_empty();
        if chunk.len() < TAG {
            return Err(AgeError::Payload("chunk shorter than its tag"));
        }
        let mut plain = cipher
            .decrypt(&chunk_nonce(counter, last), chunk)
            .map_err(|_| {
                AgeError::Payload("a chunk fails authentication (altered or truncated)")
            })?;
        if last && plain.is_empty() && counter > 0 {
            plain.zeroize();
            return Err(AgeError::Payload("empty last chunk"));
        }
        out.extend_from_slice(&plain);
        plain.zeroize();
        counter += 1;
        rest = tail;
    }
    Ok(out)
}

fn is_armored(file: &[u8]) -> bool {
    let start = file
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(file.len());
    file.get(start..)
        .is_some_and(|f| f.starts_with(ARMOR_BEGIN.as_bytes()))
}

/// ASCII armor: standard Base64 with padding, 64 columns, LF line ends.
pub fn armor(file: &[u8]) -> String {
    let text = STANDARD.encode(file);
    let mut out = String::with_capacity(text.len() + text.len() / COLUMNS + 80);
    out.push_str(ARMOR_BEGIN);
    out.push('\n');
    for line in text.as_bytes().chunks(COLUMNS) {
        // Base64 is ASCII.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(ARMOR_END);
    out.push('\n');
    out
}

/// Removes the armor: whitespace around it is ignored, lines end in LF or CRLF, every
/// line but the last is 64 columns, the Base64 is canonical.
pub fn dearmor(text: &[u8]) -> Result<Vec<u8>, AgeError> {
    let text = std::str::from_utf8(text).map_err(|_| AgeError::Armor("not text"))?;
    let text = text.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\r' | '\n'));
    let mut lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    if lines.first() != Some(&ARMOR_BEGIN) {
        return Err(AgeError::Armor("no BEGIN AGE ENCRYPTED FILE line"));
    }
    if lines.last() != Some(&ARMOR_END) || lines.len() < 3 {
        return Err(AgeError::Armor("no END AGE ENCRYPTED FILE line"));
    }
    lines.remove(0);
    lines.pop();
    let mut b64 = String::new();
    let n = lines.len();
    for (i, l) in lines.into_iter().enumerate() {
        let ok = if i + 1 == n {
            !l.is_empty() && l.len() <= COLUMNS
        } else {
            l.len() == COLUMNS
        };
        if !ok {
            return Err(AgeError::Armor("a line of the wrong length"));
        }
        b64.push_str(l);
    }
    STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| AgeError::Armor("not canonical Base64"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn round_trip_to_several_recipients_of_every_size() {
        let a = Identity::generate();
        let b = Identity::generate();
        for len in [
            0,
            1,
            100,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            2 * CHUNK,
            3 * CHUNK + 7,
        ] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let file = encrypt(&[a.recipient(), b.recipient()], &plain).unwrap();
            let a_again = Identity::parse(&a.to_bech32()).unwrap();
            assert_eq!(&*decrypt(&[a_again], &file).unwrap(), &plain);
            assert_eq!(&*decrypt(std::slice::from_ref(&b), &file).unwrap(), &plain);
            let armored = armor(&file);
            assert_eq!(
                &*decrypt(std::slice::from_ref(&a), armored.as_bytes()).unwrap(),
                &plain
            );
        }
    }

    #[test]
    fn keys_encode_as_age_does() {
        let id = Identity::generate();
        let s = id.to_bech32();
        assert!(s.starts_with("AGE-SECRET-KEY-1"), "upper case");
        assert_eq!(s.len(), 74);
        let r = id.recipient().to_string();
        assert!(r.starts_with("age1") && r.len() == 62, "{r}");
        assert_eq!(Recipient::parse(&r).unwrap(), id.recipient());
        assert_eq!(Identity::parse(&s).unwrap().recipient(), id.recipient());
        assert!(Recipient::parse(&s).is_err(), "an identity is no recipient");
        assert!(Identity::parse(&r).is_err());
        assert!(Recipient::parse(&r.to_uppercase()).is_err());
        let mut bad = r.clone();
        bad.pop();
        bad.push(if r.ends_with('q') { 'p' } else { 'q' });
        assert!(Recipient::parse(&bad).is_err(), "checksum");
        let file = id.to_key_file("2026-01-01T00:00:00Z");
        assert!(file.contains(&format!("# public key: {r}")));
        assert_eq!(Identity::parse_file(&file).unwrap().len(), 1);
    }

    #[test]
    fn the_wrong_key_is_refused() {
        let a = Identity::generate();
        let file = encrypt(&[a.recipient()], b"share").unwrap();
        assert_eq!(
            decrypt(&[Identity::generate()], &file).err(),
            Some(AgeError::NoMatch)
        );
    }

    #[test]
    fn a_tampered_header_or_payload_is_refused() {
        let a = Identity::generate();
        let b = Identity::generate();
        let file = encrypt(&[a.recipient(), b.recipient()], b"share").unwrap();
        // Drop b's stanza: a still unwraps the file key, but the MAC no longer matches.
        let text = file.clone();
        let second = text
            .windows(3)
            .enumerate()
            .filter(|(_, w)| *w == b"-> ")
            .nth(1)
            .map(|(i, _)| i)
            .unwrap();
        let mac_at = text.windows(4).position(|w| w == b"--- ").unwrap();
        let mut cut = text[..second].to_vec();
        cut.extend_from_slice(&text[mac_at..]);
        assert_eq!(
            decrypt(std::slice::from_ref(&a), &cut).err(),
            Some(AgeError::Hmac)
        );
        // One payload bit.
        let mut flipped = file.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(
            decrypt(std::slice::from_ref(&a), &flipped).err(),
            Some(AgeError::Payload(_))
        ));
        // A truncated payload (a chunk lost) and the version line.
        assert!(decrypt(std::slice::from_ref(&a), &file[..file.len() - 5]).is_err());
        let mut v2 = file.clone();
        v2[20] = b'2';
        assert!(matches!(
            decrypt(std::slice::from_ref(&a), &v2).err(),
            Some(AgeError::Header(_))
        ));
    }

    /// One C2SP CCTV vector: its textual header and the age file after the blank line.
    struct Vector {
        name: String,
        expect: String,
        payload: Option<String>,
        identities: Vec<String>,
        armored: bool,
        file: Vec<u8>,
    }

    fn vectors() -> Vec<Vector> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/age-testkit");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".md") {
                continue;
            }
            let bytes = std::fs::read(&p).unwrap();
            let split = bytes.windows(2).position(|w| w == b"\n\n").unwrap();
            let head = std::str::from_utf8(&bytes[..split]).unwrap();
            let mut v = Vector {
                name,
                expect: String::new(),
                payload: None,
                identities: vec![],
                armored: false,
                file: bytes[split + 2..].to_vec(),
            };
            for l in head.lines() {
                let (k, val) = l.split_once(": ").unwrap();
                match k {
                    "expect" => v.expect = val.into(),
                    "payload" => v.payload = Some(val.into()),
                    "identity" => v.identities.push(val.into()),
                    "armored" => v.armored = val == "yes",
                    _ => {}
                }
            }
            out.push(v);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    #[test]
    fn testkit_vectors() {
        let vs = vectors();
        assert!(vs.len() >= 70, "the vectors are there");
        let mut failures = Vec::new();
        for v in &vs {
            let ids: Vec<Identity> = v
                .identities
                .iter()
                // Other identity types (hybrid) are not ours to use.
                .filter(|s| s.starts_with("AGE-SECRET-KEY-1"))
                .map(|s| Identity::parse(s).unwrap())
                .collect();
            // Auto-detection finds every well-formed armor; the vectors with a broken
            // BEGIN line are given to the armor decoder directly, as a caller expecting
            // armor does.
            if v.armored && v.expect == "success" && !is_armored(&v.file) {
                failures.push(format!("{}: armor not detected", v.name));
            }
            let got = if v.armored {
                dearmor(&v.file).and_then(|b| decrypt(&ids, &b))
            } else {
                decrypt(&ids, &v.file)
            };
            let ok = match (v.expect.as_str(), &got) {
                ("success", Ok(plain)) => {
                    v.payload.as_deref() == Some(&hex::encode(sha2::Sha256::digest(&**plain)))
                }
                ("no match", Err(AgeError::NoMatch)) => true,
                ("HMAC failure", Err(AgeError::Hmac)) => true,
                ("header failure", Err(AgeError::Header(_))) => true,
                // What decrypted before the failure is not released (one buffer).
                ("payload failure", Err(AgeError::Payload(_))) => true,
                ("armor failure", Err(AgeError::Armor(_))) => true,
                _ => false,
            };
            if !ok {
                failures.push(format!(
                    "{}: expected {}, got {:?}",
                    v.name,
                    v.expect,
                    got.map(|p| p.len())
                ));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    /// The `age` binary opens what we seal, and we open what it seals. Skipped (with the
    /// reason printed) where `age` is not installed; `.ci/setup` installs it.
    #[test]
    fn interoperates_with_the_age_tool() {
        use std::process::Command;
        if Command::new("age").arg("--version").output().is_err() {
            eprintln!("SKIPPED interoperates_with_the_age_tool: no `age` binary on PATH");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::generate();
        let key = dir.path().join("key.txt");
        std::fs::write(&key, id.to_key_file("test").as_bytes()).unwrap();
        let plain: Vec<u8> = (0..(CHUNK + 300)).map(|i| (i * 7 % 256) as u8).collect();
        // Ours -> age, binary and armored.
        for (name, bytes) in [
            ("share.age", encrypt(&[id.recipient()], &plain).unwrap()),
            (
                "share.asc",
                armor(&encrypt(&[id.recipient()], &plain).unwrap()).into_bytes(),
            ),
        ] {
            let f = dir.path().join(name);
            std::fs::write(&f, bytes).unwrap();
            let out = Command::new("age")
                .args(["-d", "-i"])
                .arg(&key)
                .arg(&f)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.stdout, plain, "{name}");
        }
        // age -> ours, binary and armored.
        let input = dir.path().join("plain");
        std::fs::write(&input, &plain).unwrap();
        for armored in [false, true] {
            let mut cmd = Command::new("age");
            cmd.args(["-e", "-r", &id.recipient().to_string()]);
            if armored {
                cmd.arg("-a");
            }
            let out = cmd.arg(&input).output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                &*decrypt(std::slice::from_ref(&id), &out.stdout).unwrap(),
                &plain
            );
        }
        // A key made by age-keygen parses to the recipient it prints.
        let out = Command::new("age-keygen").output();
        if let Ok(out) = out
            && out.status.success()
        {
            let text = String::from_utf8(out.stdout).unwrap();
            let ids = Identity::parse_file(&text).unwrap();
            let public = text
                .lines()
                .find_map(|l| l.strip_prefix("# public key: "))
                .unwrap();
            assert_eq!(ids[0].recipient().to_string(), public);
        }
    }
}
