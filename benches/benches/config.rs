//! Config parsing and validation: what every command does first.

use citus_recovery::ClusterConfig;
use citus_recovery_benches::fixtures::config_json;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn parse_and_validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("config/from_json_str");
    for workers in [2, 8, 64] {
        let json = config_json(workers);
        group.throughput(Throughput::Bytes(json.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(workers), &json, |b, json| {
            b.iter(|| ClusterConfig::from_json_str(std::hint::black_box(json), None).unwrap())
        });
    }
    group.finish();
}

fn rejected(c: &mut Criterion) {
    // The error path builds a message naming the field and the fix; it must stay cheap too.
    let json = config_json(8).replace("\"workerCount\":8", "\"workerCount\":9");
    assert!(ClusterConfig::from_json_str(&json, None).is_err());
    c.bench_function("config/from_json_str/rejected", |b| {
        b.iter(|| ClusterConfig::from_json_str(std::hint::black_box(&json), None).unwrap_err())
    });
}

criterion_group!(benches, parse_and_validate, rejected);
criterion_main!(benches);
