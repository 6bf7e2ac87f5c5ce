//! Helpers shared by the integration tests: run the real `lookout` binary, read its JSON Lines,
//! and find the repository's files.

#![allow(dead_code)]

pub mod browser;
pub mod camera_servers;
pub mod failing_disk;
pub mod mqtt_broker;
pub mod terminal;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A path inside the repository.
pub fn repo(path: &str) -> PathBuf {
    root().join(path)
}

/// Runs one of the Python tools (`tools/<script>`, with `tools/requirements-ref.txt`, which
/// `scripts/setup` installs) natively from the repository root, even when the tests run under
/// qemu; panics with its stderr unless it succeeds.
pub fn python_tool<I, S>(script: &str, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new("python3")
        .arg(repo("tools").join(script))
        .args(args)
        .current_dir(root())
        .output()
        .expect("python3 runs (install with scripts/setup)");
    assert!(
        out.status.success(),
        "tools/{script} failed (is tools/requirements-ref.txt installed?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `f` over `items` on one thread per core, results in the order of `items`. For suites that
/// walk many models through single-threaded processes (lookout under qemu-user, onnxruntime):
/// one at a time, they leave all but one core idle. A panic in `f` fails the caller.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers.min(items.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(item) = items.get(i) else {
                    break;
                };
                let result = f(item);
                done.lock().expect("results").push((i, result));
            });
        }
    });
    let mut done = done.into_inner().expect("results");
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Whether these tests run for another architecture under an emulator (`scripts/test-cross`).
pub fn under_emulator() -> bool {
    std::env::var("LOOKOUT_TEST_RUNNER").is_ok_and(|r| !r.trim().is_empty())
}

/// How long a test waits for something lookout does before calling it hung: `natively` on
/// this machine, times `LOOKOUT_TEST_TIME_SCALE` (which `scripts/test-cross` sets for qemu-user,
/// and says why it is what it is), scaled no further than [`MAX_PATIENCE`]. A wait is only
/// ever a guard against a hang: no verdict depends on how much of it was used, so a slow or
/// loaded machine never fails a test that a fast one passes.
pub fn patience(natively: std::time::Duration) -> std::time::Duration {
    natively.max((natively * time_scale()).min(MAX_PATIENCE))
}

/// The longest a scaled wait lasts: a hang under qemu still fails CI within the hour, while
/// 15 minutes is 15 times the longest native deadline (60 s).
pub const MAX_PATIENCE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// `LOOKOUT_TEST_TIME_SCALE`, 1 when unset; a value that is not a whole number from 1 up is
/// an error in the runner, said at once rather than taken for 1.
pub fn time_scale() -> u32 {
    match std::env::var("LOOKOUT_TEST_TIME_SCALE") {
        Err(_) => 1,
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(scale) if scale >= 1 => scale,
            _ => panic!("LOOKOUT_TEST_TIME_SCALE={text:?}: expected a whole number from 1 up"),
        },
    }
}

/// Waits until `done` holds, polling, and fails naming `what` after `limit` (scaled by
/// [`time_scale`] for emulation): a generous deadline, never a measure of speed.
pub fn wait_until(limit: std::time::Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit * time_scale();
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Sends `signal` (`TERM`, `INT`, ...) to process `pid`, as `kill -SIGNAL PID` does.
pub fn send_signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -{signal} {pid} failed");
}

/// A command for the `lookout` binary built for these tests, run from the repository root.
///
/// When the tests run for another architecture under qemu-user (`scripts/test-cross`), the
/// binary is an ARM executable that this kernel cannot start by itself (no binfmt handler is
/// assumed), so it is started through the emulator named in `LOOKOUT_TEST_RUNNER`, exactly as
/// cargo starts the test binaries.
pub fn lookout_command() -> Command {
    let bin = env!("CARGO_BIN_EXE_lookout");
    let runner = std::env::var("LOOKOUT_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    let mut cmd = match words.next() {
        Some(emulator) => {
            let mut c = Command::new(emulator);
            c.args(words).arg(bin);
            // lookout starts itself to try a model (model::verify); without a binfmt handler
            // the kernel cannot start that ARM child either.
            c.env("LOOKOUT_CHILD_RUNNER", &runner);
            c
        }
        None => Command::new(bin),
    };
    cmd.current_dir(root());
    cmd
}

/// Runs the `lookout` binary built for these tests, from the repository root.
pub fn lookout(args: &[&str]) -> Output {
    lookout_command()
        .args(args)
        .output()
        .expect("the lookout binary runs")
}

/// Standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Parses JSON Lines.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Asserts a failed run with a single clear error line containing every `needle`.
pub fn assert_clean_failure(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert!(
        !err.contains("panicked"),
        "panic instead of an error: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    assert!(lines[0].starts_with("error: "), "not an error line: {err}");
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "error line lacks {needle:?}: {err}"
        );
    }
}

/// A folder in `dir` holding one test scene (192x144: a circle, a triangle and two squares,
/// one of them in the bottom half), which `--loop` plays as a still camera.
pub fn still_scene(dir: &Path) -> String {
    let folder = dir.join("still");
    std::fs::create_dir_all(&folder).expect("folder");
    std::fs::copy(
        repo("tests/images/detect/scene_0.png"),
        folder.join("scene_0.png"),
    )
    .expect("copy");
    folder.to_string_lossy().into_owned()
}

