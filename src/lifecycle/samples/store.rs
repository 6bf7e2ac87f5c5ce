//! The sample store on disk: a byte cap with the oldest samples evicted first, a free-space
//! floor, and writes that a crash or a full disk cannot leave half done.
//!
//! A sample is a JPEG and, for detectors, a YOLO label file beside it, named
//! `<UTC time>_<seq>_<reason>` so that names sort oldest first. Both are written to `.tmp`
//! files, flushed, and renamed, the label first: a `.jpg` exists only complete and with its
//! label. Leftover `.tmp` files (a crash mid-write) and labels without their image are removed
//! when the store opens.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Why a sample was not stored. The collector stops on the first two and tries again later.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Less free space than the floor (or than the sample needs on top of it).
    #[error("{path}: {free} bytes free, the floor is {floor}")]
    LowSpace {
        /// The store.
        path: PathBuf,
        /// Bytes available to lookout.
        free: u64,
        /// `min_free_bytes` plus the sample.
        floor: u64,
    },
    /// Reading or writing the store failed (a full disk, a read-only mount, a removed card).
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The sample alone is larger than the whole cap.
    #[error("a sample of {bytes} bytes does not fit under the cap of {cap}")]
    TooLarge {
        /// Its size.
        bytes: u64,
        /// `max_bytes`.
        cap: u64,
    },
}

/// One stored sample: its files and their size.
#[derive(Debug, Clone)]
struct Stored {
    files: Vec<PathBuf>,
    bytes: u64,
}

/// The files of one sample to write, paths relative to the store.
#[derive(Debug, Clone)]
pub struct NewSample<'a> {
    /// Sorts oldest first: `<UTC time>_<seq>_<reason>`.
    pub stem: String,
    /// The image's folder (`<model>` or `<model>/<label>`).
    pub folder: PathBuf,
    /// The JPEG bytes.
    pub jpeg: &'a [u8],
    /// The YOLO label text (detectors), written beside the image.
    pub label: Option<String>,
}

