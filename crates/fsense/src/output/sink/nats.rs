//! The NATS JetStream sink: one message per event, deduplicated by `Nats-Msg-Id`.
//!
//! The pipeline's thread appends each event to the [`Spool`]; a publisher thread (its own
//! single-threaded tokio runtime) reads the spool in order, publishes with at most [`WINDOW`]
//! acknowledgements outstanding, and moves the spool's acknowledged cursor over each prefix
//! JetStream acknowledged. Each publish carries a reply subject of the sink's own,
//! `<inbox>.<token>`, answered on one subscription ([`puback`](super::puback) says why and
//! reads the answers). A transient failure (disconnect, timeout, leader change) rewinds to
//! the first unacknowledged event and publishes again from there once the server answers; the
//! message ids make the server drop the copies of events it already stored. A refusal (the server
//! will not take the events as configured) and an event too large to store are handled as
//! [`nats_failure`](super::nats_failure) explains: no hot loop, nothing lost silently.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::jetstream::{self, stream};
use async_nats::{Client, ConnectOptions, Event, HeaderMap, Message, StatusCode, Subscriber};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::Notify;

use super::config::SinkConfig;
use super::nats_failure::{self, Failure, REFUSED_PAUSE, Verdict};
use super::puback;
use super::spool::{Cursor, Outgoing, Spool};
use super::{EventKey, EventSink, MessageIds, SinkStats};

/// Acknowledgements outstanding at most.
pub const WINDOW: usize = 8192;
/// How long an acknowledgement may take before the publish counts as failed.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between attempts while the server is away.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// The duplicate window of a stream this sink creates.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// The longest wait between two reconnection attempts (async-nats' default goes up to 4 s, and
/// every second of it is a second of events waiting after the server is back).
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

struct Shared {
    spool: Mutex<Spool>,
    wake: Notify,
    /// Finish: deliver what is left, then stop.
    stop: AtomicBool,
    /// Stop now (the run failed).
    abort: AtomicBool,
    published: AtomicU64,
    acknowledged: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    refused: AtomicU64,
    recovered: u64,
}

/// What the client's event callback tells the publisher: the connection was lost (what was in
/// flight on it will never be acknowledged).
#[derive(Default)]
struct Disconnects {
    count: AtomicU64,
    wake: Notify,
}

