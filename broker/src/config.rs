//! `txmq serve` settings. Each is a flag, an environment variable (`TXMQ_` + upper snake case)
//! and a TOML key (snake case) in `--config FILE`. Precedence: flag, then environment, then
//! file, then default.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

/// A duration written the human way ("6s", "4h", "250ms").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HumanDuration(pub Duration);

impl std::str::FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s)
            .map(HumanDuration)
            .map_err(|e| {
                format!("'{s}' is not a duration ({e}); write it like 500ms, 6s, 30m or 4h")
            })
    }
}

impl TryFrom<String> for HumanDuration {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// The flags of `txmq serve`; every field optional so a TOML file can fill what was not given.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML file with any of these settings (keys in snake_case).
    #[arg(long, env = "TXMQ_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This node's id (1 or more; never reuse the id of a removed node).
    #[arg(long, env = "TXMQ_NODE_ID")]
    pub node_id: Option<u64>,
    /// Derive the node id from a StatefulSet pod name instead: ordinal + 1 (`txmq-0` → 1,
    /// `txmq-2` → 3). The Helm chart passes the pod's own name here.
    #[arg(long, env = "TXMQ_NODE_ID_FROM_POD_NAME", conflicts_with = "node_id")]
    pub node_id_from_pod_name: Option<String>,
    /// Where this node keeps its log, state and snapshots.
    #[arg(long, env = "TXMQ_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Client API (gRPC) listen address.
    #[arg(long, env = "TXMQ_CLIENT_ADDR")]
    pub client_addr: Option<String>,
    /// Peer API (Raft, forwarding) listen address.
    #[arg(long, env = "TXMQ_PEER_ADDR")]
    pub peer_addr: Option<String>,
    /// HTTP listen address for /metrics, /healthz and /readyz.
    #[arg(long, env = "TXMQ_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// The voters that bootstrap a new cluster: `1=host:peerport,2=host:peerport,...`.
    /// Ignored once the data dir holds a cluster.
    #[arg(long, env = "TXMQ_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Dial these peers at other addresses than the membership says: `2=host:port,3=host:port`
    /// (NAT, sidecars; the chaos tests route peer links through fault-injecting proxies).
    #[arg(long, env = "TXMQ_PEER_OVERRIDE")]
    pub peer_override: Option<String>,
    /// The client address other nodes and clients should use (default: the listen address).
    #[arg(long, env = "TXMQ_ADVERTISE_CLIENT_ADDR")]
    pub advertise_client_addr: Option<String>,
    /// The peer address other nodes should use (default: the listen address).
    #[arg(long, env = "TXMQ_ADVERTISE_PEER_ADDR")]
    pub advertise_peer_addr: Option<String>,
    /// Also serve the Apache RocketMQ 5 gRPC protocol (for the official RocketMQ clients) on
    /// this address; off when absent. See docs/rocketmq.md.
    #[arg(long, env = "TXMQ_ROCKETMQ_ADDR")]
    pub rocketmq_addr: Option<String>,
    /// The RocketMQ address clients should use (default: the listen address); every node's
    /// is listed in the routes clients fetch, so they fail over between nodes.
    #[arg(long, env = "TXMQ_ADVERTISE_ROCKETMQ_ADDR")]
    pub advertise_rocketmq_addr: Option<String>,
    /// With TLS on: the RocketMQ port also takes plaintext connections (told apart by their
    /// first byte, as the RocketMQ proxy does), for clients configured either way.
    #[arg(long, env = "TXMQ_ROCKETMQ_ALLOW_PLAINTEXT", num_args = 0..=1, default_missing_value = "true")]
    pub rocketmq_allow_plaintext: Option<bool>,
    /// Largest accepted message body in bytes.
    #[arg(long, env = "TXMQ_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Raft heartbeat interval.
    #[arg(long, env = "TXMQ_HEARTBEAT_INTERVAL")]
    pub heartbeat_interval: Option<HumanDuration>,
    /// Raft election timeout (lower bound; the upper bound is twice this).
    #[arg(long, env = "TXMQ_ELECTION_TIMEOUT")]
    pub election_timeout: Option<HumanDuration>,
    /// Build a snapshot after this many log entries since the last one.
    #[arg(long, env = "TXMQ_SNAPSHOT_LOGS")]
    pub snapshot_logs: Option<u64>,
    /// ... or once the Raft log's files take more than this many bytes.
    #[arg(long, env = "TXMQ_SNAPSHOT_LOG_BYTES")]
    pub snapshot_log_bytes: Option<u64>,
    /// Log entries kept after a snapshot (so slightly lagging followers need no snapshot).
    #[arg(long, env = "TXMQ_LOGS_TO_KEEP")]
    pub logs_to_keep: Option<u64>,
    /// sled page cache size in bytes.
    #[arg(long, env = "TXMQ_CACHE_BYTES")]
    pub cache_bytes: Option<u64>,
    /// When the data volume is fuller than this fraction, the oldest messages across topics are
    /// trimmed (decided by the leader, replicated) instead of writes failing.
    #[arg(long, env = "TXMQ_DISK_HIGH_WATER")]
    pub disk_high_water: Option<f64>,
    /// Client connections this node admits at once (further ones wait in the kernel's
    /// backlog); lowered to fit the open-file limit (default 10000).
    #[arg(long, env = "TXMQ_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Concurrent HTTP/2 streams (requests) one client connection may open; a client past it
    /// waits for a stream to end (default 1024).
    #[arg(long, env = "TXMQ_MAX_STREAMS_PER_CONNECTION")]
    pub max_streams_per_connection: Option<u32>,
    /// Requests of one client connection being handled at once; past it a request is answered
    /// RESOURCE_EXHAUSTED at once (default 1024).
    #[arg(long, env = "TXMQ_MAX_REQUESTS_PER_CONNECTION")]
    pub max_requests_per_connection: Option<usize>,
    /// Receives waiting for messages (long polls) this node holds at once; past it a receive
    /// with a wait is answered RESOURCE_EXHAUSTED (default 4096).
    #[arg(long, env = "TXMQ_MAX_LONG_POLLS")]
    pub max_long_polls: Option<usize>,
    /// Check-back channels (producer instances) this node holds at once; past it a new one is
    /// answered RESOURCE_EXHAUSTED (default 4096).
    #[arg(long, env = "TXMQ_MAX_CHECK_CHANNELS")]
    pub max_check_channels: Option<usize>,
    /// A client or peer connection that sends nothing for this long is closed (the txmq client
    /// pings every 30 s, so only abandoned connections are; default 10m).
    #[arg(long, env = "TXMQ_IDLE_CONNECTION_TIMEOUT")]
    pub idle_connection_timeout: Option<HumanDuration>,
    /// Free bytes kept on the data volume: below them the node takes no new log entries until
    /// space is freed (default: 5% of the volume, at least 16 MiB, at most 256 MiB; 0 turns the
    /// reserve off, and a write that meets a full disk then stops the node's Raft).
    #[arg(long, env = "TXMQ_DISK_RESERVE_BYTES")]
    pub disk_reserve_bytes: Option<u64>,
    /// Transactions: delay before the first check-back.
    #[arg(long, env = "TXMQ_TXN_FIRST_CHECK_DELAY")]
    pub txn_first_check_delay: Option<HumanDuration>,
    /// Transactions: interval between later check-backs.
    #[arg(long, env = "TXMQ_TXN_CHECK_INTERVAL")]
    pub txn_check_interval: Option<HumanDuration>,
    /// Transactions: most check-backs per transaction.
    #[arg(long, env = "TXMQ_TXN_MAX_CHECKS")]
    pub txn_max_checks: Option<u32>,
    /// Transactions: a half message still undecided after this long is rolled back.
    #[arg(long, env = "TXMQ_TXN_MAX_LIFETIME")]
    pub txn_max_lifetime: Option<HumanDuration>,
    /// Async worker threads of this node (default: one per core it may use). When several
    /// nodes share a machine (`txmq dev`, a benchmark on one host), give each about
    /// cores ÷ nodes: more threads than cores only add context switches.
    #[arg(long, env = "TXMQ_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// Log format: human or json.
    #[arg(long, env = "TXMQ_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Log filter, e.g. `info` or `txmq=debug,openraft=info`.
    #[arg(long, env = "TXMQ_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// If this node's storage turns out damaged (a corrupt log frame, queue file, journal or
    /// database), move it aside into `DATA_DIR/damaged-<time>/` and rebuild the node from the
    /// cluster's leader, refusing to vote until it has caught up, instead of refusing to start.
    #[arg(long, env = "TXMQ_REPAIR_DAMAGED_STORAGE", num_args = 0..=1, default_missing_value = "true")]
    pub repair_damaged_storage: Option<bool>,
    /// Serve the client API over TLS with this certificate (PEM, chain with the leaf first).
    #[arg(long, env = "TXMQ_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, env = "TXMQ_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Also require client certificates signed by this CA (PEM) on the client API.
    #[arg(long, env = "TXMQ_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Mutual TLS on the peer port: this node's certificate (PEM), presented to peers both
    /// when serving and when dialing them.
    #[arg(long, env = "TXMQ_PEER_TLS_CERT", requires_all = ["peer_tls_key", "peer_tls_ca"])]
    pub peer_tls_cert: Option<PathBuf>,
    /// The private key of `--peer-tls-cert` (PEM).
    #[arg(long, env = "TXMQ_PEER_TLS_KEY", requires = "peer_tls_cert")]
    pub peer_tls_key: Option<PathBuf>,
    /// The CA (PEM) every peer's certificate must be signed by, in both directions.
    #[arg(long, env = "TXMQ_PEER_TLS_CA", requires = "peer_tls_cert")]
    pub peer_tls_ca: Option<PathBuf>,
    /// A file holding a secret every node of the cluster shares; peers that do not present it
    /// are refused. Use it where peer TLS is not set up (it travels in the clear without TLS).
    #[arg(long, env = "TXMQ_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Turns authentication on: a file holding one line `NAME:PASSWORD` (or a directory with
    /// the files `username` and `password`), the bootstrap administrator (created with the
    /// admin right if no user has that name). With it, every client request but gRPC health
    /// needs a user and password.
    #[arg(long, env = "TXMQ_AUTH_ADMIN_FILE")]
    pub auth_admin_file: Option<PathBuf>,
}

