//! `exchange_zip215`: Ed25519 verification under ZIP-215 for ncp-exchange.
//!
//! Both functions copy their inputs out of the Python objects, then release the GIL
//! while they verify, so other Python threads run meanwhile. The rule is ZIP-215 as
//! ed25519-zebra implements it (docs/signature-rule.md): single and batch verification
//! accept exactly the same signatures, so a batch's verdicts never depend on what else
//! shares the batch.
//!
//! Malformed input never raises: a public key that is not 32 bytes or a signature
//! that is not 64 bytes is simply not a valid signature (False). Only a wrong *type*
//! raises, as it is a programming error of the caller: TypeError for a value that is
//! not bytes or a byte buffer or a batch item that is not a tuple, ValueError for a
//! tuple that is not of three.

use std::collections::HashMap;

use ed25519_zebra::batch;
use ed25519_zebra::{Signature, VerificationKey, VerificationKeyBytes};
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// One (public key, message, signature) triple copied out of Python objects.
/// `key` or `sig` is None when its length was wrong: that item is False.
struct Triple {
    key: Option<[u8; 32]>,
    sig: Option<[u8; 64]>,
    msg: Vec<u8>,
}

impl Triple {
    fn well_formed(&self) -> Option<([u8; 32], Signature, &[u8])> {
        match (self.key, self.sig) {
            (Some(key), Some(sig)) => Some((key, Signature::from_bytes(&sig), &self.msg)),
            _ => None,
        }
    }
}

/// A batch item as Python gives it: (public key, message, signature).
type PyTriple<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>);

/// The bytes of `obj` (bytes, or any buffer of unsigned bytes), copied.
fn copy_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    let buffer = PyBuffer::<u8>::get(obj)?;
    buffer.to_vec(obj.py())
}

/// A fixed-length array from `obj`, or None when its length is not N.
fn copy_array<const N: usize>(obj: &Bound<'_, PyAny>) -> PyResult<Option<[u8; N]>> {
    Ok(<[u8; N]>::try_from(copy_bytes(obj)?.as_slice()).ok())
}

fn triple(
    public_key: &Bound<'_, PyAny>,
    message: &Bound<'_, PyAny>,
    signature: &Bound<'_, PyAny>,
) -> PyResult<Triple> {
    Ok(Triple {
        key: copy_array::<32>(public_key)?,
        sig: copy_array::<64>(signature)?,
        msg: copy_bytes(message)?,
    })
}

fn verify_one(key: [u8; 32], sig: &Signature, msg: &[u8]) -> bool {
    VerificationKey::try_from(key)
        .and_then(|vk| vk.verify(sig, msg))
        .is_ok()
}

/// The verdict of each triple: one batch check over all well-formed ones, and when
/// that fails, a single check of each (decoded keys cached: a federation has few
/// senders), so that only the bad ones are false.
fn verify_all(triples: &[Triple]) -> Vec<bool> {
    let mut verdicts: Vec<bool> = triples.iter().map(|t| t.well_formed().is_some()).collect();
    let well_formed = verdicts.iter().filter(|v| **v).count();
    if well_formed == 0 {
        return verdicts;
    }
    if well_formed > 1 {
        let mut verifier = batch::Verifier::new();
        for (key, sig, msg) in triples.iter().filter_map(Triple::well_formed) {
            verifier.queue((VerificationKeyBytes::from(key), sig, msg));
        }
        if verifier.verify(rand::rng()).is_ok() {
            return verdicts;
        }
    }
    let mut keys: HashMap<[u8; 32], Option<VerificationKey>> = HashMap::new();
    for (verdict, t) in verdicts.iter_mut().zip(triples) {
        if let Some((key, sig, msg)) = t.well_formed() {
            let vk = keys
                .entry(key)
                .or_insert_with(|| VerificationKey::try_from(key).ok());
            *verdict = vk.as_ref().is_some_and(|vk| vk.verify(&sig, msg).is_ok());
        }
    }
    verdicts
}

/// Whether `signature` is a valid Ed25519 signature of `message` by `public_key`
/// under ZIP-215. Wrong lengths give False; the GIL is released while verifying.
#[pyfunction]
#[pyo3(signature = (public_key, message, signature))]
fn verify(
    py: Python<'_>,
    public_key: &Bound<'_, PyAny>,
    message: &Bound<'_, PyAny>,
    signature: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    let t = triple(public_key, message, signature)?;
    Ok(py.detach(move || match t.well_formed() {
        Some((key, sig, msg)) => verify_one(key, &sig, msg),
        None => false,
    }))
}

/// The verdict of each `(public_key, message, signature)` item under ZIP-215, in
/// order: one batch check, and single checks only when the batch fails. Wrong
/// lengths give False; the GIL is released while verifying.
#[pyfunction]
fn verify_batch(py: Python<'_>, items: &Bound<'_, PyAny>) -> PyResult<Vec<bool>> {
    let mut triples = Vec::with_capacity(items.len().unwrap_or(0));
    for item in items.try_iter()? {
        let item = item?;
        let (public_key, message, signature): PyTriple<'_> = item.extract()?;
        triples.push(triple(&public_key, &message, &signature)?);
    }
    Ok(py.detach(move || verify_all(&triples)))
}

#[pymodule]
fn exchange_zip215(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    m.add_function(wrap_pyfunction!(verify_batch, m)?)?;
    m.add("RULE", "ZIP-215")?;
    Ok(())
}