impl Shared {
    fn spool(&self) -> MutexGuard<'_, Spool> {
        // A panic while holding the lock cannot leave the spool half-updated in a way that
        // matters more than losing the sink: keep going with what is there.
        self.spool.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// See the module documentation.
pub struct NatsSink {
    shared: Arc<Shared>,
    publisher: Option<JoinHandle<()>>,
    ids: MessageIds,
    id: String,
    in_memory: bool,
    spool_dir: Option<std::path::PathBuf>,
    final_stats: Option<SinkStats>,
    /// Spool drops already reported on stderr, and when (at most one line every 10 s).
    drops_told: u64,
    drops_told_at: Option<Instant>,
}

impl NatsSink {
    /// Opens the spool, connects (an unreachable server is one line on stderr, then spooling)
    /// and starts the publisher.
    pub fn start(config: SinkConfig) -> Result<Self, String> {
        if let Some(ca) = &config.ca_file {
            check_ca_file(ca)?;
        }
        let (spool, recovery) =
            Spool::open(&config.spool).map_err(|e| match &config.spool.dir {
                Some(d) => format!("cannot open the spool {}: {e}", d.display()),
                None => format!("cannot create the spool: {e}"),
            })?;
        for line in &recovery.damage {
            eprintln!("fsense: spool: {}", one_line(line));
        }
        if recovery.pending > 0 {
            eprintln!(
                "fsense: spool: {} unacknowledged events from an earlier run will be published first",
                recovery.pending
            );
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the NATS runtime: {e}"))?;
        let disconnects = Arc::new(Disconnects::default());
        let client = runtime.block_on(connect(&config, &disconnects))?;
        let shared = Arc::new(Shared {
            spool: Mutex::new(spool),
            wake: Notify::new(),
            stop: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            published: AtomicU64::new(0),
            acknowledged: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            recovered: recovery.pending,
        });
        let ids = MessageIds::new(&config.host, config.run);
        let in_memory = config.spool.dir.is_none();
        let spool_dir = config.spool.dir.clone();
        let for_thread = shared.clone();
        let publisher = std::thread::Builder::new()
            .name("fsense-nats".into())
            // The JetStream context spawns a task: it is built inside the runtime.
            .spawn(move || {
                runtime.block_on(async move {
                    Publisher::new(for_thread, client, disconnects, config)
                        .run()
                        .await
                })
            })
            .map_err(|e| format!("cannot start the NATS publisher: {e}"))?;
        Ok(Self {
            shared,
            publisher: Some(publisher),
            ids,
            id: String::with_capacity(96),
            in_memory,
            spool_dir,
            final_stats: None,
            drops_told: 0,
            drops_told_at: None,
        })
    }

    fn current_stats(&self) -> SinkStats {
        let spool = self.shared.spool();
        SinkStats {
            published: self.shared.published.load(Ordering::Relaxed),
            acknowledged: self.shared.acknowledged.load(Ordering::Relaxed),
            spooled: spool.pending(),
            spool_dropped: spool.dropped(),
            duplicates: self.shared.duplicates.load(Ordering::Relaxed),
            recovered: self.shared.recovered,
            rejected: self.shared.rejected.load(Ordering::Relaxed),
            refused: self.shared.refused.load(Ordering::Relaxed),
        }
    }
}

impl EventSink for NatsSink {
    fn send(&mut self, key: EventKey, event: &[u8]) -> io::Result<()> {
        self.ids.write(key, &mut self.id);
        let (readable, dropped) = {
            let mut spool = self.shared.spool();
            spool.append(self.id.as_bytes(), event)?;
            (!spool.caught_up(), spool.dropped())
        };
        if dropped > self.drops_told
            && self
                .drops_told_at
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            eprintln!(
                "fsense: spool full: {dropped} oldest events dropped so far (--spool-max-mb)"
            );
            self.drops_told = dropped;
            self.drops_told_at = Some(Instant::now());
        }
        if readable {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.shared.spool().flush()?;
        self.shared.wake.notify_one();
        Ok(())
    }

    fn stats(&self) -> SinkStats {
        match &self.final_stats {
            Some(s) => s.clone(),
            None => self.current_stats(),
        }
    }