/// The resolved settings of one node.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub node_id: u64,
    pub data_dir: PathBuf,
    pub client_addr: String,
    pub peer_addr: String,
    pub metrics_addr: String,
    pub initial_cluster: BTreeMap<u64, String>,
    pub peer_overrides: BTreeMap<u64, String>,
    pub advertise_client_addr: Option<String>,
    pub advertise_peer_addr: Option<String>,
    /// The RocketMQ-protocol listen address, when that listener is on.
    pub rocketmq_addr: Option<String>,
    pub advertise_rocketmq_addr: Option<String>,
    /// The RocketMQ port takes plaintext next to TLS.
    pub rocketmq_allow_plaintext: bool,
    pub max_message_bytes: usize,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    pub snapshot_logs: u64,
    pub snapshot_log_bytes: u64,
    pub logs_to_keep: u64,
    pub cache_bytes: u64,
    pub disk_high_water: f64,
    pub max_connections: usize,
    pub limits: Limits,
    /// `None`: the default for the volume (see `disk::default_reserve`).
    pub disk_reserve_bytes: Option<u64>,
    pub txn: TxnSettings,
    /// 0: one per core.
    pub worker_threads: usize,
    pub log_format: LogFormat,
    pub log_level: String,
    /// Rebuild a node whose storage is damaged from the cluster instead of refusing to start.
    pub repair_damaged_storage: bool,
    pub security: Security,
}

