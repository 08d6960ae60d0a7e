//! Shamir secret sharing over GF(2^8), byte by byte: a backup's data key is split M-of-N
//! so that any M custodians restore it and M − 1 learn nothing about it.
//!
//! Each secret byte is the constant term of its own random polynomial of degree M − 1;
//! share `x` (1..=N, never 0: that is where the secret sits) holds every polynomial's
//! value at `x`. Arithmetic is in GF(2^8) with the AES polynomial x^8 + x^4 + x^3 + x + 1,
//! multiplied without tables or branches on secret data (no cache-timing leak).
//! Coefficients come from the OS CSPRNG and are wiped after use, as are shares.

use rand_core::{OsRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

/// One share: its x coordinate and the polynomials' values there. Wiped on drop; no
/// `Debug` (it is a piece of a secret).
#[derive(Clone)]
pub struct Share {
    pub x: u8,
    pub y: Zeroizing<Vec<u8>>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShamirError {
    #[error(
        "threshold {threshold} of {shares} shares is not possible (need 1 ≤ threshold ≤ shares ≤ 255)"
    )]
    BadParameters { threshold: usize, shares: usize },
    #[error("{needed} shares are needed, {given} given")]
    TooFew { needed: usize, given: usize },
    #[error("shares are malformed: {0}")]
    Malformed(&'static str),
}

/// Multiplication in GF(2^8) (AES polynomial), constant time: eight shift-and-add steps
/// whose masks come from the bits, never a branch or a table lookup.
fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut p = 0u8;
    for _ in 0..8 {
        p ^= a & (b & 1).wrapping_neg();
        let carry = (a >> 7).wrapping_neg();
        a = (a << 1) ^ (0x1b & carry);
        b >>= 1;
    }
    p
}

/// The multiplicative inverse (a^254; 0 maps to 0, never asked for: x coordinates are
/// distinct and nonzero).
fn inv(a: u8) -> u8 {
    // a^254 = a^(2+4+8+16+32+64+128).
    let mut result = 1u8;
    let mut sq = a;
    for _ in 0..7 {
        sq = mul(sq, sq);
        result = mul(result, sq);
    }
    result
}

/// Splits `secret` into `shares` shares, any `threshold` of which give it back.
pub fn split(secret: &[u8], threshold: usize, shares: usize) -> Result<Vec<Share>, ShamirError> {
    if threshold == 0 || threshold > shares || shares > 255 {
        return Err(ShamirError::BadParameters { threshold, shares });
    }
    let mut out: Vec<Share> = (1..=shares)
        .map(|x| Share {
            // 1..=255: fits.
            x: x as u8,
            y: Zeroizing::new(Vec::with_capacity(secret.len())),
        })
        .collect();
    // coefficients[0] is the secret byte; the others are random.
    let mut coefficients = Zeroizing::new(vec![0u8; threshold]);
    for &byte in secret {
        coefficients[0] = byte;
        if let Some(rest) = coefficients.get_mut(1..) {
            OsRng.fill_bytes(rest);
        }
        for share in out.iter_mut() {
            // Horner, highest degree first.
            let mut y = 0u8;
            for &c in coefficients.iter().rev() {
                y = mul(y, share.x) ^ c;
            }
            share.y.push(y);
        }
    }
    coefficients.zeroize();
    Ok(out)
}

/// The secret from at least `threshold` shares with distinct nonzero x coordinates and
/// equal lengths (the first `threshold` of them are used). Fewer is refused: interpolating
/// too few shares yields a value unrelated to the secret, never a hint of it.
pub fn combine(shares: &[Share], threshold: usize) -> Result<Zeroizing<Vec<u8>>, ShamirError> {
    if threshold == 0 {
        return Err(ShamirError::BadParameters {
            threshold,
            shares: shares.len(),
        });
    }
    if shares.len() < threshold {
        return Err(ShamirError::TooFew {
            needed: threshold,
            given: shares.len(),
        });
    }
    let used = shares.get(..threshold).unwrap_or(shares);
    interpolate_at_zero(used)
}

