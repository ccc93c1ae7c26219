//! One shared tokio runtime for every call, and [`run`], the one way a core future is run from
//! Python: on the runtime, without the GIL, waking every 100 ms to let Python handle signals so
//! that Ctrl-C raises `KeyboardInterrupt` promptly.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::Runtime;

use crate::errors::{self, CitusRecoveryError};

/// How often a waiting call looks for signals.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The runtime, started on first use and shared by every `Cluster`.
fn runtime() -> PyResult<&'static Runtime> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("citus-recovery")
        .build()
        .map_err(|e| CitusRecoveryError::new_err(format!("cannot start the async runtime: {e}")))?;
    // Two threads racing here each built one; the loser's is dropped.
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Runs a core future to completion and converts its error.
///
/// `make` builds the future on this thread, which then drives it with `block_on` without the
/// GIL, so other Python threads go on (the future need not be `Send`: only `make` crosses into
/// the GIL-free closure). Every [`SIGNAL_POLL`] the thread takes the GIL back and runs Python's
/// signal handlers; if one raises (Ctrl-C: `KeyboardInterrupt`), the future is dropped on the
/// spot (child processes are killed on drop) and that exception is raised. An interrupted
/// command stops midway: what it already did on the nodes stays done, with no rollback (an
/// interrupted restore-start keeps its state file, so `restore_abort` can put the old data
/// directories back).
pub fn run<T, F, Fut>(py: Python<'_>, make: F) -> PyResult<T>
where
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = citus_recovery::Result<T>>,
    T: Send,
{
    let rt = runtime()?;
    let outcome: PyResult<citus_recovery::Result<T>> = py.allow_threads(move || {
        rt.block_on(async move {
            let future = make();
            tokio::pin!(future);
            loop {
                tokio::select! {
                    result = &mut future => return Ok(result),
                    () = tokio::time::sleep(SIGNAL_POLL) => {
                        Python::with_gil(|py| py.check_signals())?;
                    }
                }
            }
        })
    });
    outcome?.map_err(|e| errors::to_py(py, e))
}

/// Runs blocking core work (reading the catalog) without the GIL and converts its error.
pub fn blocking<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    F: FnOnce() -> citus_recovery::Result<T> + Send,
    T: Send,
{
    py.allow_threads(f).map_err(|e| errors::to_py(py, e))
}
