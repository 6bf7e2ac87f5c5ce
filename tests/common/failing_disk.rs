//! A disk whose writes fail with EIO on demand (`failing_disk.py`, a FUSE file system over a
//! folder): the kernel hands the error to lookout's own system calls, as a dying SD card does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A mounted failing disk; unmounted when dropped.
pub struct FailingDisk {
    mount: PathBuf,
    flag: PathBuf,
    server: Child,
}

impl FailingDisk {
    /// Mounts one at `dir/disk` over `dir/backing`; `None` (and why, on stderr) where FUSE
    /// cannot be mounted (no /dev/fuse, not root, no python3-fusepy).
    pub fn mount(dir: &Path) -> Option<Self> {
        let backing = dir.join("backing");
        let mount = dir.join("disk");
        std::fs::create_dir_all(&backing).expect("backing folder");
        std::fs::create_dir_all(&mount).expect("mount point");
        let flag = dir.join("failing");
        let server = Command::new("/usr/bin/python3")
            .arg(super::repo("tests/common/failing_disk.py"))
            .args([&backing, &mount, &flag])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut server = match server {
            Ok(server) => server,
            Err(e) => {
                eprintln!("skipped: /usr/bin/python3 cannot start: {e}");
                return None;
            }
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if mounted(&mount) {
                return Some(Self {
                    mount,
                    flag,
                    server,
                });
            }
            if let Ok(Some(status)) = server.try_wait() {
                let mut why = String::new();
                if let Some(mut err) = server.stderr.take() {
                    use std::io::Read as _;
                    let _ = err.read_to_string(&mut why);
                }
                eprintln!("skipped: the failing disk did not mount ({status}): {why}");
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("umount").arg("-l").arg(&mount).status();
        let _ = server.kill();
        let _ = server.wait();
        eprintln!("skipped: the failing disk did not mount within 10 s");
        None
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// From now on every write and fsync fails with EIO (`true`), or none does.
    pub fn fail(&self, failing: bool) {
        if failing {
            std::fs::write(&self.flag, b"").expect("flag");
        } else {
            std::fs::remove_file(&self.flag).expect("flag");
        }
    }
}

/// Whether a FUSE file system is mounted at `path`.
fn mounted(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let path = path.to_string_lossy();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(&*path) && l.split(' ').nth(2) == Some("fuse"))
}

impl Drop for FailingDisk {
    fn drop(&mut self) {
        // Lazily: a process still holding a file there must not keep it mounted.
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