/// The store: every file under its root counted against the cap.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    max_bytes: u64,
    min_free_bytes: u64,
    /// Samples by stem: oldest first.
    samples: BTreeMap<String, Stored>,
    /// Bytes of every file under the root (samples and `labels.txt` files).
    total: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Store {
    /// Opens (creating) the store at `root`: counts what is there, removes what a crash left
    /// half written, and evicts the oldest samples if a lowered cap is now exceeded.
    pub fn open(root: &Path, max_bytes: u64, min_free_bytes: u64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(root).map_err(io(root))?;
        let mut store = Self {
            root: root.to_owned(),
            max_bytes,
            min_free_bytes,
            samples: BTreeMap::new(),
            total: 0,
        };
        let mut files = Vec::new();
        collect_files(root, &mut files)?;
        let mut labels: BTreeMap<String, PathBuf> = BTreeMap::new();
        for (path, bytes) in files {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let stem = path.file_stem().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".tmp") {
                std::fs::remove_file(&path).map_err(io(&path))?;
                continue;
            }
            store.total += bytes;
            match path.extension().and_then(|e| e.to_str()) {
                Some("jpg") => {
                    let entry = store.samples.entry(stem.to_owned()).or_insert(Stored {
                        files: Vec::new(),
                        bytes: 0,
                    });
                    entry.files.push(path.clone());
                    entry.bytes += bytes;
                }
                Some("txt") if name != "labels.txt" => {
                    labels.insert(stem.to_owned(), path.clone());
                }
                _ => {}
            }
        }
        // A label belongs to its image; one without (a crash between the renames) goes.
        for (stem, path) in labels {
            let bytes = std::fs::metadata(&path).map_err(io(&path))?.len();
            match store.samples.get_mut(&stem) {
                Some(s) => {
                    s.files.push(path);
                    s.bytes += bytes;
                }
                None => {
                    std::fs::remove_file(&path).map_err(io(&path))?;
                    store.total -= bytes;
                }
            }
        }
        store.evict_until(0)?;
        Ok(store)
    }

    /// Bytes under the root now.
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Samples held now.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// The name (stem) that sorts last: the newest sample's.
    pub fn newest_stem(&self) -> Option<&str> {
        self.samples.last_key_value().map(|(stem, _)| stem.as_str())
    }

    /// Whether the store holds no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Bytes the file system holding the store has free for lookout.
    pub fn free_bytes(&self) -> Result<u64, StoreError> {
        let s = rustix::fs::statvfs(&self.root).map_err(|e| StoreError::Io {
            path: self.root.clone(),
            source: e.into(),
        })?;
        Ok(s.f_bavail.saturating_mul(s.f_frsize))
    }

    /// Writes `text` to `folder/name` unless it is there (a model's `labels.txt`), counted
    /// against the cap like everything else.
    pub fn ensure_file(&mut self, folder: &Path, name: &str, text: &str) -> Result<(), StoreError> {
        let dir = self.root.join(folder);
        let path = dir.join(name);
        if path.exists() {
            return Ok(());
        }
        let bytes = text.len() as u64;
        self.check_space(bytes)?;
        self.evict_until(bytes)?;
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        write_then_rename(&path, text.as_bytes())?;
        self.total += bytes;
        Ok(())
    }

    /// Stores one sample, evicting the oldest until it fits under the cap.
    pub fn save(&mut self, sample: &NewSample<'_>) -> Result<(), StoreError> {
        let label_bytes = sample.label.as_ref().map_or(0, |l| l.len() as u64);
        let bytes = sample.jpeg.len() as u64 + label_bytes;
        if bytes > self.max_bytes {
            return Err(StoreError::TooLarge {
                bytes,
                cap: self.max_bytes,
            });
        }
        self.check_space(bytes)?;
        self.evict_until(bytes)?;
        let dir = self.root.join(&sample.folder);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut files = Vec::new();
        if let Some(label) = &sample.label {
            let path = dir.join(format!("{}.txt", sample.stem));
            write_then_rename(&path, label.as_bytes())?;
            files.push(path);
        }
        let path = dir.join(format!("{}.jpg", sample.stem));
        if let Err(e) = write_then_rename(&path, sample.jpeg) {
            // Its label is not a sample without it.
            for f in &files {
                let _ = std::fs::remove_file(f);
            }
            return Err(e);
        }
        files.push(path);
        self.total += bytes;
        self.samples
            .insert(sample.stem.clone(), Stored { files, bytes });
        Ok(())
    }

    fn check_space(&self, bytes: u64) -> Result<(), StoreError> {
        let free = self.free_bytes()?;
        let floor = self.min_free_bytes.saturating_add(bytes);
        if free < floor {
            return Err(StoreError::LowSpace {
                path: self.root.clone(),
                free,
                floor,
            });
        }
        Ok(())
    }

    /// Removes the oldest samples until `incoming` more bytes fit under the cap.
    fn evict_until(&mut self, incoming: u64) -> Result<(), StoreError> {
        while self.total + incoming > self.max_bytes {
            let Some((_, oldest)) = self.samples.pop_first() else {
                // Only labels.txt files are left; nothing more to give back.
                break;
            };
            for f in &oldest.files {
                match std::fs::remove_file(f) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(f)(e)),
                }
            }
            self.total -= oldest.bytes;
        }
        if self.total + incoming > self.max_bytes {
            return Err(StoreError::TooLarge {
                bytes: incoming,
                cap: self.max_bytes.saturating_sub(self.total),
            });
        }
        Ok(())
    }
}

/// Every regular file under `dir`, with its size.
pub(super) fn collect_files(dir: &Path, out: &mut Vec<(PathBuf, u64)>) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let meta = entry.metadata().map_err(io(&path))?;
        if meta.is_dir() {
            collect_files(&path, out)?;
        } else if meta.is_file() {
            out.push((path, meta.len()));
        }
    }
    Ok(())
}

