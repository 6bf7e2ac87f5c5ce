//! Installed model versions on the device, and which one runs.
//!
//! ```text
//! <root>/<name>/<version>/<model>.onnx     one slot per version, never changed once installed
//! <root>/<name>/<version>/<name>.toml      its manifest
//! <root>/<name>/current  -> <version>      the version that runs
//! <root>/<name>/previous -> <version>      what `rollback` returns to
//! <root>/<name>/good -> <version>          the last version that got through its trial frames
//! ```
//!
//! An install runs the deployment check (`budget::check_model`: sha256 against the manifest,
//! the board's model budget, a parseable graph) before anything is written, copies into a
//! hidden `.incoming-*` folder, flushes it, and renames it into place; a switch writes the new
//! link beside the old and renames it over. Renames are atomic, so a power cut at any step
//! leaves `current` naming a complete, checked slot. Leftover `.incoming-*` folders and
//! `*.tmp` links are removed by the next install.

pub use crate::board::ModelsConfig;

use crate::board::Board;
use crate::budget::{check_model, CheckError};
use crate::manifest::Manifest;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The manifest's file name inside a slot of `name` (a manifest is named after its model).
fn manifest_file(name: &str) -> String {
    format!("{name}.toml")
}

/// Why a slot operation failed; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// Reading or writing the slots failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The model fails the deployment check (hash, budget, graph).
    #[error("refused: {0}")]
    Check(#[from] Box<CheckError>),
    /// The manifest cannot name a slot.
    #[error("{path}: field `{field}`: {message}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Another model is installed under the same name and version.
    #[error("{name}@{version} is installed already with another model file (sha256 {installed}); give the new one a new version")]
    Exists {
        /// Model name.
        name: String,
        /// Version.
        version: String,
        /// The installed file's hash.
        installed: String,
    },
    /// No such slot.
    #[error("{name}@{version} is not installed (installed: {installed})")]
    NotInstalled {
        /// Model name.
        name: String,
        /// Version asked for.
        version: String,
        /// What is installed.
        installed: String,
    },
    /// `rollback` with nothing to go back to.
    #[error("{0} has no previous version to roll back to")]
    NoPrevious(String),
}

/// One installed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Model name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Its manifest.
    pub manifest: PathBuf,
    /// The version that runs.
    pub current: bool,
    /// The version `rollback` returns to.
    pub previous: bool,
}

/// The slots under one root (`/var/lib/lookout/models` on a board).
#[derive(Debug, Clone)]
pub struct Slots {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SlotError + '_ {
    move |source| SlotError::Io {
        path: path.to_owned(),
        source,
    }
}

/// When this process runs as root on slots that belong to another user (the owner of the slots
/// folder, or of its nearest existing parent: `/var/lib/lookout`, the service's user), it goes
/// on as that user, for good. What root created there the service could not change later (point
/// `current` and `good` at versions), and a folder that user owns could be made, between two
/// calls, a link that sends root's writes anywhere: as its owner, lookout can do no more there
/// than the service itself. [`Slots::install`] calls it once what it installs has been read;
/// `lookout model use` and `rollback` call it first. A running `lookout run` never does.
pub fn act_as_owner(root: &Path) -> Result<(), SlotError> {
    use std::os::unix::fs::MetadataExt;
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let Some((uid, gid)) = root
        .ancestors()
        .find_map(|dir| std::fs::metadata(dir).ok())
        .map(|m| (m.uid(), m.gid()))
        .filter(|(uid, _)| *uid != 0)
    else {
        return Ok(());
    };
    // SAFETY: plain system calls without pointers but setgroups' empty list; glibc applies
    // setgid and setuid to every thread of the process. The order matters: groups and gid
    // while still root, uid last.
    let failed = unsafe {
        libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
    };
    if failed || rustix::process::geteuid().as_raw() != uid {
        return Err(SlotError::Io {
            path: root.to_owned(),
            source: std::io::Error::other(format!(
                "cannot act as the slots' owner (uid {uid}, gid {gid}): {}",
                std::io::Error::last_os_error()
            )),
        });
    }
    Ok(())
}

/// The links beside the versions of a model.
const LINKS: [&str; 3] = ["current", "previous", "good"];

/// A name or version that is one plain path component.
fn plain(value: &str) -> bool {
    !value.is_empty()
        && !value.starts_with('.')
        && !value.contains(['/', '\\', '\0'])
        && !LINKS.contains(&value)
}

