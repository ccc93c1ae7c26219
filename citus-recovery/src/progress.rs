//! Live progress of long work: the events a plan reports while it runs, and where they go.
//!
//! A caller puts a [`ProgressSink`] into [`RunOptions::progress`](crate::RunOptions); every step
//! of every node then reports a [`ProgressEvent`]: once when it starts, while it works (bytes of a
//! base backup or an extraction, WAL replayed towards the restore point), and once when it has
//! finished, at 100%. Events of one node and step come at most [`EVERY`] apart, apart from the
//! first and the last. `done <= total` always holds.
//!
//! The code doing the work reports through the functions of this module ([`update`],
//! [`advance`], ...), which find the step's reporter in a task-local (or, on a blocking thread,
//! a thread-local) slot; without a sink they cost nothing.

use std::cell::RefCell;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The shortest time between two progress events of one node's step.
pub const EVERY: Duration = Duration::from_millis(250);

/// `start`: a step began (`done` 0).
pub const STATE_START: &str = "start";
/// `progress`: a step is under way.
pub const STATE_PROGRESS: &str = "progress";
/// `done`: a step finished (`done == total`).
pub const STATE_DONE: &str = "done";

/// The unit of [`ProgressEvent::done`] and `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressUnit {
    /// A step without a measure of its own: 0 of 1 until it is done.
    Steps,
    /// Bytes of a base backup or of the backup's tar files.
    Bytes,
    /// Bytes of WAL replayed, from where replay was first seen to the restore point's record.
    WalBytes,
}

impl ProgressUnit {
    /// The unit's name (`steps`, `bytes`, `wal_bytes`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProgressUnit::Steps => "steps",
            ProgressUnit::Bytes => "bytes",
            ProgressUnit::WalBytes => "wal_bytes",
        }
    }
}

/// One report of a node's step.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(get_all, frozen, module = "citus_recovery", name = "ProgressEvent")
)]
pub struct ProgressEvent {
    /// The node.
    pub node: String,
    /// The step, as plans name it in JSON (`base_backup`, `extract`, `wait_paused`, ...).
    pub phase: String,
    /// [`STATE_START`], [`STATE_PROGRESS`] or [`STATE_DONE`].
    pub state: String,
    /// How much is done, in `unit`.
    pub done: u64,
    /// How much there is in all, when known; never below `done`.
    pub total: Option<u64>,
    /// `steps`, `bytes` or `wal_bytes` (see [`ProgressUnit`]).
    pub unit: String,
    /// Units per second since the step's figures began, once measurable (half a second on).
    pub rate: Option<f64>,
    /// Seconds until done at that rate, when the total is known.
    pub eta_secs: Option<f64>,
    /// Seconds since the step started.
    pub elapsed_secs: f64,
    /// What the step does, in words (the plan's line for it on `start`).
    pub message: String,
}

impl ProgressEvent {
    /// `done` as a fraction of `total` (0.0 to 1.0), when the total is known and not zero.
    pub fn fraction(&self) -> Option<f64> {
        self.total
            .filter(|t| *t > 0)
            .map(|t| self.done as f64 / t as f64)
    }
}

#[cfg(feature = "python")]
#[pyo3::pymethods]
impl ProgressEvent {
    fn __repr__(&self) -> String {
        format!(
            "ProgressEvent(node={:?}, phase={:?}, state={:?}, done={}, total={}, unit={:?})",
            self.node,
            self.phase,
            self.state,
            self.done,
            self.total.map_or("None".into(), |t| t.to_string()),
            self.unit
        )
    }
}

/// Where progress events go: a function called on the thread doing the work, so it must be
/// quick (hand the event to a channel or a progress bar, no blocking I/O).
#[derive(Clone)]
pub struct ProgressSink(Arc<dyn Fn(&ProgressEvent) + Send + Sync>);

impl ProgressSink {
    /// A sink calling `f` for every event.
    pub fn new(f: impl Fn(&ProgressEvent) + Send + Sync + 'static) -> Self {
        ProgressSink(Arc::new(f))
    }

