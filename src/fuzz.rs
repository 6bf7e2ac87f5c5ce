//! The fuzz targets' entry points: each feeds arbitrary bytes to one parser of outside input,
//! the way they reach a board, and checks what must hold of the result.
//!
//! The targets in `fuzz/` (cargo-fuzz, libFuzzer) call these, and so does the test that replays
//! the committed corpora (`tests/system/fuzz_corpora.rs`), so a crash found once stays fixed.
//! An entry point never fails on bad input: refusing it is the expected answer. It panics only
//! when lookout breaks a promise (an accepted line longer than the limit, a converted frame of
//! the wrong size): that is the crash the fuzzer reports.
//!
//! | target | the bytes are |
//! |---|---|
//! | [`manifest`] | a model manifest (TOML), parsed and validated |
//! | [`board`] | a board profile (TOML), parsed and validated |
//! | [`console`] | what arrives on the serial console, in two chunks |
//! | [`compact`] | a line of the compact serial protocol, as a receiver checks it |
//! | [`pixels`] | a camera frame: format, width, height, then its bytes |
//! | [`image_file`] | an image file, decoded and pre-processed for a model |
//! | [`onnx_meta`] | an ONNX file, read without loading it |
//! | [`model`] | an ONNX file through the whole deployment check and one frame |
//! | [`mqtt_command`] | an MQTT command message's payload |
//! | [`http_request`] | what a client sends the web server |
//!
//! A panic inside tract (or another dependency) on a crafted model is not lookout's to fix:
//! on a board the model is first tried in a child process ([`crate::model::verify`]), which
//! turns such a panic into a refusal. [`model`] catches those and answers
//! [`Outcome::DependencyPanic`]; a panic in lookout's own code goes on as a crash.

use crate::frames::camera::pixels;
use crate::frames::camera::v4l::PixelFormat;
use crate::frames::preprocess::Preprocessor;
use crate::frames::source::Frame;
use crate::manifest::{ColorOrder, Layout, Manifest, ResizeMode};
use crate::onnx_meta::{Dim, OnnxMeta};
use crate::results::console::{self, Input, LineAssembler, MAX_LINE};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

/// What an entry point made of its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Taken as valid.
    Accepted,
    /// Refused with an error (the expected answer to most fuzzed input).
    Refused,
    /// A dependency (tract) panicked on it, and lookout caught the panic; the message.
    DependencyPanic(String),
}

/// An entry point.
pub type Target = fn(&[u8]) -> Outcome;

/// Every target, by the name of its file in `fuzz/fuzz_targets/` and its corpus folder.
pub const TARGETS: [(&str, Target); 10] = [
    ("manifest", manifest),
    ("board", board),
    ("console", console),
    ("compact", compact),
    ("pixels", pixels),
    ("image_file", image_file),
    ("onnx_meta", onnx_meta),
    ("model", model),
    ("mqtt_command", mqtt_command),
    ("http_request", http_request),
];

fn verdict<T, E>(result: Result<T, E>) -> Outcome {
    if result.is_ok() {
        Outcome::Accepted
    } else {
        Outcome::Refused
    }
}

/// A model manifest: parsed, validated, and its error naming the file.
pub fn manifest(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::Refused;
    };
    let origin = Path::new("fuzzed.toml");
    match Manifest::parse(text, origin) {
        Ok(manifest) => {
            // What the run derives from every accepted manifest at start-up.
            let _ = manifest.input.width().checked_mul(manifest.input.height());
            let _ = manifest.model.total_bytes();
            let _ = manifest.output.decoder_name();
            Outcome::Accepted
        }
        Err(e) => refused_naming(&e, "fuzzed.toml"),
    }
}

/// A refusal, whose error must name the file it is about.
fn refused_naming(error: &impl std::fmt::Display, file: &str) -> Outcome {
    let text = error.to_string();
    assert!(
        text.contains(file),
        "the error does not name {file}: {text}"
    );
    Outcome::Refused
}

