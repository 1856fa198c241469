//! The hub under load, on this machine: the `spkey-hub` binary on a store
//! file with durable commits, driven over keep-alive HTTP connections.
//!
//! - seed-endpoint creates per second and p50 / p99 latency at 1, 8 and 64
//!   concurrent clients, beside the same creates as in-process library
//!   calls (`Store::create_user` from as many threads, durable), the two
//!   taking turns for [`ROUNDS`] rounds;
//! - `spkey_store::http::sync` of a device with 10,000 pending events;
//! - the hub's peak RSS (VmHWM) after all of it, and what 1,000 idle
//!   long-polls add to its RSS.
//!
//! `cargo bench -p spkey-hub --bench load` writes `hub/benches/results/`
//! (a Markdown table and an SVG chart). `cargo test --benches` runs it once
//! at a tiny size; timings are never asserted.

#[path = "common.rs"]
mod common;

use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{HubProcess, KEY, SYNC_KEY, agent, cpu_secs, drive_creates, id, summary, token};
use spkey_store::{CreateUser, Store};

struct Size {
    seconds: f64,
    pending: usize,
    polls: usize,
}

fn size() -> Size {
    // `cargo test --benches` passes no `--bench`: run once, tiny.
    if std::env::args().any(|a| a == "--bench") {
        Size {
            seconds: 5.0,
            pending: 10_000,
            polls: 1_000,
        }
    } else {
        Size {
            seconds: 0.3,
            pending: 200,
            polls: 20,
        }
    }
}

/// Each call's latency (ms) of `clients` threads each running `call` in a
/// loop for `seconds`, and the seconds they took.
fn drive(
    clients: usize,
    seconds: f64,
    call: impl Fn(usize) + Send + Sync + 'static,
) -> (Vec<f64>, f64) {
    let call = Arc::new(call);
    let next = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (call, next) = (call.clone(), next.clone());
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                while Instant::now() < until {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    call(n);
                    latencies.push(t.elapsed().as_secs_f64() * 1e3);
                }
                latencies
            })
        })
        .collect();
    let all: Vec<f64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    (all, started.elapsed().as_secs_f64())
}

/// Each tier's HTTP and library phases take turns this many times, and a
/// row is figured over all of them: the two sides of the ratio then see
/// the same machine (one phase of each, back to back, moved the library's
/// figure between 36,000 and 54,000 creates/s from run to run).
const ROUNDS: usize = 3;

/// What a tier's rounds measured on one side: every latency (ms), the
/// seconds they took, and the CPU seconds of the hub and of this process.
#[derive(Default)]
struct Side {
    latencies: Vec<f64>,
    took: f64,
    hub_cpu: f64,
    own_cpu: f64,
}

impl Side {
    fn add(&mut self, ((latencies, took), hub_cpu, own_cpu): ((Vec<f64>, f64), f64, f64)) {
        self.latencies.extend(latencies);
        self.took += took;
        self.hub_cpu += hub_cpu;
        self.own_cpu += own_cpu;
    }

    /// CPU µs a call, of the hub and of this process.
    fn cpu_us(&self) -> (f64, f64) {
        let calls = self.latencies.len().max(1) as f64;
        (self.hub_cpu * 1e6 / calls, self.own_cpu * 1e6 / calls)
    }
}

struct Row {
    clients: usize,
    http: (f64, f64, f64),
    library: (f64, f64, f64),
    /// CPU µs per create: (the hub process, this process's HTTP clients,
    /// the library calls).
    cpu_us: (f64, f64, f64),
}

/// Runs `f` and returns what it returned with the CPU seconds it cost the
/// hub process and this one.
fn with_cpu<T>(hub: &HubProcess, f: impl FnOnce() -> T) -> (T, f64, f64) {
    let pid = hub.child.id().to_string();
    let cpu = |pid: &str| cpu_secs(pid).expect("the process is running");
    let (hub_before, me_before) = (cpu(&pid), cpu("self"));
    let value = f();
    (value, cpu(&pid) - hub_before, cpu("self") - me_before)
}

