//! MQTT end to end: `lookout run --sink mqtt://...` against a real Mosquitto on 127.0.0.1
//! (tests/common/mqtt_broker.rs), read back by a real subscriber: the documented schema of
//! results, events, counts, stats, status and Home Assistant's discovery; the last will when
//! lookout is killed; every event of a 10 s broker outage delivered after it, in order; the
//! console's commands on `set`; and bad addresses, fields and credentials.

use crate::common;
use crate::common::mqtt_broker::{self, Broker, Message, Subscriber};
use crate::common::{assert_clean_failure, json_lines, lookout_command, stderr, stdout};
use serde_json::Value;
use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// A board profile `name` in `dir`: the host's, with `[mqtt]` holding `body` and a state
/// folder in `dir`.
fn board(dir: &Path, name: &str, body: &str) -> String {
    let state = dir.join(format!("{name}-state"));
    common::host_board_with(
        dir,
        name,
        "mqtt",
        &format!("state_dir = \"{}\"\n{body}", state.display()),
    )
}

/// A `lookout run` in the background: its standard output kept line by line as it comes (with
/// the time each line came), its log in a file.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<(SystemTime, String)>>>,
    log: std::path::PathBuf,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(args: &[&str], log: &Path) -> Self {
        let mut child = lookout_command()
            .args(args)
            .env("LOOKOUT_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("lookout starts");
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                kept.lock().expect("lock").push((SystemTime::now(), line));
            }
        });
        Self {
            child,
            lines,
            log: log.to_owned(),
            reader: Some(reader),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the run to end by itself; its standard output as JSON.
    fn wait(&mut self, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + common::patience(within);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "lookout failed: {}", self.log());
                break;
            }
            assert!(Instant::now() < deadline, "lookout hung: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.json()
    }

    fn json(&self) -> Vec<Value> {
        let lines = self.lines.lock().expect("lock");
        json_lines(
            &lines
                .iter()
                .map(|(_, l)| l.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }

    /// Records printed between `from` and `to` (by when lookout printed them).
    fn records_between(&self, from: SystemTime, to: SystemTime) -> usize {
        self.lines
            .lock()
            .expect("lock")
            .iter()
            .filter(|(at, l)| *at >= from && *at < to && l.contains("\"seq\""))
            .count()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `lookout run` on the rendered sequence replayed as a 10 fps camera, looping, publishing to
/// `url` with `board` (and `extra` arguments); returns once `sub` saw it say `online`.
fn live(dir: &Path, sub: &Subscriber, board: &str, url: &str, extra: &[&str]) -> Running {
    let mut args = vec![
        "run",
        "--board",
        board,
        "--source",
        "replay:tests/images/sequence@10",
        "--loop",
        "--sink",
        url,
    ];
    args.extend_from_slice(extra);
    let run = Running::start(&args, &dir.join("lookout.log"));
    assert!(
        sub.wait_for(common::patience(Duration::from_secs(20)), |m| m
            .iter()
            .any(|m| m.payload == b"online")),
        "never online: {}",
        run.log()
    );
    run
}

fn is_record(v: &Value) -> bool {
    v.get("frame").is_some() && v.get("event").is_none()
}

fn is_event(v: &Value) -> bool {
    v.get("event").is_some()
}

/// Without `seq` and `resent`: an MQTT event as the JSON Lines sink printed it.
fn without_number(mut v: Value) -> Value {
    if let Some(map) = v.as_object_mut() {
        map.remove("seq");
        map.remove("resent");
    }
    v
}

/// The events on `topic` with duplicates dropped by their `seq`, asserting that every
/// duplicate says it was `resent` and that first copies come in increasing order.
fn first_copies(messages: &[Message]) -> Vec<Value> {
    let mut last = 0;
    let mut kept = Vec::new();
    for m in messages {
        let v = m.json();
        let seq = v["seq"].as_u64().expect("seq");
        if seq <= last {
            assert_eq!(v["resent"], true, "a copy not marked resent: {v}");
            continue;
        }
        assert_eq!(seq, last + 1, "an event is missing before {v}");
        last = seq;
        kept.push(v);
    }
    kept
}

#[test]
fn results_events_counts_stats_and_discovery_arrive_as_documented() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), "allow_anonymous true");
    let sub = Subscriber::start(broker.port, "watcher", "#", false);
    let board = board(
        dir.path(),
        "door-board",
        "device = \"door\"\nresults = \"every\"\nresults_interval_ms = 0\nstats_interval_s = 1\n",
    );
    let url = broker.url("test/site");
    let mut run = Running::start(
        &[
            "run",
            "--board",
            &board,
            // Paced as a camera, so that the connection is up long before the run ends on
            // any machine (results before it are dropped, as latest values are).
            "--source",
            "replay:tests/images/sequence@10",
            "--max-frames",
            "36",
            "--zones",
            "tests/images/sequence/zones.toml",
            "--sink",
            "stdout",
            "--sink",
            &url,
        ],
        &dir.path().join("lookout.log"),
    );
    let lines = run.wait(Duration::from_secs(60));
    let records: Vec<&Value> = lines.iter().filter(|v| is_record(v)).collect();
    let events: Vec<&Value> = lines.iter().filter(|v| is_event(v)).collect();
    assert_eq!(records.len(), 36);
    assert!(events.len() >= 10, "{events:?}");
    let base = "test/site/door";
    // Everything published before the run ended has arrived once `offline` has.
    assert!(
        sub.wait_for(Duration::from_secs(10), |m| m.iter().any(|m| m.topic
            == format!("{base}/status")
            && m.payload == b"offline")),
        "no offline: {}",
        run.log()
    );
    let status: Vec<String> = sub
        .on(&format!("{base}/status"))
        .iter()
        .map(Message::text)
        .collect();
    assert_eq!(status, ["online", "offline"]);
    assert_eq!(
        mqtt_broker::retained(broker.port, &format!("{base}/status")).as_deref(),
        Some("offline")
    );

    // Results: every frame (`results = "every"`, no interval), the record JSON Lines prints.
    let results: Vec<Value> = sub
        .on(&format!("{base}/results"))
        .iter()
        .map(Message::json)
        .collect();
    // A frame done before the connection was made is not published (results are latest
    // values): the stats count it.
    let stats: Vec<Value> = sub
        .on(&format!("{base}/stats"))
        .iter()
        .map(Message::json)
        .collect();
    let final_stats = stats.last().expect("stats");
    let dropped = final_stats["results_dropped"].as_u64().expect("dropped");
    assert_eq!(results.len() as u64 + dropped, 36, "{}", run.log());
    assert_eq!(final_stats["results_published"], results.len());
    assert!(
        dropped <= 5,
        "{dropped} results dropped on a broker that was up"
    );
    for mqtt in &results {
        let seq = mqtt["seq"].as_u64().expect("seq") as usize;
        assert_eq!(mqtt, records[seq]);
    }

    // Events: numbered from 1 in order, each the event JSON Lines prints.
    let published = first_copies(&sub.on(&format!("{base}/events")));
    assert_eq!(published.len(), events.len());
    for (i, (mqtt, printed)) in published.into_iter().zip(&events).enumerate() {
        assert_eq!(mqtt["seq"], i as u64 + 1);
        assert_eq!(without_number(mqtt), **printed);
    }

    // Counts: retained, every label, what the last frame holds.
    let counts = mqtt_broker::retained(broker.port, &format!("{base}/counts")).expect("counts");
    let counts: Value = serde_json::from_str(&counts).expect("json");
    let last = records.last().expect("a record");
    for label in ["circle", "square", "triangle"] {
        let seen = last["detections"]
            .as_array()
            .expect("detections")
            .iter()
            .filter(|d| d["label"] == label)
            .count();
        assert_eq!(counts[label], seen as u64, "{label}: {counts}");
    }

    // Stats: the last one, said at the end, counts the run.
    assert_eq!(final_stats["frames"], 36);
    assert_eq!(final_stats["model"], "shapes-detector@2.1.0");
    assert_eq!(final_stats["events_dropped"], 0);
    assert_eq!(final_stats["reconnects"], 0);
    assert!(
        final_stats["latency_ms"]["infer"]["mean"]
            .as_f64()
            .expect("mean")
            > 0.0
    );
    assert!(
        final_stats["latency_ms"]["infer"]["max"]
            .as_f64()
            .expect("max")
            > 0.0
    );

    // Home Assistant discovery: a binary sensor and a count sensor per label, retained, with
    // the fields its MQTT discovery documents, reading `counts`.
    for label in ["circle", "square", "triangle"] {
        for (component, object, extra) in [
            (
                "binary_sensor",
                format!("{label}_seen"),
                &["payload_on", "payload_off", "device_class"][..],
            ),
            (
                "sensor",
                format!("{label}_count"),
                &["unit_of_measurement", "state_class"][..],
            ),
        ] {
            let topic = format!("homeassistant/{component}/lookout_door/{object}/config");
            let config = mqtt_broker::retained(broker.port, &topic)
                .unwrap_or_else(|| panic!("no retained {topic}"));
            let config: Value = serde_json::from_str(&config).expect("json");
            for field in [
                "name",
                "unique_id",
                "state_topic",
                "value_template",
                "availability_topic",
                "payload_available",
                "payload_not_available",
                "device",
            ]
            .iter()
            .chain(extra)
            {
                assert!(
                    config.get(*field).is_some(),
                    "{topic} lacks {field}: {config}"
                );
            }
            assert_eq!(config["state_topic"], format!("{base}/counts"));
            assert_eq!(config["availability_topic"], format!("{base}/status"));
            assert_eq!(config["unique_id"], format!("lookout_door_{object}"));
            assert_eq!(config["device"]["identifiers"][0], "lookout_door");
            let template = config["value_template"].as_str().expect("template");
            assert!(
                template.contains(&format!("value_json.get(\"{label}\", 0)")),
                "{template}"
            );
        }
    }
    assert_eq!(
        config_value(&broker, "binary_sensor", "square_seen", "payload_on"),
        "ON"
    );
}

