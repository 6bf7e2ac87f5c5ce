//! Trying a model lookout did not make in a child process, before it is loaded in this one.
//!
//! tract is not hardened against every file: a crafted or broken graph can make it panic
//! (a `MaxPool` with a zero kernel does, in tract 0.23.9), allocate without bound, or spin. The
//! release build aborts on a panic, so one bad model would take the whole process — the run
//! loop, the serial console, the GPIO lines — down with it. So `inspect`, `check`,
//! `model install`, `run --model` and every model switch first have lookout run itself
//! (`lookout verify-model`, a hidden command) on the model: loaded, and one black frame
//! through pre-processing, the model and the decoder. The child's end says what happened:
//!
//! - exit 0: the model loads and runs; it is then loaded here.
//! - exit [`REFUSED`]: an ordinary error (tract's reason, a decoder that does not fit), its
//!   message on the child's stdout.
//! - a panic (exit 101 in a debug build, SIGABRT in a release build), an allocation that
//!   failed under the memory limit, or no answer within the time limit: the model's error,
//!   with the panic's message.
//!
//! The child's time is limited ([`DEFAULT_TIME`], or `LOOKOUT_VERIFY_SECONDS`); while it
//! works, the parent's heartbeat (the systemd watchdog, when run as the service) keeps being
//! fed, so a long load is not taken for a hung service. The child's address space is capped
//! (soft `RLIMIT_AS`, [`DEFAULT_MEMORY_MB`] or `LOOKOUT_VERIFY_MEMORY_MB`, never above the hard
//! limit): that stops a runaway allocation on a 64-bit board with memory to spare. On a small
//! board the kernel's out-of-memory killer comes first, so the child also makes itself its first
//! choice (`oom_score_adj` 1000): the child dies, not the service. Where lookout itself runs under an emulator (its ARM tests under
//! qemu-user, with no binfmt handler), `LOOKOUT_CHILD_RUNNER` names the emulator to start the
//! child with; the memory cap is not applied then, since the emulator reserves address space
//! of its own.

use crate::lifecycle::stop::StopRequest;
use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The child's exit code for an ordinary refusal, its message on stdout.
pub const REFUSED: i32 = 3;
/// The child's address-space cap unless `LOOKOUT_VERIFY_MEMORY_MB` says otherwise.
pub const DEFAULT_MEMORY_MB: u64 = 4096;
/// How long the child may take unless `LOOKOUT_VERIFY_SECONDS` says otherwise: a large model
/// on a Pi Zero takes tens of seconds to load.
pub const DEFAULT_TIME: Duration = Duration::from_secs(300);

/// Why a model failed its trial in the child.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The model was refused with an ordinary error (tract's reason, a decoder mismatch).
    #[error("{0}")]
    Refused(String),
    /// tract panicked on it (in this process, a release build would have aborted).
    #[error("{model}: tract crashes on this model (a panic: {message})")]
    Panicked {
        /// The model.
        model: String,
        /// The panic's message.
        message: String,
    },
    /// It needed more memory than the cap.
    #[error("{model}: loading and running it needed more than {limit_mb} MB of address space")]
    OutOfMemory {
        /// The model.
        model: String,
        /// The cap.
        limit_mb: u64,
    },
    /// It did not finish in time.
    #[error("{model}: loading and running it took longer than {seconds} s; stopped")]
    TimedOut {
        /// The model.
        model: String,
        /// The limit.
        seconds: u64,
    },
    /// The child was killed (SIGKILL) by someone else than the parent: on Linux most likely
    /// the out-of-memory killer, which the child volunteers for.
    #[error("{model}: the verification process was killed, most likely for want of memory")]
    Killed {
        /// The model.
        model: String,
    },
    /// The child ended some other way (killed by a signal, an unexpected exit code).
    #[error("{model}: the verification process ended abnormally ({status}): {message}")]
    Abnormal {
        /// The model.
        model: String,
        /// How it ended.
        status: String,
        /// What it said last.
        message: String,
    },
    /// lookout was asked to stop (SIGTERM, SIGINT) while the child worked: it was stopped, and
    /// the model was not judged.
    #[error("{model}: not tried to the end: lookout is stopping")]
    Stopped {
        /// The model.
        model: String,
    },
    /// The child could not be started.
    #[error("cannot start lookout to verify {model}: {source}")]
    Spawn {
        /// The model.
        model: String,
        /// Why.
        source: std::io::Error,
    },
}

impl VerifyError {
    /// Whether the model itself is at fault (refused, crashes tract, needs more memory than
    /// allowed), rather than the circumstances of the trial (the process could not start, was
    /// killed, or the board was too busy to finish in time): only then is a version given up
    /// on for good.
    pub fn is_model_fault(&self) -> bool {
        matches!(
            self,
            Self::Refused(_) | Self::Panicked { .. } | Self::OutOfMemory { .. }
        )
    }
}

