//! `txmq bench publish|txn|consume`: a load generator with a progress bar and a latency and
//! throughput summary (HdrHistogram), against any running cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::json;
use txmq_client::{
    BatchOptions, Client, ClientError, LocalTransactionState, Publisher, ReceiveRequest,
    SendHalfRequest, SendRequest, TopicType, TransactionProducer,
};

use super::Output;
use crate::config::HumanDuration;

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

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// The topic (created when missing: normal, or transaction for `txn`).
    #[arg(long, default_value = "bench")]
    pub topic: String,
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

struct Tally {
    /// Transactions begun by all workers: numbers them for [`rolls_back`].
    transactions: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    counted: AtomicU64,
}

pub async fn bench(client: &Client, args: BenchArgs, out: Output) -> Result<(), ClientError> {
    if args.concurrency == 0 || args.concurrency > 10_000 {
        return Err(ClientError::new(
            "invalid_argument",
            "--concurrency must be 1 to 10000",
        ));
    }
    if !(0.0..=1.0).contains(&args.rollback_ratio) {
        return Err(ClientError::new(
            "invalid_argument",
            "--rollback-ratio must be between 0 and 1",
        ));
    }
    if !(args.rate == 0.0 || (MIN_RATE..=MAX_RATE).contains(&args.rate)) {
        return Err(ClientError::new(
            "invalid_argument",
            format!(
                "--rate must be 0 (unlimited) or {MIN_RATE} to {MAX_RATE} operations per second"
            ),
        ));
    }
    let kind = if args.scenario == Scenario::Txn {
        TopicType::Transaction
    } else {
        TopicType::Normal
    };
    match client.create_topic(&args.topic, kind, 4).await {
        Ok(_) => {}
        Err(e) if e.code == "already_exists" => {}
        Err(e) => return Err(e),
    }
    let group = args
        .group
        .clone()
        .unwrap_or_else(|| format!("bench-{}", crate::clock::now_ms()));
    let tally = Arc::new(Tally {
        transactions: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        counted: AtomicU64::new(0),
    });
    let started = Instant::now();
    let window = Window {
        measured_from: started + args.warmup.0,
        deadline: started + args.warmup.0 + args.duration.0,
    };
    let schedule = Arc::new(Schedule::new(started, args.rate));
    let progress = progress_bar(args.warmup.0 + args.duration.0);
    let publisher = (args.batching && args.scenario == Scenario::Publish)
        .then(|| Publisher::new(client.clone(), args.topic.clone(), BatchOptions::default()));
    let mut producer = TransactionProducer::new(client.clone(), "bench-producer");
    if args.batching {
        producer = producer.with_batching(BatchOptions::default());
    }
    let mut tasks = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let (client, tally, topic, group, publisher, producer) = (
            client.clone(),
            tally.clone(),
            args.topic.clone(),
            group.clone(),
            publisher.clone(),
            producer.clone(),
        );
        let schedule = schedule.clone();
        let (scenario, size, ratio) = (args.scenario, args.size, args.rollback_ratio);
        tasks.push(tokio::spawn(async move {
            worker_loop(
                client, publisher, producer, scenario, topic, group, size, ratio, window, schedule,
                tally,
            )
            .await
        }));
    }
    let ticker = {
        let (tally, progress) = (tally.clone(), progress.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                progress.set_position(started.elapsed().as_millis() as u64);
                progress.set_message(if window.counts(Instant::now()) {
                    format!(
                        "{} ok, {} errors",
                        tally.ok.load(Ordering::Relaxed),
                        tally.errors.load(Ordering::Relaxed)
                    )
                } else {
                    "warming up".to_string()
                });
            }
        })
    };
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 2)
        .map_err(|e| ClientError::new("internal", e.to_string()))?;
    for t in tasks {
        if let Ok(h) = t.await {
            let _ = latency.add(h);
        }
    }
    ticker.abort();
    progress.finish_and_clear();
    let elapsed = window.measured_from.elapsed().as_secs_f64();
    let counted = tally.counted.load(Ordering::Relaxed);
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let doc = json!({
        "scenario": format!("{:?}", args.scenario).to_lowercase(),
        "duration_s": elapsed,
        "ok": tally.ok.load(Ordering::Relaxed),
        "errors": tally.errors.load(Ordering::Relaxed),
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
    });
    // Latencies count from the scheduled start, so they stay honest, but past a second of
    // delay they measure the load generator's too few workers as much as the cluster.
    if args.rate > 0.0 && schedule.most_late_ms() > 1000.0 {
        eprintln!(
            "warning: operations started up to {:.0} ms after their scheduled time (all {} \
             workers busy); the latencies include that wait: raise --concurrency for --rate {}",
            schedule.most_late_ms(),
            args.concurrency,
            args.rate
        );
    }
    out.print(&doc, || {
        format!(
            "{:?}: {:.0}/s over {:.1}s ({} ok, {} errors), latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
            args.scenario,
            counted as f64 / elapsed,
            elapsed,
            tally.ok.load(Ordering::Relaxed),
            tally.errors.load(Ordering::Relaxed),
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(0.999),
            latency.max() as f64 / 1000.0
        )
    });
    Ok(())
}