fn config_value(broker: &Broker, component: &str, object: &str, field: &str) -> String {
    let topic = format!("homeassistant/{component}/lookout_door/{object}/config");
    let config: Value =
        serde_json::from_str(&mqtt_broker::retained(broker.port, &topic).expect("config"))
            .expect("json");
    config[field].as_str().unwrap_or_default().to_owned()
}

#[test]
fn the_last_will_says_offline_when_lookout_is_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), "allow_anonymous true");
    let sub = Subscriber::start(broker.port, "watcher", "will/+/status", false);
    let board = board(dir.path(), "will-board", "device = \"yard\"\n");
    let url = broker.url("will");
    let mut run = live(dir.path(), &sub, &board, &url, &[]);
    assert_eq!(
        mqtt_broker::retained(broker.port, "will/yard/status").as_deref(),
        Some("online")
    );
    run.child.kill().expect("SIGKILL");
    let _ = run.child.wait();
    // The broker publishes the will when the connection drops without a DISCONNECT.
    assert!(
        sub.wait_for(Duration::from_secs(10), |m| m
            .iter()
            .any(|m| m.payload == b"offline")),
        "no will: {}",
        broker.log()
    );
    assert_eq!(
        mqtt_broker::retained(broker.port, "will/yard/status").as_deref(),
        Some("offline")
    );
}

