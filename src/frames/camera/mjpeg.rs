//! MJPEG over HTTP: `--source http://HOST[:PORT]/PATH`, the stream IP cameras, ESP32-CAM
//! boards and `mjpg-streamer` serve: one `multipart/x-mixed-replace` response whose parts are
//! JPEG frames. A URL answering a single `image/jpeg` (a camera's snapshot URL) works too: it
//! is asked again for every frame.
//!
//! The request is HTTP/1.0 on a plain socket, so no server may answer in chunks (HTTP/1.0 has
//! none). Every read is bounded by the deadline of the open or grab it serves, not only by a
//! per-read timeout, so a camera that trickles a byte now and then is noticed as surely as one
//! that goes silent. The response head is parsed by `httparse`; the part boundaries are found
//! here, with or without a `Content-Length` per part, and with or without the leading `--`
//! that some servers leave out. A part that does not decode (a corrupt frame, as some ESP32
//! firmwares send) is skipped, not taken for a lost camera. Credentials come from the URL's
//! user part (`http://user:password@host/`) as HTTP Basic authentication; they never appear in
//! logs or events. Digest authentication is not spoken.

use super::net::{NetUrl, CONNECT_TIMEOUT};
use super::{CaptureDevice, Error, Result};
use image::RgbImage;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Largest JPEG part accepted (a 4K frame at high quality is about 3 MB); beyond it the stream
/// is taken for garbage, not buffered.
pub const MAX_PART_BYTES: usize = 16 << 20;
/// Largest response or part head accepted.
const MAX_HEAD_BYTES: usize = 16 << 10;
/// Largest frame side decoded (4K is 3840x2160): a picture claiming more is refused before
/// anything is allocated for it. 4096 x 4096 RGB is 48 MiB.
pub const MAX_SIDE: u32 = 4096;

/// An MJPEG-over-HTTP camera.
pub struct MjpegHttp {
    url: NetUrl,
    body: Option<Body>,
    parts: u64,
}

enum Body {
    /// A multipart stream: parts follow one another on the open connection.
    Stream {
        reader: BufReader<Deadlined>,
        boundary: Vec<u8>,
        /// Whether the boundary line of the next part was already read (it ends the previous
        /// part when parts carry no length).
        at_part: bool,
    },
    /// A snapshot URL: one JPEG per request. The first answer is kept for the first grab.
    Snapshot(Option<Vec<u8>>),
}

/// A socket whose reads fail once `deadline` has passed, however the bytes trickle in.
pub struct Deadlined {
    stream: TcpStream,
    deadline: Instant,
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

impl MjpegHttp {
    /// A camera at `url` (an `http://` URL, checked by [`NetUrl::parse`]).
    pub fn new(url: NetUrl) -> Self {
        Self {
            url,
            body: None,
            parts: 0,
        }
    }

    /// Sends the request and reads the response head by `deadline`; returns the reader at the
    /// body and the head's content type.
    fn request(&self, deadline: Instant) -> Result<(BufReader<Deadlined>, String)> {
        let device = self.url.to_string();
        let open_err = |message: String| Error::Open {
            device: device.clone(),
            message,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let stream = self
            .url
            .connect(CONNECT_TIMEOUT.min(left).max(Duration::from_millis(1)))
            .map_err(open_err)?;
        stream
            .set_write_timeout(Some(CONNECT_TIMEOUT))
            .map_err(|e| open_err(format!("setting timeouts: {e}")))?;
        let mut request = format!(
            "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: lookout/{}\r\nAccept: multipart/x-mixed-replace, image/jpeg\r\n",
            self.url.path_and_query(),
            self.url.host_header(),
            env!("CARGO_PKG_VERSION")
        );
        if let Some(basic) = self.url.basic_auth() {
            request.push_str(&format!("Authorization: Basic {basic}\r\n"));
        }
        request.push_str("\r\n");
        (&stream)
            .write_all(request.as_bytes())
            .map_err(|e| open_err(format!("sending the request: {e}")))?;
        let mut reader = BufReader::new(Deadlined { stream, deadline });
        let head =
            read_head(&mut reader).map_err(|e| open_err(format!("reading the answer: {e}")))?;
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(open_err("the answer's head is cut short".into()))
            }
            Err(e) => return Err(open_err(format!("not an HTTP answer: {e}"))),
        }
        let code = response.code.unwrap_or(0);
        if code == 401 || code == 403 {
            return Err(open_err(format!(
                "HTTP {code}: the camera refused {} (lookout sends Basic authentication from the URL's user:password)",
                if self.url.basic_auth().is_some() {
                    "the credentials"
                } else {
                    "a request without credentials"
                }
            )));
        }
        if code != 200 {
            return Err(open_err(format!(
                "HTTP {code} {}",
                response.reason.unwrap_or_default()
            )));
        }
        let content_type = header(response.headers, "content-type").unwrap_or_default();
        Ok((reader, content_type))
    }

