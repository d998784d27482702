//! Signing keys (ed25519) and the store's trusted signers.
//!
//! Keys are PKCS#8 / SPKI PEM files (`openssl pkey -in signer.key -text` reads them). The signer key
//! file is created mode 0600; a store trusts the public keys in its `trusted-signers/` folder.

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::spki::{DecodePublicKey, EncodePublicKey};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// File name of the private key written by [`generate_files`].
pub const SIGNER_KEY_FILE: &str = "signer.key";
/// File name of the public key written by [`generate_files`].
pub const SIGNER_PUB_FILE: &str = "signer.pub";

/// A key file that cannot be read, parsed or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// I/O on a key file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file that is not an ed25519 key in PEM.
    #[error("{path}: not an ed25519 {what} in PEM form")]
    Parse {
        /// The file.
        path: PathBuf,
        /// "private key" or "public key".
        what: &'static str,
    },
    /// Refusing to overwrite a key.
    #[error("{0}: already exists, refusing to overwrite a key")]
    Exists(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The key that signs manifests at capture.
pub struct Signer(SigningKey);

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", fingerprint(&self.verifying_key()))
    }
}

impl Signer {
    /// A new random key from the OS random generator.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        Signer(SigningKey::from_bytes(&seed))
    }

    /// Reads a PKCS#8 PEM private key.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let pem = fs::read_to_string(path).map_err(io(path))?;
        SigningKey::from_pkcs8_pem(&pem)
            .map(Signer)
            .map_err(|_| KeyError::Parse {
                path: path.to_path_buf(),
                what: "private key",
            })
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.0.verifying_key()
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        self.0.sign(msg)
    }
}

/// Short printable name of a public key: the first 16 hex of the sha256 of its bytes.
pub fn fingerprint(key: &VerifyingKey) -> String {
    hex::encode(&super::chunk::ChunkHash::of(key.as_bytes()).0[..8])
}

/// Writes a new key pair into `dir`: `signer.key` (mode 0600) and `signer.pub`. Never overwrites.
pub fn generate_files(dir: &Path) -> Result<(PathBuf, PathBuf, String), KeyError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let key_path = dir.join(SIGNER_KEY_FILE);
    let pub_path = dir.join(SIGNER_PUB_FILE);
    for p in [&key_path, &pub_path] {
        if p.exists() {
            return Err(KeyError::Exists(p.clone()));
        }
    }
    let signer = Signer::generate();
    let pem = signer
        .0
        .to_pkcs8_pem(LineEnding::LF)
        .expect("ed25519 keys always encode");
    let pub_pem = signer
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("ed25519 keys always encode");
    // create_new + mode at open: the secret is never readable by others, not even for an instant.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .map_err(io(&key_path))?;
    f.write_all(pem.as_bytes()).map_err(io(&key_path))?;
    f.sync_all().map_err(io(&key_path))?;
    fs::write(&pub_path, pub_pem).map_err(io(&pub_path))?;
    Ok((key_path, pub_path, fingerprint(&signer.verifying_key())))
}

/// Reads a SPKI PEM public key file.
pub fn load_public(path: &Path) -> Result<VerifyingKey, KeyError> {
    let pem = fs::read_to_string(path).map_err(io(path))?;
    VerifyingKey::from_public_key_pem(&pem).map_err(|_| KeyError::Parse {
        path: path.to_path_buf(),
        what: "public key",
    })
}

/// Every public key of a file holding one or several PEM blocks (a boot environment trusting the
/// school's signer and the region's: `bootenv build --trusted-key A --trusted-key B`). A file
/// without a key, or with a block that is not a public key, is refused.
pub fn load_public_all(path: &Path) -> Result<Vec<VerifyingKey>, KeyError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    let bad = || KeyError::Parse {
        path: path.to_path_buf(),
        what: "public key",
    };
    const END: &str = "-----END PUBLIC KEY-----";
    let mut keys = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("-----BEGIN") {
        let end = rest[start..].find(END).ok_or_else(bad)? + start + END.len();
        keys.push(VerifyingKey::from_public_key_pem(&rest[start..end]).map_err(|_| bad())?);
        rest = &rest[end..];
    }
    if keys.is_empty() {
        return Err(bad());
    }
    Ok(keys)
}

/// The public keys whose signatures a store (or an agent) accepts.
#[derive(Debug, Clone, Default)]
pub struct TrustedSigners {
    keys: Vec<VerifyingKey>,
}

impl TrustedSigners {
    /// A set of keys given directly (the agent gets them from its boot parameters).
    pub fn from_keys(keys: Vec<VerifyingKey>) -> Self {
        TrustedSigners { keys }
    }

    /// Reads every `*.pub` file of `dir` (a missing folder trusts nobody).
    pub fn load_dir(dir: &Path) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(io(dir)(e)),
        };
        for e in entries {
            let p = e.map_err(io(dir))?.path();
            if p.extension().is_some_and(|x| x == "pub") {
                keys.push(load_public(&p)?);
            }
        }
        Ok(TrustedSigners { keys })
    }

    /// True if `key` is one of them.
    pub fn contains(&self, key: &VerifyingKey) -> bool {
        self.keys.iter().any(|k| k == key)
    }

    /// The keys.
    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_files_load_back_and_the_secret_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let (k, p, fp) = generate_files(dir.path()).unwrap();
        assert_eq!(
            fs::metadata(&k).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let signer = Signer::load(&k).unwrap();
        assert_eq!(load_public(&p).unwrap(), signer.verifying_key());
        assert_eq!(fingerprint(&signer.verifying_key()), fp);
        assert!(matches!(
            generate_files(dir.path()),
            Err(KeyError::Exists(_))
        ));
        let t = TrustedSigners::load_dir(dir.path()).unwrap();
        assert!(t.contains(&signer.verifying_key()));
        assert!(matches!(Signer::load(&p), Err(KeyError::Parse { .. })));
    }

    #[test]
    fn a_file_of_several_public_keys_trusts_each_and_a_bad_block_is_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (_, pa, _) = generate_files(a.path()).unwrap();
        let (_, pb, _) = generate_files(b.path()).unwrap();
        let both = a.path().join("both.pub");
        let text = fs::read_to_string(&pa).unwrap() + &fs::read_to_string(&pb).unwrap();
        fs::write(&both, &text).unwrap();
        let keys = load_public_all(&both).unwrap();
        assert_eq!(
            keys,
            vec![load_public(&pa).unwrap(), load_public(&pb).unwrap()]
        );
        assert_eq!(
            load_public_all(&pa).unwrap(),
            vec![load_public(&pa).unwrap()]
        );
        for broken in [
            String::new(),
            "not a key\n".to_string(),
            text.replace("-----END PUBLIC KEY-----\n-----BEGIN", "-----BEGIN"),
            text.replacen("MC", "XX", 1),
        ] {
            fs::write(&both, broken).unwrap();
            assert!(
                matches!(load_public_all(&both), Err(KeyError::Parse { .. })),
                "refused"
            );
        }
    }
}