    /// Hands `event` to the sink.
    pub fn emit(&self, event: &ProgressEvent) {
        (self.0)(event)
    }
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressSink(..)")
    }
}

/// The progress of one node's step: its figures, the rate, and the throttle.
#[derive(Debug)]
pub struct Reporter {
    sink: ProgressSink,
    node: String,
    phase: String,
    unit: ProgressUnit,
    started: Instant,
    /// When the current unit's figures began: the rate counts from there.
    measured_since: Instant,
    last: Option<Instant>,
    done: u64,
    total: Option<u64>,
    /// `done` when the unit was set: the rate counts only what this step did.
    first_done: u64,
    message: String,
}

impl Reporter {
    /// A reporter for `phase` on `node`; emits the `start` event.
    pub fn start(sink: ProgressSink, node: &str, phase: &str, message: String) -> Self {
        let mut r = Reporter {
            sink,
            node: node.into(),
            phase: phase.into(),
            unit: ProgressUnit::Steps,
            started: Instant::now(),
            measured_since: Instant::now(),
            last: None,
            done: 0,
            total: Some(1),
            first_done: 0,
            message,
        };
        r.emit(STATE_START);
        r
    }

    /// Sets how much is done and, when known, the total (both absolute, in `unit`); emits an
    /// event unless one went out less than [`EVERY`] ago.
    pub fn update(&mut self, unit: ProgressUnit, done: u64, total: Option<u64>) {
        let new_unit = unit != self.unit;
        if new_unit {
            self.unit = unit;
            self.first_done = done;
            self.measured_since = Instant::now();
        }
        self.done = done;
        // An estimate may fall short of the real size: the total grows rather than `done`
        // passing it.
        self.total = total.map(|t| t.max(done));
        // The first figures of a unit go out at once: they say what the step measures.
        if new_unit || self.last.map_or(true, |t| t.elapsed() >= EVERY) {
            self.emit(STATE_PROGRESS);
        }
    }

    /// Adds `n` to `done`.
    pub fn advance(&mut self, n: u64) {
        let (unit, done, total) = (self.unit, self.done + n, self.total);
        self.update(unit, done, total);
    }

    /// Replaces the message (what the step waits for now) and emits it, throttled.
    pub fn message(&mut self, message: String) {
        self.message = message;
        self.tick();
    }

    /// Emits the current figures again unless an event went out less than [`EVERY`] ago: a
    /// heartbeat while the step waits, so a slow step never looks stuck.
    pub fn tick(&mut self) {
        if self.last.map_or(true, |t| t.elapsed() >= EVERY) {
            self.emit(STATE_PROGRESS);
        }
    }

    /// Emits the `done` event: `done` set to the total, so it reads 100%.
    pub fn finish(&mut self) {
        let total = self.total.unwrap_or(self.done).max(self.done);
        self.done = total;
        self.total = Some(total);
        if self.unit == ProgressUnit::Steps {
            (self.done, self.total) = (1, Some(1));
        }
        self.emit(STATE_DONE);
    }

    fn emit(&mut self, state: &str) {
        self.last = Some(Instant::now());
        let elapsed = self.started.elapsed().as_secs_f64();
        let measuring = self.measured_since.elapsed().as_secs_f64();
        let measured = self.done.saturating_sub(self.first_done);
        let rate = (self.unit != ProgressUnit::Steps && measuring >= 0.5 && measured > 0)
            .then(|| measured as f64 / measuring);
        let eta_secs = match (rate, self.total) {
            (Some(r), Some(t)) if state != STATE_DONE => {
                Some(t.saturating_sub(self.done) as f64 / r)
            }
            (_, Some(_)) if state == STATE_DONE => Some(0.0),
            _ => None,
        };
        self.sink.emit(&ProgressEvent {
            node: self.node.clone(),
            phase: self.phase.clone(),
            state: state.into(),
            done: self.done,
            total: self.total,
            unit: self.unit.as_str().into(),
            rate,
            eta_secs,
            elapsed_secs: elapsed,
            message: self.message.clone(),
        });
    }
}