#[test]
fn events_raised_while_the_broker_is_away_arrive_after_it_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("broker-store");
    std::fs::create_dir_all(&store).expect("store");
    // Persistent, so that the subscriber's session and the messages queued for it survive the
    // broker's restart: what is tested is lookout's delivery, not the subscriber's.
    let mut broker = Broker::start(
        dir.path(),
        &format!(
            "allow_anonymous true\npersistence true\npersistence_location {}/\n",
            store.display()
        ),
    );
    let sub = Subscriber::start(broker.port, "watcher", "outage/#", true);
    let board = board(
        dir.path(),
        "outage-board",
        "device = \"gate\"\nresults = \"every\"\nresults_interval_ms = 0\n",
    );
    let url = broker.url("outage");
    let mut run = Running::start(
        &[
            "run",
            "--board",
            &board,
            "--source",
            "replay:tests/images/sequence@10",
            "--loop",
            "--zones",
            "tests/images/sequence/zones.toml",
            "--max-frames",
            "260",
            "--sink",
            "stdout",
            "--sink",
            &url,
        ],
        &dir.path().join("lookout.log"),
    );
    let events = "outage/gate/events";
    assert!(
        sub.wait_for(common::patience(Duration::from_secs(30)), |m| m
            .iter()
            .any(|m| m.topic == events)),
        "no event before the outage: {}",
        run.log()
    );
    let before = SystemTime::now();
    std::thread::sleep(Duration::from_secs(3));
    let down = SystemTime::now();
    broker.stop();
    std::thread::sleep(Duration::from_secs(10));
    let up = SystemTime::now();
    broker.restart();
    let lines = run.wait(Duration::from_secs(90));
    let printed: Vec<Value> = lines.iter().filter(|v| is_event(v)).cloned().collect();
    let during: Vec<&Value> = printed
        .iter()
        .filter(|e| {
            let at = humantime::parse_rfc3339(e["timestamp"].as_str().expect("timestamp"))
                .expect("a timestamp");
            at >= down && at < up
        })
        .collect();
    assert!(
        !during.is_empty(),
        "no event was raised during the outage: {printed:?}"
    );
    assert!(
        sub.wait_for(Duration::from_secs(15), |m| {
            let got = m.iter().filter(|m| m.topic == events).count();
            got >= printed.len()
        }),
        "events missing: {}",
        run.log()
    );
    let published = first_copies(&sub.on(events));
    assert_eq!(published.len(), printed.len(), "{}", run.log());
    for (mqtt, printed) in published.into_iter().zip(&printed) {
        assert_eq!(without_number(mqtt), *printed);
    }
    // Frames went on while the broker was away.
    let rate = |from: SystemTime, to: SystemTime| {
        let seconds = to
            .duration_since(from)
            .map(|d| d.as_secs_f64())
            .unwrap_or(1.0);
        run.records_between(from, to) as f64 / seconds
    };
    let during_frames = run.records_between(down, up);
    eprintln!(
        "frames per second before the outage {:.2}, during it {:.2}; {} events during it",
        rate(before, down),
        rate(down, up),
        during.len()
    );
    assert!(during_frames > 0, "no frame during the outage");
    let log = run.log();
    assert!(log.contains("MQTT: lost"), "{log}");
}