/// When operations count: those starting from `measured_from` (after the warm-up) up to
/// `deadline`.
#[derive(Debug, Clone, Copy)]
struct Window {
    measured_from: Instant,
    deadline: Instant,
}

impl Window {
    /// Whether an operation starting `at` counts (is past the warm-up).
    fn counts(&self, at: Instant) -> bool {
        at >= self.measured_from
    }
}

/// Whether the `k`-th transaction of the run (counted over all workers) rolls back: exactly
/// `floor(k × ratio)` of the first `k` do, spread evenly (0.5: every other one; 0.1: every
/// tenth), so any stretch of the run, however short, has the asked share.
fn rolls_back(k: u64, ratio: f64) -> bool {
    ((k + 1) as f64 * ratio).floor() > (k as f64 * ratio).floor()
}

/// When each operation of a rate-limited run is due: the k-th operation of all workers at
/// `start + k / rate`. An open loop: a slow reply does not delay the next operation's scheduled
/// start, so its latency (counted from that start) includes the wait for a free worker instead
/// of hiding it (coordinated omission).
struct Schedule {
    start: Instant,
    interval: Option<Duration>,
    issued: AtomicU64,
    /// The longest any operation started after its scheduled time (µs): the workers were all
    /// busy, so the load generator, not only the cluster, held it up.
    most_late_us: AtomicU64,
}

impl Schedule {
    /// `rate` operations per second; 0: no schedule (each worker starts its next operation as
    /// soon as the last one ends).
    fn new(start: Instant, rate: f64) -> Self {
        let interval = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
        Self {
            start,
            interval,
            issued: AtomicU64::new(0),
            most_late_us: AtomicU64::new(0),
        }
    }

    /// Notes that the operation scheduled `at` starts now.
    fn started(&self, at: Instant) {
        let late = Instant::now().saturating_duration_since(at).as_micros() as u64;
        self.most_late_us.fetch_max(late, Ordering::Relaxed);
    }