/// A step's reporter, shared with the code doing the work.
type Shared = Arc<Mutex<Reporter>>;

tokio::task_local! {
    static TASK: Shared;
}

thread_local! {
    static THREAD: RefCell<Option<Shared>> = const { RefCell::new(None) };
}

/// Runs `work` (one node's step) reporting to `sink`: a `start` event now, the work's own
/// reports while it runs, and a `done` event at 100% if it succeeds. Without a sink, just runs it.
pub async fn run_step<T, E>(
    sink: Option<&ProgressSink>,
    node: &str,
    phase: &str,
    message: String,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let Some(sink) = sink else {
        return work.await;
    };
    let shared = Arc::new(Mutex::new(Reporter::start(
        sink.clone(),
        node,
        phase,
        message,
    )));
    let result = TASK.scope(shared.clone(), work).await;
    if result.is_ok() {
        lock(&shared).finish();
    }
    result
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Reporter> {
    // A sink that panicked leaves the figures usable.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The reporter of the step running on this task or thread, if there is one.
pub fn current() -> Option<Arc<Mutex<Reporter>>> {
    TASK.try_with(Arc::clone)
        .ok()
        .or_else(|| THREAD.with(|t| t.borrow().clone()))
}

/// Runs `f` (blocking work on another thread) with `reporter`, taken from [`current`] before
/// the work left its task, as this thread's reporter.
pub fn on_thread<T>(reporter: Option<Arc<Mutex<Reporter>>>, f: impl FnOnce() -> T) -> T {
    let before = THREAD.with(|t| t.replace(reporter));
    let out = f();
    THREAD.with(|t| *t.borrow_mut() = before);
    out
}

fn with_current(f: impl FnOnce(&mut Reporter)) {
    if let Some(shared) = current() {
        f(&mut lock(&shared));
    }
}

/// Reports how much the current step has done of how much (absolute figures).
pub fn update(unit: ProgressUnit, done: u64, total: Option<u64>) {
    with_current(|r| r.update(unit, done, total));
}

/// Adds `n` to what the current step has done.
pub fn advance(n: u64) {
    with_current(|r| r.advance(n));
}

/// Says what the current step is doing or waiting for now.
pub fn message(text: impl Into<String>) {
    let text = text.into();
    with_current(move |r| r.message(text));
}

/// A heartbeat of the current step while it waits (see [`Reporter::tick`]).
pub fn tick() {
    with_current(|r| r.tick());
}

/// A reader that reports every byte read through it as done by the current step.
#[derive(Debug)]
pub struct CountingReader<R>(pub R);

impl<R: std::io::Read> std::io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        advance(n as u64);
        Ok(n)
    }
}