    fn finish(&mut self) -> io::Result<SinkStats> {
        if let Some(s) = &self.final_stats {
            return Ok(s.clone());
        }
        self.shared.spool().flush()?;
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
        if let Some(t) = self.publisher.take() {
            let _ = t.join();
        }
        self.shared.spool().sync()?;
        let stats = self.current_stats();
        if stats.spooled > 0 {
            match &self.spool_dir {
                Some(dir) if !self.in_memory => eprintln!(
                    "fsense: {} events not acknowledged by NATS stay in the spool {} for the next run",
                    stats.spooled,
                    dir.display()
                ),
                _ => eprintln!(
                    "fsense: {} events were not acknowledged by NATS and are lost (no --spool-dir)",
                    stats.spooled
                ),
            }
        }
        self.final_stats = Some(stats.clone());
        Ok(stats)
    }
}

impl Drop for NatsSink {
    fn drop(&mut self) {
        if let Some(t) = self.publisher.take() {
            self.shared.abort.store(true, Ordering::SeqCst);
            self.shared.stop.store(true, Ordering::SeqCst);
            self.shared.wake.notify_one();
            let _ = t.join();
            let _ = self.shared.spool().sync();
        }
    }
}

async fn options(
    config: &SinkConfig,
    disconnects: &Arc<Disconnects>,
) -> Result<ConnectOptions, String> {
    let mut o = match &config.creds {
        Some(path) => ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        None => ConnectOptions::new(),
    };
    if config.url.tls {
        // rustls is built with two crypto providers here (ring for async-nats, aws-lc-rs for the
        // content crate's HTTPS) and then panics unless one is chosen for the process.
        let _ = async_nats::rustls::crypto::ring::default_provider().install_default();
        o = o.require_tls(true);
    }
    if let Some(ca) = &config.ca_file {
        o = o.add_root_certificates(ca.clone());
    }
    let told = disconnects.clone();
    Ok(o.connection_timeout(Duration::from_secs(2))
        .client_capacity(WINDOW * 2)
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(move |event| {
            let told = told.clone();
            async move {
                if matches!(event, Event::Disconnected) {
                    told.count.fetch_add(1, Ordering::SeqCst);
                    told.wake.notify_one();
                }
            }
        })
        .name("fsense"))
}

/// The wait before connection attempt `attempt` (1 for the first). async-nats waits this long
/// before every attempt, the first connection's included: the first is immediate, then 100 ms
/// more per failed attempt up to [`MAX_RECONNECT_DELAY`].
fn reconnect_delay(attempt: usize) -> Duration {
    let failed = u32::try_from(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
    (Duration::from_millis(100) * failed.min(10)).min(MAX_RECONNECT_DELAY)
}

/// Connects; a server that does not answer now, or refuses the TLS handshake or the
/// credentials, is reported in one line and retried in the background.
async fn connect(config: &SinkConfig, disconnects: &Arc<Disconnects>) -> Result<Client, String> {
    match options(config, disconnects)
        .await?
        .connect(config.url.server.as_str())
        .await
    {
        Ok(c) => Ok(c),
        Err(e) => {
            eprintln!(
                "fsense: {}",
                nats_failure::describe_connect(config.url.server.as_str(), &e)
            );
            options(config, disconnects)
                .await?
                .retry_on_initial_connect()
                .connect(config.url.server.as_str())
                .await
                .map_err(|e| format!("cannot connect to NATS: {e}"))
        }
    }
}

/// A CA file the TLS connection could not use is a usage error now, not an outage later.
fn check_ca_file(path: &std::path::Path) -> Result<(), String> {
    use async_nats::rustls::pki_types::{CertificateDer, pem::PemObject};
    let bad = |why: String| format!("--nats-ca-file {}: {why}", path.display());
    let mut certificates = 0;
    for c in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
        c.map_err(|e| bad(e.to_string()))?;
        certificates += 1;
    }
    if certificates == 0 {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Whether a stream subject (with `*` and `>` wildcards) takes `subject`.
fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// What became of one publish.
enum Outcome {
    Stored { duplicate: bool },
    Failed(Failure),
}

/// An event published and not yet acknowledged: the token of its reply subject, its id (for
/// stderr), where acknowledging it moves the spool, when it was sent, and the answer once here.
struct InFlight {
    token: u64,
    id: String,
    after: Cursor,
    sent: Instant,
    outcome: Option<Outcome>,
}

/// The in-flight publishes, oldest first; their tokens are consecutive.
#[derive(Default)]
struct Window {
    entries: VecDeque<InFlight>,
}

impl Window {
    /// Files the answer a reply brings. A reply for a publish no longer in the window (answered
    /// after a timeout made the sink publish it again) is ignored: the message id makes the
    /// server drop the second copy, and its answer says `duplicate`.
    fn answer(&mut self, reply: Message, prefix: &str) {
        let Some(token) = puback::reply_token(reply.subject.as_str(), prefix) else {
            return;
        };
        let Some(front) = self.entries.front().map(|f| f.token) else {
            return;
        };
        let Some(entry) = token
            .checked_sub(front)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.entries.get_mut(i))
            .filter(|e| e.token == token && e.outcome.is_none())
        else {
            return;
        };
        entry.outcome = Some(match reply.status {
            Some(StatusCode::NO_RESPONDERS) => Outcome::Failed(nats_failure::no_stream()),
            Some(status) if !status.is_success() => Outcome::Failed(Failure::transient(format!(
                "the server answered status {status}"
            ))),
            _ => match nats_failure::of_answer(&puback::parse(&reply.payload)) {
                Ok(duplicate) => Outcome::Stored { duplicate },
                Err(f) => Outcome::Failed(f),
            },
        });
    }
}

/// A JetStream context for the stream API (creating and looking up the stream).
fn context(client: &Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(ACK_TIMEOUT)
        .build(client.clone())
}

struct Publisher {
    shared: Arc<Shared>,
    client: Client,
    js: jetstream::Context,
    config: SinkConfig,
    subject: async_nats::Subject,
    disconnects: Arc<Disconnects>,
    disconnects_seen: u64,
    /// The subscription the answers arrive on (`<inbox>.*`), made once connected.
    answers: Option<Subscriber>,
    /// `<inbox>.`: a reply subject is this and a token.
    reply_prefix: String,
    reply: String,
    next_token: u64,
    inflight: Window,
    batch: Vec<Outgoing>,
    /// Publishes outstanding at most: [`WINDOW`], or 1 (a probe) after a refusal.
    window: usize,
    stream_ready: bool,
    /// A failure was reported and not yet followed by a success.
    failing: bool,
    /// The refusal last reported (a new reason is reported again).
    refusal: Option<String>,
    last_progress: Instant,
    stopping_since: Option<Instant>,
}

impl Publisher {
    fn new(
        shared: Arc<Shared>,
        client: Client,
        disconnects: Arc<Disconnects>,
        config: SinkConfig,
    ) -> Self {
        let subject = async_nats::Subject::from(config.url.subject.as_str());
        let disconnects_seen = disconnects.count.load(Ordering::SeqCst);
        let reply_prefix = format!("{}.", client.new_inbox());
        // A server not reached at start was said in one line by `connect`.
        let failing = client.connection_state() != State::Connected;
        Self {
            shared,
            js: context(&client),
            client,
            config,
            subject,
            disconnects,
            disconnects_seen,
            answers: None,
            reply_prefix,
            reply: String::with_capacity(64),
            next_token: 0,
            inflight: Window::default(),
            batch: Vec::with_capacity(WINDOW),
            window: WINDOW,
            stream_ready: false,
            failing,
            refusal: None,
            last_progress: Instant::now(),
            stopping_since: None,
        }
    }

    /// Aborted, or stopping with nothing left to deliver or no progress for the drain time.
    fn should_end(&mut self) -> bool {
        if self.shared.abort.load(Ordering::SeqCst) {
            return true;
        }
        if !self.shared.stop.load(Ordering::SeqCst) {
            return false;
        }
        let since = *self.stopping_since.get_or_insert_with(Instant::now);
        let idle_from = self.last_progress.max(since);
        self.shared.spool().pending() == 0 || idle_from.elapsed() > self.config.drain
    }

    /// Whether the connection was lost since the last look (a quick reconnect included).
    fn lost_connection(&mut self) -> bool {
        let n = self.disconnects.count.load(Ordering::SeqCst);
        let lost = n != self.disconnects_seen;
        self.disconnects_seen = n;
        lost
    }

    async fn run(mut self) {
        loop {
            if self.should_end() {
                break;
            }
            let lost = self.lost_connection();
            let connected = self.client.connection_state() == State::Connected;
            if (lost || !connected) && (!self.inflight.entries.is_empty() || !self.failing) {
                // What was in flight on the old connection will never be acknowledged: do not
                // wait for the acknowledgement timeout, publish again once connected. With
                // nothing in flight the outage is still said (once), as events now wait.
                self.failed(Failure::transient("the connection to the server was lost"));
            }
            if !connected {
                self.pause(RETRY_PAUSE).await;
                continue;
            }
            if let Err(f) = self.prepare().await {
                let pause = self.failed(f);
                self.pause(pause).await;
                continue;
            }
            if let Err(f) = self.fill().await {
                let pause = self.failed(f);
                self.pause(pause).await;
                continue;
            }
            if self.inflight.entries.is_empty() {
                let _ = self.shared.spool().sync_acked();
                tokio::select! {
                    _ = self.shared.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                continue;
            }
            if let Err(f) = self.collect().await {
                let pause = self.failed(f);
                self.pause(pause).await;
            }
        }
        // Nothing to flush: what counts was acknowledged (a flush would wait for a server
        // that may be gone).
        self.inflight.entries.clear();
    }

    /// The answers' subscription and the stream, before the first publish and after a failure.
    async fn prepare(&mut self) -> Result<(), Failure> {
        if self.answers.is_none() {
            // The client subscribes again by itself after a reconnect.
            let answers = self
                .client
                .subscribe(format!("{}*", self.reply_prefix))
                .await
                .map_err(|e| Failure::transient(format!("cannot subscribe for answers: {e}")))?;
            self.answers = Some(answers);
        }
        if !self.stream_ready {
            self.ensure_stream().await?;
            self.stream_ready = true;
        }
        Ok(())
    }

    /// Waits `how_long`, or less when the run ends meanwhile.
    async fn pause(&mut self, how_long: Duration) {
        let until = Instant::now() + how_long;
        while !self.should_end() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left.min(Duration::from_millis(20))).await;
        }
    }

    /// Something went wrong: say so (once per outage, once per refusal reason), publish again
    /// from the first unacknowledged event, and return how long to wait before that.
    fn failed(&mut self, failure: Failure) -> Duration {
        // Answers still on their way are for tokens no longer in flight: ignored on arrival.
        self.inflight.entries.clear();
        self.stream_ready = false;
        self.shared.spool().rewind();
        match failure.verdict {
            Verdict::Refused => {
                self.shared.refused.fetch_add(1, Ordering::Relaxed);
                if self.refusal.as_deref() != Some(failure.reason.as_str()) {
                    eprintln!(
                        "fsense: NATS refuses the events: {}; they stay in the spool (asking again every {} s)",
                        one_line(&failure.reason),
                        REFUSED_PAUSE.as_secs()
                    );
                    self.refusal = Some(failure.reason);
                }
                self.failing = true;
                // Ask again with one message, not a window of them.
                self.window = 1;
                REFUSED_PAUSE
            }
            Verdict::Transient | Verdict::RejectEvent => {
                if !self.failing {
                    eprintln!(
                        "fsense: NATS: {}; spooling and retrying",
                        one_line(&failure.reason)
                    );
                    self.failing = true;
                }
                RETRY_PAUSE
            }
        }
    }

    /// An event the server will never store leaves the spool, counted (see `nats_failure`).
    fn reject(&self, id: &str, why: &str) {
        let before = self.shared.rejected.fetch_add(1, Ordering::Relaxed);
        if before == 0 {
            eprintln!(
                "fsense: NATS rejects event {id}: {}; not delivered, counted as rejected (later ones too)",
                one_line(why)
            );
        }
    }

    async fn ensure_stream(&self) -> Result<(), Failure> {
        let name = &self.config.stream;
        let config = stream::Config {
            name: name.clone(),
            subjects: vec![self.config.url.subject.clone()],
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            num_replicas: self.config.replicas,
            ..Default::default()
        };
        let stream = self
            .js
            .get_or_create_stream(config)
            .await
            .map_err(|e| nats_failure::of_stream(name, &e))?;
        let subjects = &stream.cached_info().config.subjects;
        if !subjects
            .iter()
            .any(|p| subject_matches(p, &self.config.url.subject))
        {
            return Err(Failure::refused(format!(
                "stream {name} does not take subject {} (its subjects: {})",
                self.config.url.subject,
                subjects.join(", ")
            )));
        }
        Ok(())
    }

    /// Publishes spooled events until the window is full or the spool is read.
    async fn fill(&mut self) -> Result<(), Failure> {
        let room = self.window.saturating_sub(self.inflight.entries.len());
        if room == 0 {
            return Ok(());
        }
        self.batch.clear();
        if let Err(e) = self.shared.spool().read_next(room, &mut self.batch) {
            // Damaged spool data is counted as dropped by the spool; say so and go on.
            eprintln!("fsense: spool: {}", one_line(&e.to_string()));
        }
        for out in std::mem::take(&mut self.batch) {
            let token = self.next_token;
            self.next_token += 1;
            self.reply.clear();
            let _ = write!(self.reply, "{}{token}", self.reply_prefix);
            let mut headers = HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, out.id.as_str());
            let sent = self
                .client
                .publish_with_reply_and_headers(
                    self.subject.clone(),
                    async_nats::Subject::from(self.reply.as_str()),
                    headers,
                    out.payload.into(),
                )
                .await;
            let outcome = match sent {
                Ok(()) => {
                    self.shared.published.fetch_add(1, Ordering::Relaxed);
                    None
                }
                Err(e) => {
                    let f = nats_failure::of_send(&e);
                    if f.verdict != Verdict::RejectEvent {
                        return Err(f);
                    }
                    // Never sent: it leaves the spool in order, with the acknowledgements.
                    Some(Outcome::Failed(f))
                }
            };
            self.inflight.entries.push_back(InFlight {
                token,
                id: out.id,
                after: out.after,
                sent: Instant::now(),
                outcome,
            });
        }
        Ok(())
    }