/// Lagrange interpolation at 0 of every byte position.
fn interpolate_at_zero(shares: &[Share]) -> Result<Zeroizing<Vec<u8>>, ShamirError> {
    let Some(first) = shares.first() else {
        return Err(ShamirError::Malformed("no shares"));
    };
    let len = first.y.len();
    for (i, s) in shares.iter().enumerate() {
        if s.x == 0 {
            return Err(ShamirError::Malformed("x coordinate 0"));
        }
        if s.y.len() != len {
            return Err(ShamirError::Malformed("shares of different lengths"));
        }
        if shares.iter().skip(i + 1).any(|o| o.x == s.x) {
            return Err(ShamirError::Malformed("the same x coordinate twice"));
        }
    }
    // Lagrange basis at 0: l_i = prod_{j != i} x_j / (x_j - x_i); subtraction is XOR.
    let basis: Vec<u8> = shares
        .iter()
        .map(|si| {
            let (mut num, mut den) = (1u8, 1u8);
            for sj in shares.iter().filter(|sj| sj.x != si.x) {
                num = mul(num, sj.x);
                den = mul(den, sj.x ^ si.x);
            }
            mul(num, inv(den))
        })
        .collect();
    let mut secret = Zeroizing::new(vec![0u8; len]);
    for (s, &l) in shares.iter().zip(&basis) {
        for (out, &y) in secret.iter_mut().zip(s.y.iter()) {
            *out ^= mul(y, l);
        }
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
        let mut out = Vec::new();
        for mask in 0u32..(1 << n) {
            if mask.count_ones() as usize == k {
                out.push((0..n).filter(|i| mask & (1 << i) != 0).collect());
            }
        }
        out
    }

    #[test]
    fn field_arithmetic_matches_the_aes_field() {
        // FIPS-197 §4.2: {57} • {83} = {c1}, {57} • {13} = {fe}.
        assert_eq!(mul(0x57, 0x83), 0xc1);
        assert_eq!(mul(0x57, 0x13), 0xfe);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1, "inverse of {a}");
            assert_eq!(mul(a, 1), a);
            assert_eq!(mul(a, 0), 0);
        }
    }

    #[test]
    fn any_m_of_n_shares_give_the_secret_back() {
        let secret: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
        for n in 1..=5 {
            for m in 1..=n {
                let shares = split(&secret, m, n).unwrap();
                assert_eq!(shares.len(), n);
                for subset in subsets(n, m) {
                    let mut picked: Vec<Share> =
                        subset.iter().map(|&i| shares[i].clone()).collect();
                    assert_eq!(&*combine(&picked, m).unwrap(), &secret, "{m}-of-{n}");
                    // Order does not matter.
                    picked.reverse();
                    assert_eq!(&*combine(&picked, m).unwrap(), &secret);
                }
            }
        }
    }

    #[test]
    fn fewer_than_m_shares_are_refused_and_interpolating_them_gives_nothing_useful() {
        let secret = [0x42u8; 32];
        let shares = split(&secret, 3, 5).unwrap();
        assert_eq!(
            combine(&shares[..2], 3).err(),
            Some(ShamirError::TooFew {
                needed: 3,
                given: 2
            })
        );
        // Forced through anyway: a random-looking value, not the secret.
        let wrong = interpolate_at_zero(&shares[..2]).unwrap();
        assert_ne!(&*wrong, &secret);
        // With threshold 2, one share is uniformly random whatever the secret: two
        // different secrets give every share value (checked over the whole byte range).
        let mut seen = [false; 256];
        for _ in 0..4096 {
            let s = split(&[7], 2, 2).unwrap();
            seen[s[0].y[0] as usize] = true;
        }
        assert!(
            seen.iter().filter(|b| **b).count() > 200,
            "share bytes spread"
        );
    }

    #[test]
    fn malformed_shares_and_parameters_are_refused() {
        assert!(split(b"k", 0, 3).is_err());
        assert!(split(b"k", 4, 3).is_err());
        assert!(split(b"k", 2, 256).is_err());
        let shares = split(b"key", 2, 3).unwrap();
        let twice = vec![shares[0].clone(), shares[0].clone()];
        assert_eq!(
            combine(&twice, 2).err(),
            Some(ShamirError::Malformed("the same x coordinate twice"))
        );
        let mut short = shares[1].clone();
        short.y.pop();
        assert!(combine(&[shares[0].clone(), short], 2).is_err());
        let zero = Share {
            x: 0,
            y: shares[1].y.clone(),
        };
        assert!(combine(&[shares[0].clone(), zero], 2).is_err());
    }

    #[test]
    fn one_of_n_shares_each_hold_the_secret() {
        let shares = split(b"secret", 1, 3).unwrap();
        for s in &shares {
            assert_eq!(&*combine(std::slice::from_ref(s), 1).unwrap(), b"secret");
        }
    }
}