/// Runs `work` (a base backup of `client`'s server) and meanwhile reports its progress from
/// `pg_stat_progress_basebackup`: bytes streamed of the server's estimate.
pub(crate) async fn base_backup<T>(
    client: &tokio_postgres::Client,
    work: impl Future<Output = T>,
) -> T {
    if current().is_none() {
        return work.await;
    }
    let watch = async {
        loop {
            tokio::time::sleep(EVERY * 2).await;
            // One backup per server at a time is what the lock allows; the newest row is ours.
            let row = client
                .query_opt(
                    "SELECT backup_total, backup_streamed FROM pg_stat_progress_basebackup \
                     ORDER BY pid DESC LIMIT 1",
                    &[],
                )
                .await;
            if let Ok(Some(row)) = row {
                let (total, streamed): (Option<i64>, i64) = (row.get(0), row.get(1));
                update(
                    ProgressUnit::Bytes,
                    streamed.max(0) as u64,
                    total.map(|t| t.max(0) as u64),
                );
            }
        }
    };
    tokio::pin!(work);
    tokio::select! {
        out = &mut work => out,
        never = watch => never,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collecting() -> (ProgressSink, Arc<Mutex<Vec<ProgressEvent>>>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink_events = events.clone();
        (
            ProgressSink::new(move |e| sink_events.lock().unwrap().push(e.clone())),
            events,
        )
    }

    #[tokio::test]
    async fn a_step_starts_reports_and_ends_at_full() {
        let (sink, events) = collecting();
        run_step(Some(&sink), "w1", "extract", "x".into(), async {
            update(ProgressUnit::Bytes, 0, Some(100));
            advance(30);
            std::thread::sleep(EVERY);
            advance(30);
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
        let events = events.lock().unwrap();
        let states: Vec<&str> = events.iter().map(|e| e.state.as_str()).collect();
        assert_eq!(states.first(), Some(&STATE_START));
        assert_eq!(states.last(), Some(&STATE_DONE));
        // The throttle let the first update and the one after EVERY through, not the one between.
        assert_eq!(events.len(), 4, "{events:?}");
        assert_eq!(events[2].done, 60);
        let last = events.last().unwrap();
        assert_eq!((last.done, last.total), (100, Some(100)));
        assert_eq!(last.unit, "bytes");
        assert!(events.iter().all(|e| e.total.map_or(true, |t| e.done <= t)));
        assert!(events
            .iter()
            .all(|e| e.node == "w1" && e.phase == "extract"));
    }

    #[tokio::test]
    async fn a_failed_step_has_no_done_event_and_no_sink_costs_nothing() {
        let (sink, events) = collecting();
        let r = run_step(Some(&sink), "w1", "stop", "x".into(), async {
            Err::<(), _>("boom")
        })
        .await;
        assert!(r.is_err());
        assert_eq!(events.lock().unwrap().len(), 1);
        // Outside a step, reports go nowhere.
        update(ProgressUnit::Bytes, 5, Some(1));
        assert!(current().is_none());
        run_step(None, "w1", "stop", "x".into(), async { Ok::<_, ()>(()) })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_estimate_below_the_real_size_grows() {
        let (sink, events) = collecting();
        let mut r = Reporter::start(sink, "c", "base_backup", String::new());
        r.update(ProgressUnit::Bytes, 150, Some(100));
        r.finish();
        let events = events.lock().unwrap();
        assert_eq!((events[1].done, events[1].total), (150, Some(150)));
        assert_eq!((events[2].done, events[2].total), (150, Some(150)));
    }

    #[test]
    fn a_waiting_step_sends_heartbeats_at_most_every_quarter_second() {
        let (sink, events) = collecting();
        let mut r = Reporter::start(sink, "c", "switch_wal_and_wait", String::new());
        r.message("waiting until WAL segment 0000000100000000000000AA is archived".into());
        let started = Instant::now();
        while started.elapsed() < EVERY * 3 {
            r.tick();
            std::thread::sleep(Duration::from_millis(10));
        }
        let events = events.lock().unwrap();
        // start, then about one heartbeat per EVERY; never one per tick.
        assert!((3..=5).contains(&events.len()), "{}", events.len());
        assert!(events[1..].iter().all(
            |e| e.state == STATE_PROGRESS && e.message.starts_with("waiting until WAL segment")
        ));
    }

    #[test]
    fn blocking_work_reports_through_the_thread_slot() {
        let (sink, events) = collecting();
        let shared = Arc::new(Mutex::new(Reporter::start(
            sink,
            "c",
            "extract",
            String::new(),
        )));
        let given = Some(shared.clone());
        std::thread::spawn(move || {
            on_thread(given, || {
                update(ProgressUnit::Bytes, 0, Some(10));
                let mut data: &[u8] = b"0123456789";
                let mut reader = CountingReader(&mut data);
                std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
            })
        })
        .join()
        .unwrap();
        assert_eq!(shared.lock().unwrap().done, 10);
        assert_eq!(events.lock().unwrap()[1].done, 0);
    }
}
