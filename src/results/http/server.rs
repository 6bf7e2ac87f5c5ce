//! The HTTP server: its routes, who may use them, and how many at once.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the page: the live frames with the boxes and labels drawn over them |
//! | `GET /api/latest` | the last record (JSON) |
//! | `GET /api/events` | server-sent events: `record`, `event`; with `?frames=1`, `frame` too (and the preview is encoded while such a stream is open) |
//! | `GET /api/frame.jpg` | the preview's last frame; its record's `seq` in `X-Lookout-Seq` |
//! | `GET /api/status` | what the console's `status` says, as JSON |
//! | `GET /metrics` | Prometheus' text format |
//! | `POST /api/command` | a console command (the body); its reply |
//!
//! Who: this board's own programs (a loopback peer naming the board by address or
//! `localhost`, not a web site's name: DNS rebinding) may read without a token; another machine
//! needs `Authorization: Bearer <token>` (or `?token=` where a browser cannot set the header:
//! an image, an event stream: for reading only), and `POST /api/command` needs it from
//! anywhere. How many: at most `max_clients` connections, of which other machines may hold all
//! but one or two; one more is answered 503 and closed (at most 64 such answers at a time,
//! connections past them closed unanswered), so a flood costs the board no more than that many
//! descriptors. A client has 10 s to send its request's head and 10 more for a command's body,
//! one that vanished frees its slot within a minute (an event stream's within 75 s: its next
//! keep-alive and then TCP's user timeout), and a refused request's connection closes.

use super::{CommandRequest, FeedItem, HttpError, HttpSettings, Shared};
use bytes::Bytes;
use futures_util::stream;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::{broadcast, mpsc, oneshot};

/// The page, served as is: no file from elsewhere, so it works on a network without one.
const PAGE: &str = include_str!("page.html");
/// A request's head must arrive within this, and a command's body within as much again.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A command's reply comes between two frames; a run stuck longer answers 504.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest command body.
const MAX_COMMAND: usize = 4096;
/// An event stream says something at least this often, so a client that went away is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Refusals answered at once at most; more connections are closed unanswered.
const REFUSING: usize = 64;

/// Slots other machines leave to the board's own programs.
fn reserved(max_clients: usize) -> usize {
    (max_clients / 4).clamp(usize::from(max_clients > 1), 2)
}

