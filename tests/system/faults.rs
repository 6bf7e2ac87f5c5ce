//! Faults where a board meets them, each with what the user sees and the frames that follow:
//! a full disk under the file sink; a disk failing with EIO (a dying SD card) under the file
//! sink and under the sample store; a serial line whose receiver stops reading; a frame loop
//! stuck in a write, which systemd's watchdog must see.

use crate::common::{self, lookout_command, wait_until};
use std::io::BufRead as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A tmpfs of `size` at `at`, unmounted when dropped; `None` where mounting needs a root this
/// process does not have.
struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(at: &'a Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).expect("mount point");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Self(at))
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0).status();
    }
}

/// Fills the file system holding `path` with one file there, until it says no more.
fn fill(path: &Path) {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).expect("filler");
    let block = vec![0u8; 4096];
    while file.write_all(&block).is_ok() {}
    let _ = file.sync_all();
}

#[test]
fn a_full_disk_under_the_file_sink_drops_lines_counted_and_the_run_goes_on_until_there_is_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("disk");
    let Some(_tmpfs) = Tmpfs::mount(&disk, "256k") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let filler = disk.join("filler");
    fill(&filler);
    let records = disk.join("records.jsonl");
    let child = lookout_command()
        .args([
            "run",
            "-s",
            "replay:tests/images/detect@20",
            "--sink",
            &format!("file:{}", records.display()),
            "--sink",
            "stdout",
        ])
        .env("LOOKOUT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lookout starts");
    // Killed if an assertion fails first (dropped before the tmpfs, whose files it holds).
    let mut child = KillOnDrop(child);
    let printed = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let printed = printed.clone();
        let out = child.0.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                printed.lock().expect("lock").push(line);
            }
        })
    };
    let lines = || printed.lock().expect("lock").clone();
    let position = |event: &str| {
        lines()
            .iter()
            .position(|l| l.contains(&format!("\"event\":\"{event}\"")))
    };
    wait_until(Duration::from_secs(120), "sink_failed", || {
        position("sink_failed").is_some()
    });
    // Frames go on while the disk is full.
    let failed_at = position("sink_failed").expect("failed");
    wait_until(Duration::from_secs(60), "records after the failure", || {
        lines().len() > failed_at + 10
    });
    std::fs::remove_file(&filler).expect("room again");
    wait_until(Duration::from_secs(60), "sink_restored", || {
        position("sink_restored").is_some()
    });
    let restored_at = position("sink_restored").expect("restored");
    wait_until(Duration::from_secs(60), "records after the restore", || {
        lines().len() > restored_at + 5
    });
    common::send_signal(child.0.id(), "TERM");
    let status = child.0.wait().expect("lookout ends");
    reader.join().expect("reader");
    let mut log = String::new();
    if let Some(mut err) = child.0.stderr.take() {
        use std::io::Read as _;
        let _ = err.read_to_string(&mut log);
    }
    assert_eq!(status.code(), Some(0), "{status}; log: {log}");

    // The file holds exactly what stdout printed from its first line that could be written:
    // every line before it was dropped, and the restore says how many.
    let printed = lines();
    let text = std::fs::read_to_string(&records).expect("records");
    let written: Vec<&str> = text.lines().collect();
    let dropped = printed.len() - written.len();
    assert_eq!(written, printed[dropped..], "the file is stdout's tail");
    let restore: serde_json::Value =
        serde_json::from_str(&printed[restored_at]).expect("event JSON");
    let message = restore["message"].as_str().expect("message");
    assert!(
        message.contains(&format!("; {dropped} lines were not written")),
        "{message}; {dropped} lines before the file's first"
    );
    assert!(dropped > failed_at + 10, "{dropped}");
    // Records, not only events, were written after the restore: the frames went on.
    assert!(
        written
            .iter()
            .filter(|l| l.starts_with("{\"seq\":"))
            .count()
            >= 3,
        "{written:?}"
    );
    assert!(
        log.contains("write failed: No space left on device"),
        "{log}"
    );
}

