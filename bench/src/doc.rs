//! `syncline-bench all`: runs every benchmark and writes the report, with
//! the machine, date and versions, each figure as median (min–max) over the
//! runs, each ratio from the same run, and the targets checked.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::e2e::{self, Setup};
use crate::stats::{Figures, Stat};

/// How much of everything a mode runs.
struct Sizes {
    batch_msgs: usize,
    single_msgs: usize,
    runs: usize,
    drain: usize,
    drain_runs: usize,
    failing: usize,
    down: usize,
    down_secs: u64,
    stage_msgs: usize,
    micro_iterations: usize,
    reload_runs: usize,
    plugin_copies: usize,
    extra_tenants: usize,
    cluster_msgs: usize,
    cluster_hosts: usize,
}

const FULL: Sizes = Sizes {
    batch_msgs: 40_000,
    single_msgs: 10_000,
    runs: 3,
    drain: 100_000,
    drain_runs: 3,
    failing: 20_000,
    down: 2_000,
    down_secs: 10,
    stage_msgs: 40_000,
    micro_iterations: 2000,
    reload_runs: 10,
    plugin_copies: 10,
    extra_tenants: 10,
    cluster_msgs: 5_000,
    cluster_hosts: 3,
};

const QUICK: Sizes = Sizes {
    batch_msgs: 2000,
    single_msgs: 500,
    runs: 1,
    drain: 2000,
    drain_runs: 1,
    failing: 1_000,
    down: 500,
    down_secs: 3,
    stage_msgs: 2000,
    micro_iterations: 100,
    reload_runs: 2,
    plugin_copies: 2,
    extra_tenants: 2,
    cluster_msgs: 400,
    cluster_hosts: 2,
};

/// One end-to-end configuration, run with Wasm and native stages in turn.
struct Pair {
    label: &'static str,
    setup: Setup,
    wasm: Figures,
    native: Figures,
    ratio: Vec<f64>,
    threads: BTreeMap<String, f64>,
}

fn e2e_row(out: &mut String, label: &str, stages: &str, load: &str, f: &Figures) {
    let _ = writeln!(
        out,
        "| {label} | {stages} | {load} | {} | {} | {} | {} | {} | {} | {} |",
        f.get("accepted").show(0),
        f.get("delivered").show(0),
        f.get("p50").show(0),
        f.get("p99").show(0),
        f.get("p999").show(0),
        f.get("cpu").show(0),
        f.get("rss").show(0),
    );
}

fn section(name: &str, only: &[String]) -> bool {
    only.is_empty() || only.iter().any(|o| o == name)
}