#[test]
fn commands_on_the_set_topic_are_answered_and_bad_ones_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), "allow_anonymous true");
    let sub = Subscriber::start(broker.port, "watcher", "cmd/#", false);
    let board = board(
        dir.path(),
        "cmd-board",
        "device = \"desk\"\ncommands = true\n",
    );
    let url = broker.url("cmd");
    // A retained command would run at every start of every board listening: it is refused.
    mqtt_broker::publish(broker.port, "cmd/desk/set", b"pause", true);
    let run = live(dir.path(), &sub, &board, &url, &["--sink", "stdout"]);
    let reply = "cmd/desk/reply";
    let ask = |payload: &[u8], retain: bool, expect: &str| {
        let before = sub.on(reply).len();
        mqtt_broker::publish(broker.port, "cmd/desk/set", payload, retain);
        assert!(
            sub.wait_for(common::patience(Duration::from_secs(10)), |m| {
                m.iter().filter(|m| m.topic == reply).count() > before
            }),
            "no reply to {:?}: {}",
            String::from_utf8_lossy(&payload[..payload.len().min(40)]),
            run.log()
        );
        let answer = sub.on(reply)[before].text();
        assert!(answer.contains(expect), "{answer}");
        answer
    };
    assert!(
        sub.wait_for(Duration::from_secs(5), |m| m
            .iter()
            .any(|m| m.topic == reply)),
        "no answer to the retained command: {}",
        run.log()
    );
    mqtt_broker::publish(broker.port, "cmd/desk/set", b"", true);
    let status = ask(b"status", false, "# ok status");
    assert!(status.contains("model shapes-detector@2.1.0"), "{status}");
    ask(
        &vec![b'a'; 1 << 20],
        false,
        "# error: line of 1048576 bytes ignored; at most 256",
    );
    ask(
        b"\xff\xfe status",
        false,
        "# error: line is not UTF-8 text; ignored",
    );
    // The retained command published before lookout started came with its subscription.
    assert!(
        sub.on(reply)[0]
            .text()
            .contains("# error: a retained command is ignored"),
        "{:?}",
        sub.on(reply)
    );
    ask(b"set threshold 0.95", false, "# ok threshold 0.95");
    ask(b"snapshot", false, "# ok snapshot of camera-");
    let snapshot = sub.on("cmd/desk/snapshot");
    assert_eq!(snapshot.len(), 1);
    let image = image::load_from_memory(&snapshot[0].payload).expect("a JPEG");
    assert_eq!((image.width(), image.height()), (192, 144));
    // The frame loop kept running through all of it.
    let frames_then = run.json().iter().filter(|v| is_record(v)).count();
    std::thread::sleep(Duration::from_millis(800));
    let frames_now = run.json().iter().filter(|v| is_record(v)).count();
    assert!(frames_now > frames_then, "frames stopped at {frames_then}");
}

