//! The connection to the broker, on its own thread: the frame loop hands it messages without
//! waiting ([`LinkHandle::send`] only `try_send`s), and it publishes them, keeps the event
//! queue, reconnects with backoff, and passes commands back.
//!
//! One connection is one rumqttc client and event loop, made afresh at each attempt: the
//! queue, not rumqttc, decides what is sent again after a reconnect, so each event is sent
//! again exactly from the oldest unacknowledged one, in order, marked `resent`.

use super::outbox::EventQueue;
use super::schema::{self, Topics};
use crate::results::record::EventRecord;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Outgoing, Packet, QoS};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc as tmpsc;

/// Messages waiting for the link thread at most; past this the frame loop's sends fail (and
/// are counted) rather than wait.
const CHANNEL: usize = 1024;
/// Notifications of the connection (packets received, acknowledgements) waiting for the link
/// at most; each holds at most one message of the broker's (2 MiB: `MAX_INCOMING`). With the
/// one the poller holds and the 10 rumqttc decodes from one read of the socket, at most 19
/// such messages (38 MiB) are held, and only under a flood of the largest commands.
const NOTES: usize = 8;
/// Longest command payload handed to the console: it takes lines of 256 bytes
/// ([`crate::results::console::MAX_LINE`]), so a longer one is answered here, and the queue
/// of commands waiting for the frame loop holds at most 16 of these.
const COMMAND_BYTES: usize = 4096;
/// Events published and not yet acknowledged at most.
const WINDOW: usize = 32;
/// Requests rumqttc holds for the connection at most (more than WINDOW plus the retained
/// messages of a connect, so a send of ours never finds it full but for a stalled broker).
const REQUESTS: usize = 512;
/// The first wait before connecting again; it doubles up to [`MAX_BACKOFF`] and starts over
/// after a connection that got through.
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long the end of a run waits for the queue to empty and `offline` to go out.
const FINISH_WAIT: Duration = Duration::from_secs(3);

/// A message for the broker.
pub enum ToLink {
    /// An event: queued, numbered, published at QoS 1 until acknowledged.
    Event(Box<EventRecord>),
    /// A latest value (results, counts, stats, a reply, a snapshot): published when connected,
    /// dropped and counted when not.
    Publish {
        /// The topic.
        topic: String,
        /// The bytes.
        payload: Vec<u8>,
        /// QoS 1 (else 0).
        at_least_once: bool,
        /// Kept by the broker for later subscribers.
        retain: bool,
        /// Also sent again on each (re)connect, as the retained latest value (counts).
        keep: bool,
        /// A frame's results: counted in `results_published`/`results_dropped`.
        results: bool,
    },
    /// Statistics: the link's own counters are filled in as it publishes them, so they count
    /// every message handed to it before.
    Stats(Box<schema::Stats>),
    /// The run ends: publish what can be, say `offline`, disconnect; then signal.
    Finish(mpsc::Sender<()>),
}

/// What the link thread tells the frame loop, read without locks where it can be.
#[derive(Debug, Default)]
pub struct LinkState {
    /// Connected to the broker now.
    pub connected: AtomicBool,
    /// Connections lost since start.
    pub reconnects: AtomicU64,
    /// Results not published (not connected, or rumqttc's queue full).
    pub results_dropped: AtomicU64,
    /// Results published.
    pub results_published: AtomicU64,
    /// Events waiting now.
    pub events_queued: AtomicU64,
    /// Events dropped since start: the queue was full, or the channel to the thread was.
    pub events_dropped: AtomicU64,
    /// The last connection error, for `status`.
    pub last_error: Mutex<Option<String>>,
}

/// Everything a connection is made of.
pub struct LinkSettings {
    /// The options of each connection (client id, credentials, TLS, will, keep-alive).
    pub options: MqttOptions,
    /// The topics.
    pub topics: Topics,
    /// Discovery configs, published retained on each connect.
    pub discovery: Vec<(String, Vec<u8>)>,
    /// Subscribe to `set` and pass what arrives to the frame loop.
    pub commands: bool,
    /// Where credentials came from, for a refusal's message.
    pub credentials_from: Option<String>,
    /// The broker, for messages.
    pub broker: String,
}