/// TLS and peer authentication settings.
#[derive(Debug, Clone, Default)]
pub struct Security {
    pub client_tls: Option<crate::tls::ServerTlsFiles>,
    /// The peer port's certificate, key and CA (mutual TLS in both directions).
    pub peer_tls: Option<crate::tls::ServerTlsFiles>,
    pub cluster_secret_file: Option<PathBuf>,
    /// The bootstrap administrator's file; authentication is on when it is set.
    pub auth_admin_file: Option<PathBuf>,
}

/// Per-connection and per-node bounds on what clients may hold open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub streams_per_connection: u32,
    pub requests_per_connection: usize,
    pub long_polls: usize,
    pub check_channels: usize,
    pub idle_connection_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            streams_per_connection: 1024,
            requests_per_connection: 1024,
            long_polls: 4096,
            check_channels: 4096,
            idle_connection_timeout: Duration::from_secs(600),
        }
    }
}

/// Transaction timing (consumed by the transaction scheduler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnSettings {
    pub first_check_delay: Duration,
    pub check_interval: Duration,
    pub max_checks: u32,
    pub max_lifetime: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// A setting is missing or wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The bounds set by flags, the rest defaulted (a bound of 0 is raised to 1: it would refuse
/// everything).
fn limits(args: &ServeArgs) -> Limits {
    let default = Limits::default();
    Limits {
        streams_per_connection: args
            .max_streams_per_connection
            .unwrap_or(default.streams_per_connection)
            .max(1),
        requests_per_connection: args
            .max_requests_per_connection
            .unwrap_or(default.requests_per_connection)
            .max(1),
        long_polls: args.max_long_polls.unwrap_or(default.long_polls).max(1),
        check_channels: args
            .max_check_channels
            .unwrap_or(default.check_channels)
            .max(1),
        idle_connection_timeout: args
            .idle_connection_timeout
            .map_or(default.idle_connection_timeout, |h| h.0)
            .max(Duration::from_secs(1)),
    }
}

