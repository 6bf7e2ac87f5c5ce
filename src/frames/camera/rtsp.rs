//! RTSP cameras: `--source rtsp://[user:password@]HOST[:PORT]/PATH`, the stream almost every
//! IP camera and NVR serves. The session (DESCRIBE, SETUP, PLAY, RTP over the RTSP connection,
//! authentication) is `retina`'s, on a single-threaded tokio runtime owned by the capture
//! thread; the video is H.264, decoded by OpenH264 ([`super::h264`]), or RTP/JPEG, decoded as
//! MJPEG frames are.
//!
//! RTP goes over the RTSP TCP connection (interleaved), not UDP: on a Wi-Fi link a lost UDP
//! packet costs a whole H.264 frame and every frame that refers to it, and TCP passes the
//! firewalls UDP does not. Every frame is decoded, because later frames are coded against it;
//! the capture thread keeps only the newest picture, as for every camera. A camera's main
//! stream is often 1080p or more: its sub-stream (commonly 640x480) costs a fraction of the
//! decoding and is all a detector's 320 or 640 pixel input needs.

use super::h264::H264Decoder;
use super::mjpeg::{decode_jpeg, MAX_SIDE};
use super::net::NetUrl;
use super::{CaptureDevice, Error, Result};
use futures_util::StreamExt as _;
use image::RgbImage;
use retina::client::{
    Credentials, Demuxed, PlayOptions, Session, SessionGroup, SessionOptions, SetupOptions,
    TcpTransportOptions, Transport,
};
use retina::codec::{CodecItem, FrameFormat};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long DESCRIBE, SETUP and PLAY together may take before the camera counts as not
/// answering.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a grab waits for the stream's first key frame (or the next, after a frame failed
/// to decode).
pub const KEY_FRAME_WAIT: Duration = Duration::from_secs(10);
/// How long closing waits for the camera to acknowledge TEARDOWN.
const TEARDOWN_WAIT: Duration = Duration::from_secs(2);

/// The encodings lookout decodes, as RTSP names them.
const DECODED: &str = "H.264 (h264) or JPEG (jpeg)";

/// An RTSP camera.
pub struct RtspCamera {
    url: NetUrl,
    runtime: Option<tokio::runtime::Runtime>,
    /// The sessions this camera started, so closing can wait for their TEARDOWN.
    group: Arc<SessionGroup>,
    playing: Option<Playing>,
}

struct Playing {
    session: Pin<Box<Demuxed>>,
    video: Video,
    /// Set after a frame failed to decode: frames are skipped until the next key frame, the
    /// first that decodes without the lost one.
    wait_for_key: bool,
}

enum Video {
    H264(Box<H264Decoder>),
    Jpeg,
}

impl RtspCamera {
    /// A camera at `url` (an `rtsp://` URL, checked by [`NetUrl::parse`]).
    pub fn new(url: NetUrl) -> Self {
        Self {
            url,
            runtime: None,
            group: Arc::new(SessionGroup::default()),
            playing: None,
        }
    }

    fn open_error(&self, message: impl Into<String>) -> Error {
        Error::Open {
            device: self.url.to_string(),
            message: message.into(),
        }
    }
}

fn frame_error(url: &NetUrl, message: impl Into<String>) -> Error {
    Error::Frame {
        device: url.to_string(),
        message: message.into(),
    }
}

/// A session started: the frames, the decoder for them, and the mode for the log.
struct Started {
    session: Demuxed,
    video: Video,
    mode: String,
}

