//! Small conversions shared by the classes: paths, JSON, and Python-style `repr` pieces.

use std::path::Path;

use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::PyType;
use serde::Serialize;

/// `pathlib.Path(p)`: paths reach Python as `Path` objects, not strings.
pub fn path<'py>(py: Python<'py>, p: &Path) -> PyResult<Bound<'py, PyAny>> {
    static PATH: GILOnceCell<Py<PyType>> = GILOnceCell::new();
    PATH.import(py, "pathlib", "Path")?.call1((p,))
}

/// An optional path, `None` staying `None`.
pub fn opt_path<'py>(py: Python<'py>, p: Option<&Path>) -> PyResult<Option<Bound<'py, PyAny>>> {
    p.map(|p| path(py, p)).transpose()
}

/// Pretty JSON, exactly as the command-line tool prints it with `--json`.
pub fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("plain data serializes")
}

/// Plain data as Python objects (dicts, lists, strings, numbers), through its JSON.
pub fn to_python<'py, T: Serialize>(py: Python<'py>, value: &T) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1(
        "loads",
        (serde_json::to_string(value).expect("plain data"),),
    )
}

/// Python's `repr` of a string (`'it''s'` becomes `"it's"`), for `__repr__` texts.
pub fn repr(py: Python<'_>, s: &str) -> PyResult<String> {
    Ok(s.into_pyobject(py)?.repr()?.to_string())
}

/// Python's `repr` of an optional string.
pub fn opt_repr(py: Python<'_>, s: Option<&str>) -> PyResult<String> {
    match s {
        Some(s) => repr(py, s),
        None => Ok("None".into()),
    }
}
