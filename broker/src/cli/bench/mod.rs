//! `txmq bench publish|txn|consume`: a load generator with a progress bar and a latency and
//! throughput summary (HdrHistogram), against any running cluster.
//!
//! A run that fails says why (the first error, and failures by error code), stops early when
//! every operation fails, and exits non-zero when failures dominate: a benchmark that measured
//! nothing must not look like one that measured something.

mod schedule;
mod tally;
mod worker;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use txmq_client::{BatchOptions, Client, ClientError, Publisher, TopicType, TransactionProducer};

use super::Output;
use crate::config::HumanDuration;
use schedule::Schedule;
use tally::{Tally, Window};
use worker::Worker;

/// The bounds of `--rate` (operations per second): an interval between operations of at most
/// 1000 s and at least 10 ns.
const MIN_RATE: f64 = 0.001;
const MAX_RATE: f64 = 100_000_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Plain sends; counts acknowledged sends.
    Publish,
    /// Half message + decision; counts committed transactions.
    Txn,
    /// Receive + ack as one consumer group; counts received-and-acked messages.
    Consume,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Publish => "publish",
            Scenario::Txn => "txn",
            Scenario::Consume => "consume",
        }
    }

    /// The topic type the scenario needs.
    fn topic_type(self) -> TopicType {
        match self {
            Scenario::Txn => TopicType::Transaction,
            _ => TopicType::Normal,
        }
    }

    fn default_topic(self) -> &'static str {
        match self {
            Scenario::Txn => "bench-txn",
            _ => "bench",
        }
    }
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// The topic (created when missing: normal, or transaction for `txn`). Default: `bench`,
    /// and `bench-txn` for `txn` (a transactional run needs a transaction topic).
    #[arg(long)]
    pub topic: Option<String>,
    #[arg(long, default_value = "30s")]
    pub duration: HumanDuration,
    /// Concurrent requests in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Body size in bytes.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// `txn`: the share of transactions rolled back instead of committed.
    #[arg(long, default_value_t = 0.0)]
    pub rollback_ratio: f64,
    /// `consume`: the consumer group (default: a new group reading from the oldest message).
    #[arg(long)]
    pub group: Option<String>,
    /// `publish`: send through one `Publisher`; `txn`: through a `TransactionProducer` with
    /// batching. Concurrent sends (half messages, decisions) then travel in batched requests,
    /// each still waiting for its own result, instead of one request each.
    #[arg(long)]
    pub batching: bool,
    /// Operations started per second across all workers (sends, transactions, or receive-and-ack
    /// rounds); 0: as fast as the workers go (a closed loop). With a rate, each operation has a
    /// scheduled start and its latency counts from then, so time spent waiting for a free worker
    /// is counted too: give enough `--concurrency` for the rate.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Run the same load this long first, without counting it: the summary covers only the
    /// `--duration` that follows. Freshly started nodes are slower for their first fraction of
    /// a second (files created, memory and connections growing), which is not the steady state
    /// a p99 should describe.
    #[arg(long, default_value = "0s")]
    pub warmup: HumanDuration,
}

/// Runs a benchmark and prints its summary; the exit status says whether it measured anything.
pub async fn run(client: &Client, args: BenchArgs, out: Output) -> ExitCode {
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: this txmq is a debug build, many times slower than a release build; to \
             measure txmq, run a release build (`cargo run --release -p txmq-broker -- bench ...`, \
             and the cluster from `cargo run --release -p txmq-broker -- dev`)"
        );
    }
    match bench(client, &args).await {
        Ok((doc, tally)) => report(&args, &doc, &tally, out),
        Err(e) => out.client_error(&e),
    }
}