/// DESCRIBE, SETUP of the first video stream lookout decodes, PLAY. The decoder is made before
/// SETUP, so a board without OpenH264 fails without starting a stream it cannot use.
async fn start(
    url: &NetUrl,
    group: &Arc<SessionGroup>,
) -> std::result::Result<Started, StartError> {
    let creds = url
        .credentials()
        .map(|(username, password)| Credentials { username, password });
    let options = SessionOptions::default()
        .creds(creds)
        .session_group(group.clone())
        .user_agent(format!("lookout/{}", env!("CARGO_PKG_VERSION")));
    // retina takes the credentials apart from the URL, and refuses a URL that holds them.
    let mut session = Session::describe(url.without_credentials(), options)
        .await
        .map_err(|e| StartError::Rtsp(e.to_string()))?;
    let videos: Vec<(usize, String)> = session
        .streams()
        .iter()
        .enumerate()
        .filter(|(_, s)| s.media() == "video")
        .map(|(i, s)| (i, s.encoding_name().to_owned()))
        .collect();
    let Some((index, encoding)) = videos
        .iter()
        .find(|(_, e)| e == "h264" || e == "jpeg")
        .cloned()
    else {
        let offered: Vec<&str> = videos.iter().map(|(_, e)| e.as_str()).collect();
        return Err(StartError::Codec(if offered.is_empty() {
            "the camera offers no video stream".into()
        } else {
            format!(
                "the camera's video is {}; lookout decodes {DECODED}: set the camera's stream to H.264",
                offered.join(", ")
            )
        }));
    };
    let video = if encoding == "h264" {
        Video::H264(Box::new(
            H264Decoder::load(MAX_SIDE).map_err(StartError::Codec)?,
        ))
    } else {
        Video::Jpeg
    };
    session
        .setup(
            index,
            SetupOptions::default()
                .transport(Transport::Tcp(TcpTransportOptions::default()))
                .frame_format(FrameFormat::SIMPLE),
        )
        .await
        .map_err(|e| StartError::Rtsp(e.to_string()))?;
    // The picture size the stream declares, checked before any frame is decoded at it.
    let size = match session.streams()[index].parameters() {
        Some(retina::codec::ParametersRef::Video(v)) => {
            let (w, h) = v.pixel_dimensions();
            if w > MAX_SIDE || h > MAX_SIDE {
                return Err(StartError::Codec(format!(
                    "the camera's video is {w}x{h}; lookout decodes pictures up to {MAX_SIDE} pixels a side: use the camera's smaller stream"
                )));
            }
            format!("{w}x{h} ")
        }
        _ => String::new(),
    };
    let mode = match &video {
        Video::H264(decoder) => format!(
            "{size}H.264 over RTSP/TCP, decoded by {}",
            decoder.version()
        ),
        Video::Jpeg => format!("{size}JPEG over RTSP/TCP"),
    };
    let session = session
        .play(PlayOptions::default())
        .await
        .and_then(|playing| playing.demuxed())
        .map_err(|e| StartError::Rtsp(e.to_string()))?;
    Ok(Started {
        session,
        video,
        mode,
    })
}

enum StartError {
    Rtsp(String),
    Codec(String),
}