    /// The next picture's bytes, by `deadline`.
    fn next_jpeg(&mut self, deadline: Instant) -> std::result::Result<Vec<u8>, String> {
        match self.body.as_mut() {
            None => Err("not open".into()),
            Some(Body::Snapshot(first)) => {
                if let Some(bytes) = first.take() {
                    return Ok(bytes);
                }
                if Instant::now() >= deadline {
                    return Err("no whole frame within the grab timeout".into());
                }
                let (mut reader, _) = self.request(deadline).map_err(|e| match e {
                    // The device is named by the caller's error already.
                    Error::Open { message, .. } => message,
                    other => other.to_string(),
                })?;
                read_to_end_capped(&mut reader)
            }
            Some(Body::Stream {
                reader,
                boundary,
                at_part,
            }) => {
                reader.get_mut().deadline = deadline;
                next_part(reader, boundary, at_part)
            }
        }
    }
}

impl CaptureDevice for MjpegHttp {
    fn open(&mut self) -> Result<String> {
        self.body = None;
        // The connection within CONNECT_TIMEOUT, then the answer within a grab's timeout.
        let deadline = Instant::now() + CONNECT_TIMEOUT + super::GRAB_TIMEOUT;
        let (mut reader, content_type) = self.request(deadline)?;
        let kind = content_type.to_ascii_lowercase();
        let device = self.url.to_string();
        if kind.starts_with("multipart/") {
            let boundary = boundary_of(&content_type).ok_or_else(|| Error::Open {
                device: device.clone(),
                message: format!("content type {content_type:?} names no boundary"),
            })?;
            self.body = Some(Body::Stream {
                reader,
                boundary: boundary.into_bytes(),
                at_part: false,
            });
            Ok("MJPEG stream over HTTP".into())
        } else if kind.starts_with("image/jpeg") || kind.is_empty() {
            let first = read_to_end_capped(&mut reader).map_err(|message| Error::Open {
                device: device.clone(),
                message,
            })?;
            self.body = Some(Body::Snapshot(Some(first)));
            Ok("JPEG snapshots over HTTP, asked for each frame".into())
        } else {
            Err(Error::Codec {
                device,
                message: format!(
                    "the answer is {content_type:?}; lookout reads MJPEG (multipart/x-mixed-replace of image/jpeg) or single JPEG images over HTTP"
                ),
            })
        }
    }

    fn grab(&mut self, timeout: Duration) -> Result<RgbImage> {
        let deadline = Instant::now() + timeout;
        let mut last_bad = None;
        loop {
            let bytes = match self.next_jpeg(deadline) {
                Ok(bytes) => bytes,
                Err(message) => {
                    let message = match last_bad {
                        Some(bad) => format!("{message} (and before that, {bad})"),
                        None => message,
                    };
                    return Err(Error::Frame {
                        device: self.url.to_string(),
                        message,
                    });
                }
            };
            self.parts += 1;
            match decode_jpeg(&bytes) {
                Ok(picture) => return Ok(picture),
                // A snapshot URL is asked once per frame: a bad answer is the frame's error,
                // not a reason to ask again at once.
                Err(e) if matches!(self.body, Some(Body::Snapshot(_))) => {
                    return Err(Error::Frame {
                        device: self.url.to_string(),
                        message: format!("frame {}: {e}", self.parts),
                    })
                }
                Err(e) => {
                    tracing::debug!("{}: frame {} skipped: {e}", self.url, self.parts);
                    last_bad = Some(format!("frame {}: {e}", self.parts));
                }
            }
        }
    }

    fn close(&mut self) {
        self.body = None;
    }

    fn describe(&self) -> String {
        self.url.to_string()
    }
}

/// Decodes one JPEG frame, refusing sides over [`MAX_SIDE`] before allocating for them.
pub fn decode_jpeg(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    let mut reader =
        image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Jpeg);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    reader.limits(limits);
    let image = reader
        .decode()
        .map_err(|e| format!("not a JPEG picture ({} bytes): {e}", bytes.len()))?;
    Ok(image.into_rgb8())
}