/// Prints the summary; a failed run also gets its reason, and a failing exit status.
fn report(args: &BenchArgs, doc: &Value, tally: &Tally, out: Output) -> ExitCode {
    out.print(doc, || summary_text(args.scenario, doc));
    if !tally.failed_run() {
        return ExitCode::SUCCESS;
    }
    let first = tally
        .first_error()
        .map(|e| format!("; the first: ({}) {}", e.code, e.message))
        .unwrap_or_default();
    let why = if tally.is_stopped() {
        format!(
            "every operation failed for {:?}, so the run stopped early",
            tally::GIVE_UP_AFTER
        )
    } else {
        format!(
            "{} of {} operations failed",
            tally.errors(),
            tally.errors() + tally.ok()
        )
    };
    eprintln!(
        "error: the benchmark failed: {why}{first} (failures by code: {})",
        doc["errors_by_code"]
    );
    ExitCode::FAILURE
}

fn validate(args: &BenchArgs) -> Result<(), ClientError> {
    let invalid = |m: String| Err(ClientError::new("invalid_argument", m));
    if args.concurrency == 0 || args.concurrency > 10_000 {
        return invalid("--concurrency must be 1 to 10000".into());
    }
    if !(0.0..=1.0).contains(&args.rollback_ratio) {
        return invalid("--rollback-ratio must be between 0 and 1".into());
    }
    if !(args.rate == 0.0 || (MIN_RATE..=MAX_RATE).contains(&args.rate)) {
        return invalid(format!(
            "--rate must be 0 (unlimited) or {MIN_RATE} to {MAX_RATE} operations per second"
        ));
    }
    Ok(())
}

/// Creates the topic when missing; refuses one of the wrong type, saying what to do.
async fn ensure_topic(client: &Client, topic: &str, scenario: Scenario) -> Result<(), ClientError> {
    let wanted = scenario.topic_type();
    match client.create_topic(topic, wanted, 4).await {
        Ok(_) => return Ok(()),
        Err(e) if e.code == "already_exists" => {}
        Err(e) => return Err(e),
    }
    let existing = client.describe_topic(topic).await?;
    if existing.r#type == wanted as i32 {
        return Ok(());
    }
    let kind = |t: TopicType| {
        if t == TopicType::Transaction {
            "transaction"
        } else {
            "normal"
        }
    };
    let actual = TopicType::try_from(existing.r#type).unwrap_or(TopicType::Normal);
    Err(ClientError::new(
        "failed_precondition",
        format!(
            "topic '{topic}' is a {} topic, but `bench {}` needs a {} topic; give another \
             --topic (it is created as a {} topic when missing)",
            kind(actual),
            scenario.name(),
            kind(wanted),
            kind(wanted)
        ),
    ))
}

/// Runs the load and measures it; the summary document and the counts.
async fn bench(client: &Client, args: &BenchArgs) -> Result<(Value, Arc<Tally>), ClientError> {
    validate(args)?;
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| args.scenario.default_topic().to_string());
    ensure_topic(client, &topic, args.scenario).await?;
    let started = Instant::now();
    let window = Window {
        measured_from: started + args.warmup.0,
        deadline: started + args.warmup.0 + args.duration.0,
    };
    let worker = worker(client, args, topic, window, started);
    let (tally, schedule) = (worker.tally.clone(), worker.schedule.clone());
    let progress = progress_bar(args.warmup.0 + args.duration.0);
    let ticker = tokio::spawn(tick(tally.clone(), progress.clone(), started, window));
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|_| tokio::spawn(worker.clone().run()))
        .collect();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 2)
        .map_err(|e| ClientError::new("internal", e.to_string()))?;
    for t in tasks {
        if let Ok(h) = t.await {
            let _ = latency.add(h);
        }
    }
    ticker.abort();
    progress.finish_and_clear();
    warn_if_late(args, &schedule);
    Ok((summary(args, &tally, &latency, &schedule, window), tally))
}