impl CaptureDevice for RtspCamera {
    fn open(&mut self) -> Result<String> {
        self.close();
        if self.runtime.is_none() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
                .map_err(|e| self.open_error(format!("cannot start the RTSP runtime: {e}")))?;
            self.runtime = Some(runtime);
        }
        let Some(runtime) = self.runtime.as_ref() else {
            return Err(self.open_error("no RTSP runtime"));
        };
        let started = runtime.block_on(async {
            tokio::time::timeout(OPEN_TIMEOUT, start(&self.url, &self.group)).await
        });
        let started = match started {
            Ok(Ok(started)) => started,
            Ok(Err(StartError::Rtsp(message))) => return Err(self.open_error(message)),
            Ok(Err(StartError::Codec(message))) => {
                return Err(Error::Codec {
                    device: self.url.to_string(),
                    message,
                })
            }
            Err(_) => {
                return Err(self.open_error(format!(
                    "no RTSP answer within {} s",
                    OPEN_TIMEOUT.as_secs()
                )))
            }
        };
        self.playing = Some(Playing {
            session: Box::pin(started.session),
            video: started.video,
            wait_for_key: true,
        });
        Ok(started.mode)
    }

    fn grab(&mut self, timeout: Duration) -> Result<RgbImage> {
        let (Some(runtime), Some(playing)) = (self.runtime.as_ref(), self.playing.as_mut()) else {
            return Err(Error::NotOpen {
                device: self.url.to_string(),
            });
        };
        // Until a key frame comes, nothing can be decoded: a camera may send one only every
        // few seconds (long key-frame intervals, "smart" codecs), longer than a grab's timeout.
        let timeout = if playing.wait_for_key {
            timeout.max(KEY_FRAME_WAIT)
        } else {
            timeout
        };
        let started = Instant::now();
        let mut deadline = started + timeout;
        let mut skipped = 0u32;
        let mut last_error = None;
        loop {
            // Checked here too: a stream busy with frames that cannot be decoded (before a key
            // frame) never lets the timeout below expire.
            let left = deadline.saturating_duration_since(Instant::now());
            let item = if left.is_zero() {
                Err(())
            } else {
                runtime
                    .block_on(async { tokio::time::timeout(left, playing.session.next()).await })
                    .map_err(|_| ())
            };
            let frame = match item {
                Err(_) => {
                    let device = self.url.to_string();
                    let seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
                    return Err(match last_error {
                        None => Error::NoFrame { device, seconds },
                        Some(e) => Error::Frame {
                            device,
                            message: format!(
                                "no picture for {seconds} s: {skipped} frames failed to decode, the last: {e}"
                            ),
                        },
                    });
                }
                Ok(None) => return Err(frame_error(&self.url, "the camera ended the stream")),
                Ok(Some(Err(e))) => return Err(frame_error(&self.url, e.to_string())),
                Ok(Some(Ok(CodecItem::VideoFrame(frame)))) => frame,
                Ok(Some(Ok(_))) => continue,
            };
            if playing.wait_for_key && !frame.is_random_access_point() {
                continue;
            }
            let decoded = match &mut playing.video {
                Video::H264(decoder) => decoder.decode(frame.data()),
                Video::Jpeg => decode_jpeg(frame.data()).map(Some),
            };
            match decoded {
                Ok(Some(picture)) => {
                    playing.wait_for_key = false;
                    return Ok(picture);
                }
                Ok(None) => playing.wait_for_key = false,
                Err(e) => {
                    tracing::debug!("{}: {e}; waiting for the next key frame", self.url);
                    // The next key frame may be further away than a grab's timeout: wait for
                    // it once per grab, so a stream whose every frame fails still counts as lost.
                    if !playing.wait_for_key && skipped == 0 {
                        deadline = deadline.max(Instant::now() + KEY_FRAME_WAIT);
                    }
                    playing.wait_for_key = true;
                    skipped += 1;
                    last_error = Some(e);
                }
            }
        }
    }

    fn close(&mut self) {
        if let Some(playing) = self.playing.take() {
            // retina sends TEARDOWN from a task it spawns when the session is dropped: it
            // needs the runtime's context, and is given a moment to finish, so a camera with
            // few session slots has this one back before the next open.
            match self.runtime.as_ref() {
                Some(runtime) => {
                    let _inside = runtime.enter();
                    drop(playing);
                    let group = self.group.clone();
                    let _ = runtime.block_on(async {
                        tokio::time::timeout(TEARDOWN_WAIT, group.await_teardown()).await
                    });
                }
                None => drop(playing),
            }
        }
    }

    fn describe(&self) -> String {
        self.url.to_string()
    }
}

impl Drop for RtspCamera {
    fn drop(&mut self) {
        self.close();
        if let Some(runtime) = self.runtime.take() {
            // Without a bound, dropping a runtime waits for its blocking threads (a name
            // lookup in progress) however long they take.
            runtime.shutdown_timeout(TEARDOWN_WAIT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_camera_that_never_answers_is_an_open_error_after_the_timeout() {
        // A listener that accepts the connection (the kernel does) but never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let url = NetUrl::parse(&format!("rtsp://127.0.0.1:{port}/cam")).expect("url");
        let mut camera = RtspCamera::new(url);
        let err = camera.open().expect_err("no answer").to_string();
        assert!(
            err.contains(&format!("rtsp://127.0.0.1:{port}/cam"))
                && err.contains("no RTSP answer within 10 s"),
            "{err}"
        );
        drop(listener);
    }
}