fn main() {
    let size = size();
    let dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(dir.path(), "hub", "data_dir = \"data\"", "");
    let token = Arc::new(token());
    let offset = Arc::new(AtomicUsize::new(0));
    let mut rows = Vec::new();
    for clients in [1, 8, 64] {
        let store =
            Arc::new(Store::open(dir.path().join(format!("library-{clients}.redb"))).unwrap());
        let (mut http, mut library) = (Side::default(), Side::default());
        for _ in 0..ROUNDS {
            let (url, token) = (hub.url.clone(), token.clone());
            let base = offset.fetch_add(10_000_000, Ordering::Relaxed);
            http.add(with_cpu(&hub, || {
                let (done, took) = drive_creates(clients, size.seconds, &token, base, |_| {
                    (url.clone(), KEY.to_owned())
                });
                (done.into_iter().map(|(ms, _)| ms).collect(), took)
            }));
            let (store, base) = (
                store.clone(),
                offset.fetch_add(10_000_000, Ordering::Relaxed),
            );
            library.add(with_cpu(&hub, || {
                drive(clients, size.seconds, move |n| {
                    let n = base + n;
                    let command = CreateUser::new(id(n), format!("u{n}@example.com"));
                    assert!(store.create_user(&command).unwrap().event().is_some());
                })
            }));
        }
        let ((hub_cpu, client_cpu), (_, library_cpu)) = (http.cpu_us(), library.cpu_us());
        rows.push(Row {
            clients,
            http: summary(http.latencies, http.took),
            library: summary(library.latencies, library.took),
            cpu_us: (hub_cpu, client_cpu, library_cpu),
        });
    }

    let device = Store::in_memory().unwrap();
    let commands: Vec<CreateUser> = (0..size.pending)
        .map(|n| CreateUser::new(id(50_000_000 + n), format!("p{n}@example.com")))
        .collect();
    device.execute_batch(&commands).unwrap();
    let started = Instant::now();
    let summary = spkey_store::http::sync(&device, &hub.url, SYNC_KEY, token.as_str()).unwrap();
    let sync_took = started.elapsed();
    assert_eq!(summary.accepted, size.pending);

    let before_polls = hub.status_kib("VmRSS:");
    let head = summary.cursor;
    let polls: Vec<_> = (0..size.polls)
        .map(|_| {
            let (url, token) = (hub.url.clone(), token.clone());
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let mut response = agent()
                        .get(&format!(
                            "{url}/sync/pull?since={}&wait=8",
                            head + 1_000_000
                        ))
                        .header(
                            spkey_store::BATCH_FORMAT_HEADER,
                            spkey_store::BATCH_FORMAT.to_string(),
                        )
                        .header("Authorization", &format!("Bearer {token}"))
                        .header("X-API-Key", KEY)
                        .call()
                        .unwrap();
                    // Held open until the wait ran out, not refused.
                    assert_eq!(response.status(), 200);
                    let _ = response.body_mut().read_to_vec();
                })
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let with_polls = hub.status_kib("VmRSS:");
    for poll in polls {
        poll.join().unwrap();
    }
    let peak = hub.status_kib("VmHWM:");

    let mut table = String::from(
        "| clients | HTTP creates/s | HTTP p50 ms | HTTP p99 ms | library creates/s | library p50 ms | library p99 ms |\n|---|---|---|---|---|---|---|\n",
    );
    for row in &rows {
        table += &format!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} |\n",
            row.clients,
            row.http.0,
            row.http.1,
            row.http.2,
            row.library.0,
            row.library.1,
            row.library.2
        );
    }
    table += &format!(
        "\nEach row: {ROUNDS} rounds of {} s HTTP, then {} s library, taking turns; its figures over all of them.\n",
        size.seconds, size.seconds
    );
    let at_64 = &rows[2].http;
    table += &format!(
        "\n- 64 clients: {:.0} durable creates/s (target ≥ 8,000: {}), p99 {:.1} ms (target < 50: {})\n",
        at_64.0,
        if at_64.0 >= 8000.0 { "met" } else { "missed" },
        at_64.2,
        if at_64.2 < 50.0 { "met" } else { "missed" },
    );
    let (lib_64, cpu_64) = (rows[2].library.0, rows[2].cpu_us);
    table += &format!(
        "- 64 clients, HTTP against the library in the same run: {:.2}× (target ≥ 0.5×: {}); CPU per create (from /proc): the hub {:.1} µs and the load generator's HTTP clients {:.1} µs, on the same 2 cores, against {:.1} µs for a library call\n",
        at_64.0 / lib_64,
        if at_64.0 >= 0.5 * lib_64 {
            "met"
        } else {
            "missed"
        },
        cpu_64.0,
        cpu_64.1,
        cpu_64.2,
    );
    table += &format!(
        "- sync of a device's {} pending events (push, reply, pull back): {:.0} ms (target < 1,000 ms: {})\n",
        size.pending,
        sync_took.as_secs_f64() * 1e3,
        if sync_took < Duration::from_secs(1) {
            "met"
        } else {
            "missed"
        }
    );
    table += &format!(
        "- hub peak RSS (VmHWM) after all of it: {:.1} MiB (target ≤ 256: {})\n",
        peak as f64 / 1024.0,
        if peak <= 256 * 1024 { "met" } else { "missed" }
    );
    table += &format!(
        "- {} idle long-polls add {:.1} MiB to the hub's RSS (target ≤ 64: {})\n",
        size.polls,
        (with_polls.saturating_sub(before_polls)) as f64 / 1024.0,
        if with_polls.saturating_sub(before_polls) <= 64 * 1024 {
            "met"
        } else {
            "missed"
        }
    );
    print!("{table}");
    if std::env::args().any(|a| a == "--bench") {
        let results = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/results");
        std::fs::create_dir_all(&results).unwrap();
        std::fs::write(results.join("load.md"), &table).unwrap();
        chart(&rows, &results.join("load.svg"));
    }
}

fn chart(rows: &[Row], path: &Path) {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (900, 380)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let max = rows
        .iter()
        .flat_map(|r| [r.http.0, r.library.0])
        .fold(0.0, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "durable creates/s: HTTP (red) vs in-process library (grey)",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((0..rows.len() * 2).into_segmented(), 0.0..max)
        .unwrap();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => rows.get(*i / 2).map_or(String::new(), |r| {
                format!("{} {}", r.clients, if i % 2 == 0 { "HTTP" } else { "lib" })
            }),
            _ => String::new(),
        })
        .draw()
        .unwrap();
    chart
        .draw_series((0..rows.len() * 2).map(|i| {
            let row = &rows[i / 2];
            let (value, color) = if i % 2 == 0 {
                (row.http.0, RGBColor(200, 60, 40))
            } else {
                (row.library.0, RGBColor(150, 150, 150))
            };
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), value),
                ],
                color.filled(),
            );
            bar.set_margin(0, 0, 8, 8);
            bar
        }))
        .unwrap();
    root.present().unwrap();
}
