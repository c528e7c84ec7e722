//! Replay speed (VGA accesses per second) on the committed QEMU recordings, trace parsing
//! included and excluded, and the time to render one text-mode frame (the vgacon recording's
//! 80x25 screen, 9-dot cells, 720x400).
//!
//! `cargo bench -p saffron-vga` (add `-- --quick` for a rough pass, or a name filter).

use std::hint::black_box;
use std::io::Read;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flate2::read::GzDecoder;
use saffron_vga::RenderOptions;
use saffron_vga::replay::Replay;
use saffron_vga::trace::{TraceEvent, parse_line};

fn recording(name: &str) -> String {
    let path = format!("{}/tests/data/{name}.trace.gz", env!("CARGO_MANIFEST_DIR"));
    let mut text = String::new();
    GzDecoder::new(std::fs::File::open(path).expect("recording"))
        .read_to_string(&mut text)
        .expect("gzip");
    text
}

fn events(text: &str) -> Vec<TraceEvent> {
    text.lines()
        .filter_map(|l| parse_line(l).expect("valid trace"))
        .collect()
}

fn replay(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay");
    g.measurement_time(Duration::from_secs(3));
    g.sample_size(20);
    for name in ["seabios", "vgacon"] {
        let text = recording(name);
        let evs = events(&text);
        let mut probe = Replay::new();
        for e in &evs {
            probe.apply(*e);
        }
        g.throughput(Throughput::Elements(probe.stats().accesses));
        g.bench_function(format!("{name}/events"), |b| {
            b.iter(|| {
                let mut r = Replay::new();
                for e in &evs {
                    r.apply(*e);
                }
                black_box(r.stats().accesses)
            })
        });
        g.bench_function(format!("{name}/parse+events"), |b| {
            b.iter(|| {
                let mut r = Replay::new();
                r.feed_reader(text.as_bytes()).expect("replays");
                black_box(r.stats().accesses)
            })
        });
    }
    g.finish();
}

fn render(c: &mut Criterion) {
    let mut g = c.benchmark_group("render");
    g.measurement_time(Duration::from_secs(3));
    let mut r = Replay::new();
    r.feed_reader(recording("vgacon").as_bytes())
        .expect("replays");
    let vga = r.into_vga();
    let mut surface = vga.screenshot(RenderOptions::default()).expect("renders");
    g.throughput(Throughput::Elements(1));
    g.bench_function("text-80x25-720x400", |b| {
        b.iter(|| {
            vga.render(&mut surface, RenderOptions::default())
                .expect("renders");
            black_box(surface.pixel(0, 0))
        })
    });
    g.finish();
}

criterion_group!(benches, replay, render);
criterion_main!(benches);