/// The worker every task clones.
fn worker(
    client: &Client,
    args: &BenchArgs,
    topic: String,
    window: Window,
    started: Instant,
) -> Worker {
    let publisher = (args.batching && args.scenario == Scenario::Publish)
        .then(|| Publisher::new(client.clone(), topic.clone(), BatchOptions::default()));
    let mut producer = TransactionProducer::new(client.clone(), "bench-producer");
    if args.batching {
        producer = producer.with_batching(BatchOptions::default());
    }
    Worker {
        client: client.clone(),
        publisher,
        producer,
        scenario: args.scenario,
        topic,
        group: args
            .group
            .clone()
            .unwrap_or_else(|| format!("bench-{}", crate::clock::now_ms())),
        // One buffer shared by every request (a reference count, not a copy per send).
        body: prost::bytes::Bytes::from(vec![b'x'; args.size]),
        rollback_ratio: args.rollback_ratio,
        window,
        schedule: Arc::new(Schedule::new(started, args.rate)),
        tally: Arc::new(Tally::default()),
    }
}

/// Updates the progress bar, and stops the run when every operation fails.
async fn tick(
    tally: Arc<Tally>,
    progress: indicatif::ProgressBar,
    started: Instant,
    window: Window,
) {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if tally.give_up_if_all_failing(started.elapsed()) {
            return;
        }
        progress.set_position(started.elapsed().as_millis() as u64);
        progress.set_message(if window.counts(Instant::now()) {
            format!("{} ok, {} errors", tally.ok(), tally.errors())
        } else {
            "warming up".to_string()
        });
    }
}

/// Latencies count from the scheduled start, so they stay honest, but past a second of delay
/// they measure the load generator's too few workers as much as the cluster.
fn warn_if_late(args: &BenchArgs, schedule: &Schedule) {
    if args.rate > 0.0 && schedule.most_late_ms() > 1000.0 {
        eprintln!(
            "warning: operations started up to {:.0} ms after their scheduled time (all {} \
             workers busy); the latencies include that wait: raise --concurrency for --rate {}",
            schedule.most_late_ms(),
            args.concurrency,
            args.rate
        );
    }
}

fn summary(
    args: &BenchArgs,
    tally: &Tally,
    latency: &Histogram<u64>,
    schedule: &Schedule,
    window: Window,
) -> Value {
    let elapsed = window.measured_from.elapsed().as_secs_f64().max(1e-9);
    let counted = tally.counted.load(std::sync::atomic::Ordering::Relaxed);
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let first_error = tally
        .first_error()
        .map(|e| json!({"code": e.code, "message": e.message}));
    json!({
        "scenario": args.scenario.name(),
        "duration_s": elapsed,
        "ok": tally.ok(),
        "errors": tally.errors(),
        "errors_by_code": tally.errors_by_code(),
        "first_error": first_error,
        "stopped_early": tally.is_stopped(),
        "throughput_per_s": counted as f64 / elapsed,
        "concurrency": args.concurrency,
        "size": args.size,
        "batching": args.batching,
        "rate": args.rate,
        "warmup_s": args.warmup.0.as_secs_f64(),
        // With --rate: how late the latest-starting operation began (all workers busy).
        "max_start_delay_ms": schedule.most_late_ms(),
        "latency_ms": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999), "max": latency.max() as f64 / 1000.0},
        // What the load generator itself used: on a shared machine it competes with the nodes.
        "client_cpu_s": own_cpu_seconds(),
        "debug_build": cfg!(debug_assertions),
    })
}

fn summary_text(scenario: Scenario, doc: &Value) -> String {
    let l = &doc["latency_ms"];
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    format!(
        "{}: {:.0}/s over {:.1}s ({} ok, {} errors), latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
        scenario.name(),
        f(&doc["throughput_per_s"]),
        f(&doc["duration_s"]),
        doc["ok"],
        doc["errors"],
        f(&l["p50"]),
        f(&l["p90"]),
        f(&l["p99"]),
        f(&l["p999"]),
        f(&l["max"]),
    )
}

/// CPU seconds (user + system) this process used so far.
fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn progress_bar(duration: Duration) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(duration.as_millis() as u64);
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
    {
        bar.set_style(style);
    }
    bar
}
