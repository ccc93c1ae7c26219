//! Shared parts of the benchmarks: inputs for the criterion micro-benchmarks ([`fixtures`]) and
//! the statistics and tables of the macro benchmark ([`stats`]).
//!
//! - `cargo bench -p citus-recovery-benches`: the library's own hot code (config parsing and
//!   validation, plan building and printing).
//! - `bash scripts/bench.sh`: the whole-cluster macro benchmark (`citus-recovery-bench`), which
//!   compares the library with `pg_basebackup`, pgBackRest and `dd` on a generated local cluster;
//!   `docs/benchmarks.md` records its latest table.

#![warn(missing_docs)]

pub mod fixtures;
pub mod stats;
