//! Network cameras the tests own, on 127.0.0.1: an MJPEG-over-HTTP server and an RTSP server
//! streaming H.264 over the RTSP connection (RFC 2326 interleaved RTP, RFC 6184 payloads), both
//! speaking the protocol as IP cameras do, both stopped and started again on the same port to
//! make a camera go away and come back.

use base64::Engine as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A server on a thread: accepts connections until stopped, each served on its own thread.
pub struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(
        port: u16,
        serve: impl Fn(TcpStream, u16, &AtomicBool) + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the camera server");
        let port = listener.local_addr().expect("address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let serve = Arc::new(serve);
        let thread_stop = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut connections = Vec::new();
            while !thread_stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).expect("blocking");
                        let serve = serve.clone();
                        let stop = thread_stop.clone();
                        connections.push(std::thread::spawn(move || serve(stream, port, &stop)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            // The listener closes here; the connections end at their next write.
            for c in connections {
                let _ = c.join();
            }
        });
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops listening and ends every connection, as a camera that loses power.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.halt();
    }
}

/// JPEG files, in name order.
pub fn jpegs(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("frames")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read(p).expect("jpeg"))
        .collect()
}

/// An MJPEG camera at `http://127.0.0.1:PORT/stream` (port 0: any free one): the `frames`
/// in a loop at `fps`, each part with its Content-Length as most cameras send it, or without
/// (`with_length` false) as `mjpg-streamer` and ESP32 firmwares do; with `login`
/// (`user:password`), a request without it is answered 401.
pub fn mjpeg(
    port: u16,
    frames: Vec<Vec<u8>>,
    fps: f64,
    with_length: bool,
    login: Option<&'static str>,
) -> Server {
    let frames = Arc::new(frames);
    Server::start(port, move |stream, _, stop| {
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut line = String::new();
        let mut authorized = login.is_none();
        // The request head.
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if line == "\r\n" {
                break;
            }
            if let (Some(l), Some((name, value))) = (login, line.split_once(':')) {
                authorized |=
                    name.eq_ignore_ascii_case("authorization") && value.trim() == basic(l);
            }
            line.clear();
        }
        let mut out = stream;
        if !authorized {
            let _ = out.write_all(
                b"HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"cam\"\r\n\r\n",
            );
            return;
        }
        let _ = out.write_all(
            b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=lookoutframe\r\n\r\n",
        );
        let period = Duration::from_secs_f64(1.0 / fps);
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            let jpeg = &frames[n % frames.len()];
            let head = if with_length {
                format!(
                    "--lookoutframe\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                    jpeg.len()
                )
            } else {
                "--lookoutframe\r\nContent-Type: image/jpeg\r\n\r\n".to_owned()
            };
            let sent = out
                .write_all(head.as_bytes())
                .and_then(|()| out.write_all(jpeg))
                .and_then(|()| out.write_all(b"\r\n"));
            if sent.is_err() {
                return;
            }
            n += 1;
            std::thread::sleep(period);
        }
    })
}

/// A raw H.264 stream split into frames (one slice each): the parameter sets and the frames'
/// NAL units, start codes removed.
pub struct H264Clip {
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
    pub frames: Vec<Vec<u8>>,
}

impl H264Clip {
    pub fn load(path: &Path) -> Self {
        let data = std::fs::read(path).expect("clip");
        let mut starts = Vec::new();
        let mut i = 0;
        while i + 3 <= data.len() {
            if data[i..i + 3] == [0, 0, 1] {
                starts.push(i + 3);
                i += 3;
            } else {
                i += 1;
            }
        }
        let mut clip = H264Clip {
            sps: Vec::new(),
            pps: Vec::new(),
            frames: Vec::new(),
        };
        for (k, &start) in starts.iter().enumerate() {
            let mut end = starts.get(k + 1).map_or(data.len(), |&next| next - 3);
            // A four-byte start code leaves a zero at the end of the previous unit.
            while end > start && data[end - 1] == 0 {
                end -= 1;
            }
            let nal = data[start..end].to_vec();
            match nal[0] & 0x1f {
                7 => clip.sps = nal,
                8 => clip.pps = nal,
                1 | 5 => clip.frames.push(nal),
                other => panic!("unexpected NAL unit type {other} in {}", path.display()),
            }
        }
        assert!(!clip.sps.is_empty() && !clip.pps.is_empty() && !clip.frames.is_empty());
        clip
    }
}

