//! The Windows port client's receive design, side by side: `win32` (several receives posted,
//! lookups in the background) and `win32-single` (one receive, lookups on the receive path, the
//! design before issue 13), both the real client code against the simulated Win32 functions and
//! the real driver code. Target: at 50,000 file operations/s with every first process or account
//! lookup taking 2 s, the driver drops nothing with `win32`.
//!
//! Criterion times one paced run per design (a run's time is bounded below by its pacing, so
//! the interesting output is the drop count printed with it). `FSENSE_BENCH_SWEEP=1` also
//! searches, for each design, the highest rate (of a doubling ladder, then bisected) at which a
//! run drops nothing, and prints it: the numbers in BENCHMARKS.md.

use std::io;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fsense::ffi::windows::{DEFAULT_RECEIVES, WinProcessLookup};
use fsense::pipeline::Pipeline;
use fsense::pipeline::enrich::{BACKGROUND_WORKERS, Background, ProcessCache};
use fsense::pipeline::filter::Filter;
use fsense::pipeline::paths::DosDeviceMap;
use fsense::source::winport::{self, Options};
use fsense_fltsim::win32::{self, Win32Config};
use fsense_fltsim::{ConsumerMode, SimConfig, Tuning};

const SLOW_LOOKUP: Duration = Duration::from_millis(2000);

#[derive(Clone, Copy, Debug)]
enum Design {
    Multi,
    Single,
}

/// One run: (events the driver generated, events it dropped).
fn run(design: Design, rate: u64, events: u64) -> (u64, u64) {
    let cache = match design {
        Design::Multi => ProcessCache::new(
            Box::new(Background::new(
                || Box::new(WinProcessLookup),
                BACKGROUND_WORKERS,
            )),
            4096,
        ),
        Design::Single => ProcessCache::new(Box::new(WinProcessLookup), 4096),
    };
    let mut pipeline = Pipeline::new(
        cache,
        Filter::new(None, &[], None).expect("no excludes"),
        DosDeviceMap::default(),
        Box::new(io::sink()),
        None,
    );
    win32::configure(Win32Config {
        caller_is_admin: true,
        slow_lookup: SLOW_LOOKUP,
    });
    let config = SimConfig {
        events,
        threads: 4,
        queue_capacity: 4096,
        consumer: ConsumerMode::Normal,
        seed: 1,
    };
    let tuning = Tuning {
        rate_per_s: rate,
        ..Tuning::default()
    };
    let receives = match design {
        Design::Multi => DEFAULT_RECEIVES,
        Design::Single => 1,
    };
    let report = fsense_fltsim::run_external(&config, &tuning, &mut |stop: &AtomicBool| {
        let options = Options {
            receives,
            after_message: None,
        };
        winport::run_with(&mut pipeline, stop, options).expect("output to a sink");
    });
    win32::configure(Win32Config::default());
    (report.generated, report.dropped)
}

/// The highest rate with zero drops: a doubling ladder from 1,000/s up to 200,000/s, then a
/// bisection between the last clean and the first dropping rate (to 5 %).
fn highest_clean_rate(design: Design) -> u64 {
    let clean = |rate: u64| {
        // Two seconds of operations at that rate (at least 2,000), so the slow lookups fall
        // inside the run.
        let (_, dropped) = run(design, rate, (rate * 2).max(2_000));
        dropped == 0
    };
    let (mut good, mut bad) = (0u64, None);
    let mut rate = 1_000;
    while rate <= 200_000 {
        if clean(rate) {
            good = rate;
            rate *= 2;
        } else {
            bad = Some(rate);
            break;
        }
    }
    let Some(mut bad) = bad else { return good };
    while bad - good > good / 20 {
        let mid = (good + bad) / 2;
        if clean(mid) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    good
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("win32_client_50k_per_s_slow_lookups");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    for design in [Design::Multi, Design::Single] {
        group.bench_function(format!("{design:?}"), |b| {
            b.iter(|| {
                let (generated, dropped) = run(design, 50_000, 50_000);
                eprintln!("{design:?}: {generated} generated, {dropped} dropped");
                dropped
            })
        });
    }
    group.finish();
    if std::env::var_os("FSENSE_BENCH_SWEEP").is_some() {
        for design in [Design::Multi, Design::Single] {
            eprintln!(
                "{design:?}: highest rate with zero drops (2 s first lookups): {} operations/s",
                highest_clean_rate(design)
            );
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