/// A way to hand the link thread messages, for the parts of a run besides the sink (the
/// console's replies).
#[derive(Clone)]
pub struct LinkSender {
    tx: tmpsc::Sender<ToLink>,
    state: Arc<LinkState>,
}

impl LinkSender {
    /// Hands a message to the link thread without waiting; false (and counted) when its
    /// channel is full or the thread has ended.
    pub fn send(&self, message: ToLink) -> bool {
        let counter = match &message {
            ToLink::Event(_) => Some(&self.state.events_dropped),
            ToLink::Publish { results: true, .. } => Some(&self.state.results_dropped),
            _ => None,
        };
        match self.tx.try_send(message) {
            Ok(()) => true,
            Err(_) => {
                if let Some(counter) = counter {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                false
            }
        }
    }
}

/// The frame loop's end of the link.
pub struct LinkHandle {
    sender: LinkSender,
    /// Counters.
    pub state: Arc<LinkState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LinkHandle {
    /// Starts the link thread with `queue` (opened by the caller, so a bad state directory
    /// fails the start); commands arriving on `set` go to `commands`.
    pub fn start(
        settings: LinkSettings,
        queue: EventQueue,
        commands: mpsc::SyncSender<Vec<u8>>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = tmpsc::channel(CHANNEL);
        let state = Arc::new(LinkState::default());
        state
            .events_queued
            .store(queue.len() as u64, Ordering::Relaxed);
        // Events from before over the queue's bound, dropped as it opened.
        state
            .events_dropped
            .store(queue.dropped(), Ordering::Relaxed);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let link = Link {
            settings,
            queue,
            rx,
            commands,
            state: state.clone(),
            kept: HashMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || {
                runtime.block_on(link.run());
                // Without waiting for a name lookup still blocked in the resolver: the run is
                // over either way.
                runtime.shutdown_background();
            })?;
        Ok(Self {
            sender: LinkSender {
                tx,
                state: state.clone(),
            },
            state,
            thread: Some(thread),
        })
    }

    /// Hands a message to the link thread without waiting (see [`LinkSender::send`]).
    pub fn send(&self, message: ToLink) -> bool {
        self.sender.send(message)
    }

    /// Another sender to the same thread.
    pub fn sender(&self) -> LinkSender {
        self.sender.clone()
    }

    /// Ends the link: what is queued is published while the broker answers, for at most a
    /// few seconds, then `offline` and a clean disconnect. Events not acknowledged by then
    /// stay on disk for the next run.
    pub fn finish(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let (done_tx, done_rx) = mpsc::channel();
        // The thread empties its channel without waiting on the broker, so room comes soon;
        // a thread that has ended gives none and is not waited for.
        let mut finish = ToLink::Finish(done_tx);
        let mut handed = false;
        for _ in 0..100 {
            match self.sender.tx.try_send(finish) {
                Ok(()) => {
                    handed = true;
                    break;
                }
                Err(tmpsc::error::TrySendError::Full(back)) => {
                    finish = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(tmpsc::error::TrySendError::Closed(_)) => break,
            }
        }
        if handed {
            // The thread waits FINISH_WAIT for the queue, then up to FINISH_WAIT for the
            // disconnect; past that it is left to end with the process.
            if done_rx
                .recv_timeout(FINISH_WAIT * 2 + Duration::from_secs(1))
                .is_ok()
            {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for LinkHandle {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The link thread's state.
struct Link {
    settings: LinkSettings,
    queue: EventQueue,
    rx: tmpsc::Receiver<ToLink>,
    commands: mpsc::SyncSender<Vec<u8>>,
    state: Arc<LinkState>,
    /// Latest values sent again on each connect, by topic.
    kept: HashMap<String, Vec<u8>>,
}

/// How a connection ended.
enum Ended {
    /// The run ended; signal this when done.
    Finished(Option<mpsc::Sender<()>>),
    /// The connection failed or was lost; `connected` says whether it had got through, and
    /// for how long.
    Lost {
        error: String,
        connected: Option<Duration>,
    },
}

/// A connection that lasted this long was a good one: the next attempt starts at the shortest
/// wait. One dropped sooner (a client id taken over by another board, a message the broker
/// keeps sending that lookout cannot take) keeps backing off.
const STABLE: Duration = Duration::from_secs(10);

impl Link {
    async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            match self.connection().await {
                Ended::Finished(done) => {
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    return;
                }
                Ended::Lost { error, connected } => {
                    if let Some(lasted) = connected {
                        self.state.reconnects.fetch_add(1, Ordering::Relaxed);
                        if lasted >= STABLE {
                            backoff = MIN_BACKOFF;
                        }
                        tracing::warn!("MQTT: lost {}: {error}", self.settings.broker);
                    } else {
                        tracing::warn!(
                            "MQTT: cannot connect to {}: {error}; again in {:.1} s",
                            self.settings.broker,
                            backoff.as_secs_f64()
                        );
                    }
                    self.state.connected.store(false, Ordering::Relaxed);
                    if let Ok(mut last) = self.state.last_error.lock() {
                        *last = Some(format!("MQTT {}: {error}", self.settings.broker));
                    }
                    self.queue.connection_lost();
                    let wait = tokio::time::sleep(backoff);
                    tokio::pin!(wait);
                    loop {
                        tokio::select! {
                            () = &mut wait => break,
                            message = self.rx.recv() => match message {
                                Some(ToLink::Finish(done)) => {
                                    let _ = done.send(());
                                    return;
                                }
                                None => return,
                                Some(message) => self.offline(message),
                            },
                        }
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// A message while no connection is up: events are queued, latest values dropped.
    fn offline(&mut self, message: ToLink) {
        match message {
            ToLink::Event(event) => self.enqueue(&event),
            ToLink::Publish {
                topic,
                payload,
                keep,
                results,
                ..
            } => {
                if keep {
                    self.kept.insert(topic, payload);
                }
                if results {
                    self.state.results_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            ToLink::Stats(_) | ToLink::Finish(_) => {}
        }
    }

    fn enqueue(&mut self, event: &EventRecord) {
        let before = self.queue.dropped();
        self.queue.push(schema::event_json(event));
        let dropped = self.queue.dropped() - before;
        if dropped > 0 {
            self.state
                .events_dropped
                .fetch_add(dropped, Ordering::Relaxed);
        }
        self.state
            .events_queued
            .store(self.queue.len() as u64, Ordering::Relaxed);
    }

    /// One connection, from the attempt to its end.
    async fn connection(&mut self) -> Ended {
        let (client, mut eventloop) = AsyncClient::new(self.settings.options.clone(), REQUESTS);
        // The event loop on its own task, its notifications forwarded: the select below then
        // waits only on channels, whose receive is cancel-safe. Bounded: while the loop below
        // is behind, the poller waits, and so does the socket's reading, which leaves a flood
        // of commands in the broker's hands rather than in this board's memory. No deadlock:
        // the loop never waits on the poller, only on this channel (its publishes are
        // `try_publish`).
        let (note_tx, mut notes) = tmpsc::channel(NOTES);
        let poller = tokio::spawn(async move {
            loop {
                let polled = eventloop.poll().await;
                let failed = polled.is_err();
                if note_tx.send(polled).await.is_err() || failed {
                    break;
                }
            }
        });
        let mut session = Session {
            client,
            connected: None,
            // The events behind each QoS 1 publish of this connection, in the order they were
            // handed to rumqttc, which numbers packets in that order.
            unnumbered: VecDeque::new(),
            numbered: HashMap::new(),
        };
        let ended = loop {
            tokio::select! {
                note = notes.recv() => match note {
                    Some(Ok(event)) => {
                        if let Err(error) = self.on_note(&mut session, event) {
                            break Ended::Lost { error, connected: session.lasted() };
                        }
                    }
                    Some(Err(e)) => {
                        break Ended::Lost {
                            error: self.describe(&e),
                            connected: session.lasted(),
                        }
                    }
                    None => {
                        break Ended::Lost {
                            error: "the connection's task ended".into(),
                            connected: session.lasted(),
                        }
                    }
                },
                message = self.rx.recv() => match message {
                    Some(ToLink::Finish(done)) => {
                        self.finish(&mut session, &mut notes).await;
                        break Ended::Finished(Some(done));
                    }
                    None => break Ended::Finished(None),
                    Some(message) if session.connected.is_some() => self.online(&mut session, message),
                    Some(message) => self.offline(message),
                },
            }
        };
        poller.abort();
        ended
    }

    /// What a refused or failed connection means, in a person's words.
    fn describe(&self, e: &rumqttc::ConnectionError) -> String {
        match e {
            rumqttc::ConnectionError::ConnectionRefused(
                code @ (ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized),
            ) => format!(
                "the broker refused lookout ({code:?}): check the user name and password{}",
                self.settings
                    .credentials_from
                    .as_deref()
                    .map(|f| format!(" in {f}"))
                    .unwrap_or_else(|| " ([mqtt] credentials_file; none is set)".into())
            ),
            other => other.to_string(),
        }
    }

    /// A notification of the connection.
    fn on_note(&mut self, session: &mut Session, event: Event) -> Result<(), String> {
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                session.connected = Some(std::time::Instant::now());
                self.state.connected.store(true, Ordering::Relaxed);
                tracing::info!("MQTT: connected to {}", self.settings.broker);
                self.on_connect(session)?;
                self.pump(session);
            }
            Event::Outgoing(Outgoing::Publish(pkid)) if pkid != 0 => {
                if let Some(Some(seq)) = session.unnumbered.pop_front() {
                    session.numbered.insert(pkid, seq);
                }
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(seq) = session.numbered.remove(&ack.pkid) {
                    self.queue.ack(seq);
                    self.state
                        .events_queued
                        .store(self.queue.len() as u64, Ordering::Relaxed);
                }
            }
            Event::Incoming(Packet::SubAck(ack))
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)) =>
            {
                tracing::warn!(
                    "MQTT: {} refused lookout's subscription to {}: commands are off (check the broker's access control)",
                    self.settings.broker,
                    self.settings.topics.set()
                );
            }
            Event::Incoming(Packet::Publish(publish))
                if self.settings.commands && publish.topic == self.settings.topics.set() =>
            {
                if publish.retain {
                    // A retained command would run again at every start of every board.
                    self.publish(
                        session,
                        self.settings.topics.reply(),
                        b"# error: a retained command is ignored; publish commands without retain\n"
                            .to_vec(),
                        true,
                        false,
                    );
                } else if publish.payload.len() > COMMAND_BYTES {
                    // The console's own answer to a line this long, without queueing it.
                    self.publish(
                        session,
                        self.settings.topics.reply(),
                        format!(
                            "# error: line of {} bytes ignored; at most {}\n",
                            publish.payload.len(),
                            crate::results::console::MAX_LINE
                        )
                        .into_bytes(),
                        true,
                        false,
                    );
                } else if self.commands.try_send(publish.payload.to_vec()).is_err() {
                    // The frame loop takes a few commands a frame; a flood is not queued.
                    self.publish(
                        session,
                        self.settings.topics.reply(),
                        b"# error: too many commands at once; this one is ignored\n".to_vec(),
                        true,
                        false,
                    );
                }
            }
            _ => {}
        }
        // Every notification may be room: rumqttc's queue emptied, or an acknowledgement.
        if self.queue.has_unsent() {
            self.pump(session);
        }
        Ok(())
    }

    /// A new connection: `online`, discovery, the command topic, the kept latest values.
    fn on_connect(&mut self, session: &mut Session) -> Result<(), String> {
        let topics = self.settings.topics.clone();
        self.publish(session, topics.status(), schema::ONLINE.into(), true, true);
        for (topic, payload) in self.settings.discovery.clone() {
            self.publish(session, topic, payload, true, true);
        }
        if self.settings.commands {
            session
                .client
                .try_subscribe(topics.set(), QoS::AtLeastOnce)
                .map_err(|e| format!("subscribing to {}: {e}", topics.set()))?;
        }
        for (topic, payload) in self.kept.clone() {
            self.publish(session, topic, payload, true, true);
        }
        Ok(())
    }

    /// A message while connected.
    fn online(&mut self, session: &mut Session, message: ToLink) {
        match message {
            ToLink::Event(event) => {
                self.enqueue(&event);
                self.pump(session);
            }
            ToLink::Publish {
                topic,
                payload,
                at_least_once,
                retain,
                keep,
                results,
            } => {
                if keep {
                    self.kept.insert(topic.clone(), payload.clone());
                }
                let sent = self.publish(session, topic, payload, at_least_once, retain);
                if results {
                    let counter = if sent {
                        &self.state.results_published
                    } else {
                        &self.state.results_dropped
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
            ToLink::Stats(mut stats) => {
                let state = &self.state;
                stats.results_published = state.results_published.load(Ordering::Relaxed);
                stats.results_dropped = state.results_dropped.load(Ordering::Relaxed);
                stats.events_queued = self.queue.len() as u64;
                stats.events_dropped = state.events_dropped.load(Ordering::Relaxed);
                stats.reconnects = state.reconnects.load(Ordering::Relaxed);
                let payload = serde_json::to_vec(&stats).unwrap_or_default();
                let topic = self.settings.topics.stats();
                self.publish(session, topic, payload, false, false);
            }
            ToLink::Finish(_) => {}
        }
    }

    /// Hands one publish to rumqttc; false when its queue is full.
    fn publish(
        &self,
        session: &mut Session,
        topic: String,
        payload: Vec<u8>,
        at_least_once: bool,
        retain: bool,
    ) -> bool {
        let qos = if at_least_once {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        let sent = session
            .client
            .try_publish(topic, qos, retain, payload)
            .is_ok();
        if sent && at_least_once {
            session.unnumbered.push_back(None);
        }
        sent
    }

    /// Publishes queued events while fewer than [`WINDOW`] wait for their acknowledgement.
    fn pump(&mut self, session: &mut Session) {
        if session.connected.is_none() {
            return;
        }
        while let Some((seq, payload)) = self.queue.next_to_send(WINDOW) {
            let topic = self.settings.topics.events();
            match session
                .client
                .try_publish(topic, QoS::AtLeastOnce, false, payload.into_bytes())
            {
                Ok(()) => session.unnumbered.push_back(Some(seq)),
                Err(_) => {
                    // rumqttc's queue is full (a stalled broker): this event goes at the next
                    // notification.
                    self.queue.unsend(seq);
                    break;
                }
            }
        }
    }

    /// The end of a run: the connection awaited if it is being made, the queue emptied while
    /// the broker acknowledges, `offline` published, a clean disconnect (which keeps the broker from
    /// publishing the will: lookout said it itself).
    async fn finish(
        &mut self,
        session: &mut Session,
        notes: &mut tmpsc::Receiver<Result<Event, rumqttc::ConnectionError>>,
    ) {
        let deadline = tokio::time::Instant::now() + FINISH_WAIT;
        // A connection on its way (a short run) is waited for, so that its events go out.
        while session.connected.is_none() || !self.queue.is_empty() {
            match tokio::time::timeout_at(deadline, notes.recv()).await {
                Ok(Some(Ok(event))) => {
                    if self.on_note(session, event).is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
        let topics = self.settings.topics.clone();
        self.publish(session, topics.status(), schema::OFFLINE.into(), true, true);
        let _ = session.client.try_disconnect();
        let deadline = tokio::time::Instant::now() + FINISH_WAIT;
        loop {
            match tokio::time::timeout_at(deadline, notes.recv()).await {
                Ok(Some(Ok(Event::Outgoing(Outgoing::Disconnect)))) => {
                    // Written: let the socket carry it before the task is dropped.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return;
                }
                Ok(Some(Ok(_))) => {}
                _ => return,
            }
        }
    }
}

/// One connection's rumqttc client and packet bookkeeping.
struct Session {
    client: AsyncClient,
    /// When the broker accepted the connection.
    connected: Option<std::time::Instant>,
    unnumbered: VecDeque<Option<u64>>,
    numbered: HashMap<u16, u64>,
}

impl Session {
    /// How long the connection has been up, if it got through.
    fn lasted(&self) -> Option<Duration> {
        self.connected.map(|at| at.elapsed())
    }
}