/// What the RTSP server's SDP says its video is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RtspCodec {
    H264,
    /// Offered as H.265 (the frames are not sent: the client must refuse it at SETUP time).
    H265,
}

/// The `Authorization` value HTTP Basic authentication sends for `user:password`.
pub fn basic(user_password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_password)
    )
}

/// An RTSP camera at `rtsp://127.0.0.1:PORT/cam` (port 0: any free one) playing `clip` in a
/// loop at `fps`, over interleaved TCP only; with `login` (`user:password`), every request
/// without it is answered 401 with a Basic challenge, as cameras do.
pub fn rtsp(
    port: u16,
    clip: Arc<H264Clip>,
    fps: f64,
    codec: RtspCodec,
    login: Option<&'static str>,
) -> Server {
    Server::start(port, move |stream, port, stop| {
        let _ = serve_rtsp(stream, port, &clip, fps, codec, login, stop);
    })
}

struct Request {
    method: String,
    cseq: String,
    authorization: String,
}

/// Reads one RTSP request, skipping interleaved frames the client sends (RTCP); `None` when
/// nothing came within the stream's read timeout.
fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    loop {
        let peek = match reader.fill_buf() {
            Ok([]) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(bytes) => bytes[0],
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        // A frame or request has begun: the rest of it is read whole, however it was split in
        // segments; then the caller's timeout again.
        let pacing = reader.get_ref().read_timeout()?;
        reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(5)))?;
        if peek == b'$' {
            let mut head = [0; 4];
            reader.read_exact(&mut head)?;
            let mut skip = vec![0; u16::from_be_bytes([head[2], head[3]]) as usize];
            reader.read_exact(&mut skip)?;
            reader.get_ref().set_read_timeout(pacing)?;
            continue;
        }
        let mut method = String::new();
        let mut cseq = String::new();
        let mut authorization = String::new();
        let mut length = 0;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let text = line.trim_end();
            if text.is_empty() {
                break;
            }
            if method.is_empty() {
                method = text.split(' ').next().unwrap_or_default().to_owned();
            } else if let Some((name, value)) = text.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "cseq" => cseq = value.trim().to_owned(),
                    "authorization" => authorization = value.trim().to_owned(),
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        return Ok(Some(Request {
            method,
            cseq,
            authorization,
        }));
    }
}

