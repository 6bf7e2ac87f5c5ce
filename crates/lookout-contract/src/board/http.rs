//! The board profile's `[http]` table: the live preview and the API lookout serves
//! (`lookout::results::http`), off unless turned on here or by `run --http`.

use crate::error::FieldError;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The web preview and API: the `[http]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Serve at all (`run --http` turns it on too).
    pub enabled: bool,
    /// Where to listen: `HOST:PORT`, or a port alone for 127.0.0.1. Only this board's own
    /// programs reach 127.0.0.1; `0.0.0.0:PORT` is every network the board is on.
    pub listen: String,
    /// A file holding the bearer token requests from other machines must carry, and that
    /// `POST /api/command` needs from anywhere. Without one, only this board may read, and
    /// nobody may command.
    pub token_file: Option<PathBuf>,
    /// HTTP connections served at once; more are answered 503 and closed.
    pub max_clients: usize,
    /// Frames per second of the preview, at most.
    pub preview_fps: f64,
    /// Width of the preview's frames at most, in pixels (taller frames: their height).
    pub preview_size: u32,
    /// JPEG quality of the preview, 1..=100.
    pub jpeg_quality: u8,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "127.0.0.1:8080".into(),
            token_file: None,
            max_clients: 8,
            preview_fps: 5.0,
            preview_size: 640,
            jpeg_quality: 70,
        }
    }
}

impl HttpConfig {
    /// Checks the values, naming the field that is wrong.
    pub fn check(&self) -> Result<(), FieldError> {
        parse_listen(&self.listen).map_err(|e| FieldError::new("listen", e))?;
        // Each client is a descriptor, under a process limit of 1024 by default.
        if !(1..=256).contains(&self.max_clients) {
            return Err(FieldError::new(
                "max_clients",
                format!("{} is not in 1..=256", self.max_clients),
            ));
        }
        if !(self.preview_fps > 0.0 && self.preview_fps <= 30.0) {
            return Err(FieldError::new(
                "preview_fps",
                format!("{} is not in (0, 30]", self.preview_fps),
            ));
        }
        if !(16..=4096).contains(&self.preview_size) {
            return Err(FieldError::new(
                "preview_size",
                format!("{} is not in 16..=4096 pixels", self.preview_size),
            ));
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return Err(FieldError::new(
                "jpeg_quality",
                format!("{} is not in 1..=100", self.jpeg_quality),
            ));
        }
        Ok(())
    }
}

/// Reads a listening address: `HOST:PORT` (`[IPv6]:PORT`), or a port alone for 127.0.0.1.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        format!(
            "{text:?} is not an address to listen on: PORT, IP:PORT or [IPv6]:PORT (no host names)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_fields() {
        assert_eq!(
            parse_listen("8080").expect("port"),
            "127.0.0.1:8080".parse().expect("addr")
        );
        assert_eq!(
            parse_listen("[::]:81").expect("v6"),
            "[::]:81".parse().expect("addr")
        );
        assert!(parse_listen("localhost:80")
            .expect_err("names")
            .contains("no host names"));
        let field = |c: HttpConfig| c.check().expect_err("fails").field;
        assert_eq!(
            field(HttpConfig {
                listen: "x".into(),
                ..HttpConfig::default()
            }),
            "listen"
        );
        assert_eq!(
            field(HttpConfig {
                max_clients: 0,
                ..HttpConfig::default()
            }),
            "max_clients"
        );
        assert_eq!(
            field(HttpConfig {
                preview_fps: f64::NAN,
                ..HttpConfig::default()
            }),
            "preview_fps"
        );
        HttpConfig::default().check().expect("defaults hold");
    }
}