#[test]
fn a_frame_loop_stuck_in_a_sink_stops_feeding_the_watchdog() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().expect("tempdir");
    // A file sink on a FIFO whose reader never reads: once the pipe's buffer is full, the
    // write blocks the way one to a hung network share or a wedged device does, and the loop
    // is stuck in it.
    let fifo = dir.path().join("records.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let notify = dir.path().join("notify");
    let systemd = UnixDatagram::bind(&notify).expect("bind");
    let child = lookout_command()
        .args([
            "run",
            "-s",
            "replay:tests/images/detect@50",
            "--sink",
            &format!("file:{}", fifo.display()),
        ])
        // A watchdog of 200 ms: a loop that runs pings every 100 ms.
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("lookout starts");
    let mut child = KillOnDrop(child);
    // The reader that never reads: opening a FIFO to write waits for one.
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::File::open(fifo))
    };
    let mut buf = [0u8; 512];
    systemd
        .set_read_timeout(Some(Duration::from_secs(60) * common::time_scale()))
        .expect("timeout");
    let first = systemd.recv(&mut buf).expect("READY=1");
    assert!(
        buf[..first].starts_with(b"READY=1\n"),
        "{}",
        String::from_utf8_lossy(&buf[..first])
    );
    let held = reader.join().expect("reader").expect("the FIFO opens");
    let ping = systemd.recv(&mut buf).expect("a ping while frames flow");
    assert!(
        buf[..ping].starts_with(b"WATCHDOG=1\n"),
        "{}",
        String::from_utf8_lossy(&buf[..ping])
    );
    // Pings until the pipe is full, then a second of silence: ten pings missed, where systemd
    // at 200 ms would have restarted lookout after two.
    systemd
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(120) * common::time_scale();
    while systemd.recv(&mut buf).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the watchdog was still fed: the loop never got stuck"
        );
    }
    assert!(
        child.0.try_wait().expect("try_wait").is_none(),
        "lookout ended instead of being stuck"
    );
    // It was the write: read what the pipe holds, and the loop goes on and pings again.
    use std::io::Read as _;
    let mut held = held;
    let mut drained = vec![0u8; 1 << 16];
    let read = held.read(&mut drained).expect("the pipe holds records");
    assert!(read > 0);
    systemd
        .set_read_timeout(Some(Duration::from_secs(60) * common::time_scale()))
        .expect("timeout");
    let again = systemd
        .recv(&mut buf)
        .expect("pings once the write goes through");
    assert!(
        buf[..again].starts_with(b"WATCHDOG=1\n"),
        "{}",
        String::from_utf8_lossy(&buf[..again])
    );
}