impl ServeArgs {
    /// Fills unset fields from `other` (the file).
    fn or(self, other: ServeArgs) -> ServeArgs {
        macro_rules! pick {
            ($($f:ident),*) => { ServeArgs { config: self.config, $($f: self.$f.or(other.$f)),* } };
        }
        pick!(
            node_id,
            node_id_from_pod_name,
            data_dir,
            client_addr,
            peer_addr,
            metrics_addr,
            initial_cluster,
            peer_override,
            advertise_client_addr,
            advertise_peer_addr,
            rocketmq_addr,
            advertise_rocketmq_addr,
            rocketmq_allow_plaintext,
            max_message_bytes,
            heartbeat_interval,
            election_timeout,
            snapshot_logs,
            snapshot_log_bytes,
            logs_to_keep,
            cache_bytes,
            disk_high_water,
            disk_reserve_bytes,
            max_connections,
            max_streams_per_connection,
            max_requests_per_connection,
            max_long_polls,
            max_check_channels,
            idle_connection_timeout,
            txn_first_check_delay,
            txn_check_interval,
            txn_max_checks,
            txn_max_lifetime,
            worker_threads,
            log_format,
            log_level,
            repair_damaged_storage,
            tls_cert,
            tls_key,
            tls_client_ca,
            peer_tls_cert,
            peer_tls_key,
            peer_tls_ca,
            cluster_secret_file,
            auth_admin_file
        )
    }

    /// Resolves flags/env with the optional TOML file and the defaults, and validates.
    pub fn resolve(self) -> Result<ServeConfig, ConfigError> {
        let args = self.with_config_file()?;
        let node_id = args.node_id()?;
        let initial_cluster = match &args.initial_cluster {
            Some(s) => parse_initial_cluster(s)?,
            None => BTreeMap::new(),
        };
        let peer_overrides = match &args.peer_override {
            Some(s) => parse_initial_cluster(s).map_err(|e| {
                ConfigError::Invalid(
                    e.to_string()
                        .replace("--initial-cluster", "--peer-override"),
                )
            })?,
            None => BTreeMap::new(),
        };
        let log_format = parse_log_format(args.log_format.as_deref())?;
        check_security_pairs(&args)?;
        let config = args.into_config(node_id, initial_cluster, peer_overrides, log_format);
        config.validate()?;
        Ok(config)
    }

