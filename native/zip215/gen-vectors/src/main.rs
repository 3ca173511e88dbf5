//! Writes the ZIP-215 test vectors of ncp-exchange (tests/vectors/zip215/README.md).
//!
//! `cargo run --manifest-path native/zip215/gen-vectors/Cargo.toml -- tests/vectors/zip215`
//!
//! * `small_order.json`: the 196 small-order cases of ed25519-zebra's own test set
//!   (its `tests/small_order.rs` and `tests/util/mod.rs`, reproduced here step by step):
//!   every pair (A, R) of the 8 canonical encodings of the 8-torsion points and the 6
//!   non-canonical encodings of low-order points, with S = 0, message "Zcash". All are
//!   valid under ZIP-215; `valid_legacy` is upstream's verdict under the pre-ZIP-215
//!   (libsodium 1.0.15) rules, for information.
//! * `edge_cases.json`: cases of ours, made with a fixed secret scalar (deterministic):
//!   non-canonical S, encodings that are not points, and mixed-order A and R, which the
//!   cofactored ZIP-215 check accepts and a cofactorless check refuses.
//!
//! Every verdict written is checked first with ed25519-zebra, single and as a batch.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT as B, EIGHT_TORSION};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use ed25519_zebra::{batch, Signature, VerificationKey, VerificationKeyBytes};
use sha2::{Digest, Sha512};

/// l, the order of the prime-order subgroup, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

struct Vector {
    case: String,
    public_key: [u8; 32],
    signature: [u8; 64],
    message: Vec<u8>,
    valid_zip215: bool,
    valid_legacy: Option<bool>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

fn hash_scalar(parts: &[&[u8]]) -> Scalar {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    Scalar::from_hash(h)
}

fn decompress(bytes: [u8; 32]) -> Option<EdwardsPoint> {
    CompressedEdwardsY(bytes).decompress()
}

// ---- ed25519-zebra's small-order set (tests/util/mod.rs, tests/small_order.rs) ----

/// The 19 field elements with a non-canonical encoding x + p below 2^255.
fn non_canonical_field_encodings() -> Vec<[u8; 32]> {
    let mut bytes = [255u8; 32];
    bytes[31] = 127;
    (0..19u8)
        .map(|i| {
            bytes[0] = 237 + i;
            bytes
        })
        .collect()
}

/// The non-canonical point encodings, in upstream's order (the first 6 are low order).
fn non_canonical_point_encodings() -> Vec<[u8; 32]> {
    let mut y1_sign = [0u8; 32];
    y1_sign[0] = 1;
    y1_sign[31] = 128;
    let mut ym1_sign = [255u8; 32];
    ym1_sign[0] = 236;
    let mut encodings = vec![y1_sign, ym1_sign];
    for mut x in non_canonical_field_encodings() {
        if decompress(x).is_some() {
            encodings.push(x);
        }
        x[31] |= 128;
        if decompress(x).is_some() {
            encodings.push(x);
        }
    }
    for e in &encodings {
        assert_ne!(*e, decompress(*e).unwrap().compress().to_bytes());
    }
    encodings
}

/// Encodings that libsodium 1.0.15 refused (upstream's EXCLUDED_POINT_ENCODINGS).
fn excluded_point_encodings() -> Vec<[u8; 32]> {
    [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "13e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "b4176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "d9ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "daffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    ]
    .iter()
    .map(|s| unhex32(s))
    .collect()
}

#[allow(non_snake_case)]
fn small_order_vectors() -> Vec<Vector> {
    let excluded = excluded_point_encodings();
    let encodings: Vec<[u8; 32]> = EIGHT_TORSION
        .iter()
        .map(|p| p.compress().to_bytes())
        .chain(non_canonical_point_encodings().into_iter().take(6))
        .collect();
    let mut out = Vec::new();
    for (i, A_bytes) in encodings.iter().enumerate() {
        let A = decompress(*A_bytes).unwrap();
        for (j, R_bytes) in encodings.iter().enumerate() {
            let R = decompress(*R_bytes).unwrap();
            let mut sig = [0u8; 64]; // S = 0
            sig[..32].copy_from_slice(R_bytes);
            let k = hash_scalar(&[R_bytes, A_bytes, b"Zcash"]);
            let valid_legacy = !(*A_bytes == [0u8; 32]
                || excluded.contains(R.compress().as_bytes())
                || !(R + k * A).is_identity()
                || R.compress().as_bytes() != R_bytes);
            out.push(Vector {
                case: format!("small_order A{i} R{j}"),
                public_key: *A_bytes,
                signature: sig,
                message: b"Zcash".to_vec(),
                valid_zip215: true,
                valid_legacy: Some(valid_legacy),
            });
        }
    }
    assert_eq!(out.len(), 196);
    out
}

// ---- our edge cases ----

/// An encoding of 32 bytes that is no point on the curve: y = n for the first n >= 2
/// for which (y^2 - 1) / (d y^2 + 1) has no square root.
fn not_a_point() -> [u8; 32] {
    (2u8..)
        .map(|n| {
            let mut b = [0u8; 32];
            b[0] = n;
            b
        })
        .find(|b| decompress(*b).is_none())
        .unwrap()
}

/// `s` + `add` as 256-bit little-endian integers (no overflow for the values used).
fn add_le(s: [u8; 32], add: [u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = s[i] as u16 + add[i] as u16 + carry;
        out[i] = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0);
    out
}

struct Signer {
    a: Scalar,
}

#[allow(non_snake_case)]
impl Signer {
    /// A signature by secret scalar `a` under the public key encoding `A_bytes` (which
    /// may be a plus a torsion point), with nonce point R = rB + `R_torsion`.
    fn sign(&self, A_bytes: [u8; 32], R_torsion: EdwardsPoint, msg: &[u8]) -> [u8; 64] {
        let r = hash_scalar(&[b"ncp-exchange zip215 vector nonce", msg]);
        let R_bytes = (B * r + R_torsion).compress().to_bytes();
        let k = hash_scalar(&[&R_bytes, &A_bytes, msg]);
        let s = r + k * self.a;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&R_bytes);
        sig[32..].copy_from_slice(s.as_bytes());
        sig
    }
}

