//! Plan building and printing: every command builds its plan from the observed nodes, and the
//! dry run prints it.

use citus_recovery::catalog::Catalog;
use citus_recovery::plan::RestoreInputs;
use citus_recovery::{
    ArchivePlan, BasebackupPlan, FinishPlan, Plan, RestorePlan, RestorePointPlan,
};
use citus_recovery_benches::fixtures::{self, NodeState};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan/build");
    for workers in [2, 8, 64] {
        let config = fixtures::config(workers);
        let catalog = Catalog::new(&config);
        let fresh = fixtures::observations(&config, NodeState::Fresh);
        let archiving = fixtures::observations(&config, NodeState::Archiving);
        let paused = fixtures::observations(&config, NodeState::Paused);
        let backup = fixtures::backup(&config, "nightly");
        let point = fixtures::restore_point(&config, "before-upgrade");
        let data_dirs = fixtures::data_dirs(&config);
        let now = fixtures::now();
        let attempt = citus_recovery::names::default_name(now);
        group.bench_with_input(
            BenchmarkId::new("prepare-archiving", workers),
            &(),
            |b, _| b.iter(|| ArchivePlan::build(&config, black_box(&fresh), true, false).unwrap()),
        );
        group.bench_with_input(BenchmarkId::new("basebackup", workers), &(), |b, _| {
            b.iter(|| {
                BasebackupPlan::build(
                    &config,
                    black_box(&archiving),
                    Some("nightly"),
                    now,
                    &catalog,
                    false,
                )
                .unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("restore-point", workers), &(), |b, _| {
            b.iter(|| {
                RestorePointPlan::build(&config, black_box(&archiving), Some("rp"), now, &[])
                    .unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("restore-start", workers), &(), |b, _| {
            b.iter(|| {
                RestorePlan::build(
                    &config,
                    black_box(&archiving),
                    &catalog,
                    &RestoreInputs {
                        backup: &backup,
                        restore_point: &point,
                        wal_parameters: &Default::default(),
                        existing: &data_dirs,
                        previous: None,
                        attempt: &attempt,
                    },
                    now,
                )
                .unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("restore-finish", workers), &(), |b, _| {
            b.iter(|| FinishPlan::build(&config, black_box(&paused), None).unwrap())
        });
    }
    group.finish();
}

fn print(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan/print");
    for workers in [2, 8, 64] {
        let config = fixtures::config(workers);
        let archiving = fixtures::observations(&config, NodeState::Archiving);
        let plan = RestorePlan::build(
            &config,
            &archiving,
            &Catalog::new(&config),
            &RestoreInputs {
                backup: &fixtures::backup(&config, "nightly"),
                restore_point: &fixtures::restore_point(&config, "before-upgrade"),
                wal_parameters: &Default::default(),
                existing: &fixtures::data_dirs(&config),
                previous: None,
                attempt: &citus_recovery::names::default_name(fixtures::now()),
            },
            fixtures::now(),
        )
        .unwrap();
        group.bench_with_input(
            BenchmarkId::new("restore-start/text", workers),
            &plan,
            |b, p| b.iter(|| black_box(p).to_string()),
        );
        group.bench_with_input(
            BenchmarkId::new("restore-start/json", workers),
            &plan,
            |b, p| b.iter(|| black_box(p).to_json()),
        );
    }
    group.finish();
}

criterion_group!(benches, build, print);
criterion_main!(benches);
