//! A minisign signer for tests: Ed25519 key pairs made at test time (ring) and signature
//! files in minisign's format, prehashed with BLAKE2b-512 as `minisign -S` does by default,
//! or legacy. No secret key is kept anywhere but in memory.
//!
//! The library's unit tests (src/signature/) use this same file, so the formats are written
//! in one place.

use blake2::{Blake2b512, Digest};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};

/// A minisign key pair.
pub struct Signer {
    id: [u8; 8],
    pair: Ed25519KeyPair,
}

impl Signer {
    /// A new key pair with a random key id.
    pub fn generate() -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("an Ed25519 key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("the key just made");
        let mut id = [0u8; 8];
        rng.fill(&mut id).expect("random bytes");
        Signer { id, pair }
    }

    /// The public key as `minisign -G` prints it (`RW...`).
    pub fn public_key(&self) -> String {
        let mut bytes = b"Ed".to_vec();
        bytes.extend_from_slice(&self.id);
        bytes.extend_from_slice(self.pair.public_key().as_ref());
        base64(&bytes)
    }

    /// The key id as `minisign` prints it.
    pub fn key_id(&self) -> String {
        format!("{:X}", u64::from_le_bytes(self.id))
    }

    /// A prehashed signature file of `data` (what `minisign -S -t COMMENT` writes).
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> String {
        let hash = Blake2b512::digest(data);
        self.signature_file(b"ED", &hash, trusted_comment)
    }

    /// A legacy signature file of `data` (Ed25519 over the data itself).
    pub fn sign_legacy(&self, data: &[u8], trusted_comment: &str) -> String {
        self.signature_file(b"Ed", data, trusted_comment)
    }

    fn signature_file(&self, algorithm: &[u8; 2], signed: &[u8], trusted_comment: &str) -> String {
        let signature = self.pair.sign(signed);
        let mut line = algorithm.to_vec();
        line.extend_from_slice(&self.id);
        line.extend_from_slice(signature.as_ref());
        let mut global = signature.as_ref().to_vec();
        global.extend_from_slice(trusted_comment.as_bytes());
        let global = self.pair.sign(&global);
        format!(
            "untrusted comment: signature from a test key\n{}\ntrusted comment: {trusted_comment}\n{}\n",
            base64(&line),
            base64(global.as_ref())
        )
    }
}

/// Standard base64 with `=` padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