impl Slots {
    /// The slots under `root` (created on the first install).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder the slots are in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The slots and model name a file of a `current` version belongs to
    /// (`<root>/<name>/current/<file>`), or `None` for a file outside any slot.
    pub fn of_current_file(file: &Path) -> Option<(Self, String)> {
        let link = file.parent()?;
        if link.file_name()? != "current" {
            return None;
        }
        let family = link.parent()?;
        let name = family.file_name()?.to_str()?.to_owned();
        Some((Self::new(family.parent()?), name))
    }

    /// Checks the model of `manifest_path` against `board` (as the build does) and installs it
    /// as `<name>/<version>`. Installing the same file again is a no-op. Does not switch.
    pub fn install(
        &self,
        board: &Board,
        board_file: &Path,
        manifest_path: &Path,
    ) -> Result<Slot, SlotError> {
        let manifest = Manifest::load(manifest_path).map_err(|e| Box::new(CheckError::from(e)))?;
        let field = |field, message: &str| SlotError::Manifest {
            path: manifest_path.to_owned(),
            field,
            message: message.to_owned(),
        };
        if !plain(&manifest.name) {
            return Err(field("name", "must be a plain folder name"));
        }
        if !plain(&manifest.version) {
            return Err(field("version", "must be a plain folder name"));
        }
        let file_name = Path::new(&manifest.model.file)
            .file_name()
            .and_then(|f| f.to_str())
            .filter(|f| *f == manifest.model.file && plain(f))
            .ok_or_else(|| field("model.file", "must name a file beside the manifest"))?
            .to_owned();
        let model_path = manifest.model_path(manifest_path);
        let onnx = std::fs::read(&model_path).map_err(io(&model_path))?;
        check_model(board, board_file, &manifest, manifest_path, &onnx).map_err(Box::new)?;
        let mut external = Vec::with_capacity(manifest.model.external.len());
        for file in &manifest.model.external {
            let bytes = crate::external::read_verified(&model_path, manifest_path, file)
                .map_err(|e| Box::new(CheckError::from(e)))?;
            external.push((file.file.as_str(), bytes));
        }

        let manifest_text = std::fs::read(manifest_path).map_err(io(manifest_path))?;
        act_as_owner(&self.root)?;

        let family = self.root.join(&manifest.name);
        let slot = family.join(&manifest.version);
        if slot.exists() {
            let installed = Manifest::load(&slot.join(manifest_file(&manifest.name)))
                .map(|m| m.model.sha256)
                .unwrap_or_default();
            if installed == manifest.model.sha256 {
                return self.describe(&manifest.name, &manifest.version);
            }
            return Err(SlotError::Exists {
                name: manifest.name,
                version: manifest.version,
                installed,
            });
        }
        std::fs::create_dir_all(&family).map_err(io(&family))?;
        self.clean(&family)?;
        let incoming = family.join(format!(".incoming-{}", manifest.version));
        std::fs::create_dir_all(&incoming).map_err(io(&incoming))?;
        write_synced(&incoming.join(&file_name), &onnx)?;
        for (file, bytes) in &external {
            let path = incoming.join(file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            write_synced(&path, bytes)?;
        }
        write_synced(
            &incoming.join(manifest_file(&manifest.name)),
            &manifest_text,
        )?;
        sync_dir(&incoming)?;
        std::fs::rename(&incoming, &slot).map_err(io(&slot))?;
        sync_dir(&family)?;
        self.describe(&manifest.name, &manifest.version)
    }

    /// Makes `version` the one that runs; the one that ran becomes `previous`. The slot's
    /// model is checked against its manifest first.
    pub fn use_version(&self, name: &str, version: &str) -> Result<Slot, SlotError> {
        let family = self.root.join(name);
        let slot = family.join(version);
        if !plain(name) || !plain(version) || !slot.join(manifest_file(name)).is_file() {
            return Err(SlotError::NotInstalled {
                name: name.to_owned(),
                version: version.to_owned(),
                installed: self.versions(name).join(", "),
            });
        }
        verify(&slot.join(manifest_file(name)))?;
        match self.link(name, "current")? {
            Some(running) if running != version => {
                // `previous` first: a cut here leaves `current` as it was.
                set_link(&family, "previous", &running)?;
            }
            _ => {}
        }
        set_link(&family, "current", version)?;
        self.describe(name, version)
    }

    /// Points `current` back at `version` after the version it named failed, when it still
    /// names `failed`: a version chosen since then is left alone. `previous` is not touched, so
    /// `rollback` never returns to the version that failed. Returns whether it pointed back.
    pub fn return_to(&self, name: &str, version: &str, failed: &str) -> Result<bool, SlotError> {
        if self.link(name, "current")?.as_deref() != Some(failed) {
            return Ok(false);
        }
        let slot = self.root.join(name).join(version);
        if !plain(name) || !plain(version) || !slot.join(manifest_file(name)).is_file() {
            return Err(SlotError::NotInstalled {
                name: name.to_owned(),
                version: version.to_owned(),
                installed: self.versions(name).join(", "),
            });
        }
        set_link(&self.root.join(name), "current", version)?;
        Ok(true)
    }

    /// The version of `name` that `current` names, if one was chosen.
    pub fn in_use(&self, name: &str) -> Result<Option<String>, SlotError> {
        if !plain(name) {
            return Ok(None);
        }
        self.link(name, "current")
    }

    /// Makes `previous` the one that runs again (and the one that ran `previous`).
    pub fn rollback(&self, name: &str) -> Result<Slot, SlotError> {
        let previous = self
            .link(name, "previous")?
            .ok_or_else(|| SlotError::NoPrevious(name.to_owned()))?;
        self.use_version(name, &previous)
    }

    /// The manifest of the version of `name` that runs, if one was chosen.
    pub fn current(&self, name: &str) -> Result<Option<PathBuf>, SlotError> {
        self.linked_manifest(name, "current")
    }

    /// The manifest of the version of `name` in use, named through the `current` link, so that
    /// reading it again after a switch reads the new version (what a running model reloads),
    /// if a version was chosen.
    pub fn through_current(&self, name: &str) -> Result<Option<PathBuf>, SlotError> {
        Ok(self.current(name)?.map(|_| {
            self.root
                .join(name)
                .join("current")
                .join(manifest_file(name))
        }))
    }

    /// The manifest of the last version of `name` that got through its trial frames (see
    /// [`crate::lifecycle::reload`]), if one did.
    pub fn good(&self, name: &str) -> Result<Option<PathBuf>, SlotError> {
        self.linked_manifest(name, "good")
    }

    /// Records that `version` of `name` got through its trial frames: what a later version on
    /// trial at start-up returns to.
    pub fn mark_good(&self, name: &str, version: &str) -> Result<(), SlotError> {
        if !plain(name) || !plain(version) {
            return Err(SlotError::NotInstalled {
                name: name.to_owned(),
                version: version.to_owned(),
                installed: self.versions(name).join(", "),
            });
        }
        set_link(&self.root.join(name), "good", version)
    }

    /// The manifest of the version of `name` that `rollback` returns to, if there is one.
    pub fn previous(&self, name: &str) -> Result<Option<PathBuf>, SlotError> {
        self.linked_manifest(name, "previous")
    }

    fn linked_manifest(&self, name: &str, link: &str) -> Result<Option<PathBuf>, SlotError> {
        if !plain(name) {
            return Ok(None);
        }
        Ok(self
            .link(name, link)?
            .map(|v| self.root.join(name).join(v).join(manifest_file(name))))
    }

    /// Every installed version, by name then version.
    pub fn list(&self) -> Result<Vec<Slot>, SlotError> {
        let mut out = Vec::new();
        let names = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(&self.root)(e)),
        };
        let mut names: Vec<String> = names
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| plain(n))
            .collect();
        names.sort();
        for name in names {
            for version in self.versions(&name) {
                out.push(self.describe(&name, &version)?);
            }
        }
        Ok(out)
    }

    fn describe(&self, name: &str, version: &str) -> Result<Slot, SlotError> {
        let is = |link| -> Result<bool, SlotError> {
            Ok(self.link(name, link)?.as_deref() == Some(version))
        };
        Ok(Slot {
            name: name.to_owned(),
            version: version.to_owned(),
            manifest: self.root.join(name).join(version).join(manifest_file(name)),
            current: is("current")?,
            previous: is("previous")?,
        })
    }

    /// The installed versions of `name`, sorted.
    fn versions(&self, name: &str) -> Vec<String> {
        let mut versions: Vec<String> = std::fs::read_dir(self.root.join(name))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|v| {
                plain(v)
                    && self
                        .root
                        .join(name)
                        .join(v)
                        .join(manifest_file(name))
                        .is_file()
            })
            .collect();
        versions.sort();
        versions
    }

    /// The version a link (`current`, `previous`) of `name` names.
    fn link(&self, name: &str, link: &str) -> Result<Option<String>, SlotError> {
        let path = self.root.join(name).join(link);
        match std::fs::read_link(&path) {
            Ok(target) => Ok(target.to_str().map(str::to_owned)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Removes what an interrupted install or switch left in `family`.
    fn clean(&self, family: &Path) -> Result<(), SlotError> {
        for entry in std::fs::read_dir(family).map_err(io(family))? {
            let entry = entry.map_err(io(family))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(".incoming-") {
                std::fs::remove_dir_all(&path).map_err(io(&path))?;
            } else if name.ends_with(".tmp") {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        Ok(())
    }
}

/// A slot's model (its manifest at `manifest_path`) against the manifest's sha256: a slot
/// damaged on disk is not switched to.
fn verify(manifest_path: &Path) -> Result<(), SlotError> {
    let manifest_path = manifest_path.to_owned();
    let manifest = Manifest::load(&manifest_path).map_err(|e| Box::new(CheckError::from(e)))?;
    let model_path = manifest.model_path(&manifest_path);
    let onnx = std::fs::read(&model_path).map_err(io(&model_path))?;
    let sha256 = crate::budget::sha256_hex(&onnx);
    if sha256 != manifest.model.sha256 {
        return Err(SlotError::Manifest {
            path: manifest_path,
            field: "model.sha256",
            message: format!("the installed file now hashes to {sha256}: the slot is damaged"),
        });
    }
    for file in &manifest.model.external {
        crate::external::read_verified(&model_path, &manifest_path, file)
            .map_err(|e| Box::new(CheckError::from(e)))?;
    }
    Ok(())
}

/// Points `family/link` at `version`: a new link beside it, renamed over it.
fn set_link(family: &Path, link: &str, version: &str) -> Result<(), SlotError> {
    let tmp = family.join(format!("{link}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(version, &tmp).map_err(io(&tmp))?;
    let path = family.join(link);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(family)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), SlotError> {
    std::fs::File::create(path)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .map_err(io(path))
}

/// Flushes a folder's entries (a rename in it) to the device.
fn sync_dir(dir: &Path) -> Result<(), SlotError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn host() -> (Board, PathBuf) {
        let path = root().join("boards/host.toml");
        (Board::load(&path).expect("host board"), path)
    }

    /// The bundled detector's variant `form`, copied into `dir` (manifest and model).
    fn variant(dir: &Path, form: &str) -> PathBuf {
        let src = root().join("models/variants");
        let stem = format!("shapes-detector-{form}");
        std::fs::copy(
            src.join(format!("{stem}.onnx")),
            dir.join(format!("{stem}.onnx")),
        )
        .expect("copy model");
        std::fs::copy(
            src.join(format!("{stem}.toml")),
            dir.join(format!("{stem}.toml")),
        )
        .expect("copy manifest");
        dir.join(format!("{stem}.toml"))
    }

    /// The same model and manifest under another version, in a folder of its own.
    fn as_version(manifest: &Path, version: &str) -> PathBuf {
        let text = std::fs::read_to_string(manifest).expect("read");
        let m = Manifest::load(manifest).expect("loads");
        let text = text.replacen(
            &format!("version = \"{}\"", m.version),
            &format!("version = \"{version}\""),
            1,
        );
        let dir = manifest.with_file_name(format!("v{version}"));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::copy(m.model_path(manifest), dir.join(&m.model.file)).expect("copy model");
        let out = dir.join(manifest.file_name().expect("file name"));
        std::fs::write(&out, text).expect("write");
        out
    }

    #[test]
    fn install_use_and_rollback_switch_between_checked_slots() {
        let (board, board_file) = host();
        let work = tempfile::tempdir().expect("tempdir");
        let slots = Slots::new(work.path().join("models"));
        let v1 = variant(work.path(), "int8-weights");
        let v2 = as_version(&v1, "9.0.0");

        let first = slots.install(&board, &board_file, &v1).expect("install");
        let name = first.name.as_str();
        assert_eq!(name, "shapes-detector-int8-weights");
        assert!(!first.current, "install does not switch");
        assert_eq!(slots.current(name).expect("read"), None);
        slots.use_version(name, &first.version).expect("use");
        slots.install(&board, &board_file, &v2).expect("install 2");
        assert_eq!(
            slots
                .install(&board, &board_file, &v2)
                .expect("again")
                .version,
            "9.0.0",
            "the same file again is a no-op"
        );
        let now = slots.use_version(name, "9.0.0").expect("use 2");
        assert!(now.current && !now.previous);
        let listed = slots.list().expect("list");
        assert_eq!(listed.len(), 2);
        assert!(listed
            .iter()
            .any(|s| s.version == first.version && s.previous));
        let current = slots.current(name).expect("read").expect("set");
        assert_eq!(Manifest::load(&current).expect("loads").version, "9.0.0");

        assert_eq!(slots.good(name).expect("read"), None);
        slots.mark_good(name, "9.0.0").expect("mark");
        let good = slots.good(name).expect("read").expect("set");
        assert_eq!(Manifest::load(&good).expect("loads").version, "9.0.0");
        assert_eq!(
            slots.list().expect("list").len(),
            2,
            "links are not versions"
        );

        let back = slots.rollback(name).expect("rollback");
        assert_eq!(back.version, first.version);
        assert!(back.current);
        let again = slots.rollback(name).expect("and forth");
        assert_eq!(again.version, "9.0.0");
    }

    #[test]
    fn a_corrupt_model_is_refused_by_its_hash_and_nothing_is_written() {
        let (board, board_file) = host();
        let work = tempfile::tempdir().expect("tempdir");
        let slots = Slots::new(work.path().join("models"));
        let manifest = variant(work.path(), "int8-weights");
        let onnx = manifest.with_extension("onnx");
        let mut bytes = std::fs::read(&onnx).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&onnx, bytes).expect("write");
        let err = slots
            .install(&board, &board_file, &manifest)
            .expect_err("corrupt");
        assert!(err.to_string().contains("sha256"), "{err}");
        assert!(slots.list().expect("list").is_empty());
        assert!(!work
            .path()
            .join("models/shapes-detector-int8-weights")
            .exists());
    }

    #[test]
    fn an_install_over_the_boards_budget_is_refused() {
        let work = tempfile::tempdir().expect("tempdir");
        let board_file = root().join("tests/fixtures/boards/tiny.toml");
        let board = Board::load(&board_file).expect("tiny board");
        let manifest = variant(work.path(), "int8-weights");
        let err = Slots::new(work.path().join("models"))
            .install(&board, &board_file, &manifest)
            .expect_err("over budget");
        assert!(err.to_string().contains("budget"), "{err}");
    }

    #[test]
    fn leftovers_of_a_cut_are_cleaned_and_current_stays_loadable() {
        let (board, board_file) = host();
        let work = tempfile::tempdir().expect("tempdir");
        let slots = Slots::new(work.path().join("models"));
        let v1 = variant(work.path(), "int8-weights");
        let installed = slots.install(&board, &board_file, &v1).expect("install");
        let name = installed.name.as_str();
        slots.use_version(name, &installed.version).expect("use");
        // What a cut mid-install and mid-switch leaves: a half copy and a new link not yet
        // renamed over `current`.
        let family = work.path().join("models").join(name);
        std::fs::create_dir_all(family.join(".incoming-9.0.0")).expect("half copy");
        std::fs::write(family.join(".incoming-9.0.0/model.onnx"), b"half").expect("write");
        std::os::unix::fs::symlink("9.0.0", family.join("current.tmp")).expect("link");
        assert_eq!(
            slots.list().expect("list").len(),
            1,
            "half copies are not slots"
        );
        let current = slots.current(name).expect("read").expect("set");
        assert!(Manifest::load(&current).is_ok());
        slots
            .install(&board, &board_file, &as_version(&v1, "9.0.0"))
            .expect("install after the cut");
        assert!(!family.join("current.tmp").exists());
        assert_eq!(slots.list().expect("list").len(), 2);
    }

    #[test]
    fn a_current_file_names_its_root_and_model() {
        let (slots, name) =
            Slots::of_current_file(Path::new("/var/lib/lookout/models/det/current/det.toml"))
                .expect("a slot");
        assert_eq!(
            (slots.root.as_path(), name.as_str()),
            (Path::new("/var/lib/lookout/models"), "det")
        );
        assert!(Slots::of_current_file(Path::new("models/det.toml")).is_none());
        assert!(Slots::of_current_file(Path::new("/m/det/1.0/det.toml")).is_none());
    }

    #[test]
    fn bad_names_and_unknown_versions_are_clear_errors() {
        let work = tempfile::tempdir().expect("tempdir");
        let slots = Slots::new(work.path().join("models"));
        let err = slots
            .use_version("shapes-detector", "1.0")
            .expect_err("none");
        assert!(matches!(err, SlotError::NotInstalled { .. }), "{err}");
        let err = slots
            .use_version("shapes-detector", "../x")
            .expect_err("path");
        assert!(matches!(err, SlotError::NotInstalled { .. }), "{err}");
        let err = slots.rollback("shapes-detector").expect_err("no previous");
        assert!(matches!(err, SlotError::NoPrevious(_)), "{err}");
    }
}