    /// These settings over those of `--config FILE`, if given.
    fn with_config_file(self) -> Result<ServeArgs, ConfigError> {
        let Some(path) = &self.config else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let file: ServeArgs = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.clone(),
            source: Box::new(source),
        })?;
        Ok(self.or(file))
    }

    /// The node id, given directly or derived from a StatefulSet pod name.
    fn node_id(&self) -> Result<u64, ConfigError> {
        let node_id = match (self.node_id, &self.node_id_from_pod_name) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "give either --node-id or --node-id-from-pod-name, not both".into(),
                ));
            }
            (Some(id), None) => id,
            (None, Some(pod)) => node_id_from_pod_name(pod)?,
            (None, None) => {
                return Err(ConfigError::Invalid(
                    "--node-id is required (a number of 1 or more)".into(),
                ));
            }
        };
        if node_id == 0 {
            return Err(ConfigError::Invalid("--node-id must be 1 or more".into()));
        }
        Ok(node_id)
    }

    /// The configuration with every default filled in (validated by the caller).
    fn into_config(
        self,
        node_id: u64,
        initial_cluster: BTreeMap<u64, String>,
        peer_overrides: BTreeMap<u64, String>,
        log_format: LogFormat,
    ) -> ServeConfig {
        let args = self;
        let d = |v: Option<HumanDuration>, default: Duration| v.map(|h| h.0).unwrap_or(default);
        let limits = limits(&args);
        ServeConfig {
            node_id,
            data_dir: args
                .data_dir
                .unwrap_or_else(|| PathBuf::from(format!("txmq-data/node-{node_id}"))),
            client_addr: args.client_addr.unwrap_or_else(|| "127.0.0.1:9870".into()),
            peer_addr: args.peer_addr.unwrap_or_else(|| "127.0.0.1:9871".into()),
            metrics_addr: args.metrics_addr.unwrap_or_else(|| "127.0.0.1:9872".into()),
            initial_cluster,
            peer_overrides,
            advertise_client_addr: args.advertise_client_addr,
            advertise_peer_addr: args.advertise_peer_addr,
            rocketmq_addr: args.rocketmq_addr,
            advertise_rocketmq_addr: args.advertise_rocketmq_addr,
            rocketmq_allow_plaintext: args.rocketmq_allow_plaintext.unwrap_or(false),
            max_message_bytes: args
                .max_message_bytes
                .unwrap_or(txmq_state::limits::DEFAULT_MAX_MESSAGE_BYTES),
            heartbeat_interval: d(args.heartbeat_interval, Duration::from_millis(100)),
            election_timeout: d(args.election_timeout, Duration::from_millis(500)),
            snapshot_logs: args.snapshot_logs.unwrap_or(DEFAULT_SNAPSHOT_LOGS),
            snapshot_log_bytes: args
                .snapshot_log_bytes
                .unwrap_or(DEFAULT_SNAPSHOT_LOG_BYTES),
            logs_to_keep: args.logs_to_keep.unwrap_or(5_000),
            cache_bytes: args.cache_bytes.unwrap_or(64 * 1024 * 1024),
            disk_high_water: args.disk_high_water.unwrap_or(0.85),
            disk_reserve_bytes: args.disk_reserve_bytes,
            max_connections: args.max_connections.unwrap_or(10_000),
            limits,
            txn: TxnSettings {
                first_check_delay: d(args.txn_first_check_delay, Duration::from_secs(6)),
                check_interval: d(args.txn_check_interval, Duration::from_secs(30)),
                max_checks: args.txn_max_checks.unwrap_or(15),
                max_lifetime: d(args.txn_max_lifetime, Duration::from_secs(4 * 3600)),
            },
            worker_threads: args.worker_threads.unwrap_or(0),
            log_format,
            log_level: args.log_level.unwrap_or_else(|| "info".into()),
            repair_damaged_storage: args.repair_damaged_storage.unwrap_or(false),
            security: Security {
                client_tls: pair(args.tls_cert, args.tls_key).map(|(cert, key)| {
                    crate::tls::ServerTlsFiles {
                        cert,
                        key,
                        client_ca: args.tls_client_ca,
                    }
                }),
                peer_tls: pair(args.peer_tls_cert, args.peer_tls_key).map(|(cert, key)| {
                    crate::tls::ServerTlsFiles {
                        cert,
                        key,
                        client_ca: args.peer_tls_ca,
                    }
                }),
                cluster_secret_file: args.cluster_secret_file,
                auth_admin_file: args.auth_admin_file,
            },
        }
    }
}

fn pair<A, B>(a: Option<A>, b: Option<B>) -> Option<(A, B)> {
    a.zip(b)
}

fn parse_log_format(text: Option<&str>) -> Result<LogFormat, ConfigError> {
    match text.unwrap_or("human") {
        "human" | "text" => Ok(LogFormat::Human),
        "json" => Ok(LogFormat::Json),
        other => Err(ConfigError::Invalid(format!(
            "--log-format must be human or json, not '{other}'"
        ))),
    }
}