/// The value of header `name` (any case).
fn header(headers: &[httparse::Header<'_>], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
}

/// The `boundary` parameter of a multipart content type, unquoted.
fn boundary_of(content_type: &str) -> Option<String> {
    content_type.split(';').find_map(|param| {
        let (key, value) = param.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim().trim_matches('"');
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// One line (up to and including `\n`), at most `cap` bytes.
fn read_line(reader: &mut impl BufRead, cap: usize) -> std::result::Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let read = reader
        .take(cap as u64)
        .read_until(b'\n', &mut line)
        .map_err(describe_io)?;
    if read == 0 {
        return Err("the camera closed the connection".into());
    }
    Ok(line)
}

/// The response head, up to the blank line.
fn read_head(reader: &mut impl BufRead) -> std::result::Result<Vec<u8>, String> {
    let mut head = Vec::new();
    loop {
        let line = read_line(reader, MAX_HEAD_BYTES)?;
        head.extend_from_slice(&line);
        if line == b"\r\n" || line == b"\n" {
            return Ok(head);
        }
        if head.len() > MAX_HEAD_BYTES {
            return Err(format!("the head is over {MAX_HEAD_BYTES} bytes"));
        }
    }
}

fn read_to_end_capped(reader: &mut impl Read) -> std::result::Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_PART_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(describe_io)?;
    if bytes.len() > MAX_PART_BYTES {
        return Err(format!("a picture is over {MAX_PART_BYTES} bytes"));
    }
    Ok(bytes)
}

fn describe_io(e: std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            "no whole frame within the grab timeout".into()
        }
        std::io::ErrorKind::UnexpectedEof => "the camera closed the connection".into(),
        _ => e.to_string(),
    }
}

/// Whether `line` is a boundary line of `boundary` as declared: `--BOUNDARY` (RFC 2046),
/// `--BOUNDARY--` (the last), or `BOUNDARY` alone (servers that declare the dashes as part of
/// the boundary, or leave them out).
fn is_boundary(line: &[u8], boundary: &[u8]) -> bool {
    let line = line.trim_ascii();
    let matches = |l: &[u8]| l == boundary || l.strip_prefix(b"--") == Some(boundary);
    matches(line) || line.strip_suffix(b"--").is_some_and(matches)
}

