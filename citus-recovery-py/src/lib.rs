//! Python bindings for citus-recovery: filled in by the Python module issue.