/// Runs the suite and writes the report to `out`.
pub fn all(quick: bool, out: &Path, only: &[String]) -> anyhow::Result<()> {
    let root = e2e::root();
    let sz = if quick { &QUICK } else { &FULL };
    let mut doc = String::new();
    let mut targets: Vec<(String, String, String, bool)> = Vec::new();
    let _ = writeln!(doc, "# Benchmarks\n");
    let _ = writeln!(
        doc,
        "Written by `./scripts/bench` (`syncline-bench all`, source in `bench/src/`); do not edit by hand. \
         {} Each figure is the median (min–max) of {} runs unless a row says otherwise; each ratio is taken \
         within one run and then summarized.{}\n",
        crate::machine::describe(&root),
        sz.runs,
        if quick { " **Quick mode: tiny runs that only prove every benchmark works; these are not figures to quote.**" } else { "" }
    );
    let mut body = String::new();

    if section("e2e", only) {
        eprintln!("e2e ...");
        let base = |messages, batch, concurrency, bulk| Setup {
            messages,
            batch,
            concurrency,
            sync: "full".into(),
            bulk,
            native: false,
            rate: None,
            window: None,
        };
        let mut pairs = vec![
            Pair {
                label: "batch 100, 4 senders, per-message sink",
                setup: base(sz.batch_msgs, 100, 4, false),
                wasm: Figures::default(),
                native: Figures::default(),
                ratio: vec![],
                threads: BTreeMap::new(),
            },
            Pair {
                label: "batch 100, 4 senders, bulk sink",
                setup: base(sz.batch_msgs, 100, 4, true),
                wasm: Figures::default(),
                native: Figures::default(),
                ratio: vec![],
                threads: BTreeMap::new(),
            },
            Pair {
                label: "single, 32 senders, per-message sink",
                setup: base(sz.single_msgs, 1, 32, false),
                wasm: Figures::default(),
                native: Figures::default(),
                ratio: vec![],
                threads: BTreeMap::new(),
            },
        ];
        for p in &mut pairs {
            for _ in 0..sz.runs {
                p.threads = e2e::run(&p.setup, &mut p.wasm)?;
                e2e::run(
                    &Setup {
                        native: true,
                        ..p.setup.clone()
                    },
                    &mut p.native,
                )?;
                let n = p.native.get("delivered").values.len();
                p.ratio.push(
                    p.wasm.get("delivered").values[n - 1] / p.native.get("delivered").values[n - 1],
                );
            }
        }
        // The host's own latency: the same single-message load without the
        // example's 100 ms allocate batch window (which every message waits
        // out at low load by design).
        let mut no_window = Pair {
            label: "single, 32 senders, per-message sink, allocate window 0",
            setup: Setup {
                window: Some("0ms".into()),
                ..base(sz.single_msgs, 1, 32, false)
            },
            wasm: Figures::default(),
            native: Figures::default(),
            ratio: vec![],
            threads: BTreeMap::new(),
        };
        for _ in 0..sz.runs {
            e2e::run(&no_window.setup, &mut no_window.wasm)?;
        }
        let mut half = Vec::new();
        for p in pairs.iter().chain([&no_window]) {
            let rate = p.wasm.get("delivered").median() / 2.0;
            let mut f = Figures::default();
            let setup = Setup {
                rate: Some(rate),
                messages: p.setup.messages / 2,
                ..p.setup.clone()
            };
            for _ in 0..sz.runs {
                e2e::run(&setup, &mut f)?;
            }
            half.push((p.label, rate, f));
        }
        let _ = writeln!(body, "## End to end\n");
        let _ = writeln!(
            body,
            "The bundled example (`examples/forecast-release`: json-mapper → canonical-validator → moq-leadtime → \
             http-sink into `erp-sim`) with the embedded SQLite store (`sync = \"full\"`: an fsync per group commit), \
             `syncline`, `erp-sim` and the load generator as three processes on loopback. Messages are canonical \
             replenishment recommendations over 150 item/location keys; {} per batch run, {} per single-message run. \
             *Accepted*: messages ÷ time until the last 202. *Delivered*: messages ÷ time until the ERP held the last \
             one. Latency: ERP receipt − send (ms); at half load the sender runs open loop at half the full-load \
             delivered rate and latency counts from the scheduled send time. *CPU*: user + system time of the \
             `syncline` process ÷ messages. *Native*: the same host and config with every stage replaced by its \
             native twin (the same plugin crates compiled into the host; `syncline-bench serve`). Every run checked \
             that the ERP received each message exactly once.\n",
            sz.batch_msgs, sz.single_msgs
        );
        let _ = writeln!(body, "| load | stages | rate | accepted msg/s | delivered msg/s | p50 ms | p99 ms | p99.9 ms | CPU µs/msg | peak RSS MiB |");
        let _ = writeln!(body, "|---|---|---|---|---|---|---|---|---|---|");
        for p in &pairs {
            e2e_row(&mut body, p.label, "Wasm", "full", &p.wasm);
            e2e_row(&mut body, p.label, "native", "full", &p.native);
        }
        e2e_row(&mut body, no_window.label, "Wasm", "full", &no_window.wasm);
        for (label, rate, f) in &half {
            e2e_row(
                &mut body,
                label,
                "Wasm",
                &format!("half ({rate:.0} msg/s)"),
                f,
            );
        }
        let _ = writeln!(
            body,
            "\n| load | delivered: Wasm ÷ native (sandbox cost) |\n|---|---|"
        );
        for p in &pairs {
            let _ = writeln!(
                body,
                "| {} | {} |",
                p.label,
                Stat::of(p.ratio.clone()).show(2)
            );
        }
        let p = &pairs[1];
        let total: f64 = p.threads.values().sum();
        let mut threads: Vec<_> = p
            .threads
            .iter()
            .filter(|(_, s)| **s / total >= 0.005)
            .collect();
        threads.sort_by(|a, b| b.1.total_cmp(a.1));
        let _ = writeln!(
            body,
            "\nWhere `syncline`'s CPU went in the last Wasm run of *{}* (by thread):\n",
            p.label
        );
        let _ = writeln!(body, "| thread | share of host CPU |\n|---|---|");
        for (name, secs) in threads {
            let _ = writeln!(body, "| {name} | {:.0} % |", secs * 100.0 / total);
        }
        let _ = writeln!(body);
        let best_batch = pairs[..2]
            .iter()
            .map(|p| p.wasm.get("delivered").median())
            .fold(0.0, f64::max);
        targets.push((
            "durable batch ingest, three Wasm stages, HTTP sink: delivered".into(),
            "≥ 50,000 msg/s".into(),
            format!("{best_batch:.0} msg/s"),
            best_batch >= 50_000.0,
        ));
        let s = &pairs[2].wasm;
        let nw = &half[3].2;
        targets.push((
            "single-message ingest, concurrency 32".into(),
            "≥ 20,000 msg/s, p99 ≤ 10 ms".into(),
            format!(
                "{:.0} msg/s accepted; p99 {:.0} ms at full load, {:.0} ms at half load, {:.0} ms at half load without the allocate window",
                s.get("accepted").median(),
                s.get("p99").median(),
                half[2].2.get("p99").median(),
                nw.get("p99").median()
            ),
            s.get("accepted").median() >= 20_000.0 && s.get("p99").median() <= 10.0,
        ));
        let worst = pairs
            .iter()
            .map(|p| Stat::of(p.ratio.clone()).median())
            .fold(f64::MAX, f64::min);
        targets.push((
            "sandbox cost: Wasm ÷ native end-to-end throughput".into(),
            "≥ 0.67".into(),
            format!("{worst:.2} (lowest of the three loads)"),
            worst >= 0.67,
        ));
    }

    if section("workload", only) {
        eprintln!("workload ...");
        let n = if quick { 2_000 } else { 50_000 };
        let mut f = Figures::default();
        let mut ratios = Vec::new();
        for _ in 0..sz.runs {
            crate::workload::run(crate::workload::System::Syncline, n, &mut f)?;
            crate::workload::run(crate::workload::System::SynclineOneKey, n, &mut f)?;
            crate::workload::run(crate::workload::System::Service, n, &mut f)?;
            let (a, b) = (f.get("syncline:delivered").values, f.get("service:delivered").values);
            ratios.push(a[a.len() - 1] / b[b.len() - 1]);
        }
        let _ = writeln!(body, "## The workload beside a hand-written service
");
        let _ = writeln!(
            body,
            "What an integration team brings: a planning system's flat JSON recommendations POSTed one at a time by 32 \
             senders as raw payloads, through json-mapper → canonical-validator → uom-normalizer (tables for 1,000 \
             items) → moq-leadtime (allocate window 0) → http-sink (one POST per requisition, with its idempotency \
             key) into `erp-sim`; {n} recommendations per run, the store with `sync = \"full\"`. Beside it, the \
             service a user would write instead (`bench/src/service.rs`: axum, the same checks and arithmetic by hand, \
             a keep-alive HTTP client to the ERP, answering once the ERP has; no store, no sandbox, no retries), run \
             alternately with Syncline on the same machine. Accept latency: the POST's round trip. CPU: the system's \
             process. Stored: the database file (its write-ahead log checkpointed) ÷ messages after the run. \
             Syncline keys the raw payloads by `ordering-key = {{ raw = [\"/sku\", \"/site\"] }}`, so they spread over \
             the pipeline's shards; *one key* is the same without it (every raw payload one key, one shard: how raw \
             input ran before raw keys existed). Busiest shard: its share of the CPU of all the pipeline's shards \
             (1.00 = one shard did all the work).\n"
        );
        let _ = writeln!(body, "| system | accepted msg/s | delivered msg/s | accept p50 ms | accept p99 ms | CPU µs/msg | stored bytes/msg | busiest shard |\n|---|---|---|---|---|---|---|---|");
        for (name, key) in [("Syncline", "syncline"), ("Syncline, one key for raw input", "one-key"), ("hand-written service", "service")] {
            let g = |k: &str| f.get(&format!("{key}:{k}"));
            let shard = if key == "service" { "–".to_string() } else { g("busiest-shard").show(2) };
            let _ = writeln!(
                body,
                "| {name} | {} | {} | {} | {} | {} | {} | {shard} |",
                g("accepted").show(0),
                g("delivered").show(0),
                g("p50").show(1),
                g("p99").show(1),
                g("cpu").show(0),
                g("stored").show(0)
            );
        }
        let ratio = crate::stats::Stat::of(ratios);
        let _ = writeln!(body, "\nDelivered msg/s, Syncline ÷ service: {}\n", ratio.show(2));
        let _ = writeln!(
            body,
            "Where a message's CPU goes in Syncline (the keyed runs), by thread, µs per message (the hand-written \
             service used {} in all):\n\n| thread | µs/msg | its work |\n|---|---|---|",
            f.get("service:cpu").show(0)
        );
        let mut threads: Vec<(String, crate::stats::Stat)> =
            f.names_with("syncline:thread:").into_iter().map(|k| (k["syncline:thread:".len()..].to_string(), f.get(&k))).collect();
        threads.sort_by(|a, b| b.1.median().total_cmp(&a.1.median()));
        for (thread, stat) in threads.iter().filter(|(_, s)| s.median() >= 0.5) {
            let _ = writeln!(body, "| {thread} | {} | {} |", stat.show(0), thread_work(thread));
        }
        let _ = writeln!(body);
        let cpu = f.get("syncline:cpu").median();
        targets.push(("workload: CPU per message in Syncline".into(), "≤ 150 µs".into(), format!("{cpu:.0} µs"), cpu <= 150.0));
        targets.push((
            "workload: Syncline's delivered msg/s ÷ the hand-written service's".into(),
            "≥ 0.5 (aim 0.8)".into(),
            format!("{:.2}", ratio.median()),
            ratio.median() >= 0.5,
        ));
        let stored = f.get("syncline:stored").median();
        targets.push(("workload: bytes stored per message after processing".into(), "≤ 2 KB".into(), format!("{stored:.0} B"), stored <= 2048.0));
    }

    if section("drain", only) {
        eprintln!("drain ...");
        let mut f = Figures::default();
        for _ in 0..sz.drain_runs {
            crate::drain::run(sz.drain, &mut f)?;
        }
        let _ = writeln!(body, "## Backlog drain\n");
        let _ = writeln!(
            body,
            "The ERP is down while {} messages are accepted and processed (batch ingest, bulk sink, retries with \
             backoff capped at 1 s, the circuit breaker probing every second), so every output waits in the delivery queue; then the ERP starts. Drain: from the \
             ERP's start until it holds the last message, exactly once. {} run(s).\n",
            sz.drain, sz.drain_runs
        );
        let _ = writeln!(body, "| queued | drain s | drain msg/s | first delivery after the ERP is up, ms |\n|---|---|---|---|");
        let _ = writeln!(
            body,
            "| {} | {} | {} | {} |\n",
            sz.drain,
            f.get("drain-s").show(1),
            f.get("drain-rate").show(0),
            f.get("first").show(0)
        );
    }

    if section("failures", only) {
        eprintln!("failures ...");
        let mut f = Figures::default();
        for _ in 0..sz.runs {
            crate::failures::flaky(sz.failing, None, "ok", &mut f)?;
            crate::failures::flaky(sz.failing, Some(10), "flaky", &mut f)?;
        }
        let window = std::time::Duration::from_secs(sz.down_secs);
        crate::failures::down(sz.down, window, true, "breaker", &mut f)?;
        crate::failures::down(sz.down, window, false, "no-breaker", &mut f)?;
        let _ = writeln!(body, "## Failing downstreams\n");
        let _ = writeln!(
            body,
            "The bundled example (batch ingest of 100 from 4 senders, per-message sink, retries with backoff from 100 ms \
             capped at 1 s), {} messages, while the ERP answers every request, and while it answers 503 to one request \
             in ten (each retried until delivered, exactly once). {} run(s) each, alternating.\n",
            sz.failing, sz.runs
        );
        let _ = writeln!(body, "| ERP | delivered msg/s | requests refused |\n|---|---|---|");
        let _ = writeln!(body, "| answers every request | {} | {} |", f.get("ok:delivered").show(0), f.get("ok:refused").show(0));
        let _ = writeln!(body, "| refuses one in ten (503) | {} | {} |\n", f.get("flaky:delivered").show(0), f.get("flaky:refused").show(0));
        let _ = writeln!(
            body,
            "The ERP answers 503 to everything while {} outputs wait for it (retries as above): the requests per second \
             it still receives over {} s, with the sink's circuit breaker on (the default: open after 5 failures, a \
             probe after 5 s, each failed probe doubling the wait) and off. One run each.\n",
            sz.down, sz.down_secs
        );
        let _ = writeln!(body, "| circuit breaker | ERP requests/s while down |\n|---|---|");
        let _ = writeln!(body, "| on | {} |", f.get("breaker:rps").show(1));
        let _ = writeln!(body, "| off | {} |\n", f.get("no-breaker:rps").show(1));
    }

    if section("stages", only) {
        eprintln!("stages ...");
        let mut f = Figures::default();
        crate::stages::run(sz.stage_msgs, sz.runs.max(3), &mut f)?;
        let _ = writeln!(body, "## Stages in process\n");
        let _ = writeln!(
            body,
            "The three stages over the same {} messages in one thread, no store or HTTP: as Wasm components through \
             the runtime (warm instance, deadline and memory cap armed, model ↔ WIT conversions included) and as the \
             same plugin crates compiled natively.\n",
            sz.stage_msgs
        );
        let _ = writeln!(
            body,
            "| Wasm msg/s | native msg/s | Wasm ÷ native |\n|---|---|---|"
        );
        let _ = writeln!(
            body,
            "| {} | {} | {} |\n",
            f.get("wasm").show(0),
            f.get("native").show(0),
            f.get("ratio").show(2)
        );
    }

    if section("micro", only) {
        eprintln!("micro ...");
        let (rows, (cold, warm, kib)) = crate::micro::run(sz.micro_iterations, sz.runs.max(2) + 2)?;
        let _ = writeln!(body, "## Plugin calls\n");
        let _ = writeln!(
            body,
            "One call through a bound plugin instance (deadline and memory cap armed, model ↔ WIT conversion on both \
             sides) against the same plugin crate called natively; N is lines of a raw export (json-mapper), messages \
             in the batch (moq-leadtime), calls (canonical-validator) or messages delivered (http-sink, one request \
             at a time to `erp-sim` on loopback through wasi:http; its native twin sends the same requests with a \
             native keep-alive client). Median (min–max) of batches of {} calls (fewer for larger N).\n",
            sz.micro_iterations
        );
        let _ = writeln!(body, "| call | N | Wasm µs/call | native µs/call | Wasm ÷ native time |\n|---|---|---|---|---|");
        for r in &rows {
            let native = r.native.as_ref().map_or("—".into(), |n| n.show(2));
            let ratio = r.native.as_ref().map_or("—".into(), |n| {
                format!("{:.1}", r.wasm.median() / n.median())
            });
            let _ = writeln!(
                body,
                "| {} | {} | {} | {native} | {ratio} |",
                r.what,
                r.lines,
                r.wasm.show(2)
            );
        }
        let _ = writeln!(
            body,
            "\n| load json-mapper ({kib:.0} KiB) | ms |\n|---|---|"
        );
        let _ = writeln!(body, "| compile, cache cold | {} |", cold.show(1));
        let _ = writeln!(
            body,
            "| load from the on-disk cache (digest, world check, link) | {} |\n",
            warm.show(2)
        );
        let noop = rows[0].wasm.median();
        let fresh = rows[1].wasm.median();
        targets.push((
            "typed transform call, limits on (no-op transform of one canonical message)".into(),
            "≤ 5 µs".into(),
            format!("{noop:.1} µs"),
            noop <= 5.0,
        ));
        targets.push((
            "fresh instance per message (instantiate, call, drop)".into(),
            "≤ 10 µs".into(),
            format!("{fresh:.1} µs"),
            fresh <= 10.0,
        ));
    }

    if section("limits", only) {
        eprintln!("limits ...");
        let spin = if quick { std::time::Duration::from_millis(200) } else { std::time::Duration::from_secs(5) };
        let cases = crate::limits::run(spin, quick, sz.runs)?;
        let _ = writeln!(body, "## Limits on every path
");
        let _ = writeln!(
            body,
            "How long a plugin call takes to come back when the plugin holds it: spinning in its own code (epoch \
             interruption, every 5 ms tick checked against the clock), sleeping inside a host call (the call's future \
             dropped at its deadline), or reading an HTTP body that stalls after 10 bytes (the request's own timeout \
             bounds the whole exchange). Idle cores, and with two threads spinning on the same two cores. Seconds, \
             median (min–max) of {} calls.\n",
            sz.runs
        );
        let _ = writeln!(body, "| the plugin | bound | idle s | loaded s |\n|---|---|---|---|");
        for c in &cases {
            let _ = writeln!(body, "| {} | {:?} | {} | {} |", c.label, c.bound, c.idle.show(3), c.loaded.show(3));
        }
        let _ = writeln!(body);
        let worst = cases
            .iter()
            .map(|c| c.loaded.max().max(c.idle.max()) - c.bound.as_secs_f64())
            .fold(0f64, f64::max);
        targets.push((
            "a call's wall-time limit holds on every path (worst overshoot, loaded cores)".into(),
            "≤ 50 ms".into(),
            format!("{:.0} ms", worst * 1000.0),
            worst <= 0.050,
        ));
    }

    if section("retention", only) {
        eprintln!("retention ...");
        let (waves, per_wave, retention) =
            if quick { (3, 2_000, std::time::Duration::from_secs(1)) } else { (10, 100_000, std::time::Duration::from_secs(5)) };
        let samples = crate::retention::run(waves, per_wave, retention)?;
        let _ = writeln!(body, "## Store size under a steady load
");
        let _ = writeln!(
            body,
            "The bundled example (batch ingest of 100 from 4 senders, bulk sink, `sync = \"normal\"`) takes {waves} waves \
             of {per_wave} messages with `retention = \"{}s\"`; after each wave is delivered and the retention has \
             passed, the store's files are measured. One run.\n",
            retention.as_secs()
        );
        let _ = writeln!(body, "| messages sent | database MiB | WAL MiB | messages held |\n|---|---|---|---|");
        for x in &samples {
            let _ = writeln!(body, "| {} | {:.1} | {:.1} | {} |", x.sent, x.db as f64 / 1048576.0, x.wal as f64 / 1048576.0, x.messages);
        }
        let _ = writeln!(body);
        let (second, last) = (samples[1.min(samples.len() - 1)].db as f64, samples[samples.len() - 1].db as f64);
        targets.push((
            format!("store size flat under a steady load ({} messages, retention shorter than the run)", samples[samples.len() - 1].sent),
            "last wave ≤ 1.25 × second wave".into(),
            format!("{:.1} MiB after the second wave, {:.1} MiB after the last", second / 1048576.0, last / 1048576.0),
            last <= second * 1.25,
        ));
    }

    if section("reload", only) {
        eprintln!("reload ...");
        let cases = crate::reload::run(sz.reload_runs)?;
        let _ = writeln!(body, "## Hot reload\n");
        let _ = writeln!(
            body,
            "The engine in process with the file watcher on; `plugins/shared/tagger.wasm` is replaced by \
             write-to-temp-then-rename, and the figure is the time from the rename until the stage's live instance is \
             the new digest. Cold: a digest never compiled; warm: two versions alternate from the on-disk compile \
             cache. The 5 MB plugin is the tagger plus 5 MB of custom section; the JavaScript tagger does the same \
             tagging, built with componentize-js (its JavaScript engine is the bulk of the file). Meanwhile a message is ingested every \
             2 ms; its delay is processed-at − received-at (ms). {} swaps per case.\n",
            sz.reload_runs
        );
        let _ = writeln!(body, "| plugin | compile cache | rename → live ms | message delay p50 / max ms (messages) |\n|---|---|---|---|");
        for c in &cases {
            let _ = writeln!(
                body,
                "| {} | {} | {} | {:.0} / {:.0} ({}) |",
                c.label,
                if c.warm { "warm" } else { "cold" },
                c.times.show(1),
                c.delays.0,
                c.delays.1,
                c.delays.2
            );
        }
        let _ = writeln!(body);
        let (warm, cold) = (cases[1].times.median(), cases[0].times.median());
        targets.push((
            "hot reload, small plugin".into(),
            "≤ 5 ms warm, ≤ 100 ms cold".into(),
            format!("{warm:.1} ms warm, {cold:.1} ms cold"),
            warm <= 5.0 && cold <= 100.0,
        ));
        if let [.., js_cold, js_warm] = &cases[..] {
            let (warm, cold) = (js_warm.times.median(), js_cold.times.median());
            targets.push((
                "hot reload, 12 MB JavaScript plugin".into(),
                "≤ 5 ms warm (precompiled)".into(),
                format!("{warm:.1} ms warm, {:.1} s cold", cold / 1000.0),
                warm <= 5.0,
            ));
        }
    }

    if section("memory", only) {
        eprintln!("memory ...");
        let mut f = Figures::default();
        for _ in 0..sz.runs {
            for name in ["tagger-v1", "json-mapper"] {
                crate::memory::per_plugin(name, sz.plugin_copies, &mut f)?;
            }
            crate::memory::per_tenant(sz.extra_tenants, &mut f)?;
        }
        let _ = writeln!(body, "## Memory\n");
        let _ = writeln!(
            body,
            "Per plugin: resident memory added by loading {} distinct versions of a plugin from the compile cache, \
             binding each and calling it once (code mapped, one warm instance), ÷ {}. Per tenant: a `syncline` with \
             the example pipeline for 1 tenant against one with {} tenants (each its own pipeline and stage \
             instances; sinks shared), after one message through each.\n",
            sz.plugin_copies,
            sz.plugin_copies,
            1 + sz.extra_tenants
        );
        let _ = writeln!(body, "| what | MiB |\n|---|---|");
        for (label, figure, decimals) in [
            (
                "per loaded plugin: tagger (small transform)",
                "plugin-MiB:tagger-v1",
                2,
            ),
            (
                "per loaded plugin: json-mapper (501 KiB)",
                "plugin-MiB:json-mapper",
                2,
            ),
            ("per tenant (3 stages)", "tenant-MiB", 2),
            (
                "whole host, 1 tenant, idle after one message",
                "host-MiB",
                1,
            ),
        ] {
            let _ = writeln!(body, "| {label} | {} |", f.get(figure).show(decimals));
        }
        let _ = writeln!(body);
    }

    if section("cluster", only) {
        eprintln!("cluster ...");
        let _ = writeln!(body, "## Several hosts on one store\n");
        let _ = writeln!(
            body,
            "The bundled example's pipeline with its load sent to the host processes in turn (batches of 100), {} messages a run, \
             every one checked at the ERP exactly once: one process on the embedded store, then 1 to {} processes on one local \
             NATS JetStream server (`syncline-bench cluster --store nats --hosts N`). Every process and the server share this \
             machine's cores, so the rate cannot grow with processes; the CPU a message costs shows whether it would where each \
             has cores of its own. {} run(s).\n",
            sz.cluster_msgs, sz.cluster_hosts, sz.runs
        );
        let _ = writeln!(
            body,
            "| store | processes | delivered msg/s | hosts' CPU µs/msg | each process's share % | NATS server CPU µs/msg | all CPU a message vs the embedded store |\n|---|---|---|---|---|---|---|"
        );
        let mut embedded = None;
        let mut setups = vec![crate::cluster::Setup { hosts: 1, store: "sqlite".into(), messages: sz.cluster_msgs, batch: 100 }];
        setups.extend((1..=sz.cluster_hosts).map(|hosts| crate::cluster::Setup { hosts, store: "nats".into(), messages: sz.cluster_msgs, batch: 100 }));
        for setup in setups {
            let mut f = Figures::default();
            for _ in 0..sz.runs {
                let run = crate::cluster::run(&setup)?;
                f.add("delivered", run.delivered);
                f.add("host", run.host_us);
                f.add("nats", run.nats_us);
                for (i, share) in run.shares.iter().enumerate() {
                    f.add(&format!("share-{i}"), *share);
                }
            }
            let shares: Vec<String> = (0..setup.hosts).map(|i| f.get(&format!("share-{i}")).show(0)).collect();
            let nats = if setup.store == "nats" { f.get("nats").show(0) } else { "—".into() };
            // Hosts' and server's CPU together, against one embedded host's.
            let all = f.get("host").median() + if setup.store == "nats" { f.get("nats").median() } else { 0.0 };
            let ratio = *embedded.get_or_insert(all);
            let _ = writeln!(
                body,
                "| {} | {} | {} | {} | {} | {nats} | {:.1}× |",
                setup.store,
                setup.hosts,
                f.get("delivered").show(0),
                f.get("host").show(0),
                shares.join(" / "),
                all / ratio
            );
        }
        let _ = writeln!(body);
    }

    if !targets.is_empty() {
        let _ = writeln!(
            doc,
            "## Targets\n\n| figure | target | measured (median) | met |\n|---|---|---|---|"
        );
        for (what, target, measured, met) in &targets {
            let _ = writeln!(
                doc,
                "| {what} | {target} | {measured} | {} |",
                if *met { "yes" } else { "**no**" }
            );
        }
        let _ = writeln!(doc);
    }
    doc += &body;
    let notes = root.join("docs/benchmarks-analysis.md");
    if let Ok(text) = std::fs::read_to_string(&notes) {
        let _ = writeln!(doc, "{}", text.trim_end());
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, &doc)?;
    println!("{doc}");
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// What a `syncline` thread (its name without the trailing number) does, for
/// the workload's CPU-by-thread table.
fn thread_work(thread: &str) -> &'static str {
    match thread {
        t if t.starts_with("pipeline-") => "the pipeline's shards: each stage call (the message lowered into the plugin and its answer lifted back, the plugin's own code), ids and keys of outputs, the commit's records",
        t if t.starts_with("sink-") => "the sink workers: the sink call (the plugin's side of each wasi:http request, its JSON), acknowledgements",
        "plugin-io" => "plugins' outbound HTTP: the pooled client's connections and sockets",
        "store-writer" => "the store's writer: every accept, process and delivery job in group commits, the write-ahead log, fsync",
        "store-checkpt" => "copying the write-ahead log into the database file",
        "http-server" => "HTTP ingest: parsing requests, the envelope, the message's stored form, answers",
        "plugin-epoch" => "the epoch tick that interrupts plugins at their deadline",
        "maintenance" => "retention, leases, scheduled work",
        _ => "",
    }
}
