//! Showing the core's progress events: live bars on a terminal, NDJSON with `--json`, a log line
//! per node every few seconds otherwise; and the per-node summary table at the end.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use citus_recovery::progress::{ProgressEvent, ProgressSink, STATE_DONE};
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often at most a node's progress is logged when there are no bars.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One live line per node (stderr is a terminal).
    Bars,
    /// Every event as a JSON line on stderr (`--json`).
    Json,
    /// A log line per node every few seconds (not a terminal).
    Log,
    /// Nothing (`--quiet`).
    Off,
}

impl Mode {
    /// The mode for the flags given and where stderr goes.
    pub fn choose(json: bool, quiet: bool) -> Mode {
        if quiet {
            Mode::Off
        } else if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Log
        }
    }
}

/// What one node did, for the summary table.
#[derive(Debug)]
struct NodeSummary {
    node: String,
    bytes: u64,
    byte_secs: f64,
    first: Instant,
    last: Instant,
}

#[derive(Default)]
struct State {
    bars: HashMap<String, ProgressBar>,
    /// The unit each bar is styled for.
    styled: HashMap<String, String>,
    last_log: HashMap<String, Instant>,
    summary: Vec<NodeSummary>,
    finished: bool,
}

/// Shows progress events as the mode says.
pub struct Progress {
    mode: Mode,
    /// Log lines are JSON: the summary goes out as log lines too, not as a table.
    json_logs: bool,
    multi: Option<MultiProgress>,
    state: Mutex<State>,
}

impl Progress {
    /// A display in `mode`; `json_logs` when log lines are JSON objects.
    pub fn new(mode: Mode, json_logs: bool) -> Arc<Progress> {
        let multi = (mode == Mode::Bars)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8)));
        Arc::new(Progress {
            mode,
            json_logs,
            multi,
            state: Mutex::new(State::default()),
        })
    }

    /// The sink to put into the run options; `None` when nothing is shown.
    pub fn sink(self: &Arc<Self>) -> Option<ProgressSink> {
        if self.mode == Mode::Off {
            return None;
        }
        let me = self.clone();
        Some(ProgressSink::new(move |e| me.on_event(e)))
    }

    /// Whether log lines are JSON objects.
    pub fn json_logs(&self) -> bool {
        self.json_logs
    }

    /// Where log lines go: through the bars (so they print above them) when there are bars.
    pub fn log_writer(&self) -> LogWriter {
        LogWriter(self.multi.clone())
    }

    fn on_event(&self, e: &ProgressEvent) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        record(&mut state.summary, e);
        match self.mode {
            Mode::Off => {}
            Mode::Json => {
                let mut line = serde_json::json!({
                    "type": "progress",
                    "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                });
                if let (Some(obj), Ok(serde_json::Value::Object(fields))) =
                    (line.as_object_mut(), serde_json::to_value(e))
                {
                    obj.extend(fields);
                }
                // One write per line, so lines never interleave with log lines.
                let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
            }
            Mode::Log => {
                let due = state
                    .last_log
                    .get(&e.node)
                    .map_or(true, |t| t.elapsed() >= LOG_EVERY);
                // Plain steps are logged as they start (by the library); these lines add the
                // figures of long ones: every few seconds, and the final ones.
                let measured = e.unit != "steps";
                if measured && (due || e.state == STATE_DONE) {
                    state.last_log.insert(e.node.clone(), Instant::now());
                    tracing::info!(node = %e.node, "{}", describe(e));
                }
            }
            Mode::Bars => {
                let multi = self.multi.as_ref().expect("bars mode has bars");
                let bar = state
                    .bars
                    .entry(e.node.clone())
                    .or_insert_with(|| {
                        let bar = multi.add(ProgressBar::new(1));
                        bar.set_prefix(e.node.clone());
                        bar.enable_steady_tick(Duration::from_millis(200));
                        bar
                    })
                    .clone();
                if state.styled.get(&e.node) != Some(&e.unit) {
                    state.styled.insert(e.node.clone(), e.unit.clone());
                    bar.set_style(style(&e.unit));
                }
                bar.set_length(e.total.unwrap_or(0).max(1));
                bar.set_position(e.done);
                bar.set_message(describe(e));
            }
        }
    }

    /// Ends the bars (cleared, so the terminal is left clean) and prints the per-node summary
    /// table on stderr, unless quiet or JSON. Only the first call does anything.
    pub fn finish(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if std::mem::replace(&mut state.finished, true) {
            return;
        }
        for bar in state.bars.values() {
            bar.finish_and_clear();
        }
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
        if matches!(self.mode, Mode::Bars | Mode::Log) && state.summary.iter().any(|s| s.bytes > 0)
        {
            if self.json_logs {
                for s in &state.summary {
                    let (seconds, mb_per_s) = figures(s);
                    tracing::info!(node = %s.node, bytes = s.bytes, seconds, mb_per_s, "summary");
                }
            } else {
                eprint!("{}", summary_table(&state.summary));
            }
        }
    }
}

/// Adds an event to its node's summary.
fn record(summary: &mut Vec<NodeSummary>, e: &ProgressEvent) {
    let now = Instant::now();
    let i = match summary.iter().position(|s| s.node == e.node) {
        Some(i) => i,
        None => {
            summary.push(NodeSummary {
                node: e.node.clone(),
                bytes: 0,
                byte_secs: 0.0,
                first: now,
                last: now,
            });
            summary.len() - 1
        }
    };
    let s = &mut summary[i];
    s.last = now;
    if e.state == STATE_DONE && e.unit == "bytes" {
        s.bytes += e.done;
        s.byte_secs += e.elapsed_secs;
    }
}