    /// Waits for an answer (or a lost connection, or the oldest publish's deadline), takes
    /// every answer already there, and moves the spool's acknowledged cursor over the answered
    /// prefix.
    async fn collect(&mut self) -> Result<(), Failure> {
        let Some(answers) = self.answers.as_mut() else {
            return Ok(());
        };
        let waiting = self
            .inflight
            .entries
            .front()
            .filter(|f| f.outcome.is_none())
            .map(|f| f.sent + ACK_TIMEOUT);
        if let Some(deadline) = waiting {
            tokio::select! {
                reply = answers.next() => match reply {
                    Some(r) => self.inflight.answer(r, &self.reply_prefix),
                    None => {
                        self.answers = None;
                        return Err(Failure::transient("the answers' subscription ended"));
                    }
                },
                _ = self.disconnects.wake.notified() => return Ok(()),
                _ = tokio::time::sleep_until(deadline.into()) => {
                    return Err(nats_failure::timed_out(ACK_TIMEOUT));
                }
            }
        }
        while let Some(Some(reply)) = answers.next().now_or_never() {
            self.inflight.answer(reply, &self.reply_prefix);
        }
        let mut acked: Option<Cursor> = None;
        let mut failure = None;
        while let Some(done) = self.inflight.entries.pop_front_if(|e| e.outcome.is_some()) {
            match done.outcome {
                Some(Outcome::Stored { duplicate }) => {
                    self.shared.acknowledged.fetch_add(1, Ordering::Relaxed);
                    if duplicate {
                        self.shared.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(Outcome::Failed(f)) if f.verdict == Verdict::RejectEvent => {
                    self.reject(&done.id, &f.reason);
                }
                Some(Outcome::Failed(f)) => {
                    failure = Some(f);
                    break;
                }
                None => {}
            }
            acked = Some(done.after);
        }
        if let Some(a) = acked {
            self.last_progress = Instant::now();
            if failure.is_none() && self.failing {
                eprintln!("fsense: NATS: delivering again");
                self.failing = false;
                self.refusal = None;
                self.window = WINDOW;
            }
            if let Err(e) = self.shared.spool().ack(a) {
                return Err(Failure::transient(format!("spool: {e}")));
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_RECONNECT_DELAY, reconnect_delay, subject_matches};
    use std::time::Duration;

    #[test]
    fn the_first_connection_attempt_does_not_wait() {
        // async-nats counts the first attempt as 1 and sleeps this long before it: a wait here
        // delayed every start (and every first reconnect) by 100 ms.
        assert_eq!(reconnect_delay(0), Duration::ZERO);
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), Duration::from_millis(100));
        assert_eq!(reconnect_delay(5), Duration::from_millis(400));
        assert_eq!(reconnect_delay(usize::MAX), MAX_RECONNECT_DELAY);
    }

    #[test]
    fn stream_subjects_match_like_nats() {
        assert!(subject_matches("fsense.events", "fsense.events"));
        assert!(subject_matches("fsense.*", "fsense.events"));
        assert!(subject_matches("fsense.>", "fsense.a.b"));
        assert!(subject_matches(">", "x"));
        assert!(!subject_matches("fsense.*", "fsense.a.b"));
        assert!(!subject_matches("fsense.>", "fsense"));
        assert!(!subject_matches("fsense", "fsense.events"));
    }
}