/// A board profile: parsed and validated (every table), its error naming the file.
pub fn board(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::Refused;
    };
    match crate::board::Board::parse(text, Path::new("fuzzed.toml")) {
        Ok(board) => {
            let _ = board.scene();
            Outcome::Accepted
        }
        Err(e) => refused_naming(&e, "fuzzed.toml"),
    }
}

/// Console input: the first two bytes say where the rest is cut in two (bytes arrive in
/// pieces); the lines must not depend on the cut, and each line is parsed as a command.
pub fn console(data: &[u8]) -> Outcome {
    let [c0, c1, bytes @ ..] = data else {
        return Outcome::Refused;
    };
    let cut = usize::from(u16::from_le_bytes([*c0, *c1])).min(bytes.len());
    let whole = LineAssembler::default().push(bytes);
    let mut pieces = LineAssembler::default();
    let mut lines = pieces.push(&bytes[..cut]);
    lines.extend(pieces.push(&bytes[cut..]));
    assert_eq!(whole, lines, "the lines depend on how the bytes arrived");
    let mut accepted = false;
    for input in &whole {
        if let Input::Line(line) = input {
            assert!(line.len() <= MAX_LINE, "a line of {} bytes", line.len());
            assert!(
                !line.chars().any(|c| c.is_ascii_control()),
                "a control byte kept in {line:?}"
            );
            accepted |= command(line);
        }
    }
    if accepted {
        Outcome::Accepted
    } else {
        Outcome::Refused
    }
}

/// Parses a command line; whether it is one.
fn command(line: &str) -> bool {
    match console::parse(line) {
        Ok(console::Command::SetThreshold(v)) => {
            assert!((0.0..=1.0).contains(&v), "threshold {v} accepted");
            true
        }
        Ok(_) => true,
        Err(reply) => {
            assert!(!reply.is_empty(), "an empty error for {line:?}");
            false
        }
    }
}

/// A compact serial line as a receiver checks it: as it came, and with its CRC made right (so
/// that the fields behind the check are reached).
pub fn compact(data: &[u8]) -> Outcome {
    use crate::results::serial::protocol::{crc8, parse_compact};
    let text = String::from_utf8_lossy(data);
    let _ = parse_compact(&text);
    let body = text.trim_end_matches(['\r', '\n']);
    let body = body.rsplit_once('*').map_or(body, |(body, _)| body);
    let line = format!("{body}*{:02X}\n", crc8(body.as_bytes()));
    match parse_compact(&line) {
        Ok(parsed) => {
            assert!(
                "DKTCZFE".contains(parsed.kind),
                "kind {:?} accepted",
                parsed.kind
            );
            Outcome::Accepted
        }
        Err(message) => {
            assert!(!message.is_empty());
            Outcome::Refused
        }
    }
}

/// A camera frame: byte 0 picks the pixel format, bytes 1..5 are the width and height the
/// driver reported (16 bits each), the rest is the buffer it handed over.
pub fn pixels(data: &[u8]) -> Outcome {
    let [f, w0, w1, h0, h1, bytes @ ..] = data else {
        return Outcome::Refused;
    };
    let format = match f % 5 {
        0 => PixelFormat::Yuyv,
        1 => PixelFormat::Nv12,
        2 => PixelFormat::Mjpeg,
        3 => PixelFormat::Gray,
        _ => PixelFormat::Rgb,
    };
    let width = u32::from(u16::from_le_bytes([*w0, *w1]));
    let height = u32::from(u16::from_le_bytes([*h0, *h1]));
    match pixels::to_rgb(format, width, height, bytes) {
        Ok(image) => {
            if format != PixelFormat::Mjpeg {
                assert_eq!(image.dimensions(), (width, height), "{format} frame");
            }
            Outcome::Accepted
        }
        Err(_) => Outcome::Refused,
    }
}

