//! One shared tokio runtime for every call, and [`run`], the one way a core future is run from
//! Python: on the runtime, without the GIL, waking every 100 ms to let Python handle signals so
//! that Ctrl-C raises `KeyboardInterrupt` promptly.

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
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

/// A way to stop a long call from another thread: the `asyncio` flavour (`citus_recovery.aio`)
/// makes one per call, enters it on the worker thread around the call, and cancels it when the
/// awaiting task is cancelled. The call then stops within [`SIGNAL_POLL`] and raises
/// `asyncio.CancelledError`, as if interrupted with Ctrl-C.
#[pyclass(module = "citus_recovery", name = "CancelToken", frozen)]
#[derive(Default)]
pub struct CancelToken(Arc<AtomicBool>);

thread_local! {
    /// The token entered on this thread, if any.
    static CURRENT: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

#[pymethods]
impl CancelToken {
    /// A token not cancelled yet.
    #[new]
    fn new() -> Self {
        CancelToken::default()
    }

    /// Asks the call running under this token to stop.
    fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether `cancel` was called.
    #[getter]
    fn cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Makes this the token of the calls made on this thread until `__exit__`.
    fn __enter__(slf: Py<Self>) -> Py<Self> {
        let flag = slf.get().0.clone();
        CURRENT.with(|c| *c.borrow_mut() = Some(flag));
        slf
    }

    fn __exit__(
        &self,
        _kind: &Bound<'_, PyAny>,
        _value: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> bool {
        CURRENT.with(|c| *c.borrow_mut() = None);
        false
    }
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
    let token = CURRENT.with(|c| c.borrow().clone());
    let outcome: PyResult<citus_recovery::Result<T>> = py.allow_threads(move || {
        rt.block_on(async move {
            let future = make();
            tokio::pin!(future);
            loop {
                tokio::select! {
                    result = &mut future => return Ok(result),
                    () = tokio::time::sleep(SIGNAL_POLL) => {
                        Python::with_gil(|py| py.check_signals())?;
                        if token.as_ref().is_some_and(|t| t.load(Ordering::SeqCst)) {
                            return Err(pyo3::exceptions::asyncio::CancelledError::new_err(
                                "the call was cancelled; what it had done on the nodes stays done",
                            ));
                        }
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