/// Intersection over union of two `[x0, y0, x1, y1]` boxes.
pub fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: [f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter)
}

/// A JSON `[x0, y0, x1, y1]` as numbers.
pub fn json_box(v: &serde_json::Value) -> [f64; 4] {
    let a = v.as_array().expect("box is an array");
    [0, 1, 2, 3].map(|i| a[i].as_f64().expect("box coordinate"))
}

/// Copies a model and its manifest into `dir`, returning the new manifest path.
pub fn copy_model(name: &str, dir: &Path) -> PathBuf {
    for ext in ["onnx", "toml"] {
        let from = repo(&format!("models/{name}.{ext}"));
        std::fs::copy(&from, dir.join(format!("{name}.{ext}")))
            .unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
    dir.join(format!("{name}.toml"))
}

/// A board profile named `name` in `dir`: the host's, with its `[table]` (and the tables after
/// it) replaced by `table` followed by `body`. Returns its path.
pub fn host_board_with(dir: &Path, name: &str, table: &str, body: &str) -> String {
    let host = std::fs::read_to_string(repo("boards/host.toml")).expect("host profile");
    let header = format!("\n[{table}]");
    let kept = host.find(&header).map_or(host.as_str(), |at| &host[..at]);
    let text = kept.replace("name = \"host\"", &format!("name = \"{name}\""))
        + &format!("{header}\n{body}");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("board profile");
    path.to_string_lossy().into_owned()
}

/// A host-like board profile `name` keeping every frame as a sample in `store` (no rate
/// limit to speak of), with the given cap and free-space floor (`None`: the profile's).
pub fn samples_board(
    dir: &Path,
    name: &str,
    store: &Path,
    max_bytes: Option<u64>,
    min_free_bytes: Option<u64>,
) -> String {
    let mut body = format!(
        "enabled = true\ndir = {:?}\nevery_n = 1\nmax_per_minute = 100000\n",
        store.to_string_lossy()
    );
    if let Some(max) = max_bytes {
        body += &format!("max_bytes = {max}\n");
    }
    if let Some(floor) = min_free_bytes {
        body += &format!("min_free_bytes = {floor}\n");
    }
    host_board_with(dir, name, "samples", &body)
}

/// The model `variant_release` copies: the bundled detector's int8-weights variant.
pub const VARIANT: &str = "shapes-detector-int8-weights";

/// [`VARIANT`] released as `version` in `dir/release-<version>/`, its decoder set to `decoder`
/// and, when `corrupt`, one byte of the model flipped (the manifest's hash then fails).
/// Returns the manifest.
pub fn variant_release(dir: &Path, version: &str, corrupt: bool, decoder: &str) -> PathBuf {
    let src = repo("models/variants");
    let out = dir.join(format!("release-{version}"));
    std::fs::create_dir_all(&out).expect("dir");
    let mut onnx = std::fs::read(src.join(format!("{VARIANT}.onnx"))).expect("model");
    if corrupt {
        let middle = onnx.len() / 2;
        onnx[middle] ^= 0x55;
    }
    std::fs::write(out.join(format!("{VARIANT}.onnx")), onnx).expect("write model");
    let text = std::fs::read_to_string(src.join(format!("{VARIANT}.toml"))).expect("manifest");
    write_release_manifest(&out, version, decoder, text)
}

/// A release of the bundled detector's variant whose box centre head's weight scales are NaN:
/// its manifest matches the file (hash and size), so it passes the install check and loads,
/// and every frame's outputs hold NaN. Built here from the real model, as a broken training run
/// or export would leave it. That head (Conv → Reshape → Mul → Add) is chosen because nothing
/// after it squashes a NaN: tract's Relu makes it 0 and its Sigmoid clamps it to a finite score.
pub fn nan_release(dir: &Path, version: &str) -> PathBuf {
    use prost::Message as _;
    let src = repo("models/variants");
    let out = dir.join(format!("release-{version}"));
    std::fs::create_dir_all(&out).expect("dir");
    let bytes = std::fs::read(src.join(format!("{VARIANT}.onnx"))).expect("model");
    let mut model = tract_onnx::pb::ModelProto::decode(bytes.as_slice()).expect("parses");
    let graph = model.graph.as_mut().expect("a graph");
    let scales = graph
        .initializer
        .iter_mut()
        .find(|t| t.name == "w_25_scale")
        .expect("the box centre head's weight scales");
    scales.raw_data = f32::NAN.to_le_bytes().repeat(scales.raw_data.len() / 4);
    let onnx = model.encode_to_vec();
    std::fs::write(out.join(format!("{VARIANT}.onnx")), &onnx).expect("write model");
    let text = std::fs::read_to_string(src.join(format!("{VARIANT}.toml"))).expect("manifest");
    let text = text
        .lines()
        .map(|line| {
            if line.starts_with("sha256 = ") {
                format!("sha256 = \"{}\"", lookout::budget::sha256_hex(&onnx))
            } else if line.starts_with("bytes = ") {
                format!("bytes = {}", onnx.len())
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    write_release_manifest(&out, version, "yolov8", text)
}

/// Writes the variant's manifest `text` into `out` under `version` and `decoder`.
fn write_release_manifest(out: &Path, version: &str, decoder: &str, text: String) -> PathBuf {
    let text = text
        .replacen(
            "version = \"2.1.0\"",
            &format!("version = \"{version}\""),
            1,
        )
        .replacen(
            "decoder = \"yolov8\"",
            &format!("decoder = \"{decoder}\""),
            1,
        );
    let manifest = out.join(format!("{VARIANT}.toml"));
    std::fs::write(&manifest, text).expect("write manifest");
    manifest
}

/// `lookout samples export` of the store the board profile `board` names into `tar`; panics
/// with its stderr unless it succeeds.
pub fn export_samples(board: &str, tar: &Path) -> Output {
    let out = lookout(&[
        "samples",
        "export",
        "-b",
        board,
        "--out",
        &tar.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

/// Compares `actual` with the golden transcript `tests/fixtures/golden/<name>`, recorded before
/// a restructuring so that what lookout says (records, serial lines, console replies, events)
/// provably stays the same through it. Everything but numbers must match to the byte (field
/// order, spelling, line endings); numbers must match to 1e-5, so that another x86 CPU's
/// kernels (AVX-512 against AVX2) cannot fail it while any real change still does. Record
/// again, after a deliberate change only, with `LOOKOUT_BLESS=1`.
pub fn assert_golden(name: &str, actual: &str) {
    let file = repo("tests/fixtures/golden").join(name);
    if std::env::var_os("LOOKOUT_BLESS").is_some() {
        std::fs::create_dir_all(file.parent().expect("parent")).expect("golden folder");
        std::fs::write(&file, actual).expect("write golden transcript");
        return;
    }
    let expected = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e} (record with LOOKOUT_BLESS=1)", file.display()));
    let (want_text, want_numbers) = split_numbers(&expected);
    let (got_text, got_numbers) = split_numbers(actual);
    if want_text != got_text || want_numbers.len() != got_numbers.len() {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| split_numbers(a).0 != split_numbers(b).0)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{}: differs from line {} on\nexpected: {:?}\nactual:   {:?}\n(whole output:\n{actual})",
            file.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
    for (i, (want, got)) in want_numbers.iter().zip(&got_numbers).enumerate() {
        assert!(
            (want - got).abs() <= 1e-5 * want.abs().max(1.0),
            "{}: number {i} is {got}, recorded {want}",
            file.display()
        );
    }
}

/// The text with every decimal number replaced by `#`, and the numbers.
fn split_numbers(text: &str) -> (String, Vec<f64>) {
    let mut skeleton = Vec::with_capacity(text.len());
    let mut numbers = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_number = bytes[i].is_ascii_digit()
            || (bytes[i] == b'-' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit));
        let in_word = i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts_number && !in_word {
            let start = i;
            i += 1;
            while i < bytes.len()
                && (bytes[i].is_ascii_digit()
                    || bytes[i] == b'.'
                    || bytes[i] == b'e'
                    || bytes[i] == b'E'
                    || (matches!(bytes[i], b'-' | b'+') && matches!(bytes[i - 1], b'e' | b'E')))
            {
                i += 1;
            }
            match text[start..i].trim_end_matches('.').parse::<f64>() {
                Ok(n) => {
                    numbers.push(n);
                    skeleton.push(b'#');
                }
                Err(_) => skeleton.extend_from_slice(&bytes[start..i]),
            }
        } else {
            skeleton.push(bytes[i]);
            i += 1;
        }
    }
    (String::from_utf8_lossy(&skeleton).into_owned(), numbers)
}

/// A JSON record's line without its `timestamp` and `latency_ms` fields, the only ones that
/// change from run to run; the rest stays as lookout wrote it, field order included.
pub fn without_timing(line: &str) -> String {
    let mut out = line.to_owned();
    for (key, close) in [("\"timestamp\":\"", '"'), ("\"latency_ms\":{", '}')] {
        if let Some(start) = out.find(key) {
            let from = start + key.len();
            if let Some(len) = out[from..].find(close) {
                let mut end = from + len + 1;
                if out[end..].starts_with(',') {
                    end += 1;
                }
                out.replace_range(start..end, "");
            }
        }
    }
    out
}

/// TOML text with the value of every `key = …` line replaced by `value`.
pub fn rewrite_key(toml: &str, key: &str, value: &str) -> String {
    toml.lines()
        .map(|l| {
            if l.trim_start().starts_with(&format!("{key} =")) {
                format!("{key} = {value}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Each frame's `detections` as `lookout run --model MANIFEST --source IMAGES` reports them.
pub fn detections(manifest: &str, images: &str) -> Vec<serde_json::Value> {
    let out = lookout(&["run", "--model", manifest, "--source", images]);
    assert!(out.status.success(), "{manifest}: {}", stderr(&out));
    json_lines(&stdout(&out))
        .into_iter()
        .map(|r| r["detections"].clone())
        .collect()
}
