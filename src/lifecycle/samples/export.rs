//! `lookout samples export`: the store packed as one tar file for the trainer.
//!
//! The archive holds the store's folders as they are (`<name>@<version>/…`, the layout `lookout
//! eval` and `tools/` read), complete samples only: an image whose label file is missing, or
//! a `.tmp` file a writer left, stays out. It is written to `<out>.tmp` and renamed, so a full
//! disk or a pulled card leaves no half archive that looks whole.

use std::path::{Path, PathBuf};

/// Why the store could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the store or writing the archive failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Listing the store failed.
    #[error(transparent)]
    Store(#[from] super::store::StoreError),
    /// No sample to export.
    #[error("{0}: no samples (for this model) in the store")]
    Empty(PathBuf),
}

/// What went into an archive.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Exported {
    /// Images.
    pub images: usize,
    /// Label files (YOLO txt and `labels.txt`).
    pub labels: usize,
    /// Bytes of the files packed.
    pub bytes: u64,
}

/// Packs the store at `dir` (only the folder of `model`, `name@version`, when given) into the
/// tar file `out`.
pub fn export(dir: &Path, model: Option<&str>, out: &Path) -> Result<Exported, ExportError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ExportError::Io { path, source }
    };
    let mut files = Vec::new();
    let top = std::fs::read_dir(dir).map_err(io(dir))?;
    for entry in top {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type().map_err(io(dir))?.is_dir() || model.is_some_and(|m| m != name) {
            continue;
        }
        let mut found = Vec::new();
        super::store::collect_files(&entry.path(), &mut found)?;
        files.extend(
            found
                .into_iter()
                .filter_map(|(path, _)| path.strip_prefix(dir).ok().map(Path::to_owned)),
        );
    }
    files.sort();
    let complete: Vec<&PathBuf> = files
        .iter()
        .filter(|rel| {
            let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
            match rel.extension().and_then(|e| e.to_str()) {
                Some("jpg") => true,
                // A YOLO label travels with its image; labels.txt names the classes.
                Some("txt") => name == "labels.txt" || dir.join(rel.with_extension("jpg")).exists(),
                _ => false,
            }
        })
        .collect();
    let mut summary = Exported::default();
    for rel in &complete {
        match rel.extension().and_then(|e| e.to_str()) {
            Some("jpg") => summary.images += 1,
            _ => summary.labels += 1,
        }
    }
    if summary.images == 0 {
        return Err(ExportError::Empty(dir.to_owned()));
    }
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = (|| -> std::io::Result<u64> {
        let file = std::fs::File::create(&tmp)?;
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        let mut bytes = 0;
        for rel in &complete {
            let path = dir.join(rel);
            bytes += std::fs::metadata(&path)?.len();
            tar.append_path_with_name(&path, rel)?;
        }
        let file = tar.into_inner()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(bytes)
    })();
    match written.and_then(|bytes| std::fs::rename(&tmp, out).map(|()| bytes)) {
        Ok(bytes) => {
            summary.bytes = bytes;
            Ok(summary)
        }
        Err(source) => {
            let _ = std::fs::remove_file(&tmp);
            Err(ExportError::Io {
                path: out.to_owned(),
                source,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_samples_are_packed_and_leftovers_stay_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = dir.path().join("m@1");
        std::fs::create_dir_all(m.join("cat")).expect("dirs");
        std::fs::write(m.join("labels.txt"), "a\n").expect("write");
        std::fs::write(m.join("t1.jpg"), [1; 10]).expect("write");
        std::fs::write(m.join("t1.txt"), "0 0.5 0.5 1 1\n").expect("write");
        std::fs::write(m.join("t2.txt"), "orphan").expect("write");
        std::fs::write(m.join("t3.jpg.tmp"), [3; 10]).expect("write");
        std::fs::write(m.join("cat").join("t4.jpg"), [4; 7]).expect("write");
        std::fs::create_dir_all(dir.path().join("other@2")).expect("dir");
        std::fs::write(dir.path().join("other@2").join("t5.jpg"), [5; 3]).expect("write");
        let out = dir.path().join("out.tar");

        let summary = export(dir.path(), Some("m@1"), &out).expect("export");
        assert_eq!(
            summary,
            Exported {
                images: 2,
                labels: 2,
                bytes: 2 + 10 + 14 + 7
            }
        );
        let mut archive = tar::Archive::new(std::fs::File::open(&out).expect("open"));
        let mut names: Vec<String> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "m@1/cat/t4.jpg",
                "m@1/labels.txt",
                "m@1/t1.jpg",
                "m@1/t1.txt"
            ]
        );
        assert!(!dir.path().join("out.tar.tmp").exists());

        let all = export(dir.path(), None, &out).expect("all models");
        assert_eq!(all.images, 3);
        let err = export(dir.path(), Some("none@0"), &out).expect_err("empty");
        assert!(matches!(err, ExportError::Empty(_)), "{err}");
    }
}