impl ServeConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.max_message_bytes == 0 || self.max_message_bytes > 64 * 1024 * 1024 {
            return bad("--max-message-bytes must be between 1 and 67108864 (64 MiB)".into());
        }
        if self.heartbeat_interval.is_zero() || self.election_timeout < self.heartbeat_interval * 3
        {
            return bad("--election-timeout must be at least three heartbeat intervals".into());
        }
        if !(self.disk_high_water > 0.0 && self.disk_high_water <= 1.0) {
            return bad(
                "--disk-high-water must be a fraction above 0 and at most 1, e.g. 0.85".into(),
            );
        }
        if self.worker_threads > MAX_WORKER_THREADS {
            return bad(format!(
                "--worker-threads must be at most {MAX_WORKER_THREADS} (0 or unset: one per core)"
            ));
        }
        if self.snapshot_logs == 0 {
            return bad("--snapshot-logs must be 1 or more".into());
        }
        if self.snapshot_log_bytes < MIN_SNAPSHOT_LOG_BYTES {
            return bad(format!(
                "--snapshot-log-bytes must be at least {MIN_SNAPSHOT_LOG_BYTES} (1 MiB)"
            ));
        }
        if self.txn.max_checks == 0 {
            return bad("--txn-max-checks must be 1 or more".into());
        }
        if self.txn.check_interval.is_zero() || self.txn.max_lifetime.is_zero() {
            return bad(
                "--txn-check-interval and --txn-max-lifetime must be more than zero".into(),
            );
        }
        if !self.initial_cluster.is_empty() && !self.initial_cluster.contains_key(&self.node_id) {
            return bad(format!(
                "--initial-cluster does not list this node ({}); list every bootstrap voter including this one, \
                 or leave it out on a node that will join with `txmq cluster add-node`",
                self.node_id
            ));
        }
        Ok(())
    }

    pub fn advertised_client_addr(&self, bound: std::net::SocketAddr) -> String {
        self.advertise_client_addr
            .clone()
            .unwrap_or_else(|| bound.to_string())
    }

    pub fn advertised_rocketmq_addr(&self, bound: std::net::SocketAddr) -> String {
        self.advertise_rocketmq_addr
            .clone()
            .unwrap_or_else(|| bound.to_string())
    }

    pub fn advertised_peer_addr(&self, bound: std::net::SocketAddr) -> String {
        self.advertise_peer_addr
            .clone()
            .unwrap_or_else(|| bound.to_string())
    }
}

/// Log entries after which a snapshot is built at the latest. A bound rather than the usual
/// trigger: the log's size (below) usually comes first (see `crate::snapshot_trigger`).
pub const DEFAULT_SNAPSHOT_LOGS: u64 = 100_000;
/// The Raft log's size on disk above which a snapshot is built (and the log then purged).
pub const DEFAULT_SNAPSHOT_LOG_BYTES: u64 = 256 * 1024 * 1024;
pub const MIN_SNAPSHOT_LOG_BYTES: u64 = 1024 * 1024;

/// The most async worker threads a node may be given.
pub const MAX_WORKER_THREADS: usize = 256;

/// A StatefulSet names its pods `<name>-<ordinal>`; node ids start at 1, ordinals at 0.
pub fn node_id_from_pod_name(pod: &str) -> Result<u64, ConfigError> {
    pod.rsplit_once('-')
        .and_then(|(_, ordinal)| ordinal.parse::<u64>().ok())
        .and_then(|ordinal| ordinal.checked_add(1))
        .ok_or_else(|| {
            ConfigError::Invalid(format!(
                "--node-id-from-pod-name '{pod}' does not end in -<ordinal> like a StatefulSet pod (txmq-0)"
            ))
        })
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_initial_cluster(s: &str) -> Result<BTreeMap<u64, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part.split_once('=').ok_or_else(|| {
            ConfigError::Invalid(format!(
                "--initial-cluster entry '{part}' must look like ID=HOST:PEERPORT"
            ))
        })?;
        let id: u64 = id.trim().parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "--initial-cluster entry '{part}': '{id}' is not a node id"
            ))
        })?;
        let addr = addr.trim();
        if id == 0
            || addr
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
        {
            return Err(ConfigError::Invalid(format!(
                "--initial-cluster entry '{part}' must look like ID=HOST:PEERPORT with ID of 1 or more"
            )));
        }
        if out.insert(id, addr.to_string()).is_some() {
            return Err(ConfigError::Invalid(format!(
                "--initial-cluster lists node {id} twice"
            )));
        }
    }
    if out.is_empty() {
        return Err(ConfigError::Invalid("--initial-cluster is empty".into()));
    }
    Ok(out)
}

