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
use async_nats::{Client, HeaderMap, Message, StatusCode, Subscriber};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::Notify;

use super::config::SinkConfig;
use super::nats_connect::{Disconnects, check_ca_file, connect, reconnect};
use super::nats_failure::{self, Failure, REFUSED_PAUSE, Verdict, subject_matches};
use super::nats_guard::{self, Ended};
use super::spool::{Cursor, Outgoing, Spool};
use super::{EventKey, EventSink, MessageIds, SinkStats, one_line, puback};

pub use super::nats_connect::WINDOW;
/// How long an acknowledgement may take before the publish counts as failed.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between attempts while the server is away.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// The duplicate window of a stream this sink creates.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

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
    publisher_restarts: AtomicU64,
    recovered: u64,
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
    /// When a spool write error was last said (at most one line every 10 s).
    spool_error_told_at: Option<Instant>,
}

impl NatsSink {
    /// Opens the spool, connects (an unreachable server is one line on stderr, then spooling)
    /// and starts the publisher.
    pub fn start(config: SinkConfig) -> Result<Self, String> {
        super::install_crypto_provider();
        nats_guard::install_panic_hook(false);
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
            publisher_restarts: AtomicU64::new(0),
            recovered: recovery.pending,
        });
        let ids = MessageIds::new(&config.host, config.run);
        let in_memory = config.spool.dir.is_none();
        let spool_dir = config.spool.dir.clone();
        let for_thread = shared.clone();
        let publisher = std::thread::Builder::new()
            .name(nats_guard::THREAD_NAME.into())
            .spawn(move || publish_supervised(for_thread, config, (runtime, client, disconnects)))
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
            spool_error_told_at: None,
        })
    }

    /// A spool write failed (a full disk, an I/O error): the spool counted what it lost; say so
    /// (at most one line every 10 s) and go on. The run, and `--output`, never stop for it.
    fn spool_failed(&mut self, e: &io::Error) {
        let dropped = self.shared.spool().dropped();
        self.drops_told = dropped;
        if self
            .spool_error_told_at
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            let spool = match &self.spool_dir {
                Some(d) => format!("the spool {}", d.display()),
                None => "the in-memory spool".into(),
            };
            eprintln!(
                "fsense: cannot write {spool}: {}; events it could not keep are counted as spool_dropped ({dropped} so far), the watch and --output go on",
                one_line(&e.to_string())
            );
            self.spool_error_told_at = Some(Instant::now());
        }
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
            publisher_restarts: self.shared.publisher_restarts.load(Ordering::Relaxed),
        }
    }
}

impl EventSink for NatsSink {
    fn send(&mut self, key: EventKey, event: &[u8]) -> io::Result<()> {
        self.ids.write(key, &mut self.id);
        let (appended, readable, dropped) = {
            let mut spool = self.shared.spool();
            let appended = spool.append(self.id.as_bytes(), event);
            (appended, !spool.caught_up(), spool.dropped())
        };
        if let Err(e) = appended {
            self.spool_failed(&e);
        }
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
        let flushed = self.shared.spool().flush();
        if let Err(e) = flushed {
            self.spool_failed(&e);
        }
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
        let flushed = self.shared.spool().flush();
        if let Err(e) = flushed {
            self.spool_failed(&e);
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
        if let Some(t) = self.publisher.take() {
            let _ = t.join();
        }
        let synced = self.shared.spool().sync();
        if let Err(e) = synced {
            self.spool_failed(&e);
        }
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

/// The publisher thread: runs the publisher on the first connection, and after a failure (a
/// panic in it or in the client's tasks) on a new runtime and client, counted (`nats_guard`).
fn publish_supervised(
    shared: Arc<Shared>,
    config: SinkConfig,
    first: (tokio::runtime::Runtime, Client, Arc<Disconnects>),
) {
    let mut first = Some(first);
    let ending = || shared.abort.load(Ordering::SeqCst) || shared.stop.load(Ordering::SeqCst);
    nats_guard::supervise(
        &shared.publisher_restarts,
        Duration::from_secs(1),
        ending,
        || {
            let panics = nats_guard::panics();
            let (runtime, client, disconnects) = match first.take() {
                Some(f) => f,
                None => match reconnect(&config) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("fsense: NATS: {}", one_line(&e));
                        return Ended::Failed;
                    }
                },
            };
            // The JetStream context spawns a task: it is built inside the runtime.
            let (shared, config) = (shared.clone(), config.clone());
            runtime.block_on(async move {
                let watchdog = tokio::spawn(nats_guard::bound_inbound(
                    client.clone(),
                    config.url.shown.clone(),
                ));
                let ended = Publisher::new(shared, client, disconnects, config, panics)
                    .run()
                    .await;
                watchdog.abort();
                ended
            })
        },
    );
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
    /// Publisher-thread panics counted before this run: one more means a client task died.
    panics_before: u64,
    /// TLS refusals already said (see `nats_guard`).
    tls_demanded_seen: u64,
    /// When a spool error on acknowledgement was last said.
    spool_error_told_at: Option<Instant>,
}

impl Publisher {
    fn new(
        shared: Arc<Shared>,
        client: Client,
        disconnects: Arc<Disconnects>,
        config: SinkConfig,
        panics_before: u64,
    ) -> Self {
        let subject = async_nats::Subject::from(config.url.subject.as_str());
        let disconnects_seen = disconnects.count.load(Ordering::SeqCst);
        let reply_prefix = format!("{}.", client.new_inbox());
        // A server not reached at start was said in one line by `connect`.
        let failing = client.connection_state() != State::Connected;
        let tls_demanded_seen = disconnects.tls_demanded.load(Ordering::SeqCst);
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
            // `connect` said a TLS refusal already: not again for the same outage.
            refusal: (tls_demanded_seen > 0).then(|| "tls".to_string()),
            last_progress: Instant::now(),
            stopping_since: None,
            panics_before,
            tls_demanded_seen,
            spool_error_told_at: None,
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

    async fn run(mut self) -> Ended {
        loop {
            if self.should_end() {
                break;
            }
            if nats_guard::panics() != self.panics_before {
                // A task of the client (its connection) panicked and is gone: start over.
                return Ended::Failed;
            }
            let demanded = self.disconnects.tls_demanded.load(Ordering::SeqCst);
            if demanded != self.tls_demanded_seen {
                self.tls_demanded_seen = demanded;
                if !self.failing || self.refusal.as_deref() != Some("tls") {
                    eprintln!(
                        "fsense: {}",
                        nats_guard::tls_demanded_line(&self.config.url.shown)
                    );
                    self.failing = true;
                    self.refusal = Some("tls".into());
                }
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
        Ended::Done
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
            let saved = self.shared.spool().ack(a);
            if let Err(e) = saved {
                // The acknowledgement holds in memory; the file that keeps it across a restart
                // could not be written (a full disk): a restart publishes those events again,
                // and their message ids make the server drop the copies.
                if self
                    .spool_error_told_at
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
                {
                    eprintln!(
                        "fsense: spool: cannot save the acknowledged position: {}",
                        one_line(&e.to_string())
                    );
                    self.spool_error_told_at = Some(Instant::now());
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }
}
