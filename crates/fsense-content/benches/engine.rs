//! Rule compile time and evaluation cost per event, for rule sets of growing size.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fsense_content::{Engine, EventFacts, Operation, compile};
use std::hint::black_box;

/// `n` rules: nine in ten `path_match` on distinct extensions, one in ten `write_burst`.
fn rules_text(n: usize) -> String {
    let mut text = String::from("version = 1\n");
    for i in 0..n {
        if i % 10 == 9 {
            text.push_str(&format!(
                "[[rule]]\nid = \"burst-{i}\"\ntemplate = \"write_burst\"\nseverity = \"critical\"\n[rule.fields]\nwrites = {}\nwindow_ms = 10000\n",
                100 + i
            ));
        } else {
            let operation = if i % 2 == 0 { "create" } else { "write" };
            text.push_str(&format!(
                "[[rule]]\nid = \"ext-{i}\"\ntemplate = \"path_match\"\nseverity = \"high\"\n[rule.fields]\noperation = \"{operation}\"\nglob = \"**/Users/*/**/*.x{i}\"\n"
            ));
        }
    }
    text
}

fn events() -> Vec<(Operation, String)> {
    (0..256)
        .map(|i| {
            let operation = if i % 3 == 0 {
                Operation::Create
            } else {
                Operation::Write
            };
            (
                operation,
                format!(
                    r"C:\Users\user{}\Documents\project\file{i}.x{}",
                    i % 7,
                    i % 40
                ),
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let sizes = [10usize, 100, 1000];
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    for &n in &sizes {
        let text = rules_text(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &text, |b, text| {
            b.iter(|| compile(black_box(text)).unwrap())
        });
    }
    group.finish();

    let events = events();
    let mut group = c.benchmark_group("evaluate");
    group.throughput(Throughput::Elements(events.len() as u64));
    for &n in &sizes {
        let mut engine = Engine::new(compile(&rules_text(n)).unwrap());
        let mut time_ms = 0u64;
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                let mut matched = 0usize;
                for (pid, (operation, path)) in events.iter().enumerate() {
                    time_ms += 1;
                    let event = EventFacts {
                        operation: *operation,
                        path,
                        pid: pid as u32 % 16,
                        time_ms,
                    };
                    matched += engine.evaluate(black_box(&event)).len();
                }
                matched
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
