//! ONNX external data: initializers stored in files beside the model.
//!
//! Exporters write weights outside the protobuf when a model passes protobuf's 2 GB limit, and
//! PyTorch's newer exporter does it by default (`model.onnx` + `model.onnx.data`). lookout
//! accepts such a model when its manifest lists every file with its sha256 and size
//! (`[model] external`, which `lookout import` writes), and only files inside the model's own
//! folder: a `location` is a plain relative path, never absolute, never through `..` or a link
//! that leads out, because the model file decides which paths are opened and a model is
//! untrusted input.
//!
//! The runtime then loads one self-contained model: [`inline`] reads each referenced range and
//! writes it into its initializer (`raw_data`), rewriting the protobuf at the wire level so that
//! every other field passes through untouched. What was checked is exactly what runs, and the
//! engine, the trial in a child process and the slots all keep handling one byte buffer.

use crate::budget::sha256_hex;
use crate::manifest::ExternalFile;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// Why a model's external data cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    /// A `location` that is not a plain path inside the model's folder.
    #[error("{model}: initializer `{tensor}` names external data {location:?}, which is not a file inside the model's folder")]
    Outside {
        /// The ONNX file.
        model: PathBuf,
        /// The initializer.
        tensor: String,
        /// Its `location`.
        location: String,
    },
    /// An external data file that lies outside the model's folder (through a link), or is not
    /// a regular file.
    #[error(
        "{path}: external data must be a regular file inside the model's folder (named by {by})"
    )]
    Escapes {
        /// The file.
        path: PathBuf,
        /// Who names it: the manifest's `model.external`, or the model.
        by: String,
    },
    /// A file the model uses that the manifest does not list.
    #[error("{model}: initializer `{tensor}` reads {location:?}, which {manifest} does not list in `model.external`")]
    Unlisted {
        /// The ONNX file.
        model: PathBuf,
        /// The manifest.
        manifest: PathBuf,
        /// The initializer.
        tensor: String,
        /// Its `location`.
        location: String,
    },
    /// An external file cannot be read.
    #[error("{path}: cannot read external data: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An external file is not the one the manifest describes.
    #[error("{path}: {what} but {manifest} field `model.external` says {expected}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The manifest.
        manifest: PathBuf,
        /// What the file is (`sha256 is …`, `size is … bytes`).
        what: String,
        /// What the manifest says.
        expected: String,
    },
    /// An initializer's range does not lie inside its file.
    #[error("{model}: initializer `{tensor}` reads bytes {offset}..{end} of {location:?}, which holds {len}")]
    Range {
        /// The ONNX file.
        model: PathBuf,
        /// The initializer.
        tensor: String,
        /// Its `location`.
        location: String,
        /// Start of the range.
        offset: u64,
        /// End of the range.
        end: u64,
        /// The file's size.
        len: u64,
    },
    /// The protobuf itself is malformed where external data is described.
    #[error("{model}: {message}")]
    Malformed {
        /// The ONNX file.
        model: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Whether `location` is a plain relative path (no root, no `..`): the only form an external
/// data file may be named by.
pub fn plain_location(location: &str) -> bool {
    !location.is_empty()
        && Path::new(location)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// The file `location` names beside `model`, refused if it leads out of the model's folder.
fn read_inside(model: &Path, location: &str) -> Result<Vec<u8>, ExternalError> {
    let dir = model
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let path = dir.join(location);
    let read = |source| ExternalError::Read {
        path: path.clone(),
        source,
    };
    let real = path.canonicalize().map_err(read)?;
    if !real.starts_with(dir.canonicalize().map_err(read)?) || !real.is_file() {
        return Err(ExternalError::Escapes {
            path: path.clone(),
            by: model.display().to_string(),
        });
    }
    std::fs::read(&real).map_err(read)
}

/// Reads the external file `file` that the manifest at `manifest_path` lists for the model at
/// `model_path`, checked to lie inside the model's folder (links resolved; ONNX names external
/// data relative to the model file) and to match its sha256 and size.
pub fn read_verified(
    model_path: &Path,
    manifest_path: &Path,
    file: &ExternalFile,
) -> Result<Vec<u8>, ExternalError> {
    let dir = model_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let path = dir.join(&file.file);
    let read = |source| ExternalError::Read {
        path: path.clone(),
        source,
    };
    let real_dir = dir.canonicalize().map_err(read)?;
    let real = path.canonicalize().map_err(read)?;
    if !plain_location(&file.file) || !real.starts_with(&real_dir) || !real.is_file() {
        return Err(ExternalError::Escapes {
            path: path.clone(),
            by: format!("{} field `model.external`", manifest_path.display()),
        });
    }
    let mismatch = |what: String, expected: String| ExternalError::Mismatch {
        path: path.clone(),
        manifest: manifest_path.to_owned(),
        what,
        expected,
    };
    // The size first: a file far larger than listed is not read into memory at all.
    let len = std::fs::metadata(&real).map_err(read)?.len();
    if len != file.bytes {
        return Err(mismatch(
            format!("size is {len} bytes"),
            format!("{} bytes", file.bytes),
        ));
    }
    let bytes = std::fs::read(&real).map_err(read)?;
    if bytes.len() as u64 != file.bytes {
        return Err(mismatch(
            format!("size is {} bytes", bytes.len()),
            format!("{} bytes", file.bytes),
        ));
    }
    let sha256 = sha256_hex(&bytes);
    if sha256 != file.sha256 {
        return Err(mismatch(
            format!("sha256 is {sha256}"),
            format!("sha256 {}", file.sha256),
        ));
    }
    Ok(bytes)
}

/// The model with every external initializer's data written into it, from the files `listed`
/// in the manifest at `manifest_path` (each checked by [`read_verified`]). `model_path` names
/// the ONNX file in messages.
pub fn inline(
    onnx: &[u8],
    model_path: &Path,
    manifest_path: &Path,
    listed: &[ExternalFile],
) -> Result<Vec<u8>, ExternalError> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut inliner = Inliner {
        model: model_path,
        manifest: manifest_path,
        listed: Some(listed),
        files: &mut files,
        inlined: 0,
    };
    inliner.message(onnx, Message::Model)
}

/// As [`inline`] for a model without a manifest (`inspect`): the files the model names are
/// read from its folder, still never from outside it, but no hash vouches for them.
pub fn inline_beside(onnx: &[u8], model_path: &Path) -> Result<Vec<u8>, ExternalError> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut inliner = Inliner {
        model: model_path,
        manifest: model_path,
        listed: None,
        files: &mut files,
        inlined: 0,
    };
    inliner.message(onnx, Message::Model)
}

