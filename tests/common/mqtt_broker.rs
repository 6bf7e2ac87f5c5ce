//! A real MQTT broker for the tests: Debian's Mosquitto (installed by scripts/setup), started on
//! a free port of 127.0.0.1 with a configuration the test writes, and a subscriber that keeps
//! every message with the time it arrived.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A Mosquitto process the test owns.
pub struct Broker {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    config: PathBuf,
    log: PathBuf,
}

fn mosquitto() -> &'static str {
    if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Broker {
    /// Starts a broker in `dir` listening on a free port, with `extra` lines of configuration
    /// (authentication, persistence). Waits until it accepts connections.
    pub fn start(dir: &Path, extra: &str) -> Self {
        let port = free_port();
        let config = dir.join("mosquitto.conf");
        let log = dir.join("mosquitto.log");
        // Started as root, Mosquitto becomes the user `mosquitto`, who cannot read the test's
        // private folder (its key files, its persistence): it stays the user the test is.
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        std::fs::write(
            &config,
            format!(
                "{}listener {port} 127.0.0.1\nlog_dest file {}\nlog_type all\n{extra}\n",
                if root { "user root\n" } else { "" },
                log.display()
            ),
        )
        .expect("broker config");
        let mut broker = Self {
            child: None,
            port,
            config,
            log,
        };
        broker.restart();
        broker
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the broker as a service stop would (SIGTERM: a persistent broker saves its
    /// sessions).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and configuration.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new(mosquitto())
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto runs (scripts/setup installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {}: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `mqtt://127.0.0.1:PORT/PREFIX`.
    pub fn url(&self, prefix: &str) -> String {
        format!("mqtt://127.0.0.1:{}/{prefix}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One message as the subscriber got it.
#[derive(Debug, Clone)]
pub struct Message {
    /// The topic.
    pub topic: String,
    /// The bytes.
    pub payload: Vec<u8>,
    /// Whether the broker delivered it as a retained message.
    pub retain: bool,
    /// When it arrived.
    pub at: Instant,
}

impl Message {
    /// The payload as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {:?}", self.topic, self.text()))
    }

    /// The payload as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A subscriber on its own thread (rumqttc's blocking client), subscribed at QoS 1 to `filter`
/// on each connection. With `persistent`, its session (and the messages queued for it) lives
/// on in a broker with persistence across the broker's restart.
pub struct Subscriber {
    messages: Arc<Mutex<Vec<Message>>>,
    client: rumqttc::Client,
}

impl Subscriber {
    /// Connects to the broker on `port` as `client_id` and subscribes to `filter`; returns
    /// once the subscription is acknowledged.
    pub fn start(port: u16, client_id: &str, filter: &str, persistent: bool) -> Self {
        let mut options = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
        options
            .set_clean_session(!persistent)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(32 << 20, 32 << 20);
        let (client, mut connection) = rumqttc::Client::new(options, 64);
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (subscribed_tx, subscribed_rx) = std::sync::mpsc::channel();
        let kept = messages.clone();
        let subscriber = client.clone();
        let filter = filter.to_owned();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))) => {
                        if !ack.session_present {
                            let _ = subscriber.try_subscribe(&filter, rumqttc::QoS::AtLeastOnce);
                        }
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        kept.lock().expect("lock").push(Message {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                            at: Instant::now(),
                        });
                    }
                    Ok(_) => {}
                    // The broker is away: rumqttc connects again on the next poll.
                    Err(rumqttc::ConnectionError::RequestsDone) => break,
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        subscribed_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the subscriber subscribed");
        Self { messages, client }
    }

    /// Every message so far.
    pub fn messages(&self) -> Vec<Message> {
        self.messages.lock().expect("lock").clone()
    }

    /// The messages on `topic` so far.
    pub fn on(&self, topic: &str) -> Vec<Message> {
        self.messages()
            .into_iter()
            .filter(|m| m.topic == topic)
            .collect()
    }

    /// Waits until `done` holds for the messages so far; false after `timeout`.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&[Message]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.messages()) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
    }
}

/// Publishes `payload` on `topic` with Mosquitto's own client (`mosquitto_pub`), from a file so
/// that any bytes go.
pub fn publish(port: u16, topic: &str, payload: &[u8], retain: bool) {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), payload).expect("payload");
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-q",
        "1",
        "-t",
        topic,
        "-f",
    ])
    .arg(file.path());
    if retain {
        cmd.arg("-r");
    }
    let status = cmd
        .status()
        .expect("mosquitto_pub runs (scripts/setup installs it)");
    assert!(status.success(), "mosquitto_pub {topic}");
}

/// The retained message on `topic`, read by Mosquitto's own client (`mosquitto_sub`); `None`
/// when there is none.
pub fn retained(port: u16, topic: &str) -> Option<String> {
    retained_with(port, topic, &[])
}

/// [`retained`] from a broker that speaks TLS, its certificate checked against `ca`.
pub fn retained_tls(port: u16, topic: &str, ca: &str) -> Option<String> {
    retained_with(port, topic, &["--cafile", ca])
}

fn retained_with(port: u16, topic: &str, extra: &[&str]) -> Option<String> {
    let out = Command::new("mosquitto_sub")
        .args(extra)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            topic,
            "-C",
            "1",
            "-W",
            "2",
            "--retained-only",
        ])
        .output()
        .expect("mosquitto_sub runs (scripts/setup installs it)");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
}