/// The pre-processing variants an image is fed to: the bundled detector's input, and its
/// other resize modes, colour orders and layouts.
fn preprocessors() -> &'static Mutex<Vec<Preprocessor>> {
    static PREPROCESSORS: OnceLock<Mutex<Vec<Preprocessor>>> = OnceLock::new();
    PREPROCESSORS.get_or_init(|| {
        let manifest = Manifest::parse(
            crate::model::embedded::MANIFEST,
            Path::new(crate::model::embedded::MANIFEST_ORIGIN),
        )
        .expect("the bundled manifest is checked by the build");
        let mut variants = Vec::new();
        for (resize, color, layout) in [
            (ResizeMode::Letterbox, ColorOrder::Rgb, Layout::Nchw),
            (ResizeMode::Stretch, ColorOrder::Bgr, Layout::Nhwc),
            (ResizeMode::CenterCrop, ColorOrder::Gray, Layout::Nchw),
        ] {
            let mut m = manifest.clone();
            // Read before the layout changes what the shape's places mean.
            let side = m.input.height();
            m.preprocess.resize = resize;
            m.preprocess.color = color;
            m.input.layout = layout;
            if color == ColorOrder::Gray {
                m.input.shape = [1, 1, side, side];
                m.preprocess.mean.truncate(1);
                m.preprocess.std.truncate(1);
            } else if layout == Layout::Nhwc {
                m.input.shape = [1, side, side, 3];
            }
            assert_eq!((m.input.width(), m.input.height()), (side, side));
            variants.push(Preprocessor::new(&m.input, &m.preprocess));
        }
        Mutex::new(variants)
    })
}

/// An image file as a folder source reads it, then pre-processed for a model three ways.
pub fn image_file(data: &[u8]) -> Outcome {
    let Ok(image) = crate::frames::source::decode_image(data, None) else {
        return Outcome::Refused;
    };
    let Ok(mut variants) = preprocessors().lock() else {
        return Outcome::Refused;
    };
    let mut accepted = false;
    for pre in variants.iter_mut() {
        let mut out = vec![0f32; pre.input_len()];
        if let Ok(transform) = pre.run(&image, &mut out) {
            assert!(
                out.iter().all(|v| v.is_finite()),
                "a non-finite input value"
            );
            let b = transform.box_to_source([0.0, 0.0, 1.0, 1.0]);
            assert!(b.iter().all(|v| v.is_finite()), "a non-finite box {b:?}");
            accepted = true;
        }
    }
    if accepted {
        Outcome::Accepted
    } else {
        Outcome::Refused
    }
}

/// An ONNX file read as the build and `inspect` read it, without loading it.
pub fn onnx_meta(data: &[u8]) -> Outcome {
    match OnnxMeta::parse(data) {
        Ok(meta) => {
            for input in &meta.inputs {
                let _ = input.shape_text();
            }
            let _ = meta.quant_form();
            let _ = meta.foreign_ops();
            let _ = meta.metadata_labels();
            Outcome::Accepted
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            Outcome::Refused
        }
    }
}

/// Largest side of an input a fuzzed model may declare, and the most values in it: tract is
/// given nothing it would take seconds or gigabytes to build for.
const MODEL_MAX_SIDE: i64 = 1024;
const MODEL_MAX_INPUT: i64 = 3 * 640 * 640;

/// Whether a fuzzed model's declared input is small enough to hand to tract.
fn within_caps(meta: &OnnxMeta) -> bool {
    meta.inputs.iter().all(|input| {
        let mut values = 1i64;
        input.shape.iter().all(|d| match d {
            Dim::Fixed(v) => {
                values = values.saturating_mul((*v).max(1));
                (0..=MODEL_MAX_SIDE).contains(v)
            }
            Dim::Symbolic(_) | Dim::Unknown => true,
        }) && values <= MODEL_MAX_INPUT
    })
}