/// Which message is being copied: only the path to the initializers is rewritten.
#[derive(Clone, Copy, PartialEq)]
enum Message {
    Model,
    Graph,
}

/// Protobuf field numbers from `onnx.proto`.
const MODEL_GRAPH: u64 = 7;
const GRAPH_INITIALIZER: u64 = 5;
const TENSOR_NAME: u64 = 8;
const TENSOR_RAW_DATA: u64 = 9;
const TENSOR_EXTERNAL_DATA: u64 = 13;
const TENSOR_DATA_LOCATION: u64 = 14;
const EXTERNAL: u64 = 1;

struct Inliner<'a> {
    model: &'a Path,
    manifest: &'a Path,
    /// The manifest's files; `None` reads what the model names, unverified.
    listed: Option<&'a [ExternalFile]>,
    files: &'a mut BTreeMap<String, Vec<u8>>,
    /// Bytes written into the model so far: never more than the files hold together, or
    /// overlapping ranges in a small model could make it any size.
    inlined: u64,
}

/// One field of a protobuf message as it lies on the wire.
struct Field<'b> {
    number: u64,
    /// The whole field, key included, to copy it unchanged.
    raw: &'b [u8],
    /// Varint value (wire type 0).
    varint: Option<u64>,
    /// Payload of a length-delimited field (wire type 2).
    bytes: Option<&'b [u8]>,
}