/// What the child measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verified {
    /// Milliseconds to load the model (its check included).
    pub load_ms: f64,
    /// Milliseconds for the one frame.
    pub run_ms: f64,
    /// Whether the model's outputs on the black frame were all finite. A NaN is not a reason
    /// to refuse a model here: a version on trial is judged by its outputs on real frames.
    pub finite: bool,
}

/// The variable holding the parent's process id, by which a child tells that its parent is
/// gone.
const PARENT_PID: &str = "LOOKOUT_VERIFY_PARENT";

/// Starts `lookout verify-model` children.
#[derive(Debug, Clone)]
pub struct Verifier {
    exe: PathBuf,
    runner: Vec<String>,
    /// Arguments every child gets (the board the parent was given).
    common: Vec<OsString>,
    memory_mb: u64,
    time: Duration,
    /// Called every few seconds while a child works (the systemd watchdog).
    heartbeat: Option<fn()>,
    /// A stop asked of the run: the child is stopped rather than waited for, so that
    /// `systemctl stop` does not wait out a trial (and then SIGKILL every process).
    stop: Option<StopRequest>,
}

/// How often the heartbeat is called while a child works.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

impl Verifier {
    /// Children of this very binary, with `common` arguments (e.g. `--board X`) and the limits
    /// from the environment (see the module doc).
    pub fn this_binary(common: Vec<OsString>) -> std::io::Result<Self> {
        let runner: Vec<String> = std::env::var("LOOKOUT_CHILD_RUNNER")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let number = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let memory_mb = if runner.is_empty() {
            number("LOOKOUT_VERIFY_MEMORY_MB").unwrap_or(DEFAULT_MEMORY_MB)
        } else {
            0
        };
        let time = number("LOOKOUT_VERIFY_SECONDS")
            .filter(|&s| s > 0)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TIME);
        // /proc/self/exe runs this very image even after a package upgrade replaced the file
        // (the new binary might speak another verify-model); under an emulator it would name
        // the emulator, so the path is taken there.
        let own_image = std::path::Path::new("/proc/self/exe");
        let exe = if runner.is_empty() && own_image.exists() {
            own_image.to_owned()
        } else {
            std::env::current_exe()?
        };
        Ok(Self {
            exe,
            runner,
            common,
            memory_mb,
            time,
            heartbeat: None,
            stop: None,
        })
    }

    /// Stops a child as soon as `stop` is asked for ([`VerifyError::Stopped`]).
    pub fn with_stop(mut self, stop: StopRequest) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Calls `beat` every few seconds while a child works.
    pub fn with_heartbeat(mut self, beat: fn()) -> Self {
        self.heartbeat = Some(beat);
        self
    }

    /// Tries the model `--model ARG` names (a manifest, an ONNX file with its manifest beside
    /// it, or a name), as `run` would load it for the board, with one black frame.
    pub fn run_once(&self, model: &str) -> Result<Verified, VerifyError> {
        self.run_once_as(model, None)
    }

    /// [`run_once`](Self::run_once), the model file named `named` in the child's messages (a
    /// slot's version tried by its real folder, named as the run follows it, `current/`).
    pub fn run_once_as(&self, model: &str, named: Option<&str>) -> Result<Verified, VerifyError> {
        let mut args: Vec<OsString> = vec!["--model".into(), model.into()];
        if let Some(named) = named {
            args.push("--named".into());
            args.push(named.into());
        }
        args.extend(self.common.iter().cloned());
        // Errors name the ONNX file when the manifest says which (reading it is safe here).
        let path = std::path::Path::new(model);
        let named = match (named, crate::manifest::Manifest::load(path)) {
            (Some(named), _) => named.to_owned(),
            (None, Ok(m)) if path.extension().is_some_and(|e| e == "toml") => {
                m.model_path(path).display().to_string()
            }
            _ => model.to_owned(),
        };
        self.child(&named, args)
    }

    /// Tries an ONNX file alone, as `inspect` probes it: loaded and optimized at its declared
    /// input shape.
    pub fn probe(&self, onnx: &std::path::Path) -> Result<Verified, VerifyError> {
        let model = onnx.display().to_string();
        self.child(&model, vec!["--onnx".into(), onnx.into()])
    }

    fn child(&self, model: &str, args: Vec<OsString>) -> Result<Verified, VerifyError> {
        let mut command = match self.runner.split_first() {
            Some((emulator, flags)) => {
                let mut c = Command::new(emulator);
                c.args(flags).arg(&self.exe);
                c
            }
            None => Command::new(&self.exe),
        };
        command
            .env(PARENT_PID, std::process::id().to_string())
            .arg("verify-model")
            .arg("--memory-mb")
            .arg(self.memory_mb.to_string())
            .args(args)
            // A debug build's panic message is all the parent needs, not a backtrace.
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawn = |source| VerifyError::Spawn {
            model: model.to_owned(),
            source,
        };
        let mut child = command.spawn().map_err(spawn)?;
        // Read both pipes on threads: a child that writes much would block on a full pipe.
        let reader = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_string(&mut text);
                }
                text
            })
        };
        let stdout = reader(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let stderr = reader(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let started = Instant::now();
        let mut last_beat = started;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if self.stop.as_ref().is_some_and(StopRequest::requested) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(VerifyError::Stopped {
                        model: model.to_owned(),
                    });
                }
                Ok(None) if started.elapsed() <= self.time => {
                    if let Some(beat) = self
                        .heartbeat
                        .filter(|_| last_beat.elapsed() >= HEARTBEAT_EVERY)
                    {
                        beat();
                        last_beat = Instant::now();
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                // Out of time, or the child cannot be waited for: it is stopped either way.
                outcome => {
                    let _ = child.kill();
                    let _ = child.wait();
                    if let Err(e) = outcome {
                        return Err(spawn(e));
                    }
                    break None;
                }
            }
        };
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        let Some(status) = status else {
            return Err(VerifyError::TimedOut {
                model: model.to_owned(),
                seconds: self.time.as_secs(),
            });
        };
        classify(model, status, &stdout, &stderr, self.memory_mb)
    }
}