    /// The longest delay between an operation's scheduled and actual start, in milliseconds.
    fn most_late_ms(&self) -> f64 {
        self.most_late_us.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// The scheduled start of the next operation, or `None` when the run is not rate-limited.
    fn next(&self) -> Option<Instant> {
        let interval = self.interval?;
        let k = self.issued.fetch_add(1, Ordering::Relaxed);
        Some(self.start + interval.mul_f64(k as f64))
    }
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

#[allow(clippy::too_many_arguments)]
async fn worker_loop(
    client: Client,
    publisher: Option<Publisher>,
    producer: TransactionProducer,
    scenario: Scenario,
    topic: String,
    group: String,
    size: usize,
    rollback_ratio: f64,
    window: Window,
    schedule: Arc<Schedule>,
    tally: Arc<Tally>,
) -> Histogram<u64> {
    // Two significant digits (1 % resolution): a worker's histogram stays ~20 KiB, so 256
    // workers' histograms fit in the cache instead of costing the load generator a cache miss
    // per request.
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 2)
        .expect("static histogram bounds are valid");

    // One buffer shared by every request (a reference count, not a copy per send).
    let body = prost::bytes::Bytes::from(vec![b'x'; size]);
    loop {
        let started = match schedule.next() {
            Some(at) if at < window.deadline => {
                tokio::time::sleep_until(at.into()).await;
                if window.counts(at) {
                    schedule.started(at);
                }
                at
            }
            Some(_) => break,
            None if Instant::now() < window.deadline => Instant::now(),
            None => break,
        };
        let measured = window.counts(started);
        let result: Result<u64, ClientError> = match scenario {
            Scenario::Publish => {
                let req = SendRequest {
                    topic: topic.clone(),
                    body: body.clone(),
                    ..Default::default()
                };
                match &publisher {
                    Some(p) => p.send(req).await.map(|_| 1),
                    None => client.send(req).await.map(|_| 1),
                }
            }
            Scenario::Txn => {
                let rollback = rolls_back(
                    tally.transactions.fetch_add(1, Ordering::Relaxed),
                    rollback_ratio,
                );
                let req = SendHalfRequest {
                    topic: topic.clone(),
                    body: body.clone(),
                    ..Default::default()
                };
                match producer.send_half(req, None).await {
                    Ok(half) => {
                        let decision = if rollback {
                            LocalTransactionState::Rollback
                        } else {
                            LocalTransactionState::Commit
                        };
                        producer
                            .end(&half.transaction_id, decision)
                            .await
                            .map(|r| u64::from(r.state == "committed"))
                    }
                    Err(e) => Err(e),
                }
            }
            Scenario::Consume => {
                let req = ReceiveRequest {
                    group: group.clone(),
                    topic: topic.clone(),
                    max: 32,
                    invisible_ms: 30_000,
                    wait_ms: 1_000,
                };
                match client.receive(req).await {
                    Ok(messages) if messages.is_empty() => Ok(0),
                    Ok(messages) => {
                        let receipts = messages.iter().map(|m| m.receipt_handle.clone()).collect();
                        client
                            .ack(&group, &topic, receipts)
                            .await
                            .map(|r| r.iter().filter(|a| a.outcome == "acked").count() as u64)
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            // Warm-up operations are done for their effect on the cluster only.
            _ if !measured => {}
            Ok(counted) => {
                let _ = latency.record(started.elapsed().as_micros().max(1) as u64);
                tally.ok.fetch_add(1, Ordering::Relaxed);
                tally.counted.fetch_add(counted, Ordering::Relaxed);
            }
            Err(_) => {
                tally.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    latency
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_spaces_the_scheduled_starts_evenly_across_workers() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 200.0);
        let starts: Vec<Duration> = (0..5)
            .map(|_| schedule.next().map(|at| at - start))
            .collect::<Option<_>>()
            .expect("a rate-limited schedule gives every operation a start");
        let expected: Vec<Duration> = (0..5).map(|k| Duration::from_millis(5 * k)).collect();
        assert_eq!(starts, expected);
    }

    #[test]
    fn the_rollback_ratio_holds_in_every_stretch_of_transactions() {
        for ratio in [0.0, 0.1, 0.25, 0.5, 0.9, 1.0] {
            for (start, len) in [(0u64, 10u64), (7, 20), (1_000, 1_000)] {
                let rolled = (start..start + len)
                    .filter(|&k| rolls_back(k, ratio))
                    .count();
                let expected = ratio * len as f64;
                assert!(
                    (rolled as f64 - expected).abs() <= 1.0,
                    "ratio {ratio}: {rolled} of {len} from {start} rolled back"
                );
            }
        }
    }

    #[test]
    fn a_late_start_is_remembered_as_the_longest_delay() {
        let schedule = Schedule::new(Instant::now(), 1000.0);
        let at = Instant::now() - Duration::from_millis(250);
        schedule.started(at);
        schedule.started(Instant::now() + Duration::from_secs(1)); // early: no delay
        assert!(
            schedule.most_late_ms() >= 250.0,
            "{}",
            schedule.most_late_ms()
        );
        assert!(schedule.most_late_ms() < 10_000.0);
    }

    #[test]
    fn no_rate_means_no_schedule() {
        assert_eq!(Schedule::new(Instant::now(), 0.0).next(), None);
    }
}