fn serve_rtsp(
    stream: TcpStream,
    port: u16,
    clip: &H264Clip,
    fps: f64,
    codec: RtspCodec,
    login: Option<&str>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let base = format!("rtsp://127.0.0.1:{port}/cam/");
    let session = "4f7e1a2b";
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut playing = false;
    let period = Duration::from_secs_f64(1.0 / fps);
    let mut next_frame = Instant::now();
    let mut n: u32 = 0;
    let mut seq: u16 = 0;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let wait = if playing {
            next_frame.saturating_duration_since(Instant::now())
        } else {
            Duration::from_millis(50)
        };
        reader
            .get_ref()
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        if let Some(request) = read_request(&mut reader)? {
            if login.is_some_and(|l| request.authorization != basic(l)) {
                out.write_all(
                    format!(
                        "RTSP/1.0 401 Unauthorized\r\nCSeq: {}\r\nWWW-Authenticate: Basic realm=\"lookout test camera\"\r\n\r\n",
                        request.cseq
                    )
                    .as_bytes(),
                )?;
                continue;
            }
            let mut head = format!("RTSP/1.0 200 OK\r\nCSeq: {}\r\n", request.cseq);
            let mut body = String::new();
            match request.method.as_str() {
                "OPTIONS" => head.push_str(
                    "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER\r\n",
                ),
                "DESCRIBE" => {
                    let media = match codec {
                        RtspCodec::H264 => format!(
                            "a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;profile-level-id={};sprop-parameter-sets={},{}\r\n",
                            clip.sps[1..4].iter().map(|b| format!("{b:02X}")).collect::<String>(),
                            b64(&clip.sps),
                            b64(&clip.pps)
                        ),
                        RtspCodec::H265 => "a=rtpmap:96 H265/90000\r\n".to_owned(),
                    };
                    body = format!(
                        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=lookout test camera\r\nt=0 0\r\na=control:*\r\nm=video 0 RTP/AVP 96\r\n{media}a=control:trackID=0\r\n"
                    );
                    head.push_str(&format!(
                        "Content-Base: {base}\r\nContent-Type: application/sdp\r\n"
                    ));
                }
                "SETUP" => head.push_str(&format!(
                    "Transport: RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=1A2B3C4D\r\nSession: {session};timeout=60\r\n"
                )),
                "PLAY" => {
                    head.push_str(&format!(
                        "Session: {session}\r\nRTP-Info: url={base}trackID=0;seq={seq};rtptime={}\r\n",
                        timestamp(n, fps)
                    ));
                    playing = true;
                    next_frame = Instant::now();
                }
                "TEARDOWN" => {
                    head.push_str(&format!("Session: {session}\r\n"));
                    out.write_all(format!("{head}\r\n").as_bytes())?;
                    return Ok(());
                }
                "GET_PARAMETER" => head.push_str(&format!("Session: {session}\r\n")),
                _ => {
                    head = format!("RTSP/1.0 501 Not Implemented\r\nCSeq: {}\r\n", request.cseq)
                }
            }
            if !body.is_empty() {
                head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            out.write_all(format!("{head}\r\n{body}").as_bytes())?;
            continue;
        }
        if playing && Instant::now() >= next_frame {
            let index = n as usize % clip.frames.len();
            let mut units: Vec<&[u8]> = Vec::new();
            if index == 0 {
                units.push(&clip.sps);
                units.push(&clip.pps);
            }
            units.push(&clip.frames[index]);
            let ts = timestamp(n, fps);
            let count = units.len();
            for (k, unit) in units.into_iter().enumerate() {
                for (payload, last_of_unit) in packetize(unit) {
                    let marker = k + 1 == count && last_of_unit;
                    send_rtp(&mut out, seq, ts, marker, &payload)?;
                    seq = seq.wrapping_add(1);
                }
            }
            n += 1;
            next_frame += period;
        }
    }
}

fn timestamp(n: u32, fps: f64) -> u32 {
    (f64::from(n) * 90_000.0 / fps) as u32
}

/// RFC 6184 payloads of one NAL unit: itself when small, else FU-A fragments; each with
/// whether it ends the unit.
fn packetize(nal: &[u8]) -> Vec<(Vec<u8>, bool)> {
    const MAX: usize = 1400;
    if nal.len() <= MAX {
        return vec![(nal.to_vec(), true)];
    }
    let header = nal[0];
    let body = &nal[1..];
    let chunks: Vec<&[u8]> = body.chunks(MAX - 2).collect();
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let start = if i == 0 { 0x80 } else { 0 };
            let end = if i + 1 == chunks.len() { 0x40 } else { 0 };
            let mut p = vec![(header & 0xE0) | 28, start | end | (header & 0x1F)];
            p.extend_from_slice(chunk);
            (p, i + 1 == chunks.len())
        })
        .collect()
}

fn send_rtp(
    out: &mut TcpStream,
    seq: u16,
    ts: u32,
    marker: bool,
    payload: &[u8],
) -> std::io::Result<()> {
    let mut packet = vec![0x80, if marker { 0x80 | 96 } else { 96 }];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&ts.to_be_bytes());
    packet.extend_from_slice(&0x1A2B_3C4Du32.to_be_bytes());
    packet.extend_from_slice(payload);
    let mut frame = vec![b'$', 0];
    frame.extend_from_slice(&(packet.len() as u16).to_be_bytes());
    frame.extend_from_slice(&packet);
    out.write_all(&frame)
}

/// A web server answering every request with an HTML page, as a camera's configuration page
/// does when given the wrong path.
pub fn http_page(port: u16) -> Server {
    Server::start(port, |stream, _, _| {
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if line == "\r\n" {
                break;
            }
            line.clear();
        }
        let body = "<html><body>Camera settings</body></html>";
        let mut out = stream;
        let _ = out.write_all(
            format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    })
}