/// The panic tract raised in the [`model`] call under way, with where.
static LAST_PANIC: Mutex<Option<(String, String)>> = Mutex::new(None);
/// Whether a [`model`] call is under way: only then is a panic in tract noted rather than
/// passed to the hook before.
static TRYING_MODEL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Panics raised on the web server's thread: tokio turns one in a request's task into a
/// closed connection, which [`http_request`] could not tell from a refusal.
static HTTP_PANICS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Installs (once) the panic hook the targets rely on, around the hook in place (libFuzzer's
/// aborts the process; a test's prints): while [`model`] runs, a panic inside tract is only
/// noted, for `model` to catch; a panic on the web server's thread is counted, for
/// [`http_request`]. Every other panic goes to the hook before, unchanged.
pub fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            use std::sync::atomic::Ordering;
            // The server's thread, and the one answering its commands.
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("http"))
            {
                HTTP_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            let file = info.location().map(|l| l.file()).unwrap_or("");
            if !(TRYING_MODEL.load(Ordering::SeqCst) && is_tract_code(file)) {
                previous(info);
                return;
            }
            if let Ok(mut last) = LAST_PANIC.lock() {
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                *last = Some((message, at));
            }
        }));
    });
}

/// Whether a panic's file is tract's (one of its crates, as cargo unpacked them), not
/// lookout's or another dependency's: a panic elsewhere, even inside a crate lookout calls
/// wrongly, is lookout's to fix.
fn is_tract_code(file: &str) -> bool {
    file.contains("/registry/src/") && file.contains("/tract-")
}

/// Keeps a model a dependency panicked on, once per place it panicked at: printed, and written
/// to `$LOOKOUT_FUZZ_FINDINGS/<sha256>.onnx` with the message in `<sha256>.txt` when the
/// variable names a folder (scripts/fuzz sets it), for the list of dependency panics.
pub fn note_dependency_panic(data: &[u8], message: &str) {
    static SEEN: Mutex<std::collections::BTreeSet<String>> =
        Mutex::new(std::collections::BTreeSet::new());
    let place = message.rsplit(" at ").next().unwrap_or(message).to_owned();
    if !SEEN.lock().is_ok_and(|mut seen| seen.insert(place)) {
        return;
    }
    eprintln!("lookout-fuzz: a dependency panicked (caught): {message}");
    if let Some(dir) = std::env::var_os("LOOKOUT_FUZZ_FINDINGS") {
        let dir = Path::new(&dir);
        let sha = crate::budget::sha256_hex(data);
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(dir.join(format!("{sha}.onnx")), data);
        let _ = std::fs::write(dir.join(format!("{sha}.txt")), format!("{message}\n"));
    }
}

/// Where files of the model target go: one folder per process.
fn scratch() -> &'static Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("lookout-fuzz-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        dir
    })
}

/// An ONNX file through what `lookout import`, `check` and the model's trial do with it: read,
/// its input capped, a manifest written for it, the deployment check against the bundled
/// board, then loaded and run on one black frame.
pub fn model(data: &[u8]) -> Outcome {
    let Ok(meta) = OnnxMeta::parse(data) else {
        return Outcome::Refused;
    };
    if !within_caps(&meta) || meta.external_data {
        return Outcome::Refused;
    }
    let path = scratch().join("fuzzed.onnx");
    if std::fs::write(&path, data).is_err() {
        return Outcome::Refused;
    }
    install_panic_hook();
    if let Ok(mut last) = LAST_PANIC.lock() {
        *last = None;
    }
    TRYING_MODEL.store(true, std::sync::atomic::Ordering::SeqCst);
    let tried = std::panic::catch_unwind(|| try_model(data, &meta, &path));
    TRYING_MODEL.store(false, std::sync::atomic::Ordering::SeqCst);
    let _ = std::fs::remove_file(&path);
    match tried {
        Ok(outcome) => outcome,
        Err(payload) => {
            let noted = LAST_PANIC.lock().ok().and_then(|mut l| l.take());
            match noted {
                Some((message, at)) => Outcome::DependencyPanic(format!("{message} at {at}")),
                // Not noted by the hook: not tract's, so lookout's to fix: a crash.
                None => std::panic::resume_unwind(payload),
            }
        }
    }
}

