//! The board profile's `[mqtt]` table and the `mqtt://` address: where lookout publishes
//! through an existing broker (`lookout::results::mqtt`), and what it publishes there.
//!
//! The address is parsed here, not by a URL library, so that `lookout check` and the build
//! refuse a bad one with the same message the run gives.

use crate::error::FieldError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What MQTT does on this board: the `[mqtt]` table. Every field has a default; the table
/// needs only `url` (or a `--sink mqtt://...`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// The broker and topic prefix, `mqtt://HOST[:PORT][/PREFIX]` (or `mqtts://` for TLS);
    /// `--sink mqtt` uses this one.
    pub url: Option<String>,
    /// This board's name in topics (`<prefix>/<device>/...`) and in Home Assistant; default:
    /// the host name. Letters, digits, `-` and `_`.
    pub device: Option<String>,
    /// A file holding `username` on its first line and the password on its second; read at
    /// start, so no secret is on a command line or in the profile.
    pub credentials_file: Option<PathBuf>,
    /// PEM file of the certificate authorities the broker's certificate is checked against
    /// (`mqtts://`; without it, the system's).
    pub ca_file: Option<PathBuf>,
    /// Which frames' results are published: `every` frame, on `change` of what is seen (labels
    /// and their counts, zone counts), or `off`.
    pub results: ResultsPolicy,
    /// At most one results message per this many milliseconds; a change in between is
    /// published when the time is up, as the latest value (0: no limit).
    pub results_interval_ms: u64,
    /// A `stats` message every this many seconds (0: none).
    pub stats_interval_s: u64,
    /// Accept console commands on `<prefix>/<device>/set`. Off: anyone who may publish on the
    /// broker could otherwise pause the detector.
    pub commands: bool,
    /// Publish Home Assistant discovery configs (a binary sensor and a count sensor per label).
    pub discovery: bool,
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
    /// Events kept while the broker is away (on disk under `state_dir`); past this the oldest
    /// are dropped and counted.
    pub queue_events: usize,
    /// Where the event queue is kept across restarts.
    pub state_dir: PathBuf,
    /// Seconds between keep-alive pings; the broker tells lookout's death (the last will)
    /// after 1.5 times this when the network, not the process, goes away.
    pub keep_alive_s: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: None,
            device: None,
            credentials_file: None,
            ca_file: None,
            results: ResultsPolicy::Change,
            results_interval_ms: 1000,
            stats_interval_s: 60,
            commands: false,
            discovery: true,
            discovery_prefix: "homeassistant".into(),
            queue_events: 10_000,
            state_dir: PathBuf::from("/var/lib/lookout/mqtt"),
            keep_alive_s: 30,
        }
    }
}

/// Which frames' results are published (`[mqtt] results`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultsPolicy {
    /// Every frame (still at most one per `results_interval_ms`).
    Every,
    /// When what is seen changes: the labels and their counts, or the zones' counts.
    #[default]
    Change,
    /// None: events, counts and stats only.
    Off,
}

impl MqttConfig {
    /// Checks the values, naming the field that is wrong.
    pub fn check(&self) -> Result<(), FieldError> {
        if let Some(url) = &self.url {
            MqttUrl::parse(url).map_err(|e| FieldError::new("url", e))?;
        }
        if let Some(device) = &self.device {
            check_device(device).map_err(|e| FieldError::new("device", e))?;
        }
        check_topic_part(&self.discovery_prefix, false)
            .map_err(|e| FieldError::new("discovery_prefix", e))?;
        if self.discovery_prefix.is_empty() {
            return Err(FieldError::new("discovery_prefix", "is empty"));
        }
        if self.queue_events == 0 {
            return Err(FieldError::new("queue_events", "must be at least 1"));
        }
        if !(5..=3600).contains(&self.keep_alive_s) {
            return Err(FieldError::new(
                "keep_alive_s",
                format!("{} is not in 5..=3600 seconds", self.keep_alive_s),
            ));
        }
        if self.stats_interval_s > 86_400 {
            return Err(FieldError::new(
                "stats_interval_s",
                format!("{} is more than a day (86400 s)", self.stats_interval_s),
            ));
        }
        if self.results_interval_ms > 3_600_000 {
            return Err(FieldError::new(
                "results_interval_ms",
                format!(
                    "{} is more than an hour (3600000 ms)",
                    self.results_interval_ms
                ),
            ));
        }
        if self.state_dir.as_os_str().is_empty() {
            return Err(FieldError::new("state_dir", "is empty"));
        }
        Ok(())
    }
}

/// Checks a device name: what goes into topics and Home Assistant's ids.
pub fn check_device(device: &str) -> Result<(), String> {
    if device.is_empty() || device.len() > 64 {
        return Err(format!("{device:?} must be 1 to 64 characters"));
    }
    if let Some(c) = device
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "{device:?} holds {c:?}; a device name is letters, digits, `-` and `_`"
        ));
    }
    Ok(())
}

/// Checks a topic prefix: levels separated by `/`, without MQTT's wildcards.
fn check_topic_part(part: &str, allow_empty: bool) -> Result<(), String> {
    if part.is_empty() && allow_empty {
        return Ok(());
    }
    if let Some(c) = part.chars().find(|c| matches!(c, '+' | '#' | '\0')) {
        return Err(format!(
            "{part:?} holds {c:?}, which MQTT keeps for wildcards"
        ));
    }
    if part.starts_with('/') || part.ends_with('/') || part.contains("//") {
        return Err(format!("{part:?} has an empty topic level"));
    }
    if part.len() > 200 {
        return Err(format!(
            "{} bytes is too long for a topic prefix",
            part.len()
        ));
    }
    Ok(())
}