#[test]
fn bad_addresses_fields_and_credentials_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = ["--source", "tests/images/detect"];
    let run = |args: &[&str]| {
        let mut all = vec!["run"];
        all.extend_from_slice(&source);
        all.extend_from_slice(args);
        common::lookout(&all)
    };
    assert_clean_failure(
        &run(&["--sink", "mqtt://127.0.0.1:99999/x"]),
        &["mqtt://127.0.0.1:99999/x", "port \"99999\""],
    );
    assert_clean_failure(
        &run(&["--sink", "mqtt://user:secret@broker/x"]),
        &["credentials_file"],
    );
    assert_clean_failure(&run(&["--sink", "mqtt"]), &["no address", "[mqtt] url"]);
    let spaced = board(dir.path(), "spaced", "device = \"front door\"\n");
    assert_clean_failure(
        &run(&["--board", &spaced, "--sink", "mqtt://h/x"]),
        &["spaced.toml", "mqtt.device", "front door"],
    );
    let missing = board(
        dir.path(),
        "missing",
        "credentials_file = \"/no/such/credentials\"\n",
    );
    assert_clean_failure(
        &run(&["--board", &missing, "--sink", "mqtt://127.0.0.1/x"]),
        &["/no/such/credentials", "cannot read credentials"],
    );

    // A broker that wants a password: a wrong one is refused, said in the log, and the frames
    // go on; the right one connects.
    let passwords = dir.path().join("passwords");
    let made = std::process::Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&passwords)
        .args(["lookout", "right-password"])
        .status()
        .expect("mosquitto_passwd runs");
    assert!(made.success());
    let broker = Broker::start(
        dir.path(),
        &format!(
            "allow_anonymous false\npassword_file {}\n",
            passwords.display()
        ),
    );
    let credentials = dir.path().join("credentials");
    std::fs::write(&credentials, "lookout\nwrong-password\n").expect("credentials");
    let with_file = board(
        dir.path(),
        "locked",
        &format!(
            "device = \"locked\"\ncredentials_file = \"{}\"\n",
            credentials.display()
        ),
    );
    let url = broker.url("auth");
    let mut refused = Running::start(
        &[
            "run",
            "--board",
            &with_file,
            "--source",
            "replay:tests/images/sequence@15",
            "--max-frames",
            "36",
            "--sink",
            "stdout",
            "--sink",
            &url,
        ],
        &dir.path().join("refused.log"),
    );
    let lines = refused.wait(Duration::from_secs(60));
    assert_eq!(lines.iter().filter(|v| is_record(v)).count(), 36);
    let log = refused.log();
    assert!(
        log.contains("the broker refused lookout") && log.contains(&*credentials.to_string_lossy()),
        "{log}"
    );
    assert!(!log.contains("wrong-password"), "{log}");
    std::fs::write(&credentials, "lookout\nright-password\n").expect("credentials");
    let out = lookout_command()
        .args([
            "run",
            "--board",
            &with_file,
            "--source",
            "tests/images/detect",
            "--sink",
            &url,
        ])
        .env("LOOKOUT_LOG", "info")
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("MQTT: connected"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
}