/// Kills the process when dropped: a stuck lookout must not outlive its test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_serial_line_whose_receiver_stops_reading_never_holds_up_the_frames() {
    let (mut terminal, _lookout_end, tty) = common::terminal::pair();
    let dir = tempfile::tempdir().expect("tempdir");
    let records = dir.path().join("records.jsonl");
    let log = dir.path().join("log");
    let child = lookout_command()
        .args([
            "run",
            "-s",
            "replay:tests/images/detect@50",
            // Hardware flow control: a receiver holding CTS low looks the same, a line whose
            // driver takes no more bytes.
            "--sink",
            &format!("serial:{tty}@115200,format=json,flow=hardware,console=off"),
            "--sink",
            &format!("file:{}", records.display()),
        ])
        .env("LOOKOUT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("lookout starts");
    let mut child = KillOnDrop(child);
    let log_says = |text: &str| std::fs::read_to_string(&log).is_ok_and(|l| l.contains(text));
    let count = || {
        std::fs::read_to_string(&records)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    // Nobody reads the terminal: its buffer fills, and lookout says so.
    wait_until(Duration::from_secs(120), "the stall to be told", || {
        log_says("receiver not reading")
    });
    // Frames go on while the line takes nothing.
    let at_stall = count();
    wait_until(Duration::from_secs(60), "records during the stall", || {
        count() > at_stall + 50
    });
    // The receiver reads again: the line carries records again, and lookout says how many were
    // dropped.
    wait_until(Duration::from_secs(60), "the line to be read again", || {
        // A bounded drain: lines keep coming while it reads.
        for _ in 0..100 {
            if terminal.line(Duration::from_millis(10)).is_none() {
                break;
            }
        }
        log_says("receiver reading again")
    });
    // A frame read after that comes over the line, whole.
    let after = count() as u64;
    let seq = |line: &str| {
        serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|r| r["seq"].as_u64())
    };
    terminal.until(Duration::from_secs(60), |l| {
        seq(l).is_some_and(|n| n >= after)
    });
    common::send_signal(child.0.id(), "TERM");
    let status = child.0.wait().expect("lookout ends");
    let log = std::fs::read_to_string(&log).expect("log");
    assert_eq!(status.code(), Some(0), "{log}");
    let dropped: u64 = log
        .split("receiver reading again; ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no dropped count: {log}"));
    assert!(dropped > 0, "{log}");
}

/// A `lookout run` whose stdout (JSON Lines: records and events) is read as it comes.
struct WatchedRun {
    child: KillOnDrop,
    printed: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl WatchedRun {
    fn start(args: &[&str]) -> Self {
        let mut child = KillOnDrop(
            lookout_command()
                .args(args)
                .env("LOOKOUT_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("lookout starts"),
        );
        let printed = Arc::new(Mutex::new(Vec::<String>::new()));
        let out = child.0.stdout.take().expect("stdout");
        let reader = {
            let printed = printed.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    printed.lock().expect("lock").push(line);
                }
            })
        };
        Self {
            child,
            printed,
            reader: Some(reader),
        }
    }

    fn lines(&self) -> Vec<String> {
        self.printed.lock().expect("lock").clone()
    }

    /// Waits for the first event `event`; returns its line's index and the event.
    fn wait_for_event(&self, event: &str, within: Duration) -> (usize, serde_json::Value) {
        let find = || {
            self.lines().iter().enumerate().find_map(|(i, l)| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                (v["event"] == event).then_some((i, v))
            })
        };
        wait_until(within, event, || find().is_some());
        find().expect("found")
    }

    /// Waits until `n` more lines than `after` were printed.
    fn wait_for_lines(&self, after: usize, n: usize) {
        wait_until(Duration::from_secs(60), "more records", || {
            self.lines().len() > after + n
        });
    }

    /// Stops it with SIGTERM; returns the exit code, the log and every line it printed.
    fn stop(mut self) -> (Option<i32>, String, Vec<String>) {
        common::send_signal(self.child.0.id(), "TERM");
        let status = self.child.0.wait().expect("lookout ends");
        if let Some(reader) = self.reader.take() {
            reader.join().expect("reader");
        }
        let mut log = String::new();
        if let Some(mut err) = self.child.0.stderr.take() {
            use std::io::Read as _;
            let _ = err.read_to_string(&mut log);
        }
        (status.code(), log, self.lines())
    }
}

/// The records' `seq`s in the printed lines, which must run without a gap.
fn assert_seqs_gap_free(lines: &[String]) -> u64 {
    let seqs: Vec<u64> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["seq"].as_u64())
        .collect();
    assert!(!seqs.is_empty());
    for (i, seq) in seqs.iter().enumerate() {
        assert_eq!(*seq, i as u64, "records {seqs:?}");
    }
    seqs.len() as u64
}