/// Writes `bytes` to `path.tmp`, flushes it to the device, and renames it to `path`. On any
/// failure the `.tmp` file is removed, so a full disk leaves nothing half written.
fn write_then_rename(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(path)(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(stem: &str, jpeg: &[u8], label: Option<&str>) -> (String, Vec<u8>, Option<String>) {
        (stem.to_owned(), jpeg.to_vec(), label.map(str::to_owned))
    }

    fn save(store: &mut Store, (stem, jpeg, label): &(String, Vec<u8>, Option<String>)) {
        store
            .save(&NewSample {
                stem: stem.clone(),
                folder: PathBuf::from("m@1"),
                jpeg,
                label: label.clone(),
            })
            .expect("saved");
    }

    fn bytes_on_disk(dir: &Path) -> u64 {
        let mut files = Vec::new();
        collect_files(dir, &mut files).expect("list");
        files.iter().map(|f| f.1).sum()
    }

    #[test]
    fn the_cap_holds_to_the_byte_and_the_oldest_go_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path(), 100, 0).expect("open");
        store
            .ensure_file(Path::new("m@1"), "labels.txt", "a\nb\n")
            .expect("labels");
        for i in 0..10 {
            save(
                &mut store,
                &sample(&format!("t{i:02}"), &[i as u8; 20], Some("0 0.5 0.5 1 1\n")),
            );
            assert!(store.total_bytes() <= 100);
            assert_eq!(store.total_bytes(), bytes_on_disk(dir.path()));
        }
        // 4 bytes of labels, 34 per sample: two fit, the newest two.
        assert_eq!(store.total_bytes(), 4 + 2 * 34);
        let m = dir.path().join("m@1");
        assert!(m.join("t09.jpg").exists() && m.join("t08.txt").exists());
        assert!(!m.join("t07.jpg").exists() && !m.join("t07.txt").exists());
    }

    #[test]
    fn reopening_cleans_crash_leftovers_and_counts_what_is_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path(), 1000, 0).expect("open");
        save(
            &mut store,
            &sample("t01", &[1; 30], Some("0 0.5 0.5 1 1\n")),
        );
        let m = dir.path().join("m@1");
        std::fs::write(m.join("t02.jpg.tmp"), [2; 10]).expect("leftover");
        std::fs::write(m.join("t03.txt"), "0 0.5 0.5 1 1\n").expect("orphan label");
        let store = Store::open(dir.path(), 1000, 0).expect("reopen");
        assert_eq!(store.len(), 1);
        assert!(!m.join("t02.jpg.tmp").exists() && !m.join("t03.txt").exists());
        assert_eq!(store.total_bytes(), 44);
        // A lower cap on the next start evicts at once.
        let store = Store::open(dir.path(), 10, 0).expect("reopen smaller");
        assert_eq!((store.len(), store.total_bytes()), (0, 0));
    }

    #[test]
    fn a_floor_above_the_free_space_refuses_without_writing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path(), 1000, u64::MAX / 2).expect("open");
        let err = store
            .save(&NewSample {
                stem: "t".into(),
                folder: PathBuf::from("m@1"),
                jpeg: &[0; 10],
                label: None,
            })
            .expect_err("no space");
        assert!(matches!(err, StoreError::LowSpace { .. }), "{err}");
        assert_eq!(bytes_on_disk(dir.path()), 0);
        let err = Store::open(dir.path(), 5, 0)
            .expect("open")
            .save(&NewSample {
                stem: "t".into(),
                folder: PathBuf::from("m@1"),
                jpeg: &[0; 10],
                label: None,
            })
            .expect_err("too large");
        assert!(
            matches!(err, StoreError::TooLarge { bytes: 10, cap: 5 }),
            "{err}"
        );
    }
}
