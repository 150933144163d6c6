//! The versioned envelope of `state.postcard`: magic `MULKICKP`, a u32 little-endian format
//! version, then the postcard bytes. The header makes a wrong file or a future format fail with
//! a clear message instead of decoding into garbage.
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::CheckpointError;

/// The first eight bytes of every `state.postcard`.
pub const MAGIC: &[u8; 8] = b"MULKICKP";
/// The header format version written and read by this build.
pub const HEADER_VERSION: u32 = 1;

/// Magic, version and the postcard encoding of `value`. `file` names the destination in the
/// error, which only a failing `Serialize` impl can cause.
pub fn encode_header<T: Serialize>(value: &T, file: &Path) -> Result<Vec<u8>, CheckpointError> {
    let mut out = Vec::with_capacity(MAGIC.len() + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&HEADER_VERSION.to_le_bytes());
    postcard::to_extend(value, out)
        .map_err(|e| CheckpointError::Encode { path: file.to_path_buf(), message: e.to_string() })
}

/// Checks magic and version and decodes the payload, which must be consumed exactly; `file`
/// names the source in the error.
pub fn decode_header<T: DeserializeOwned>(bytes: &[u8], file: &Path) -> Result<T, CheckpointError> {
    let path = || file.to_path_buf();
    let magic_len = MAGIC.len().min(bytes.len());
    let (head, rest) = bytes.split_at(magic_len);
    if head != MAGIC.get(..magic_len).unwrap_or(MAGIC) {
        return Err(CheckpointError::BadMagic { path: path(), found: format!("\"{}\"", head.escape_ascii()) });
    }
    if head.len() < MAGIC.len() {
        return Err(CheckpointError::Truncated {
            path: path(),
            what: format!("{} bytes, shorter than the 8-byte magic", bytes.len()),
        });
    }
    let Some((version, payload)) = rest.split_first_chunk::<4>() else {
        return Err(CheckpointError::Truncated {
            path: path(),
            what: format!("{} bytes, ends inside the 4-byte version", bytes.len()),
        });
    };
    let version = u32::from_le_bytes(*version);
    if version != HEADER_VERSION {
        return Err(CheckpointError::UnsupportedVersion {
            path: path(),
            what: "state header",
            version: version.into(),
            supported: HEADER_VERSION,
        });
    }
    match postcard::take_from_bytes::<T>(payload) {
        Ok((value, [])) => Ok(value),
        Ok((_, trailing)) => Err(CheckpointError::CorruptPayload {
            path: path(),
            message: format!("{} trailing bytes after the value", trailing.len()),
        }),
        Err(postcard::Error::DeserializeUnexpectedEnd) => Err(CheckpointError::Truncated {
            path: path(),
            what: format!("payload of {} bytes ends inside the value", payload.len()),
        }),
        Err(e) => Err(CheckpointError::CorruptPayload { path: path(), message: e.to_string() }),
    }
}