/// Makes a certificate authority and a certificate for 127.0.0.1 signed by it, with openssl;
/// returns (CA file, certificate file, key file).
fn tls_files(dir: &Path, name: &str) -> (String, String, String) {
    let path = |f: &str| {
        dir.join(format!("{name}-{f}"))
            .to_string_lossy()
            .into_owned()
    };
    let (ca_key, ca, key, csr, cert) = (
        path("ca.key"),
        path("ca.pem"),
        path("server.key"),
        path("server.csr"),
        path("server.pem"),
    );
    let ext = path("san.ext");
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\n").expect("extensions");
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs (scripts/setup installs it)");
        assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN={name} test authority"),
        "-keyout",
        &ca_key,
        "-out",
        &ca,
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &key,
        "-out",
        &csr,
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &ext,
        "-out",
        &cert,
    ]);
    (ca, cert, key)
}

#[test]
fn tls_connects_with_the_board_s_authority_and_refuses_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = tls_files(dir.path(), "good");
    let (other_ca, _, _) = tls_files(dir.path(), "other");
    let broker = Broker::start(
        dir.path(),
        &format!("allow_anonymous true\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"),
    );
    let url = format!("mqtts://127.0.0.1:{}/tls", broker.port);
    let run_with = |name: &str, ca_file: &str| {
        let board = board(
            dir.path(),
            name,
            &format!("device = \"{name}\"\nca_file = \"{ca_file}\"\n"),
        );
        lookout_command()
            .args([
                "run",
                "--board",
                &board,
                "--source",
                "tests/images/detect",
                "--sink",
                &url,
            ])
            .env("LOOKOUT_LOG", "info")
            .output()
            .expect("runs")
    };
    let out = run_with("trusting", &ca);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("MQTT: connected to mqtts://127.0.0.1"),
        "{}",
        stderr(&out)
    );
    // What it published went over TLS: the broker kept the retained status.
    let config: Value = serde_json::from_str(
        &mqtt_broker::retained_tls(
            broker.port,
            "homeassistant/sensor/lookout_trusting/circle_count/config",
            &ca,
        )
        .expect("a retained config over TLS"),
    )
    .expect("json");
    assert_eq!(config["state_topic"], "tls/trusting/counts");
    // A broker whose certificate the board's authority did not sign is not talked to; the
    // frames go on.
    let out = run_with("doubting", &other_ca);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.contains("MQTT: cannot connect to mqtts://127.0.0.1"),
        "{log}"
    );
    assert!(log.contains("TLS"), "{log}");
    assert!(!log.contains("MQTT: connected"), "{log}");
    assert_eq!(common::json_lines(&stdout(&out)).len(), 0);
}