fn try_model(data: &[u8], meta: &OnnxMeta, path: &Path) -> Outcome {
    let origin = "fuzzed.onnx";
    if crate::model::engine::probe(data, origin).is_err() {
        return Outcome::Refused;
    }
    let _ = meta.quant_form();
    let Ok(imported) = crate::model::import::import(path, &Default::default()) else {
        return Outcome::Refused;
    };
    let Ok(board) = crate::model::embedded_board() else {
        return Outcome::Refused;
    };
    let board_file = Path::new(crate::model::embedded::BOARD_ORIGIN);
    if crate::budget::check_model(&board, board_file, &imported.manifest, &imported.path, data)
        .is_err()
    {
        return Outcome::Refused;
    }
    let manifest = imported.manifest;
    let (w, h) = (manifest.input.width(), manifest.input.height());
    let Ok(mut pipeline) = crate::pipeline::Pipeline::new(manifest, data, origin) else {
        return Outcome::Refused;
    };
    let frame = Frame {
        id: "fuzz-black".into(),
        captured_at: std::time::SystemTime::UNIX_EPOCH,
        image: image::RgbImage::new(w as u32, h as u32),
    };
    verdict(pipeline.process(&frame, std::time::Duration::ZERO))
}

/// An MQTT command message: its payload as the MQTT port hands it to the console (one line),
/// then the console's editing and parsing.
pub fn mqtt_command(data: &[u8]) -> Outcome {
    let mut input = Vec::new();
    crate::results::mqtt::command_line(data, &mut input);
    let lines = LineAssembler::default().push(&input);
    assert!(lines.len() <= 1, "one message became {} lines", lines.len());
    match lines.first() {
        Some(Input::Line(line)) if command(line) => Outcome::Accepted,
        _ => Outcome::Refused,
    }
}

/// The web server, on a loopback port of its own, with commands answered by the console's
/// parser (the frame loop is not what this target tests).
fn http_server() -> Option<std::net::SocketAddr> {
    static SERVER: OnceLock<Option<std::net::SocketAddr>> = OnceLock::new();
    *SERVER.get_or_init(|| {
        // lookout's own binary ignores SIGPIPE (Rust's runtime sets that up before `main`);
        // libFuzzer's `main` does not, and tokio's vectored write to a client that went away
        // would end the fuzzer. A handler that only sets a flag keeps the signal harmless.
        let _ = signal_hook::flag::register(
            signal_hook::consts::SIGPIPE,
            std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        );
        let settings = crate::results::http::HttpSettings {
            listen: "127.0.0.1:0".parse().ok()?,
            token: Some("fuzzing-token-0123456789".into()),
            config: Default::default(),
        };
        let server =
            crate::results::http::serve_alone(&settings, |line| match console::parse(line) {
                Ok(_) => "# ok\n".into(),
                Err(e) => format!("# error: {e}\n"),
            })
            .ok()?;
        let addr = server.addr();
        // Serves for the life of the process.
        std::mem::forget(server);
        Some(addr)
    })
}