/// Settings that only make sense together (a TOML file bypasses clap's `requires` rules).
fn check_security_pairs(args: &ServeArgs) -> Result<(), ConfigError> {
    let both = |a: bool, b: bool, names: &str| {
        if a == b {
            Ok(())
        } else {
            Err(ConfigError::Invalid(format!("give {names} together")))
        }
    };
    both(
        args.tls_cert.is_some(),
        args.tls_key.is_some(),
        "--tls-cert and --tls-key",
    )?;
    let peer = [&args.peer_tls_cert, &args.peer_tls_key, &args.peer_tls_ca];
    let peer_given = peer.iter().filter(|p| p.is_some()).count();
    if peer_given != 0 && peer_given != 3 {
        return Err(ConfigError::Invalid(
            "give --peer-tls-cert, --peer-tls-key and --peer-tls-ca together: peers verify each other"
                .into(),
        ));
    }
    if args.tls_client_ca.is_some() && args.tls_cert.is_none() {
        return Err(ConfigError::Invalid(
            "--tls-client-ca needs --tls-cert and --tls-key (client certificates need TLS)".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster_parses_and_rejects_garbage() {
        let m = parse_initial_cluster("1=a:1, 2=b:2").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[&2], "b:2");
        assert!(parse_initial_cluster("1=a").is_err());
        assert!(parse_initial_cluster("x=a:1").is_err());
        assert!(parse_initial_cluster("1=a:1,1=b:2").is_err());
        assert!(parse_initial_cluster("0=a:1").is_err());
    }

    #[test]
    fn pod_names_give_ordinal_plus_one() {
        assert_eq!(node_id_from_pod_name("txmq-0").unwrap(), 1);
        assert_eq!(node_id_from_pod_name("my-release-txmq-12").unwrap(), 13);
        assert!(node_id_from_pod_name("txmq").is_err());
        assert!(node_id_from_pod_name("txmq-x").is_err());
        let both = ServeArgs {
            node_id: Some(1),
            node_id_from_pod_name: Some("txmq-0".into()),
            ..Default::default()
        };
        assert!(both.resolve().unwrap_err().to_string().contains("not both"));
        let from_pod = ServeArgs {
            node_id_from_pod_name: Some("txmq-2".into()),
            ..Default::default()
        };
        assert_eq!(from_pod.resolve().unwrap().node_id, 3);
    }

    #[test]
    fn file_fills_what_flags_did_not_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("txmq.toml");
        std::fs::write(
            &path,
            "node_id = 3\nclient_addr = \"127.0.0.1:1\"\ntxn_check_interval = \"10s\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path),
            client_addr: Some("127.0.0.1:2".into()),
            ..Default::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.node_id, 3);
        assert_eq!(c.client_addr, "127.0.0.1:2");
        assert_eq!(c.txn.check_interval, Duration::from_secs(10));
        assert_eq!(c.txn.first_check_delay, Duration::from_secs(6));
        assert_eq!(c.worker_threads, 0, "default: one per core");
    }

    #[test]
    fn worker_threads_are_bounded() {
        let with = |n| ServeArgs {
            node_id: Some(1),
            worker_threads: Some(n),
            ..Default::default()
        };
        assert_eq!(with(1).resolve().unwrap().worker_threads, 1);
        let err = with(100_000).resolve().unwrap_err().to_string();
        assert!(err.contains("--worker-threads"), "{err}");
    }

    #[test]
    fn unknown_file_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("txmq.toml");
        std::fs::write(&path, "node_id = 1\nnot_a_setting = 1\n").unwrap();
        let err = ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("not_a_setting"), "{err}");
        std::fs::write(&path, "node_id = 1\ntxn_max_lifetime = \"soon\"\n").unwrap();
        assert!(
            ServeArgs {
                config: Some(path),
                ..Default::default()
            }
            .resolve()
            .is_err()
        );
        assert!(
            ServeArgs::default()
                .resolve()
                .unwrap_err()
                .to_string()
                .contains("--node-id")
        );
    }
}
