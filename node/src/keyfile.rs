//! The node key file: JSON with the public key and the secret, written with mode 0600.

use std::io::{Read, Write};
use std::path::Path;

use bidchain_runtime::crypto::{Keypair, PublicKey};
use bidchain_runtime::hash::parse_hex_array;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

const MAX_KEY_FILE_BYTES: usize = 4096;
/// One byte more than a key file may hold, to tell a longer file from a full one.
const KEY_FILE_BUFFER_BYTES: usize = MAX_KEY_FILE_BYTES + 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    public_key: PublicKey,
    secret_key: String,
}

/// The secret's hex is wiped with the file's text and the parsed bytes: no copy of a
/// validator's key stays in freed memory, where a core dump or a later bug could show it.
impl Drop for KeyFile {
    fn drop(&mut self) {
        self.secret_key.zeroize();
    }
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot access key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path} is not a bidchain key file: {reason}")]
    Format { path: String, reason: String },
    #[error("key file {0} already exists; refusing to overwrite a key")]
    Exists(String),
}

pub fn write_key_file(path: &Path, key: &Keypair) -> Result<(), KeyFileError> {
    let shown = path.display().to_string();
    let io = |source| KeyFileError::Io {
        path: shown.clone(),
        source,
    };
    let file = KeyFile {
        public_key: key.public(),
        secret_key: hex::encode(key.secret_bytes().as_slice()),
    };
    // Sized up front, so that no outgrown buffer with part of the secret is freed unwiped.
    let mut text = Zeroizing::new(Vec::with_capacity(KEY_FILE_BUFFER_BYTES));
    serde_json::to_writer_pretty(&mut *text, &file).map_err(|e| io(e.into()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => KeyFileError::Exists(shown.clone()),
        _ => io(source),
    })?;
    out.write_all(&text).map_err(io)?;
    out.sync_all().map_err(io)
}

pub fn read_key_file(path: &Path) -> Result<Keypair, KeyFileError> {
    let shown = path.display().to_string();
    let io = |source| KeyFileError::Io {
        path: shown.clone(),
        source,
    };
    let format = |reason: String| KeyFileError::Format {
        path: shown.clone(),
        reason,
    };
    let opened = std::fs::File::open(path).map_err(io)?;
    let mut text = Zeroizing::new(Vec::with_capacity(KEY_FILE_BUFFER_BYTES));
    let limit = u64::try_from(KEY_FILE_BUFFER_BYTES).unwrap_or(u64::MAX);
    opened.take(limit).read_to_end(&mut text).map_err(io)?;
    if text.len() > MAX_KEY_FILE_BYTES {
        return Err(format("too large".to_owned()));
    }
    let file: KeyFile = serde_json::from_slice(&text).map_err(|e| format(e.to_string()))?;
    let secret = parse_hex_array::<32>(&file.secret_key).map_err(|e| format(e.to_string()))?;
    let key = Keypair::from_secret(&Zeroizing::new(secret));
    if key.public() != file.public_key {
        return Err(format(
            "public key does not match the secret key".to_owned(),
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_and_refuse_overwrite_or_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        let key = Keypair::generate();
        write_key_file(&path, &key).unwrap();
        assert_eq!(read_key_file(&path).unwrap().public(), key.public());
        assert!(matches!(
            write_key_file(&path, &key),
            Err(KeyFileError::Exists(_))
        ));
        let text = std::fs::read_to_string(&path).unwrap();
        let other = Keypair::generate().public().to_string();
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, text.replace(&key.public().to_string(), &other)).unwrap();
        assert!(
            read_key_file(&bad)
                .unwrap_err()
                .to_string()
                .contains("does not match")
        );
        let padded = text.replace('{', &format!("{{{}", " ".repeat(MAX_KEY_FILE_BYTES)));
        let large = dir.path().join("large.json");
        std::fs::write(&large, padded).unwrap();
        let refused = read_key_file(&large).unwrap_err().to_string();
        assert!(refused.contains("too large"), "{refused}");
    }
}