/// Reads the next part's JPEG bytes from a multipart stream.
fn next_part(
    reader: &mut BufReader<Deadlined>,
    boundary: &[u8],
    at_part: &mut bool,
) -> std::result::Result<Vec<u8>, String> {
    // The boundary line (whatever precedes it, such as a preamble, is skipped).
    let mut skipped = 0;
    while !*at_part {
        let line = read_line(reader, MAX_HEAD_BYTES)?;
        if is_boundary(&line, boundary) {
            *at_part = true;
        } else {
            skipped += line.len();
            if skipped > MAX_PART_BYTES {
                return Err(format!(
                    "no part boundary \"--{}\" in {skipped} bytes",
                    String::from_utf8_lossy(boundary)
                ));
            }
        }
    }
    *at_part = false;
    // The part's head.
    let mut length = None;
    let mut head_bytes = 0;
    loop {
        let line = read_line(reader, MAX_HEAD_BYTES)?;
        head_bytes += line.len();
        if head_bytes > MAX_HEAD_BYTES {
            return Err(format!("a part's head is over {MAX_HEAD_BYTES} bytes"));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            break;
        }
        if let Some((name, value)) = text.split_once(':') {
            let value = value.trim();
            if name.trim().eq_ignore_ascii_case("content-length") {
                let n: usize = value
                    .parse()
                    .map_err(|_| format!("a part's Content-Length {value:?} is not a number"))?;
                if n > MAX_PART_BYTES {
                    return Err(format!("a part of {n} bytes is over {MAX_PART_BYTES}"));
                }
                length = Some(n);
            }
        }
    }
    if let Some(n) = length {
        let mut bytes = vec![0; n];
        reader.read_exact(&mut bytes).map_err(describe_io)?;
        return Ok(bytes);
    }
    // No length: the part runs to the next boundary line, whose line break belongs to it.
    let mut bytes = Vec::new();
    loop {
        let line = read_line(reader, MAX_PART_BYTES)?;
        if is_boundary(&line, boundary) {
            *at_part = true;
            if bytes.ends_with(b"\r\n") {
                bytes.truncate(bytes.len() - 2);
            } else if bytes.ends_with(b"\n") {
                bytes.truncate(bytes.len() - 1);
            }
            return Ok(bytes);
        }
        bytes.extend_from_slice(&line);
        if bytes.len() > MAX_PART_BYTES {
            return Err(format!("a part is over {MAX_PART_BYTES} bytes"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_are_read_as_servers_write_them() {
        assert_eq!(
            boundary_of("multipart/x-mixed-replace; boundary=frame").as_deref(),
            Some("frame")
        );
        assert_eq!(
            boundary_of("multipart/x-mixed-replace;boundary=\"--myboundary\"").as_deref(),
            Some("--myboundary")
        );
        assert_eq!(boundary_of("multipart/x-mixed-replace"), None);
        assert!(is_boundary(b"--frame\r\n", b"frame"));
        assert!(is_boundary(b"frame\r\n", b"frame"));
        assert!(is_boundary(b"--frame--\r\n", b"frame"));
        assert!(!is_boundary(b"--framex\r\n", b"frame"));
        // Declared with its dashes: written with two more (RFC 2046) or as declared.
        assert!(is_boundary(b"----myboundary\r\n", b"--myboundary"));
        assert!(is_boundary(b"--edge--\r\n", b"edge--"));
        assert!(is_boundary(b"--myboundary\r\n", b"--myboundary"));
        assert!(!is_boundary(b"myboundary\r\n", b"--myboundary"));
    }

    #[test]
    fn an_oversized_jpeg_is_refused_by_its_header() {
        // A real JPEG whose frame header (SOF0) is made to claim 5000 x 3000 pixels: 45 MB of
        // RGB, which image's own default limit (512 MiB) would let through.
        let mut jpeg = jpeg_bytes();
        let sof = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("SOF0");
        jpeg[sof + 5..sof + 9].copy_from_slice(&[0x0B, 0xB8, 0x13, 0x88]);
        let err = decode_jpeg(&jpeg).expect_err("refused");
        assert!(err.contains("limit"), "{err}");
        assert!(decode_jpeg(&jpeg_bytes()).is_ok());
    }

    /// A server on 127.0.0.1 that answers each connection with the next of `answers`.
    fn canned(answers: Vec<Vec<u8>>) -> NetUrl {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for answer in answers {
                let Ok((mut stream, _)) = listener.accept() else {
                    return;
                };
                let mut head = [0; 1024];
                let _ = std::io::Read::read(&mut stream, &mut head);
                let _ = stream.write_all(&answer);
            }
        });
        NetUrl::parse(&format!("http://127.0.0.1:{port}/video")).expect("url")
    }

    fn jpeg_bytes() -> Vec<u8> {
        let mut jpeg = Vec::new();
        image::RgbImage::from_pixel(16, 8, image::Rgb([200, 40, 40]))
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .expect("encode");
        jpeg
    }

    #[test]
    fn refusals_garbage_and_snapshots_are_told_apart() {
        let mut camera = MjpegHttp::new(canned(vec![
            b"HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"cam\"\r\n\r\n".to_vec(),
        ]));
        let err = camera.open().expect_err("refused").to_string();
        assert!(
            err.contains("HTTP 401: the camera refused a request without credentials"),
            "{err}"
        );

        let mut garbage =
            b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=b\r\n\r\n--b\r\n\r\n".to_vec();
        garbage.extend_from_slice(&[0x55; 300]);
        garbage.extend_from_slice(b"\r\n--b\r\n");
        let mut camera = MjpegHttp::new(canned(vec![garbage]));
        assert_eq!(camera.open().expect("opens"), "MJPEG stream over HTTP");
        let err = camera
            .grab(Duration::from_secs(5))
            .expect_err("garbage")
            .to_string();
        assert!(
            err.contains("frame 1: not a JPEG picture (300 bytes)"),
            "{err}"
        );

        let mut snapshot = format!(
            "HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            jpeg_bytes().len()
        )
        .into_bytes();
        snapshot.extend_from_slice(&jpeg_bytes());
        let mut camera = MjpegHttp::new(canned(vec![snapshot.clone(), snapshot]));
        assert!(camera.open().expect("opens").starts_with("JPEG snapshots"));
        for _ in 0..2 {
            let picture = camera.grab(Duration::from_secs(5)).expect("picture");
            assert_eq!(picture.dimensions(), (16, 8));
            assert!(picture.get_pixel(8, 4)[0] > 150);
        }
    }
}