/// Whether the cofactorless equation [S]B = R + [k]A holds (S canonical, points decode).
#[allow(non_snake_case)]
fn cofactorless(A_bytes: [u8; 32], sig: &[u8; 64], msg: &[u8]) -> bool {
    let (Some(A), Some(R)) = (
        decompress(A_bytes),
        decompress(sig[..32].try_into().unwrap()),
    ) else {
        return false;
    };
    let Some(s) =
        Option::<Scalar>::from(Scalar::from_canonical_bytes(sig[32..].try_into().unwrap()))
    else {
        return false;
    };
    let k = hash_scalar(&[&sig[..32], &A_bytes, msg]);
    B * s == R + k * A
}

#[allow(non_snake_case)]
fn edge_case_vectors() -> Vec<Vector> {
    let signer = Signer {
        a: hash_scalar(&[b"ncp-exchange zip215 vector signing key"]),
    };
    let A = B * signer.a;
    let A_bytes = A.compress().to_bytes();
    let T = EIGHT_TORSION[1]; // a point of order 8
    let O = EIGHT_TORSION[0]; // the identity
    let A_mixed = (A + T).compress().to_bytes();
    let msg = |case: &str| format!("ncp-exchange ZIP-215 vector: {case}").into_bytes();
    let mut out = Vec::new();
    let mut push = |case: &str, public_key: [u8; 32], signature: [u8; 64], message, valid| {
        out.push(Vector {
            case: case.to_string(),
            public_key,
            signature,
            message,
            valid_zip215: valid,
            valid_legacy: None,
        })
    };

    let m = msg("valid");
    let sig = signer.sign(A_bytes, O, &m);
    assert!(cofactorless(A_bytes, &sig, &m));
    push("valid: prime-order A and R", A_bytes, sig, m, true);

    let m = msg("wrong message");
    let sig = signer.sign(A_bytes, O, &m);
    let mut other = m.clone();
    other.push(b'!');
    push(
        "invalid: the message signed was another",
        A_bytes,
        sig,
        other,
        false,
    );

    let m = msg("S + l");
    let mut sig = signer.sign(A_bytes, O, &m);
    let s_plus_l = add_le(sig[32..].try_into().unwrap(), L);
    sig[32..].copy_from_slice(&s_plus_l);
    push(
        "invalid: S + l, S not canonical (S >= l)",
        A_bytes,
        sig,
        m,
        false,
    );

    let m = msg("S high bit");
    let mut sig = signer.sign(A_bytes, O, &m);
    sig[63] |= 0x80;
    push(
        "invalid: S with its top bit set (S >= 2^255)",
        A_bytes,
        sig,
        m,
        false,
    );

    let mut sig = [0u8; 64];
    let identity = O.compress().to_bytes();
    sig[..32].copy_from_slice(&identity);
    sig[32..].copy_from_slice(&L);
    push(
        "invalid: A = R = identity, S = l: the equation holds but S >= l",
        identity,
        sig,
        msg("S = l"),
        false,
    );

    let m = msg("mixed-order A");
    let sig = signer.sign(A_mixed, O, &m);
    assert!(!cofactorless(A_mixed, &sig, &m));
    push(
        "valid: mixed-order A (prime-order + 8-torsion): cofactorless check refuses",
        A_mixed,
        sig,
        m,
        true,
    );

    let m = msg("mixed-order R");
    let sig = signer.sign(A_bytes, T, &m);
    assert!(!cofactorless(A_bytes, &sig, &m));
    push(
        "valid: mixed-order R (prime-order + 8-torsion): cofactorless check refuses",
        A_bytes,
        sig,
        m,
        true,
    );

    let m = msg("mixed-order A and R");
    let sig = signer.sign(A_mixed, T, &m);
    push("valid: mixed-order A and R", A_mixed, sig, m, true);

    let bad = not_a_point();
    let m = msg("A not a point");
    let sig = signer.sign(bad, O, &m);
    push(
        "invalid: A does not decode to a curve point",
        bad,
        sig,
        m,
        false,
    );

    let m = msg("R not a point");
    let mut sig = signer.sign(A_bytes, O, &m);
    sig[..32].copy_from_slice(&bad);
    push(
        "invalid: R does not decode to a curve point",
        A_bytes,
        sig,
        m,
        false,
    );

    out
}

