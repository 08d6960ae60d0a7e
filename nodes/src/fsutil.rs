//! Files holding secrets (even wrapped ones) are created owner-only.

use std::io::Write;
use std::path::Path;

pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The first 12 bytes of `b` as an array (callers check lengths first; short input is
/// zero-padded, which then fails authentication rather than panicking).
pub fn array12(b: &[u8]) -> [u8; 12] {
    let mut a = [0u8; 12];
    let n = b.len().min(12);
    a[..n].copy_from_slice(&b[..n]);
    a
}
