//! Progress and log lines reaching Python: a `progress=` callback receives the core's
//! [`ProgressEvent`]s, and the core's tracing lines go to the `logging` logger `citus_recovery`.

use std::fmt::Write as _;

use citus_recovery::progress::{ProgressEvent, ProgressSink};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The Python logger the library's lines go to.
pub const LOGGER: &str = "citus_recovery";

/// A sink that calls `callback(event)` with the GIL taken; an exception it raises is reported
/// as unraisable (printed by `sys.unraisablehook`) and never stops the work.
pub fn sink(callback: PyObject) -> ProgressSink {
    ProgressSink::new(move |event: &ProgressEvent| {
        Python::with_gil(|py| {
            if let Err(e) = callback.call1(py, (event.clone(),)) {
                e.write_unraisable(py, Some(callback.bind(py)));
            }
        })
    })
}

/// The node a span is about (the library opens a `node` span around each node's steps).
struct SpanNode(String);

/// Collects an event's or span's fields: the message, the node, and the rest as `key=value`.
#[derive(Default)]
struct Fields {
    message: String,
    node: Option<String>,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "node" => self.node = Some(value.to_string()),
            name => {
                let _ = write!(self.rest, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "node" => self.node = Some(format!("{value:?}")),
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }
}

/// Forwards tracing events to Python's `logging`: level mapped, the message prefixed with its
/// node (`worker1: ...`) and the node in the record's `node` attribute.
struct ToPythonLogging;

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for ToPythonLogging {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(node), Some(span)) = (fields.node, ctx.span(id)) {
            span.extensions_mut().insert(SpanNode(node));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let node = fields.node.clone().or_else(|| {
            ctx.event_scope(event)?
                .find_map(|span| span.extensions().get::<SpanNode>().map(|n| n.0.clone()))
        });
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => 40,
            tracing::Level::WARN => 30,
            tracing::Level::INFO => 20,
            tracing::Level::DEBUG => 10,
            tracing::Level::TRACE => 5,
        };
        let text = match &node {
            Some(n) => format!("{n}: {}{}", fields.message, fields.rest),
            None => format!("{}{}", fields.message, fields.rest),
        };
        Python::with_gil(|py| {
            let logged = (|| -> PyResult<()> {
                let logger = py.import("logging")?.call_method1("getLogger", (LOGGER,))?;
                if !logger.call_method1("isEnabledFor", (level,))?.is_truthy()? {
                    return Ok(());
                }
                let extra = PyDict::new(py);
                extra.set_item("node", node)?;
                let kwargs = PyDict::new(py);
                kwargs.set_item("extra", extra)?;
                logger.call_method("log", (level, text), Some(&kwargs))?;
                Ok(())
            })();
            if let Err(e) = logged {
                e.write_unraisable(py, None);
            }
        });
    }
}

/// Installs the forwarding for the process (once; a tracing subscriber installed before wins).
/// Only the library's own lines at DEBUG and above are forwarded; Python's logger decides which
/// of those it keeps.
pub fn forward_logging() {
    let only_ours = tracing_subscriber::filter::Targets::new()
        .with_target("citus_recovery", tracing::Level::DEBUG)
        .with_target("citus_recovery_py", tracing::Level::DEBUG);
    let subscriber = tracing_subscriber::registry().with(ToPythonLogging.with_filter(only_ours));
    let _ = tracing::subscriber::set_global_default(subscriber);
}