/// ed25519-zebra's verdict, single and as a batch of one; they must agree.
fn zebra_verdict(v: &Vector) -> bool {
    let sig = Signature::from_bytes(&v.signature);
    let single = VerificationKey::try_from(v.public_key)
        .and_then(|vk| vk.verify(&sig, &v.message))
        .is_ok();
    let mut bv = batch::Verifier::new();
    bv.queue((
        VerificationKeyBytes::from(v.public_key),
        sig,
        &v.message[..],
    ));
    assert_eq!(single, bv.verify(rand::rng()).is_ok(), "{}", v.case);
    single
}

fn write(dir: &Path, name: &str, source: &str, vectors: &[Vector]) {
    let mut s = String::new();
    let _ = writeln!(s, "{{\n  \"source\": {source:?},\n  \"vectors\": [");
    for (i, v) in vectors.iter().enumerate() {
        assert_eq!(zebra_verdict(v), v.valid_zip215, "{}", v.case);
        let legacy = match v.valid_legacy {
            Some(b) => format!(", \"valid_legacy\": {b}"),
            None => String::new(),
        };
        let _ = write!(
            s,
            "    {{\"case\": {:?}, \"public_key\": \"{}\", \"signature\": \"{}\", \
             \"message\": \"{}\", \"valid_zip215\": {}{legacy}}}",
            v.case,
            hex(&v.public_key),
            hex(&v.signature),
            hex(&v.message),
            v.valid_zip215,
        );
        s.push_str(if i + 1 < vectors.len() { ",\n" } else { "\n" });
    }
    s.push_str("  ]\n}\n");
    std::fs::write(dir.join(name), s).unwrap();
    println!(
        "wrote {} vectors to {}",
        vectors.len(),
        dir.join(name).display()
    );
}

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or("tests/vectors/zip215".into()),
    );
    std::fs::create_dir_all(&dir).unwrap();
    write(
        &dir,
        "small_order.json",
        "ed25519-zebra tests/small_order.rs (SMALL_ORDER_SIGS), regenerated by native/zip215/gen-vectors",
        &small_order_vectors(),
    );
    write(
        &dir,
        "edge_cases.json",
        "ncp-exchange, native/zip215/gen-vectors (deterministic)",
        &edge_case_vectors(),
    );
}