/// Whether `data` holds a whole HTTP request (head and body), or one the server refuses
/// without reading on; either is answered while the connection stays open. Anything less it
/// waits for. Follows how hyper's server reads a request's head and frames its body.
fn whole_request(data: &[u8]) -> bool {
    // hyper's own limit; past it the server answers 431 at once.
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut request = httparse::Request::new(&mut headers);
    let head = match request.parse(data) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return false,
        // A head hyper cannot parse is answered at once (400, 414 or 431).
        Err(_) => return true,
    };
    // The headers in order, as hyper reads them: Content-Length lines are checked until a
    // Transfer-Encoding line comes, whose last one frames the body.
    let mut length = None;
    let mut codings = None;
    for header in request.headers.iter() {
        let value = String::from_utf8_lossy(header.value)
            .trim()
            .to_ascii_lowercase();
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if request.version != Some(1) {
                return true;
            }
            codings = Some(value);
        } else if header.name.eq_ignore_ascii_case("content-length") && codings.is_none() {
            // Digits only (no sign), and every line the same: anything else is refused at once.
            let parsed = (!value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
                .then(|| value.parse::<u64>().ok())
                .flatten();
            match (parsed, length) {
                (None, _) => return true,
                (Some(this), Some(before)) if this != before => return true,
                (Some(this), _) => length = Some(this),
            }
        }
    }
    match codings {
        // Refused at once: a body framed by anything but a final `chunked`.
        Some(codings) => {
            codings.rsplit(',').next().map(str::trim) != Some("chunked")
                || whole_chunked_body(&data[head..])
        }
        None => length.is_none_or(|length| (data.len() - head) as u64 >= length),
    }
}

/// Whether a chunked body is all there: every chunk, the last (empty) one and the trailer
/// section's end; or a chunk size the server refuses.
fn whole_chunked_body(mut body: &[u8]) -> bool {
    loop {
        // hyper reads any number of leading zeros; httparse refuses more than 16 digits.
        let zeros = body
            .windows(2)
            .take_while(|pair| pair[0] == b'0' && pair[1].is_ascii_hexdigit())
            .count();
        body = &body[zeros..];
        // httparse reads a size line without a digit as 0; hyper refuses it.
        match body.first() {
            None => return false,
            Some(first) if !first.is_ascii_hexdigit() => return true,
            Some(_) => {}
        }
        match httparse::parse_chunk_size(body) {
            Ok(httparse::Status::Complete((start, 0))) => {
                let trailers = &body[start..];
                return trailers.starts_with(b"\r\n")
                    || trailers.windows(4).any(|w| w == b"\r\n\r\n");
            }
            Ok(httparse::Status::Complete((start, size))) => {
                // A chunk larger than what was sent is still being waited for.
                let Some(end) = usize::try_from(size)
                    .ok()
                    .and_then(|size| start.checked_add(size)?.checked_add(2))
                else {
                    return false;
                };
                match body.get(end..) {
                    Some(rest) => body = rest,
                    None => return false,
                }
            }
            Ok(httparse::Status::Partial) => return false,
            Err(_) => return true,
        }
    }
}

/// Reads an answer: waits up to `first` for its first bytes, then until the connection ends
/// or nothing comes for 200 ms (an event stream never ends by itself: its head is enough).
fn read_answer(stream: &mut std::net::TcpStream, first: std::time::Duration) -> Vec<u8> {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let mut answer = Vec::new();
    let mut buffer = [0u8; 16384];
    let started = Instant::now();
    let _ = stream.set_read_timeout(Some(first.max(Duration::from_millis(1))));
    while started.elapsed() < Duration::from_secs(10) {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buffer[..n]);
                let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            }
            Err(_) => break,
        }
    }
    answer
}