/// What a child's end means (see the module doc).
fn classify(
    model: &str,
    status: std::process::ExitStatus,
    stdout: &str,
    stderr: &str,
    memory_mb: u64,
) -> Result<Verified, VerifyError> {
    use std::os::unix::process::ExitStatusExt;
    let first_line = |text: &str| {
        text.lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    let last_line = |text: &str| {
        text.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    if status.success() {
        return parse_verified(stdout).ok_or_else(|| VerifyError::Abnormal {
            model: model.to_owned(),
            status: "exit 0".into(),
            message: format!("unreadable answer {:?}", last_line(stdout)),
        });
    }
    if status.code() == Some(REFUSED) {
        return Err(VerifyError::Refused(stdout.trim().replace('\n', " ")));
    }
    if stderr.contains("memory allocation of") {
        return Err(VerifyError::OutOfMemory {
            model: model.to_owned(),
            limit_mb: memory_mb,
        });
    }
    if let Some(message) = panic_message(stderr) {
        return Err(VerifyError::Panicked {
            model: model.to_owned(),
            message,
        });
    }
    if status.signal() == Some(9) {
        return Err(VerifyError::Killed {
            model: model.to_owned(),
        });
    }
    // An argument the child did not take (exit 2) says so on its first line.
    let said = if status.code() == Some(2) {
        first_line(stderr)
    } else {
        last_line(stderr)
    };
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => "unknown".into(),
    };
    Err(VerifyError::Abnormal {
        model: model.to_owned(),
        status: how,
        message: said,
    })
}

/// The message of a Rust panic report (`thread 'main' (N) panicked at FILE:LINE:COL:` and the
/// message on the next line), where tract panicked included.
fn panic_message(stderr: &str) -> Option<String> {
    let mut lines = stderr.lines();
    while let Some(line) = lines.next() {
        if let Some(at) = line.find("panicked at ") {
            let place = line[at + "panicked at ".len()..].trim_end_matches(':');
            // The registry path is long and says nothing to a user; the crate and file do.
            let place = place
                .rsplit_once("/src/index.crates.io-")
                .map_or(place, |(_, p)| {
                    p.split_once('/').map_or(p, |(_, rest)| rest)
                });
            let message = lines.next().unwrap_or("").trim();
            return Some(format!("{message}, at {place}"));
        }
    }
    None
}

/// The child's answer on success: `verified load_ms=<f> run_ms=<f> finite=<bool>`.
fn parse_verified(stdout: &str) -> Option<Verified> {
    let line = stdout.lines().find(|l| l.starts_with("verified "))?;
    let mut load_ms = None;
    let mut run_ms = None;
    let mut finite = None;
    for field in line.split_whitespace().skip(1) {
        match field.split_once('=') {
            Some(("load_ms", v)) => load_ms = v.parse().ok(),
            Some(("run_ms", v)) => run_ms = v.parse().ok(),
            Some(("finite", v)) => finite = v.parse().ok(),
            _ => {}
        }
    }
    Some(Verified {
        load_ms: load_ms?,
        run_ms: run_ms?,
        finite: finite?,
    })
}

/// The child's answer on success, as [`Verifier`] reads it.
pub fn answer(verified: Verified) -> String {
    format!(
        "verified load_ms={:.3} run_ms={:.3} finite={}",
        verified.load_ms, verified.run_ms, verified.finite
    )
}

/// What the child does first: volunteers for the out-of-memory killer, leaves SIGTERM and
/// SIGINT to its parent, and caps its address space at `mb` megabytes (0: no cap) as a soft
/// limit under whatever hard limit it inherited.
/// Neither is fatal when refused (a container may forbid both): the trial still runs.
pub fn limit_this_process(mb: u64) {
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", "1000") {
        tracing::debug!("verify-model: oom_score_adj: {e}");
    }
    // A stop meant for the parent reaches the child too (`systemctl stop` signals every
    // process of the service, Ctrl-C the whole foreground group), and a child ended by it would
    // read as a model that failed its trial. The parent stops it (it kills it past its time);
    // the signals only set a flag nobody reads.
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, Default::default()) {
            tracing::debug!("verify-model: ignoring signal {signal}: {e}");
        }
    }
    // Only the parent holds the time limit: a child outliving it (the parent killed, or ended
    // by a second Ctrl-C) is killed with it, and one whose parent went before this line ends
    // here.
    if let Err(e) =
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
    {
        tracing::debug!("verify-model: parent death signal: {e}");
    }
    // The parent that started it (through an emulator or wrapper, perhaps) is gone already.
    let parent = std::env::var(PARENT_PID)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(parent) = parent {
        if rustix::process::test_kill_process(parent).is_err_and(|e| e == rustix::io::Errno::SRCH) {
            std::process::exit(REFUSED);
        }
    }
    if mb == 0 {
        return;
    }
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let hard = getrlimit(Resource::As).maximum;
    let wanted = mb.saturating_mul(1 << 20);
    let soft = hard.map_or(wanted, |h| wanted.min(h));
    if let Err(e) = setrlimit(
        Resource::As,
        Rlimit {
            current: Some(soft),
            maximum: hard,
        },
    ) {
        tracing::debug!("verify-model: RLIMIT_AS {soft}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn refused_is_fault() -> bool {
        VerifyError::Refused("x".into()).is_model_fault()
            && !VerifyError::TimedOut {
                model: "m".into(),
                seconds: 1,
            }
            .is_model_fault()
    }

    #[test]
    fn answers_are_read_back() {
        let v = Verified {
            load_ms: 12.5,
            run_ms: 3.25,
            finite: false,
        };
        assert_eq!(parse_verified(&answer(v)), Some(v));
        assert_eq!(parse_verified("nothing"), None);
    }

    #[test]
    fn a_child_s_end_is_classified() {
        let exit = |code: i32| std::process::ExitStatus::from_raw(code << 8);
        let signal = |sig: i32| std::process::ExitStatus::from_raw(sig);
        let refused = classify("m", exit(REFUSED), "m: tract cannot load it\n", "", 4096);
        assert_eq!(
            refused.expect_err("refused").to_string(),
            "m: tract cannot load it"
        );
        let stderr = "thread 'main' (7) panicked at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tract-core-0.23.9/src/ops/cnn/patches.rs:111:51:\nchunk size must be non-zero\n";
        let panicked = classify("m.onnx", signal(6), "", stderr, 4096).expect_err("panic");
        assert_eq!(
            panicked.to_string(),
            "m.onnx: tract crashes on this model (a panic: chunk size must be non-zero, at tract-core-0.23.9/src/ops/cnn/patches.rs:111:51)"
        );
        let oom = classify(
            "m",
            signal(6),
            "",
            "memory allocation of 99999 bytes failed\n",
            64,
        );
        assert!(matches!(
            oom,
            Err(VerifyError::OutOfMemory { limit_mb: 64, .. })
        ));
        let killed = classify("m", signal(9), "", "", 64).expect_err("killed");
        assert!(matches!(killed, VerifyError::Killed { .. }), "{killed}");
        assert!(!killed.is_model_fault());
        let usage = classify("m", exit(2), "", "error: unexpected argument '--x' found\n\nUsage: lookout\n\nFor more information, try '--help'.\n", 64);
        assert_eq!(
            usage.expect_err("usage").to_string(),
            "m: the verification process ended abnormally (exit 2): error: unexpected argument '--x' found"
        );
        let segv = classify("m", signal(11), "", "", 64).expect_err("segv");
        assert_eq!(
            segv.to_string(),
            "m: the verification process ended abnormally (signal 11): "
        );
        assert!(refused_is_fault());
    }
}