impl Inliner<'_> {
    fn malformed(&self, message: &str) -> ExternalError {
        ExternalError::Malformed {
            model: self.model.to_owned(),
            message: format!(
                "not a valid ONNX protobuf where external data is described: {message}"
            ),
        }
    }

    fn fields<'b>(&self, mut bytes: &'b [u8]) -> Result<Vec<Field<'b>>, ExternalError> {
        let mut fields = Vec::new();
        while !bytes.is_empty() {
            let start = bytes;
            let key = varint(&mut bytes).ok_or_else(|| self.malformed("a truncated key"))?;
            let (number, wire) = (key >> 3, key & 7);
            let (mut value, mut payload) = (None, None);
            match wire {
                0 => {
                    value = Some(
                        varint(&mut bytes).ok_or_else(|| self.malformed("a truncated varint"))?,
                    )
                }
                1 | 5 => {
                    let n = if wire == 1 { 8 } else { 4 };
                    bytes = bytes
                        .get(n..)
                        .ok_or_else(|| self.malformed("a truncated fixed field"))?;
                }
                2 => {
                    let len =
                        varint(&mut bytes).ok_or_else(|| self.malformed("a truncated length"))?;
                    let len =
                        usize::try_from(len).map_err(|_| self.malformed("a length past memory"))?;
                    let data = bytes
                        .get(..len)
                        .ok_or_else(|| self.malformed("a field longer than the file"))?;
                    payload = Some(data);
                    bytes = &bytes[len..];
                }
                _ => return Err(self.malformed(&format!("wire type {wire}"))),
            }
            let used = start.len() - bytes.len();
            fields.push(Field {
                number,
                raw: &start[..used],
                varint: value,
                bytes: payload,
            });
        }
        Ok(fields)
    }

    /// Copies a model or graph message, rewriting what leads to external initializers.
    fn message(&mut self, bytes: &[u8], kind: Message) -> Result<Vec<u8>, ExternalError> {
        let mut out = Vec::with_capacity(bytes.len());
        for field in self.fields(bytes)? {
            let nested = match (kind, field.number, field.bytes) {
                (Message::Model, MODEL_GRAPH, Some(graph)) => {
                    Some(self.message(graph, Message::Graph)?)
                }
                (Message::Graph, GRAPH_INITIALIZER, Some(tensor)) => self.tensor(tensor)?,
                _ => None,
            };
            match nested {
                Some(payload) => put_bytes(&mut out, field.number, &payload),
                None => out.extend_from_slice(field.raw),
            }
        }
        Ok(out)
    }

    /// The tensor with its external data inlined, or `None` when it is stored inside already.
    fn tensor(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>, ExternalError> {
        let fields = self.fields(bytes)?;
        if !fields
            .iter()
            .any(|f| f.number == TENSOR_DATA_LOCATION && f.varint == Some(EXTERNAL))
        {
            return Ok(None);
        }
        let name = fields
            .iter()
            .find(|f| f.number == TENSOR_NAME)
            .and_then(|f| f.bytes)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let mut entries: BTreeMap<String, String> = BTreeMap::new();
        for f in fields.iter().filter(|f| f.number == TENSOR_EXTERNAL_DATA) {
            let (mut key, mut value) = (String::new(), String::new());
            for e in self.fields(f.bytes.unwrap_or_default())? {
                let text = String::from_utf8_lossy(e.bytes.unwrap_or_default()).into_owned();
                match e.number {
                    1 => key = text,
                    2 => value = text,
                    _ => {}
                }
            }
            entries.insert(key, value);
        }
        let location = entries.get("location").cloned().unwrap_or_default();
        let number = |key: &str| -> Result<Option<u64>, ExternalError> {
            entries
                .get(key)
                .map(|v| {
                    v.parse::<u64>().map_err(|_| {
                        self.malformed(&format!(
                            "initializer `{name}`: external data {key} {v:?} is not a number"
                        ))
                    })
                })
                .transpose()
        };
        let (offset, length) = (number("offset")?.unwrap_or(0), number("length")?);
        if !plain_location(&location) {
            return Err(ExternalError::Outside {
                model: self.model.to_owned(),
                tensor: name,
                location,
            });
        }
        if !self.files.contains_key(&location) {
            let data = match self.listed {
                Some(listed) => {
                    let Some(file) = listed.iter().find(|f| f.file == location) else {
                        return Err(ExternalError::Unlisted {
                            model: self.model.to_owned(),
                            manifest: self.manifest.to_owned(),
                            tensor: name,
                            location,
                        });
                    };
                    read_verified(self.model, self.manifest, file)?
                }
                None => read_inside(self.model, &location)?,
            };
            self.files.insert(location.clone(), data);
        }
        let data = &self.files[&location];
        let len = data.len() as u64;
        let end = length.map_or(len, |l| offset.saturating_add(l));
        if offset > end || end > len {
            return Err(ExternalError::Range {
                model: self.model.to_owned(),
                tensor: name,
                location,
                offset,
                end,
                len,
            });
        }
        self.inlined += end - offset;
        let held: u64 = self.files.values().map(|d| d.len() as u64).sum();
        if self.inlined > held {
            return Err(self.malformed(&format!(
                "initializer `{name}`: its external data ranges add up to {} bytes, more than \
                 the {held} bytes its files hold (ranges that overlap)",
                self.inlined
            )));
        }
        // In range of a buffer in memory, so both fit usize.
        let data = &self.files[&location];
        let range = &data[offset as usize..end as usize];
        let mut out = Vec::with_capacity(bytes.len() + range.len() + 10);
        for f in &fields {
            if !matches!(
                f.number,
                TENSOR_EXTERNAL_DATA | TENSOR_DATA_LOCATION | TENSOR_RAW_DATA
            ) {
                out.extend_from_slice(f.raw);
            }
        }
        put_bytes(&mut out, TENSOR_RAW_DATA, range);
        Ok(Some(out))
    }
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_bytes(out: &mut Vec<u8>, number: u64, payload: &[u8]) {
    put_varint(out, number << 3 | 2);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_locations_are_accepted() {
        for good in ["w.bin", "weights/w.bin", "./w.bin"] {
            assert!(plain_location(good), "{good}");
        }
        for bad in ["", "/etc/passwd", "../w.bin", "a/../../w.bin", "a/.."] {
            assert!(!plain_location(bad), "{bad}");
        }
    }

    /// A model whose initializers all read the whole of one file, an ONNX of a few hundred bytes
    /// that would inline to any size: refused once the ranges exceed what the file holds.
    #[test]
    fn overlapping_ranges_cannot_make_a_model_grow_past_its_files() {
        let dir = std::env::temp_dir().join(format!("lookout-external-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("w.bin"), [7u8; 64]).expect("data");
        let tensor = |name: &str| {
            let mut entry = Vec::new();
            put_bytes(&mut entry, 1, b"location");
            put_bytes(&mut entry, 2, b"w.bin");
            let mut t = Vec::new();
            put_bytes(&mut t, TENSOR_NAME, name.as_bytes());
            put_bytes(&mut t, TENSOR_EXTERNAL_DATA, &entry);
            put_varint(&mut t, TENSOR_DATA_LOCATION << 3);
            put_varint(&mut t, EXTERNAL);
            t
        };
        let mut graph = Vec::new();
        for name in ["a", "b"] {
            put_bytes(&mut graph, GRAPH_INITIALIZER, &tensor(name));
        }
        let mut model = Vec::new();
        put_bytes(&mut model, MODEL_GRAPH, &graph);
        let path = dir.join("m.onnx");
        // One tensor reading the whole file is fine; the second one over the same bytes is not.
        let mut one = Vec::new();
        put_bytes(&mut one, GRAPH_INITIALIZER, &tensor("a"));
        let mut single = Vec::new();
        put_bytes(&mut single, MODEL_GRAPH, &one);
        let inlined = inline_beside(&single, &path).expect("one range");
        assert!(inlined.len() > 64);
        let err = inline_beside(&model, &path).unwrap_err().to_string();
        assert!(
            err.contains("initializer `b`: its external data ranges add up to 128 bytes, more than the 64 bytes its files hold"),
            "{err}"
        );
        // Truncated bytes are an error, never a panic.
        for cut in 0..model.len() {
            let _ = inline_beside(&model[..cut], &path);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut slice = out.as_slice();
            assert_eq!(varint(&mut slice), Some(v));
            assert!(slice.is_empty());
        }
        assert_eq!(varint(&mut [0x80u8].as_slice()), None);
    }
}
