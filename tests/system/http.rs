//! The web preview and API end to end: `lookout run --http` on a replayed still scene, its page
//! in a real headless Chromium (tests/common/browser.rs) with the frame and the boxes drawn on
//! it, the API read by a plain HTTP client, the token from another machine's address, and a
//! flood of connections refused while the frames go on.

use crate::common;
use crate::common::browser::{http, Browser};
use crate::common::mqtt_broker::free_port;
use crate::common::{assert_clean_failure, lookout_command, stderr};
use serde_json::Value;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A still scene (one frame, the same boxes in every record) in `dir`, as a replay source.
fn still(dir: &Path) -> String {
    format!("replay:{}@10", common::still_scene(dir))
}

/// `lookout run --http` in the background, killed when dropped.
struct Serving {
    child: Child,
    address: String,
    log: std::path::PathBuf,
}

impl Serving {
    fn start(dir: &Path, listen: &str, extra: &[&str]) -> Self {
        let log = dir.join(format!("lookout-{}.log", listen.replace(':', "_")));
        let mut args = vec!["run", "--source"];
        let source = still(dir);
        args.push(&source);
        let records = format!("file:{}", dir.join("records.jsonl").display());
        args.extend_from_slice(&["--loop", "--sink", &records, "--http", listen]);
        args.extend_from_slice(extra);
        let child = lookout_command()
            .args(&args)
            .env("LOOKOUT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("lookout starts");
        let port = listen.rsplit(':').next().expect("port");
        let address = format!("127.0.0.1:{port}");
        let serving = Self {
            child,
            address,
            log,
        };
        let deadline = Instant::now() + common::patience(Duration::from_secs(20));
        loop {
            if TcpStream::connect(&serving.address).is_ok() && serving.get("/api/latest").0 == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "not serving: {}", serving.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        serving
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Records written to the file sink so far.
    fn records(&self) -> usize {
        let file = self.log.with_file_name("records.jsonl");
        std::fs::read_to_string(file).map_or(0, |t| t.lines().count())
    }

    fn get(&self, path: &str) -> (u16, Vec<u8>) {
        http("GET", &self.address, path, &[], b"")
    }

    fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("JSON")
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The colours the page gives labels 0, 1 and 2.
const PALETTE: [[u8; 3]; 3] = [[255, 0, 255], [0, 255, 255], [255, 255, 0]];

fn near(a: [u8; 3], b: [u8; 3], tolerance: i32) -> bool {
    a.iter()
        .zip(b)
        .all(|(&x, y)| (i32::from(x) - i32::from(y)).abs() <= tolerance)
}

#[test]
fn the_page_draws_the_frames_with_their_boxes_and_keeps_updating() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port().to_string();
    let serving = Serving::start(dir.path(), &port, &[]);
    let browser = Browser::start(480, 360);
    browser.goto(&format!("http://{}/", serving.address));
    let drawn = || browser.run("return Number(document.getElementById('drawn').textContent)");
    let deadline = Instant::now() + common::patience(Duration::from_secs(20));
    while drawn().as_u64().unwrap_or(0) < 3 {
        assert!(
            Instant::now() < deadline,
            "the page drew no frames: {}",
            serving.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The page keeps drawing as frames come (5 preview frames a second by default).
    let first = drawn().as_u64().expect("count");
    let deadline = Instant::now() + common::patience(Duration::from_secs(10));
    while drawn().as_u64().unwrap_or(0) < first + 3 {
        assert!(
            Instant::now() < deadline,
            "the page stopped at {first}: {}",
            serving.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let shot = browser.screenshot();
    let pixel = |x: u32, y: u32| {
        let p = shot.get_pixel(x, y).0;
        [p[0], p[1], p[2]]
    };
    // The frame is drawn at its size (192x144) at the top left: a pixel of the scene's
    // background as the PNG has it (within JPEG's loss), and the page's colour beside it.
    let scene = image::open(common::repo("tests/images/detect/scene_0.png"))
        .expect("scene")
        .to_rgb8();
    for (x, y) in [(3, 3), (188, 140), (100, 2)] {
        let want = scene.get_pixel(x, y).0;
        assert!(
            near(pixel(x, y), want, 40),
            "({x}, {y}) is {:?}, the frame has {want:?}",
            pixel(x, y)
        );
    }
    assert_eq!(pixel(300, 60), [0x20, 0x20, 0x20], "beside the frame");
    // Each box's left edge, halfway down, in its label's colour; inside it, not.
    let latest = serving.json("/api/latest");
    let detections = latest["detections"].as_array().expect("detections");
    assert!(detections.len() >= 3, "{latest}");
    for d in detections {
        let b = common::json_box(&d["box"]);
        let colour = PALETTE[d["label_id"].as_u64().expect("id") as usize];
        let y = ((b[1] + b[3]) / 2.0).round() as u32;
        let x0 = b[0].round() as i64;
        let on_edge = (x0 - 2..=x0 + 1).any(|x| near(pixel(x.max(0) as u32, y), colour, 24));
        assert!(
            on_edge,
            "no {colour:?} at the left edge of {d} (x {x0}, y {y}): {:?}",
            (x0 - 2..=x0 + 1)
                .map(|x| pixel(x.max(0) as u32, y))
                .collect::<Vec<_>>()
        );
        let centre = (((b[0] + b[2]) / 2.0) as u32, y);
        assert!(
            !near(pixel(centre.0, centre.1), colour, 24),
            "the box of {d} is filled"
        );
    }
}

#[test]
fn the_api_answers_with_records_status_events_and_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port().to_string();
    let serving = Serving::start(dir.path(), &port, &[]);
    let latest = serving.json("/api/latest");
    assert_eq!(latest["model"], "shapes-detector@2.1.0");
    assert_eq!(latest["frame_size"], serde_json::json!([192, 144]));
    assert_eq!(latest["detections"].as_array().map(Vec::len), Some(4));
    // Status: what the console says, as JSON (read every half second).
    std::thread::sleep(Duration::from_millis(700));
    let status = serving.json("/api/status");
    assert_eq!(status["model"], "shapes-detector@2.1.0");
    assert_eq!(status["paused"], false);
    assert_eq!(status["threshold"].as_f64(), Some(0.25));
    assert!(status["frames"].as_u64().expect("frames") >= 1, "{status}");
    let resident = status["memory"]["resident_bytes"].as_u64().expect("memory");
    assert!(resident > 4 << 20, "{status}");
    assert!(status["source"]
        .as_str()
        .expect("source")
        .starts_with("replay:"));
    // Events: the stream gives records as they come.
    let mut stream = TcpStream::connect(&serving.address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    use std::io::{Read, Write};
    stream
        .write_all(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("request");
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.matches("event: record").count() < 3 && Instant::now() < deadline {
        let n = stream.read(&mut buf).expect("read");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.contains("content-type: text/event-stream"), "{got}");
    let seqs: Vec<u64> = got
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["seq"].as_u64())
        .collect();
    assert!(seqs.len() >= 3, "{got}");
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
    // Metrics: Prometheus' text, each histogram's last bucket its count.
    let (code, text) = serving.get("/metrics");
    assert_eq!(code, 200);
    let text = String::from_utf8(text).expect("text");
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    assert!(value("lookout_frames_total ") >= 1.0);
    assert_eq!(
        value("lookout_stage_latency_seconds_bucket{stage=\"infer\",le=\"+Inf\"} "),
        value("lookout_stage_latency_seconds_count{stage=\"infer\"} ")
    );
    assert_eq!(
        value("lookout_model_info{model=\"shapes-detector\",version=\"2.1.0\"} "),
        1.0
    );
    assert_eq!(value("lookout_objects{label=\"square\"} "), 2.0);
    // Memory: the process's own, and the frames' freed tensors kept by lookout's allocator.
    let resident = value("process_resident_memory_bytes ");
    assert!(resident > 4e6 && resident < 192e6, "{resident}");
    assert!(value("lookout_memory_anonymous_bytes ") < resident);
    // Frames ran, so their freed tensors served later frames.
    assert!(value("lookout_heap_reused_total ") >= 1.0, "{text}");
    assert!(
        value("lookout_heap_kept_bytes ") <= 16.0 * 1048576.0,
        "{text}"
    );
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, v) = line.rsplit_once(' ').expect("name value");
        assert!(v.parse::<f64>().is_ok(), "not a sample: {line}");
    }
    assert_eq!(serving.get("/nothing").0, 404);
    assert_eq!(
        serving.get("/api/frame.jpg").0,
        404,
        "nobody watches: no frame is encoded"
    );
}

/// An address of this machine that is not loopback: requests from it count as another
/// machine's.
fn outside_address() -> String {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .expect("hostname -I");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .expect("this machine has an IPv4 address besides loopback")
        .to_owned()
}

#[test]
fn other_machines_need_the_token_and_commands_need_it_from_anywhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = "c0ffee-0123456789-abcdef";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).expect("token");
    let board = common::host_board_with(
        dir.path(),
        "web",
        "http",
        &format!("token_file = \"{}\"\n", token_file.display()),
    );
    let port = free_port().to_string();
    let serving = Serving::start(dir.path(), &format!("0.0.0.0:{port}"), &["--board", &board]);
    let outside = format!("{}:{port}", outside_address());
    let bearer = format!("Bearer {token}");
    // A console command posted with the token.
    let command = |address: &str, text: &[u8]| {
        http(
            "POST",
            address,
            "/api/command",
            &[("Authorization", &bearer)],
            text,
        )
    };
    for path in [
        "/",
        "/api/latest",
        "/api/status",
        "/metrics",
        "/api/events",
        "/api/frame.jpg",
    ] {
        let (code, body) = http("GET", &outside, path, &[], b"");
        assert_eq!(
            code,
            401,
            "{path} without a token: {}",
            String::from_utf8_lossy(&body)
        );
        let (code, _) = http(
            "GET",
            &outside,
            path,
            &[("Authorization", "Bearer wrong-token-0000000")],
            b"",
        );
        assert_eq!(code, 401, "{path} with a wrong token");
    }
    let (code, _) = http(
        "GET",
        &outside,
        "/api/latest",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(code, 200);
    let (code, _) = http(
        "GET",
        &outside,
        &format!("/api/latest?token={token}"),
        &[],
        b"",
    );
    assert_eq!(code, 200, "the token in the query");
    let (code, _) = http(
        "GET",
        &outside,
        "/api/latest?token=wrong-token-0000000",
        &[],
        b"",
    );
    assert_eq!(code, 401, "a wrong token in the query");
    let lower = format!("bearer {token}");
    let (code, _) = http(
        "GET",
        &outside,
        "/api/latest",
        &[("Authorization", &lower)],
        b"",
    );
    assert_eq!(code, 200, "the scheme's case does not matter");
    // A page of another site that a browser on this board was made to believe is local (DNS
    // rebinding) names that site, not the board: no token, no answer.
    let (code, _) = http(
        "GET",
        &serving.address,
        "/api/latest",
        &[("Host", "evil.example:8080")],
        b"",
    );
    assert_eq!(code, 401, "a web site's name from a local peer");
    // This board's own programs read without it, but command nobody without it.
    assert_eq!(serving.get("/api/latest").0, 200);
    let (code, body) = http("POST", &serving.address, "/api/command", &[], b"pause");
    assert_eq!(code, 401, "{}", String::from_utf8_lossy(&body));
    let (code, _) = http(
        "POST",
        &serving.address,
        &format!("/api/command?token={token}"),
        &[],
        b"pause",
    );
    assert_eq!(code, 401, "a command's token is not taken from the address");
    // A body the console would find nothing in is answered, and the next command gets its own
    // reply, not that one's.
    let (code, body) = command(&serving.address, b"\x01 ");
    assert_eq!(
        (code, String::from_utf8_lossy(&body).trim()),
        (400, "# error: empty command")
    );
    let (code, body) = command(&serving.address, b"pause");
    assert_eq!(
        (code, String::from_utf8_lossy(&body).trim()),
        (200, "# ok paused")
    );
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(serving.json("/api/status")["paused"], true);
    let (code, body) = command(&outside, b"resume");
    assert_eq!(
        (code, String::from_utf8_lossy(&body).trim()),
        (200, "# ok resumed")
    );
    let (code, body) = command(&outside, b"fly away");
    assert_eq!(code, 400);
    assert!(String::from_utf8_lossy(&body).contains("# error: unknown command"));
    let (code, _) = command(&outside, &[b'a'; 5000]);
    assert_eq!(code, 413);
    let (code, _) = command(&outside, b"\xff\xfe");
    assert_eq!(code, 400);
    // A command whose body stops short of its length: answered 408 and closed within the
    // server's 10 s, so the client does not hold a slot for good.
    let answer = short_command(&outside, &bearer, false);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not come within 10 s"), "{answer}");
    // One that ends its side before the body is whole: a bad request, not one too large.
    let answer = short_command(&outside, &bearer, true);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("could not be read"), "{answer}");
    // The command cut short never ran.
    let (code, body) = http(
        "GET",
        &outside,
        "/api/status",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(code, 200);
    let status: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(status["paused"], false, "{status}");
}

/// Sends a command whose body is 3 of the 20 bytes its head announces, ending the sending side
/// after it when `half_close`, and returns the whole answer, read until the server closes.
fn short_command(address: &str, bearer: &str, half_close: bool) -> String {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .write_all(
            format!(
                "POST /api/command HTTP/1.1\r\nHost: {address}\r\nAuthorization: {bearer}\r\n\
                 Content-Length: 20\r\n\r\npau"
            )
            .as_bytes(),
        )
        .expect("send");
    if half_close {
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
    }
    stream
        .set_read_timeout(Some(common::patience(Duration::from_secs(30))))
        .expect("timeout");
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("answered and closed, not left hanging");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Raises this process's soft limit on open files towards `wanted`, as far as the hard limit
/// allows: the flood holds its sockets in the test process, beside the files of the tests
/// running in parallel, and many machines' default soft limit (1024) is below the hard one.
fn room_for_open_files(wanted: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let Some(current) = limit.current else {
        return;
    };
    let raised = limit.maximum.map_or(wanted, |maximum| maximum.min(wanted));
    if raised > current {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(raised),
                maximum: limit.maximum,
            },
        )
        .expect("raise the soft limit on open files");
    }
}

#[test]
fn a_thousand_connections_at_once_are_refused_past_the_limit_and_frames_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port().to_string();
    let serving = Serving::start(dir.path(), &port, &[]);
    let before = serving.json("/api/latest")["seq"].as_u64().expect("seq");
    room_for_open_files(1000 + 200);
    // 1000 connections held open at once, from 10 threads, each sending a request.
    let threads: Vec<_> = (0..10)
        .map(|_| {
            let address = serving.address.clone();
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for _ in 0..100 {
                    if let Ok(mut s) = TcpStream::connect(&address) {
                        use std::io::Write;
                        let _ = s.write_all(b"GET /api/latest HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
                        held.push(s);
                    }
                }
                held
            })
        })
        .collect();
    let held: Vec<TcpStream> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();
    // The frames go on while the connections are held.
    let during = serving.records();
    let deadline = Instant::now() + common::patience(Duration::from_secs(10));
    while serving.records() < during + 3 {
        assert!(
            Instant::now() < deadline,
            "no frame while the flood held on: {}",
            serving.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Each held connection: one of the few served, answered 503, or (past the refusals the
    // server answers at once) closed unanswered; none left hanging.
    let (mut served, mut busy, mut closed) = (0, 0, 0);
    for mut s in held {
        use std::io::Read;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut head = [0u8; 12];
        match s.read_exact(&mut head) {
            Ok(()) if &head == b"HTTP/1.1 200" => served += 1,
            Ok(()) if &head == b"HTTP/1.1 503" => busy += 1,
            Ok(()) => panic!("unexpected answer {:?}", String::from_utf8_lossy(&head)),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("a connection left hanging: {}", serving.log())
            }
            Err(_) => closed += 1,
        }
    }
    eprintln!("1000 connections: {served} served, {busy} answered 503, {closed} closed unanswered");
    assert!(served <= 8, "{served} served at once, past max_clients 8");
    assert!(busy >= 64, "only {busy} answered 503");
    assert_eq!(served + busy + closed, 1000);
    // The frames went on, and the server serves again once the flood is gone.
    let deadline = Instant::now() + common::patience(Duration::from_secs(15));
    loop {
        let (code, body) = serving.get("/api/latest");
        if code == 200 {
            let seq = serde_json::from_slice::<Value>(&body).expect("json")["seq"]
                .as_u64()
                .expect("seq");
            assert!(seq > before, "no frame since the flood");
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {code}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, metrics) = serving.get("/metrics");
    let metrics = String::from_utf8(metrics).expect("text");
    assert!(
        metrics.lines().any(|l| l
            .strip_prefix("lookout_http_refused_total ")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n >= 900)),
        "{metrics}"
    );
}

#[test]
fn bad_addresses_and_token_files_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let mut all = vec!["run", "--source", "tests/images/detect"];
        all.extend_from_slice(args);
        common::lookout(&all)
    };
    assert_clean_failure(
        &run(&["--http", "nonsense"]),
        &["--http \"nonsense\"", "no host names"],
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    assert_clean_failure(
        &run(&["--http", &addr]),
        &[&format!("listening on {addr}"), "in use"],
    );
    let short = dir.path().join("short-token");
    std::fs::write(&short, "abc\n").expect("token");
    let board = common::host_board_with(
        dir.path(),
        "short",
        "http",
        &format!("enabled = true\ntoken_file = \"{}\"\n", short.display()),
    );
    assert_clean_failure(&run(&["--board", &board]), &["short-token", "at least 16"]);
    let bad = common::host_board_with(dir.path(), "bad", "http", "max_clients = 0\n");
    assert_clean_failure(
        &run(&["--board", &bad, "--http"]),
        &["bad.toml", "http.max_clients"],
    );
    let out = lookout_command()
        .args(["run", "--source", "tests/images/detect", "--http", "0"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
}