#[test]
fn a_disk_failing_with_eio_under_the_file_sink_drops_lines_counted_until_it_works_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(disk) = common::failing_disk::FailingDisk::mount(dir.path()) else {
        return;
    };
    let records = disk.path().join("records.jsonl");
    let run = WatchedRun::start(&[
        "run",
        "-s",
        "replay:tests/images/detect@20",
        "--sink",
        &format!("file:{}", records.display()),
        "--sink",
        "stdout",
    ]);
    run.wait_for_lines(0, 5);
    disk.fail(true);
    let (failed_at, failed) = run.wait_for_event("sink_failed", Duration::from_secs(60));
    let message = failed["message"].as_str().expect("message");
    assert!(message.contains("Input/output error"), "{message}");
    // Frames go on while the disk fails.
    run.wait_for_lines(failed_at, 10);
    disk.fail(false);
    let (restored_at, restored) = run.wait_for_event("sink_restored", Duration::from_secs(60));
    run.wait_for_lines(restored_at, 5);
    let (code, log, stdout) = run.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("write failed: Input/output error"), "{log}");
    assert_seqs_gap_free(&stdout);

    // The file holds what stdout printed but for one stretch, the lines the failure cost,
    // which the restore event counts; the frames after it are all there.
    let text = std::fs::read_to_string(&records).expect("records");
    let written: Vec<&str> = text.lines().collect();
    let message = restored["message"].as_str().expect("message");
    let lost = stdout.len() - written.len();
    assert!(
        message.contains(&format!("; {lost} lines were not written")),
        "{message}; {lost} lines missing from the file"
    );
    assert!(lost >= 10, "{message}");
    let before = written
        .iter()
        .zip(&stdout)
        .take_while(|(w, s)| *w == s)
        .count();
    assert!(before >= 5, "lines before the failure: {before}");
    assert_eq!(
        written[before..],
        stdout[before + lost..],
        "the file after the failure"
    );
    let after_restore = stdout[restored_at..]
        .iter()
        .filter(|l| l.starts_with("{\"seq\":"))
        .count();
    assert!(
        after_restore >= 3,
        "records after the restore: {after_restore}"
    );
}

#[test]
fn a_disk_failing_with_eio_under_the_sample_store_stops_collection_until_it_works_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(disk) = common::failing_disk::FailingDisk::mount(dir.path()) else {
        return;
    };
    let store = disk.path().join("store");
    let board = common::samples_board(dir.path(), "eio-test", &store, Some(1 << 30), Some(0));
    disk.fail(true);
    let run = WatchedRun::start(&[
        "run",
        "-m",
        "models/shapes-detector.toml",
        "-b",
        &board,
        "-s",
        "replay:tests/images/detect@10",
        "--sink",
        "stdout",
    ]);
    let (stopped_at, stopped) = run.wait_for_event("samples_stopped", Duration::from_secs(60));
    let message = stopped["message"].as_str().expect("message");
    assert!(message.contains("Input/output error"), "{message}");
    // Inference goes on meanwhile.
    run.wait_for_lines(stopped_at, 10);
    disk.fail(false);
    // Collection is tried again a minute after it stopped.
    let (resumed_at, _) = run.wait_for_event("samples_resumed", Duration::from_secs(150));
    run.wait_for_lines(resumed_at, 5);
    let (code, log, stdout) = run.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("Input/output error"), "{log}");
    let frames = assert_seqs_gap_free(&stdout);
    let stops = stdout
        .iter()
        .filter(|l| l.contains("\"samples_stopped\""))
        .count();
    assert_eq!(stops, 1, "said once");

    // Nothing half-written is left from the failure, and samples were kept after it.
    let mut images = 0;
    for entry in walk(&store) {
        let name = entry
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_owned();
        assert!(!name.ends_with(".tmp"), "left over: {name}");
        if name.ends_with(".jpg") {
            image::open(&entry).unwrap_or_else(|e| panic!("{name}: {e}"));
            images += 1;
        }
    }
    assert!(
        images >= 1,
        "no sample kept after the disk came back ({frames} frames)"
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}