/// A broker address with the topic prefix: `mqtt://HOST[:PORT][/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttUrl {
    /// TLS (`mqtts://`).
    pub tls: bool,
    /// Host name or address (an IPv6 address without its brackets).
    pub host: String,
    /// Port: 1883 for `mqtt://`, 8883 for `mqtts://` unless given.
    pub port: u16,
    /// Topic prefix; `lookout` unless given.
    pub prefix: String,
}

impl MqttUrl {
    /// Parses the address; the error says which part is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(rest) = text.strip_prefix("mqtt://") {
            (false, rest)
        } else if let Some(rest) = text.strip_prefix("mqtts://") {
            (true, rest)
        } else {
            return Err(format!(
                "{text:?} is not an MQTT address: expected mqtt://HOST[:PORT][/PREFIX] or mqtts://..."
            ));
        };
        let (authority, prefix) = match rest.split_once('/') {
            Some((a, p)) => (a, p),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(format!(
                "{text:?} holds credentials; put them in the file named by [mqtt] credentials_file, not on a command line"
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{text:?}: the IPv6 address has no closing `]`"))?;
            if !after.is_empty() && !after.starts_with(':') {
                return Err(format!("{text:?}: {after:?} after the IPv6 address"));
            }
            (host, after.strip_prefix(':'))
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{text:?} names no host"));
        }
        if let Some(c) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':')))
        {
            return Err(format!("{text:?}: the host holds {c:?}"));
        }
        let port = match port {
            None => {
                if tls {
                    8883
                } else {
                    1883
                }
            }
            Some(p) => match p.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(format!("{text:?}: port {p:?} is not a number in 1..=65535")),
            },
        };
        let prefix = prefix.trim_end_matches('/');
        check_topic_part(prefix, true).map_err(|e| format!("{text:?}: topic prefix {e}"))?;
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
            prefix: if prefix.is_empty() {
                "lookout".to_owned()
            } else {
                prefix.to_owned()
            },
        })
    }
}

impl std::fmt::Display for MqttUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(
                f,
                "{scheme}://[{}]:{}/{}",
                self.host, self.port, self.prefix
            )
        } else {
            write!(f, "{scheme}://{}:{}/{}", self.host, self.port, self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_defaults() {
        let u = MqttUrl::parse("mqtt://broker.lan").expect("parses");
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.prefix.as_str()),
            (false, "broker.lan", 1883, "lookout")
        );
        let u = MqttUrl::parse("mqtts://10.0.0.2:8884/home/cams/").expect("parses");
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.prefix.as_str()),
            (true, "10.0.0.2", 8884, "home/cams")
        );
        assert_eq!(u.to_string(), "mqtts://10.0.0.2:8884/home/cams");
        let u = MqttUrl::parse("mqtt://[::1]:1999/x").expect("parses");
        assert_eq!((u.host.as_str(), u.port), ("::1", 1999));
        assert_eq!(MqttUrl::parse("mqtts://h").expect("parses").port, 8883);
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        let err = |s: &str| MqttUrl::parse(s).expect_err(s);
        assert!(err("http://h").contains("not an MQTT address"));
        assert!(err("mqtt://").contains("names no host"));
        assert!(err("mqtt://h:0").contains("port \"0\""));
        assert!(err("mqtt://h:99999").contains("not a number in 1..=65535"));
        assert!(err("mqtt://h:x").contains("port \"x\""));
        assert!(err("mqtt://u:pw@h").contains("credentials_file"));
        assert!(err("mqtt://h/a/#").contains("wildcards"));
        assert!(err("mqtt://h/a//b").contains("empty topic level"));
        assert!(err("mqtt://[::1/x").contains("closing"));
        assert!(err("mqtt://[::1]junk/x").contains("after the IPv6 address"));
        assert!(err("mqtt://h h").contains("host holds ' '"));
    }

    #[test]
    fn fields_are_checked_by_name() {
        let field = |c: MqttConfig| c.check().expect_err("fails").field;
        assert_eq!(
            field(MqttConfig {
                device: Some("kitchen cam".into()),
                ..MqttConfig::default()
            }),
            "device"
        );
        assert_eq!(
            field(MqttConfig {
                url: Some("mqtt://h:70000".into()),
                ..MqttConfig::default()
            }),
            "url"
        );
        assert_eq!(
            field(MqttConfig {
                queue_events: 0,
                ..MqttConfig::default()
            }),
            "queue_events"
        );
        assert_eq!(
            field(MqttConfig {
                stats_interval_s: u64::MAX,
                ..MqttConfig::default()
            }),
            "stats_interval_s"
        );
        assert_eq!(
            field(MqttConfig {
                keep_alive_s: 1,
                ..MqttConfig::default()
            }),
            "keep_alive_s"
        );
        assert_eq!(
            field(MqttConfig {
                discovery_prefix: "ha/+".into(),
                ..MqttConfig::default()
            }),
            "discovery_prefix"
        );
        MqttConfig::default().check().expect("defaults hold");
    }
}