/// The table printed at the end: bytes, seconds and MB/s per node.
fn summary_table(summary: &[NodeSummary]) -> String {
    let mut out = format!(
        "{:<16} {:>12} {:>9} {:>9}\n",
        "node", "bytes", "seconds", "MB/s"
    );
    for s in summary {
        let (secs, rate) = figures(s);
        let rate = rate.map_or("-".into(), |r| format!("{r:.1}"));
        out.push_str(&format!(
            "{:<16} {:>12} {:>9.1} {:>9}\n",
            s.node,
            HumanBytes(s.bytes).to_string(),
            secs,
            rate
        ));
    }
    out
}

/// A node's seconds from its first event to its last, and MB/s (10^6 bytes) over the time its
/// byte-measured steps took.
fn figures(s: &NodeSummary) -> (f64, Option<f64>) {
    let secs = s.last.duration_since(s.first).as_secs_f64();
    let rate = (s.byte_secs > 0.0).then(|| s.bytes as f64 / 1e6 / s.byte_secs);
    (secs, rate)
}

/// The bar's look for a unit: a spinner for plain steps, a bar otherwise.
fn style(unit: &str) -> ProgressStyle {
    let template = if unit == "steps" {
        "{prefix:<14.bold} {spinner} {elapsed:>4} {wide_msg}"
    } else {
        "{prefix:<14.bold} [{bar:24}] {wide_msg}"
    };
    ProgressStyle::with_template(template)
        .expect("a valid template")
        .progress_chars("=> ")
}

/// An event in words: phase, amounts, percentage, rate and ETA.
pub fn describe(e: &ProgressEvent) -> String {
    let mut text = e.phase.clone();
    match e.unit.as_str() {
        "bytes" => {
            text.push_str(&format!(" {}", HumanBytes(e.done)));
            if let Some(t) = e.total {
                text.push_str(&format!(" of {}", HumanBytes(t)));
            }
        }
        "wal_bytes" => text.push_str(&format!(" WAL {}", HumanBytes(e.done))),
        _ if e.state == STATE_DONE => text.push_str(" done"),
        _ => {}
    }
    if e.unit != "steps" {
        if let Some(f) = e.fraction() {
            text.push_str(&format!(" ({:.0}%)", f * 100.0));
        }
    }
    if let Some(r) = e.rate {
        text.push_str(&format!(", {}/s", HumanBytes(r as u64)));
    }
    match e.eta_secs {
        Some(s) if e.state != STATE_DONE => text.push_str(&format!(", ETA {}s", s.ceil() as u64)),
        _ => {}
    }
    if e.unit == "steps" && e.state != STATE_DONE {
        text.push_str(&format!(": {}", e.message));
    } else if e.state != STATE_DONE && e.message.starts_with("waiting") {
        text.push_str(&format!(" ({})", e.message));
    }
    text
}

/// Writes a log line to stderr, above the bars when there are bars.
#[derive(Clone)]
pub struct LogWriter(Option<MultiProgress>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LineOut;

    fn make_writer(&'a self) -> LineOut {
        LineOut {
            multi: self.0.clone(),
            buf: Vec::new(),
        }
    }
}

/// One log line, written out whole when dropped.
pub struct LineOut {
    multi: Option<MultiProgress>,
    buf: Vec<u8>,
}

impl Write for LineOut {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineOut {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let write = || {
            let _ = std::io::stderr().write_all(&buf);
        };
        match &self.multi {
            Some(multi) => multi.suspend(write),
            None => write(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(unit: &str, state: &str, done: u64, total: Option<u64>) -> ProgressEvent {
        ProgressEvent {
            node: "worker1".into(),
            phase: "extract".into(),
            state: state.into(),
            done,
            total,
            unit: unit.into(),
            rate: Some(2048.0),
            eta_secs: Some(2.2),
            elapsed_secs: 1.0,
            message: "waiting until WAL segment X is archived".into(),
        }
    }

    #[test]
    fn events_read_as_amounts_percent_rate_and_eta() {
        assert_eq!(
            describe(&event("bytes", "progress", 1024, Some(4096))),
            "extract 1.00 KiB of 4.00 KiB (25%), 2.00 KiB/s, ETA 3s (waiting until WAL segment X is archived)"
        );
        let done = describe(&event("steps", STATE_DONE, 1, Some(1)));
        assert!(done.starts_with("extract done"), "{done}");
    }

    #[test]
    fn the_summary_has_a_row_per_node_with_its_rate() {
        let mut summary = Vec::new();
        record(
            &mut summary,
            &event("bytes", STATE_DONE, 5_000_000, Some(5_000_000)),
        );
        record(&mut summary, &event("steps", STATE_DONE, 1, Some(1)));
        let table = summary_table(&summary);
        assert!(table.starts_with("node"), "{table}");
        assert!(
            table.contains("worker1") && table.contains("4.77 MiB"),
            "{table}"
        );
        assert!(table.contains("5.0"), "MB/s of 5 MB in 1 s: {table}");
    }
}