/// What a client sends the web server, sent on a real connection: a whole request is answered
/// with the connection open; anything less is ended by closing the sending side. The answer
/// must be HTTP and never a server error, and the server's thread must not panic (tokio would
/// turn that into a closed connection).
pub fn http_request(data: &[u8]) -> Outcome {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    install_panic_hook();
    let Some(addr) = http_server() else {
        return Outcome::Refused;
    };
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return Outcome::Refused;
    };
    let panics = HTTP_PANICS.load(Ordering::SeqCst);
    let _ = stream.write_all(data);
    // A whole request's answer comes at once; the wait is long only for a loaded machine.
    let mut answer = if whole_request(data) {
        read_answer(&mut stream, Duration::from_secs(5))
    } else {
        Vec::new()
    };
    if answer.is_empty() {
        let _ = stream.shutdown(std::net::Shutdown::Write);
        answer = read_answer(&mut stream, Duration::from_secs(2));
    }
    drop(stream);
    assert_eq!(
        HTTP_PANICS.load(Ordering::SeqCst),
        panics,
        "the server's thread panicked"
    );
    if answer.is_empty() {
        return Outcome::Refused;
    }
    // An HTTP/1.0 request is answered in 1.0.
    let status = answer
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| answer.strip_prefix(b"HTTP/1.0 "))
        .unwrap_or_else(|| {
            panic!(
                "not an HTTP answer: {:?}",
                String::from_utf8_lossy(&answer[..answer.len().min(64)])
            )
        });
    assert!(
        !status.starts_with(b"500"),
        "a server error: {}",
        String::from_utf8_lossy(&answer)
    );
    if status.starts_with(b"2") {
        Outcome::Accepted
    } else {
        Outcome::Refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_whole_when_its_body_is() {
        let head = "POST /api/command HTTP/1.1\r\nHost: x\r\n";
        let whole = |rest: &str| whole_request(format!("{head}{rest}").as_bytes());
        assert!(!whole(""), "no end of head");
        assert!(whole("\r\n"));
        assert!(whole("Content-Length: 4\r\n\r\nhelp"));
        assert!(!whole("Content-Length: 5\r\n\r\nhelp"));
        assert!(whole("Content-Length: x\r\n\r\n"), "refused at once");
        let chunked = "Transfer-Encoding: gzip, chunked\r\n\r\n";
        assert!(whole(&format!("{chunked}4\r\nhelp\r\n0\r\n\r\n")));
        assert!(
            !whole(&format!("{chunked}4\r\nhelp\r\n0\r\n")),
            "no trailer end"
        );
        assert!(
            !whole(&format!("{chunked}9\r\n0\r\n\r\n\r\n")),
            "0 inside a chunk"
        );
        assert!(whole(&format!(
            "{chunked}3;x=y\r\nabc\r\n0\r\nTrailer: 1\r\n\r\n"
        )));
        assert!(
            whole(&format!("{chunked}zz\r\n")),
            "a bad size is refused at once"
        );
        assert!(whole(&format!("{chunked};x\r\n")), "no digit");
        assert!(!whole(chunked), "no size yet");
        assert!(whole(
            "Content-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(!whole(
            "Transfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n"
        ));
        assert!(whole("Bad Header\r\n\r\n"), "a head hyper cannot parse");
        // The last header decides; a body not ending in chunked is refused at once.
        assert!(!whole(
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n"
        ));
        assert!(whole("Transfer-Encoding: chunked, gzip\r\n\r\n4\r\n"));
        assert!(!whole(
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        ));
        // Leading zeros past httparse's 16 digits, and a size beyond what was sent.
        assert!(!whole(&format!("{chunked}00000000000000004\r\nhe")));
        assert!(whole(&format!(
            "{chunked}00000000000000004\r\nhelp\r\n0\r\n\r\n"
        )));
        assert!(!whole(&format!("{chunked}ffffffffffffffff\r\nhelp")));
        // The length is digits only and the same on every line; chunked framing wins over it.
        assert!(whole("Content-Length: +5\r\n\r\n"));
        assert!(whole("Content-Length: 4\r\nContent-Length: 5\r\n\r\nhelp"));
        assert!(!whole("Content-Length: 5\r\nContent-Length: 5\r\n\r\nhelp"));
        assert!(!whole(
            "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nhe"
        ));
        assert!(!whole("Content-Length: 99999999999\r\n\r\nhelp"));
        assert!(whole_request(
            b"POST /api/command HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n"
        ));
        let crowded: String = (0..101).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert!(whole(&format!("{crowded}\r\n")), "431 at once");
        let busy: String = (0..90).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert!(whole(&format!("{busy}\r\n")));
    }
}