/// Whether a peer is this board (IPv4 loopback, also as an IPv4-mapped IPv6 address, or ::1).
fn is_local(peer: SocketAddr) -> bool {
    peer.ip().is_loopback()
        || matches!(peer.ip(), std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
}

/// What a connection over the limit gets.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 38\r\nRetry-After: 5\r\nConnection: close\r\n\r\ntoo many clients; try again in a while\n";

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The running server.
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds the address now (so that a port in use fails the start) and serves on a thread.
    pub(super) fn start(
        settings: &HttpSettings,
        shared: Arc<Shared>,
        commands: mpsc::Sender<CommandRequest>,
    ) -> Result<Self, HttpError> {
        let listen = |source| HttpError::Listen {
            addr: settings.listen,
            source,
        };
        let listener = std::net::TcpListener::bind(settings.listen).map_err(listen)?;
        listener.set_nonblocking(true).map_err(listen)?;
        let addr = listener.local_addr().map_err(listen)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(HttpError::Thread)?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let context = Arc::new(Context {
            shared,
            token: settings.token.clone(),
            max_clients: settings.config.max_clients,
            commands,
        });
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => serve(listener, context, stop_rx).await,
                        Err(e) => tracing::error!("HTTP: {addr}: {e}"),
                    }
                });
                // Event streams never end by themselves: they are dropped, not awaited.
                runtime.shutdown_background();
            })
            .map_err(HttpError::Thread)?;
        Ok(Self {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Where it listens (the port chosen, when 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving; open connections are closed.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What every request is served with.
struct Context {
    shared: Arc<Shared>,
    token: Option<String>,
    max_clients: usize,
    commands: mpsc::Sender<CommandRequest>,
}

/// Counts a connection while it lives.
struct Client(Arc<Shared>);

impl Drop for Client {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a watcher of the preview while its stream lives.
struct Watcher(Arc<Shared>);

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    context: Arc<Context>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut accept_failed = false;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stop => return,
        };
        let (mut stream, peer) = match accepted {
            Ok(accepted) => {
                accept_failed = false;
                accepted
            }
            Err(e) => {
                // Out of descriptors, most likely: say it once, and let connections end.
                if !accept_failed {
                    tracing::warn!("HTTP: accepting a connection: {e}");
                    accept_failed = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = &context.shared;
        // Other machines leave a slot or two to the board's own programs, so a flood from
        // the network cannot keep the board's own page or scraper out.
        let limit = if is_local(peer) {
            context.max_clients
        } else {
            context.max_clients - reserved(context.max_clients)
        };
        if shared.clients.load(Ordering::Relaxed) >= limit {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            if shared.refusing.load(Ordering::Relaxed) < REFUSING {
                shared.refusing.fetch_add(1, Ordering::Relaxed);
                let refusing = shared.clone();
                tokio::spawn(async move {
                    // The request is read (briefly) before the answer and the close: a socket
                    // closed with unread bytes is reset, and the reset can destroy the answer.
                    let mut request = [0u8; 2048];
                    let _ = tokio::time::timeout(
                        Duration::from_millis(50),
                        tokio::io::AsyncReadExt::read(&mut stream, &mut request),
                    )
                    .await;
                    let _ = stream.write_all(BUSY).await;
                    let _ = stream.shutdown().await;
                    let _ = tokio::time::timeout(
                        Duration::from_millis(200),
                        tokio::io::AsyncReadExt::read(&mut stream, &mut request),
                    )
                    .await;
                    refusing.refusing.fetch_sub(1, Ordering::Relaxed);
                });
            }
            // Past REFUSING refusals at once, the connection is dropped unanswered: a flood
            // gets no more of the board's descriptors than that.
            continue;
        }
        // A client that vanished (a phone off the Wi-Fi) frees its slot within a minute,
        // not after TCP's retransmissions give up (15 minutes).
        let _ = socket2::SockRef::from(&stream).set_tcp_user_timeout(Some(Duration::from_secs(60)));
        shared.clients.fetch_add(1, Ordering::Relaxed);
        let client = Client(shared.clone());
        let context = context.clone();
        tokio::spawn(async move {
            let _client = client;
            let service = hyper::service::service_fn(move |request| {
                let context = context.clone();
                async move { Ok::<_, Infallible>(route(&context, peer, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A response after which the connection closes: a client that is refused does not keep a
/// slot.
fn closing(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    respond(
        status,
        "text/plain; charset=utf-8",
        Bytes::from(body.into()),
    )
}

fn json(body: impl Into<Bytes>) -> Response<Body> {
    respond(StatusCode::OK, "application/json", body.into())
}

fn respond(status: StatusCode, kind: &str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body).boxed_unsync());
    *response.status_mut() = status;
    if let Ok(kind) = header::HeaderValue::from_str(kind) {
        response.headers_mut().insert(header::CONTENT_TYPE, kind);
    }
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// The token a request carries: its `Authorization: Bearer` header, else its `token=` query.
fn presented_token(request: &Request<Incoming>) -> Option<String> {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
    // In the query only for reading (a page's images and event stream): a command's token
    // stays out of addresses, logs and histories.
    header.or_else(|| {
        (request.method() == Method::GET)
            .then(|| query(request, "token"))
            .flatten()
    })
}

/// Whether a request names this board by address (or `localhost`), as a page on this board
/// does; a name a web site chose (DNS rebinding) is not served to local peers without the
/// token.
fn names_the_board(request: &Request<Incoming>) -> bool {
    let Some(host) = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
    else {
        // HTTP/1.0 without a Host: a program, not a browser.
        return true;
    };
    let name = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// A query parameter's value (percent-decoded).
fn query(request: &Request<Incoming>, key: &str) -> Option<String> {
    request.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Whether two tokens are equal, in a time that does not say how much of them is.
fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Why a request may not go on, if it may not.
fn refuse(
    context: &Context,
    peer: SocketAddr,
    request: &Request<Incoming>,
    changes_state: bool,
) -> Option<Response<Body>> {
    let presented = presented_token(request);
    let holds_token = match (&context.token, &presented) {
        (Some(token), Some(given)) => same_token(token, given),
        _ => false,
    };
    if holds_token {
        return None;
    }
    let local = is_local(peer);
    if changes_state {
        let why = if context.token.is_none() {
            "commands need a token: set [http] token_file in the board profile"
        } else {
            "commands need the token: Authorization: Bearer <token>"
        };
        return Some(unauthorized(why));
    }
    if local && names_the_board(request) {
        return None;
    }
    Some(unauthorized(if presented.is_some() {
        "the token is not the board's"
    } else {
        "from another machine, a token is needed: Authorization: Bearer <token>"
    }))
}

fn unauthorized(why: &str) -> Response<Body> {
    let mut response = closing(text(StatusCode::UNAUTHORIZED, format!("{why}\n")));
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"lookout\""),
    );
    response
}

async fn route(context: &Context, peer: SocketAddr, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let changes_state = path == "/api/command";
    let known = matches!(
        path.as_str(),
        "/" | "/api/latest"
            | "/api/events"
            | "/api/frame.jpg"
            | "/api/status"
            | "/metrics"
            | "/api/command"
    );
    if !known {
        return closing(text(
            StatusCode::NOT_FOUND,
            format!("no {path} here; the page is /\n"),
        ));
    }
    if let Some(refused) = refuse(context, peer, &request, changes_state) {
        return refused;
    }
    let shared = &context.shared;
    match (method, path.as_str()) {
        (Method::GET, "/") => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from_static(PAGE.as_bytes()),
        ),
        (Method::GET, "/api/latest") => {
            // Copied under the lock, written out after it: the frame loop waits for no JSON.
            let latest = shared.latest.lock().ok().and_then(|l| l.clone());
            match latest.map(|record| serde_json::to_vec(&record)) {
                Some(Ok(body)) => json(body),
                _ => text(StatusCode::NOT_FOUND, "no frame yet\n"),
            }
        }
        (Method::GET, "/api/status") => {
            let status = shared.status.lock().ok().and_then(|s| s.clone());
            match status {
                Some(body) => json(Bytes::from(body.as_bytes().to_vec())),
                None => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
            }
        }
        (Method::GET, "/metrics") => {
            let metrics = shared.metrics.lock().map(|m| m.clone()).unwrap_or_default();
            let body = metrics.render(
                shared.started.elapsed().as_secs_f64(),
                shared.clients.load(Ordering::Relaxed),
                shared.refused.load(Ordering::Relaxed),
            );
            respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                Bytes::from(body),
            )
        }
        (Method::GET, "/api/frame.jpg") => {
            let preview = shared.preview.lock().ok().and_then(|p| p.clone());
            match preview {
                Some(frame) => {
                    let mut response = respond(StatusCode::OK, "image/jpeg", frame.jpeg);
                    response
                        .headers_mut()
                        .insert("x-lookout-seq", header::HeaderValue::from(frame.seq));
                    response
                }
                None => text(
                    StatusCode::NOT_FOUND,
                    "no preview frame: open /api/events?frames=1 first\n",
                ),
            }
        }
        (Method::GET, "/api/events") => {
            events(context, query(&request, "frames").is_some_and(|v| v == "1"))
        }
        (Method::POST, "/api/command") => command(context, request).await,
        (_, "/api/command") => closing(text(StatusCode::METHOD_NOT_ALLOWED, "POST a command\n")),
        _ => closing(text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n")),
    }
}

/// `/api/events`: the recent events, the last record, then everything as it comes.
fn events(context: &Context, frames: bool) -> Response<Body> {
    let shared = context.shared.clone();
    let receiver = shared.feed.subscribe();
    let watcher = frames.then(|| {
        shared.watchers.fetch_add(1, Ordering::Relaxed);
        Watcher(shared.clone())
    });
    let mut first: Vec<Bytes> = vec![Bytes::from_static(b"retry: 2000\n\n")];
    if let Ok(recent) = shared.recent_events.lock() {
        first.extend(recent.iter().map(|e| sse("event", e)));
    }
    let latest = shared.latest.lock().ok().and_then(|l| l.clone());
    if let Some(Ok(latest)) = latest.map(|record| serde_json::to_string(&record)) {
        first.push(sse("record", &latest));
    }
    // A page opened while nothing new comes (a paused run) still gets the last frame.
    if frames {
        if let Some(preview) = shared.preview.lock().ok().and_then(|p| p.clone()) {
            first.push(sse("frame", &format!("{{\"seq\":{}}}", preview.seq)));
        }
    }
    let state = (first.into_iter(), receiver, watcher);
    let body = stream::unfold(state, |(mut first, mut receiver, watcher)| async move {
        if let Some(chunk) = first.next() {
            return Some((Ok(Frame::data(chunk)), (first, receiver, watcher)));
        }
        let chunk = match tokio::time::timeout(KEEP_ALIVE, receiver.recv()).await {
            // Frames only for the streams that asked for them.
            Ok(Ok(FeedItem { kind: "frame", .. })) if watcher.is_none() => Bytes::new(),
            Ok(Ok(FeedItem { kind, json })) => sse(kind, &json),
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                Bytes::from(format!(": {n} skipped\n\n"))
            }
            Ok(Err(broadcast::error::RecvError::Closed)) => return None,
            Err(_) => Bytes::from_static(b": keep-alive\n\n"),
        };
        Some((
            Ok::<_, Infallible>(Frame::data(chunk)),
            (first, receiver, watcher),
        ))
    });
    let mut response = Response::new(StreamBody::new(body).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

fn sse(kind: &str, json: &str) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {json}\n\n"))
}

/// `POST /api/command`: the body is one console command; the reply is the console's.
async fn command(context: &Context, request: Request<Incoming>) -> Response<Body> {
    // A client that sent the head and then less body than it announced would otherwise hold
    // its slot for good: TCP's user timeout needs unacknowledged data, and the server sent none.
    let collected = tokio::time::timeout(
        HEAD_TIMEOUT,
        Limited::new(request.into_body(), MAX_COMMAND).collect(),
    )
    .await;
    let body = match collected {
        Ok(Ok(body)) => body.to_bytes(),
        // The body's framing is lost either way: the connection closes.
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return closing(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a command is at most {MAX_COMMAND} bytes\n"),
            ))
        }
        Ok(Err(e)) => {
            return closing(text(
                StatusCode::BAD_REQUEST,
                format!("the command's body could not be read: {e}\n"),
            ))
        }
        Err(_) => {
            return closing(text(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the command's body did not come within {} s\n",
                    HEAD_TIMEOUT.as_secs()
                ),
            ))
        }
    };
    let Ok(line) = String::from_utf8(body.to_vec()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "# error: the command is not UTF-8 text\n",
        );
    };
    // A line the console would skip (nothing but spaces and control bytes) would get no
    // reply: it is answered here.
    if line.chars().all(|c| c.is_whitespace() || c.is_control()) {
        return text(StatusCode::BAD_REQUEST, "# error: empty command\n");
    }
    let (reply_tx, reply_rx) = oneshot::channel();
    if context
        .commands
        .try_send(CommandRequest {
            line,
            reply: reply_tx,
        })
        .is_err()
    {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "# error: too many commands at once\n",
        );
    }
    match tokio::time::timeout(COMMAND_TIMEOUT, reply_rx).await {
        Ok(Ok(reply)) => {
            let status = if reply.lines().last().is_some_and(|l| l.starts_with("# ok")) {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            text(status, reply)
        }
        _ => text(
            StatusCode::GATEWAY_TIMEOUT,
            "# error: the frame loop did not answer within 5 s\n",
        ),
    }
}
