//! What the network cameras share: their URL (`http://` for MJPEG, `rtsp://` for H.264),
//! checked once when the source is opened, with the credentials kept out of every text lookout
//! prints.

use base64::Engine as _;
use std::fmt;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long an HTTP camera has to accept the connection (RTSP's whole start-up is bounded by
/// [`super::rtsp::OPEN_TIMEOUT`]).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether a `--source` text (or a board's camera `device`) names a network camera, rightly
/// or not: the URL's own check then says what is wrong with it.
pub fn is_network(spec: &str) -> bool {
    let spec = spec.to_ascii_lowercase();
    ["http://", "https://", "rtsp://", "rtsps://"]
        .iter()
        .any(|scheme| spec.starts_with(scheme))
}

/// Parts of key names whose values are secrets: cameras that take credentials in the query
/// (`?user=admin&pwd=...`) or the path (`/user=admin&password=...&channel=1`) rather than the
/// user part.
const SECRET_KEYS: [&str; 5] = ["pass", "pwd", "token", "secret", "key"];

fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|s| key.contains(s))
}

/// `text` with the values of secret `key=value` pairs (split at `&` and `;`) replaced by `***`.
fn hide_pairs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(['&', ';']).unwrap_or(rest.len());
        let (pair, tail) = rest.split_at(end);
        match pair.split_once('=') {
            Some((key, _)) if is_secret(key) => {
                out.push_str(key);
                out.push_str("=***");
            }
            _ => out.push_str(pair),
        }
        // The separator, if any, is kept.
        let mut chars = tail.chars();
        if let Some(sep) = chars.next() {
            out.push(sep);
        }
        rest = chars.as_str();
    }
    out
}

/// The schemes of network cameras.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// MJPEG (or JPEG snapshots) over HTTP.
    Http,
    /// RTSP, H.264 video.
    Rtsp,
}

/// A network camera's URL.
#[derive(Clone)]
pub struct NetUrl {
    url: url::Url,
    scheme: Scheme,
}

impl NetUrl {
    /// Parses `text`, which must be an `http://` or `rtsp://` URL with a host. `https://` and
    /// `rtsps://` are refused by name: lookout carries no TLS stack for cameras.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
        let scheme = match url.scheme() {
            "http" => Scheme::Http,
            "rtsp" => Scheme::Rtsp,
            "https" | "rtsps" => {
                return Err(format!(
                    "{}:// is not supported: cameras are read over http:// (MJPEG) or rtsp:// on the local network",
                    url.scheme()
                ))
            }
            other => {
                return Err(format!(
                    "scheme {other:?}: network cameras are http:// (MJPEG) or rtsp:// (H.264)"
                ))
            }
        };
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the URL names no host".into());
        }
        Ok(Self { url, scheme })
    }

    /// Which kind of camera.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The URL without its user part, which the protocol library takes separately
    /// ([`Self::credentials`]); its path and query as given.
    pub fn without_credentials(&self) -> url::Url {
        let mut url = self.url.clone();
        // Clearing the user part cannot fail on a URL with a host, which parse() requires.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url
    }

    /// `user` and `password` from the URL, percent-decoded.
    pub fn credentials(&self) -> Option<(String, String)> {
        if self.url.username().is_empty() && self.url.password().is_none() {
            return None;
        }
        Some((
            percent_decode(self.url.username()),
            percent_decode(self.url.password().unwrap_or_default()),
        ))
    }

    /// The `Authorization: Basic` value of the credentials.
    pub fn basic_auth(&self) -> Option<String> {
        let (user, password) = self.credentials()?;
        Some(base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    }

    /// The request target: path and query.
    pub fn path_and_query(&self) -> String {
        match self.url.query() {
            Some(q) => format!("{}?{q}", self.url.path()),
            None => self.url.path().to_owned(),
        }
    }

    /// The `Host` header: host, and port when not the scheme's default.
    pub fn host_header(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }

    /// A TCP connection to the camera, within `timeout` for each address the name resolves to.
    pub fn connect(&self, timeout: Duration) -> Result<TcpStream, String> {
        let host = self.url.host_str().unwrap_or_default();
        let port = self
            .url
            .port_or_known_default()
            .unwrap_or(match self.scheme {
                Scheme::Http => 80,
                Scheme::Rtsp => 554,
            });
        let addrs: Vec<_> = (host.trim_start_matches('[').trim_end_matches(']'), port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        let mut last = format!("{host} resolves to no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(stream) => return Ok(stream),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    last = format!("{addr} did not answer within {} s", timeout.as_secs_f64())
                }
                Err(e) => last = format!("connecting to {addr}: {e}"),
            }
        }
        Err(last)
    }
}

/// The URL with the password replaced by `***`: what logs, events and the console show.
impl fmt::Display for NetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.url.clone();
        if shown.password().is_some() {
            // Setting a password cannot fail on a URL that already has one.
            let _ = shown.set_password(Some("***"));
        }
        if let Some(query) = shown.query().map(hide_pairs) {
            shown.set_query(Some(&query));
        }
        let path = hide_pairs(shown.path());
        shown.set_path(&path);
        write!(f, "{shown}")
    }
}

impl fmt::Debug for NetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NetUrl({self})")
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_passwords_never_shown() {
        let url = NetUrl::parse("rtsp://admin:p%40ss@192.168.1.20:554/stream1").expect("url");
        assert_eq!(url.scheme(), Scheme::Rtsp);
        assert_eq!(url.to_string(), "rtsp://admin:***@192.168.1.20:554/stream1");
        assert_eq!(
            url.credentials(),
            Some(("admin".to_owned(), "p@ss".to_owned()))
        );
        assert_eq!(
            url.without_credentials().as_str(),
            "rtsp://192.168.1.20:554/stream1"
        );
        let foscam = NetUrl::parse("http://cam/cgi?usr=admin&pwd=secret&fps=5").expect("url");
        assert_eq!(foscam.to_string(), "http://cam/cgi?usr=admin&pwd=***&fps=5");
        let xmeye =
            NetUrl::parse("rtsp://h/user=admin&password=X1&channel=1&stream=0.sdp?real_stream")
                .expect("url");
        assert_eq!(
            xmeye.to_string(),
            "rtsp://h/user=admin&password=***&channel=1&stream=0.sdp?real_stream"
        );
        assert_eq!(
            NetUrl::parse("http://cam/a?api_key=K;user_pwd=P&x=1")
                .expect("url")
                .to_string(),
            "http://cam/a?api_key=***;user_pwd=***&x=1"
        );
        assert!(is_network("RTSP://cam/") && !is_network("cam/rtsp://"));
        let http = NetUrl::parse("http://cam.local:8080/video?fps=5").expect("url");
        assert_eq!(http.path_and_query(), "/video?fps=5");
        assert_eq!(http.host_header(), "cam.local:8080");
        assert_eq!(http.basic_auth(), None);
        assert_eq!(
            NetUrl::parse("http://u:p@h/").expect("url").basic_auth(),
            Some("dTpw".to_owned())
        );
        for (bad, why) in [
            ("https://cam/", "https:// is not supported"),
            ("ftp://cam/", "scheme \"ftp\""),
            ("rtsp://", "no host"),
            ("http//cam", "not a URL"),
        ] {
            let err = NetUrl::parse(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
