//! A Camera Module on the CSI ribbon: through libcamera's V4L2 compatibility layer.
//!
//! On Raspberry Pi OS Bookworm (and on every Pi 5) a CSI camera (Camera Module 2/3, HQ, GS) is
//! driven by libcamera; its `/dev/video*` nodes are the ISP's, not a capture device a V4L2
//! program can read frames from. libcamera ships a V4L2 compatibility layer,
//! `v4l2-compat.so` (Debian and Raspberry Pi OS package `libcamera-v4l2`), which, preloaded,
//! makes the camera look like a plain V4L2 capture device; `libcamerify PROGRAM` is a script
//! that sets `LD_PRELOAD` to it.
//!
//! A board profile whose `[camera]` says `kind = "csi"` makes lookout do that itself: before
//! it opens the camera, if the layer is not preloaded yet, it starts itself again (same
//! process id, same arguments, `exec`) with the layer in `LD_PRELOAD`. So the packaged systemd
//! unit, a shell and a script all run a CSI camera the same way, with no wrapper to remember
//! and nothing to regenerate when the board profile changes. `LOOKOUT_V4L2_COMPAT` names the
//! library where it is not in one of [`COMPAT_PATHS`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Where distributions install libcamera's V4L2 layer: Raspberry Pi OS's libcamera (0.1 and
/// later) under `libcamera/`, Debian bookworm's `libcamera-v4l2` 0.0.3 in the library folder
/// itself (its amd64 package holds `/usr/lib/x86_64-linux-gnu/v4l2-compat.so`), on arm64,
/// armhf and amd64; then the older libexec location.
pub const COMPAT_PATHS: [&str; 7] = [
    "/usr/lib/aarch64-linux-gnu/libcamera/v4l2-compat.so",
    "/usr/lib/arm-linux-gnueabihf/libcamera/v4l2-compat.so",
    "/usr/lib/aarch64-linux-gnu/v4l2-compat.so",
    "/usr/lib/arm-linux-gnueabihf/v4l2-compat.so",
    "/usr/lib/x86_64-linux-gnu/libcamera/v4l2-compat.so",
    "/usr/lib/x86_64-linux-gnu/v4l2-compat.so",
    "/usr/libexec/libcamera/v4l2-compat.so",
];

/// The file name every install of the layer has.
const COMPAT_NAME: &str = "v4l2-compat.so";

/// Why a CSI camera cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum CsiError {
    /// The layer is not installed.
    #[error(
        "the board's [camera] kind is \"csi\", but libcamera's V4L2 layer is not installed: \
         `sudo apt install libcamera-v4l2` (looked for {looked})"
    )]
    NotInstalled {
        /// The paths looked at.
        looked: String,
    },
    /// Starting again with the layer failed.
    #[error("starting lookout again with libcamera's V4L2 layer ({library}): {source}")]
    Exec {
        /// The layer.
        library: PathBuf,
        /// Why exec failed.
        source: std::io::Error,
    },
}

/// Whether `LD_PRELOAD` (its value) already holds the layer.
pub fn preloaded(ld_preload: Option<&std::ffi::OsStr>) -> bool {
    ld_preload.is_some_and(|v| {
        v.to_string_lossy()
            .split([' ', ':'])
            .any(|entry| entry.ends_with(COMPAT_NAME))
    })
}

/// The layer: `LOOKOUT_V4L2_COMPAT` if set, else the first of [`COMPAT_PATHS`] that exists.
pub fn find_layer(overridden: Option<OsString>) -> Result<PathBuf, CsiError> {
    if let Some(path) = overridden {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(CsiError::NotInstalled {
                looked: format!("{} (LOOKOUT_V4L2_COMPAT)", path.display()),
            })
        };
    }
    COMPAT_PATHS
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .map(Path::to_path_buf)
        .ok_or_else(|| CsiError::NotInstalled {
            looked: COMPAT_PATHS.join(", "),
        })
}

/// `LD_PRELOAD` with the layer in front of what it held.
pub fn with_layer(library: &Path, ld_preload: Option<&std::ffi::OsStr>) -> OsString {
    let mut value = library.as_os_str().to_owned();
    if let Some(rest) = ld_preload.filter(|v| !v.is_empty()) {
        value.push(":");
        value.push(rest);
    }
    value
}

/// Makes sure this process runs with libcamera's V4L2 layer: returns at once when it is
/// preloaded; otherwise starts this program again, same arguments, with it preloaded (and
/// returns only if that fails).
pub fn run_through_layer() -> Result<(), CsiError> {
    let current = std::env::var_os("LD_PRELOAD");
    if preloaded(current.as_deref()) {
        return Ok(());
    }
    let library = find_layer(std::env::var_os("LOOKOUT_V4L2_COMPAT"))?;
    let exe = std::env::current_exe().map_err(|source| CsiError::Exec {
        library: library.clone(),
        source,
    })?;
    tracing::info!(
        "CSI camera: starting again through libcamera's V4L2 layer ({})",
        library.display()
    );
    use std::os::unix::process::CommandExt;
    let source = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("LD_PRELOAD", with_layer(&library, current.as_deref()))
        .exec();
    Err(CsiError::Exec { library, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn the_layer_is_found_once_and_put_in_front_of_ld_preload() {
        assert!(!preloaded(None));
        assert!(!preloaded(Some(OsStr::new("/usr/lib/libfoo.so"))));
        assert!(preloaded(Some(OsStr::new(
            "/usr/lib/libfoo.so:/usr/lib/aarch64-linux-gnu/libcamera/v4l2-compat.so"
        ))));
        let layer = Path::new("/usr/lib/aarch64-linux-gnu/libcamera/v4l2-compat.so");
        assert_eq!(with_layer(layer, None), layer.as_os_str());
        assert_eq!(
            with_layer(layer, Some(OsStr::new("/usr/lib/libfoo.so"))),
            OsStr::new("/usr/lib/aarch64-linux-gnu/libcamera/v4l2-compat.so:/usr/lib/libfoo.so")
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("v4l2-compat.so");
        std::fs::write(&fake, b"").expect("file");
        assert_eq!(find_layer(Some(fake.clone().into())).expect("found"), fake);
        let missing = find_layer(Some(dir.path().join("nope.so").into())).expect_err("missing");
        assert!(
            missing
                .to_string()
                .contains("sudo apt install libcamera-v4l2"),
            "{missing}"
        );
    }
}
