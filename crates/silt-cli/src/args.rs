//! The command line of `silt` (CLI.md). Names, flags and defaults here are a contract.

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "silt", version, about = "Command-line client for Silt")]
pub struct Cli {
    /// Brokers to bootstrap from, HOST:PORT[,HOST:PORT...] [default: the profile's, else
    /// 127.0.0.1:9300].
    #[arg(short, long, global = true, env = "SILT_BOOTSTRAP", hide_env_values = true)]
    pub bootstrap: Option<String>,
    /// Connection settings from this profile of ~/.config/silt/config.toml (or $SILT_CONFIG);
    /// flags given on the command line override them [default: the file's default_profile].
    #[arg(long, global = true, env = "SILT_PROFILE")]
    pub profile: Option<String>,
    /// Log in as this user (brokers with --auth); the password from SILT_PASSWORD, else a
    /// prompt.
    #[arg(long, global = true, env = "SILT_USER")]
    pub user: Option<String>,
    /// How long to keep trying to reach a broker that can answer (brokers restarting or
    /// catching up with the cluster), in ms.
    #[arg(long, global = true, default_value_t = 15_000)]
    pub connect_timeout_ms: u64,
    /// Connect with TLS, trusting brokers whose certificates this CA (PEM file) signed.
    #[arg(long, global = true, env = "SILT_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// This client's certificate (PEM), for brokers that require one (mTLS); with --tls-key.
    #[arg(long, global = true, env = "SILT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, global = true, env = "SILT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Output format (JSON shapes: docs/cli-json.md).
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Tables and lines for people.
    Text,
    /// One JSON document on stdout (consume: one object per record, JSON Lines).
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Cluster information.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Create, list, describe, alter and delete topics.
    #[command(subcommand)]
    Topic(TopicCmd),
    /// Produce records read from stdin, one per line.
    Produce(ProduceArgs),
    /// Print records to stdout, one per line.
    Consume(ConsumeArgs),
    /// List, describe, reset and delete consumer groups.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Measure produce and consume throughput and latency.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Run a local cluster of brokers in this process, until Ctrl-C.
    Dev(DevArgs),
    /// Create, delete and list users (password logins; brokers with --auth).
    #[command(subcommand)]
    User(UserCmd),
    /// Add, remove and list ACLs (brokers with --auth).
    #[command(subcommand)]
    Acl(AclCmd),
    /// List and describe transactions (by transactional id).
    #[command(subcommand)]
    Txn(TxnCmd),
    /// List, describe and delete share groups (queues: `consume --share-group`).
    #[command(subcommand)]
    ShareGroup(ShareGroupCmd),
    /// Request/reply over topics: call a service, or serve one with a command.
    #[command(subcommand)]
    Rpc(RpcCmd),
    /// Move partition replicas between brokers (and list the moves in progress).
    #[command(subcommand)]
    Partition(PartitionCmd),
    /// Decommission a broker (move every replica off it), or cancel that.
    #[command(subcommand)]
    Broker(BrokerCmd),
}

#[derive(Debug, Subcommand)]
pub enum PartitionCmd {
    /// Move a partition to other replicas (or many, with --plan); the new replicas catch up,
    /// join the ISR, then the removed ones are dropped. Changing the replica count is a move.
    Reassign {
        /// Topic (with PARTITION and --replicas, or --cancel).
        topic: Option<String>,
        /// Partition index.
        partition: Option<u32>,
        /// Target replicas, preferred leader first, e.g. 4,2,3.
        #[arg(long, value_delimiter = ',', conflicts_with = "plan")]
        replicas: Option<Vec<u64>>,
        /// JSON plan: {"partitions": [{"topic": T, "partition": P, "replicas": [..]}, ...]}
        /// (Kafka's reassignment file).
        #[arg(long)]
        plan: Option<std::path::PathBuf>,
        /// Check the moves and print them; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Bytes per second each new replica copies while catching up [default: unthrottled].
        #[arg(long)]
        throttle_bytes_per_sec: Option<u64>,
        /// Cancel the move(s) instead: back to the original replicas.
        #[arg(long)]
        cancel: bool,
    },
    /// The moves in progress: replicas, target, and bytes each new replica is behind.
    Reassignments,
}

#[derive(Debug, Subcommand)]
pub enum BrokerCmd {
    /// Move every replica off broker N (it takes no new ones), and wait until it holds none.
    Decommission {
        /// The broker's node id.
        id: u64,
        /// Bytes per second each new replica copies while catching up [default: unthrottled].
        #[arg(long)]
        throttle_bytes_per_sec: Option<u64>,
        /// Start the moves and return.
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting after this long (the moves go on).
        #[arg(long, default_value_t = 3_600_000)]
        timeout_ms: u64,
    },
    /// Cancel a decommission: the moves still running go back; the broker takes replicas again.
    Recommission {
        /// The broker's node id.
        id: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum ShareGroupCmd {
    /// Every share group with its member count and records in flight.
    List,
    /// Members, and per partition: start and end offsets (SPSO/SPEO), records in flight, lag;
    /// redelivered, archived and dead-lettered counts.
    Describe {
        /// Share group id.
        group: String,
    },
    /// Delete a share group's state (it must have no members).
    Delete {
        /// Share group id.
        group: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RpcCmd {
    /// Send one request to TOPIC and print the reply (exit 1 on timeout).
    Call(RpcCallArgs),
    /// Answer requests from TOPIC: each request's value is the stdin of CMD (run by `sh -c`),
    /// its stdout the reply. Requests are shared by every server of the same --group.
    Serve(RpcServeArgs),
}

#[derive(Debug, Args)]
pub struct RpcCallArgs {
    /// Request topic.
    pub topic: String,
    /// The request (UTF-8); read from stdin when absent.
    pub data: Option<String>,
    /// How long to wait for the reply.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// Reply topic [default: TOPIC.replies, created when missing].
    #[arg(long)]
    pub reply_topic: Option<String>,
}

#[derive(Debug, Args)]
pub struct RpcServeArgs {
    /// Request topic.
    pub topic: String,
    /// Shell command answering one request: the request on stdin, the reply on stdout.
    #[arg(long)]
    pub exec: String,
    /// Share group of the servers.
    #[arg(long, default_value = "silt-rpc")]
    pub group: String,
    /// Stop after answering this many requests.
    #[arg(short = 'n', long)]
    pub count: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum TxnCmd {
    /// Every transactional id the coordinators hold, with its state.
    List,
    /// One transactional id: state, producer id and epoch, partitions, start, timeout.
    Describe {
        /// Transactional id.
        id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IsolationArg {
    /// Every record below the high watermark, including open and aborted transactions'.
    #[value(name = "read_uncommitted")]
    ReadUncommitted,
    /// Only committed transactions' records (and non-transactional ones), below the last
    /// stable offset.
    #[value(name = "read_committed")]
    ReadCommitted,
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a user, or set a new password: from SILT_NEW_PASSWORD, else SILT_PASSWORD (when
    /// not also logging in with --user), else a prompt.
    Create {
        /// User name; its principal is User:NAME.
        name: String,
    },
    /// Delete a user (its open connections are refused from their next request).
    Delete {
        /// User name.
        name: String,
    },
    /// List users.
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OperationArg {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    DescribeConfigs,
    AlterConfigs,
}

/// The resource an ACL command names.
#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct AclResource {
    /// A topic (`*`: every topic).
    #[arg(long)]
    pub topic: Option<String>,
    /// A consumer group (`*`: every group).
    #[arg(long)]
    pub group: Option<String>,
    /// The cluster (topic creation, users and ACLs, listing every group).
    #[arg(long)]
    pub cluster: bool,
    /// A transactional id.
    #[arg(long)]
    pub transactional_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct AclArgs {
    /// Allow PRINCIPAL (User:NAME, or User:* for everyone).
    #[arg(long, value_name = "PRINCIPAL", conflicts_with = "deny")]
    pub allow: Option<String>,
    /// Deny PRINCIPAL (a deny wins over every allow).
    #[arg(long, value_name = "PRINCIPAL")]
    pub deny: Option<String>,
    /// The operation.
    #[arg(long, value_enum)]
    pub operation: Option<OperationArg>,
    #[command(flatten)]
    pub resource: AclResource,
    /// The name is a prefix: the ACL covers every resource whose name starts with it.
    #[arg(long)]
    pub prefixed: bool,
}

#[derive(Debug, Subcommand)]
pub enum AclCmd {
    /// Add an ACL: --allow|--deny PRINCIPAL --operation OP --topic T|--group G|--cluster.
    Add(AclArgs),
    /// Remove every ACL matching the flags given (absent flags match anything; at least one).
    Remove(AclArgs),
    /// List ACLs, optionally only those matching the flags given.
    List(AclArgs),
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Number of brokers (all metadata-quorum voters).
    #[arg(long, default_value_t = 3)]
    pub brokers: u32,
    /// Data directory; broker N keeps its data in DIR/broker-N.
    #[arg(long, default_value = "./silt-data")]
    pub data_dir: std::path::PathBuf,
    /// gRPC port of broker 1; broker N listens on PORT + 10*(N-1), its health port one above.
    #[arg(long, default_value_t = 9300)]
    pub base_port: u16,
    /// TLS everywhere: makes a CA, broker and `admin` client certificates under DIR/tls (kept
    /// for later starts), requires client certificates (mTLS) on every broker and mutual TLS
    /// between brokers, and prints how to connect.
    #[arg(long)]
    pub secure: bool,
    /// Kafka-protocol listener of broker 1 (docs/kafka.md); broker N listens on PORT + N - 1.
    /// 0: none. With --secure: TLS and SASL (PLAIN, SCRAM-SHA-256) on them too.
    #[arg(long, default_value_t = 9092)]
    pub kafka_base_port: u16,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Brokers, controller and Raft term.
    Info,
    /// Move leadership of each partition to its preferred (first) replica where that replica
    /// is in sync and live.
    ElectLeaders {
        /// Only this topic's partitions [default: every topic].
        #[arg(long)]
        topic: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TopicCmd {
    /// Create a topic.
    Create {
        /// Topic name (letters, digits, '.', '_', '-'; at most 249 characters).
        name: String,
        /// Number of partitions [default: the brokers' topic_defaults.partitions, 1 unless set].
        #[arg(short, long)]
        partitions: Option<u32>,
        /// Replicas of each partition [default: the brokers' topic_defaults.replication_factor;
        /// `silt dev`: min(3, brokers)].
        #[arg(short = 'r', long = "replication-factor")]
        replication_factor: Option<u32>,
        /// KEY=VALUE topic config, e.g. retention.ms=86400000 (repeatable).
        #[arg(short, long = "config")]
        config: Vec<String>,
    },
    /// List topics (internal topics such as __consumer_offsets are left out).
    List,
    /// Config, and per partition: leader, leader epoch, replicas, ISR, log start, high watermark.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Change a topic's config, or raise its partition count.
    Alter {
        /// Topic name.
        name: String,
        /// KEY=VALUE to set (repeatable); KEY= (empty value) returns KEY to its default.
        #[arg(short, long = "config", required_unless_present = "partitions")]
        config: Vec<String>,
        /// New partition count (larger than today; keyed records of existing keys may map to
        /// other partitions afterwards).
        #[arg(short, long)]
        partitions: Option<u32>,
    },
    /// Delete a topic and its data.
    Delete {
        /// Topic name.
        name: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcksArg {
    /// Fire and forget.
    #[value(name = "0")]
    Zero,
    /// The leader appended the record.
    #[value(name = "1")]
    One,
    /// Every in-sync replica has it (and at least min.insync.replicas are in sync).
    #[value(name = "all")]
    All,
}

/// A batch codec (Kafka's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// What `silt bench produce` sends as record values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PayloadArg {
    /// Zero bytes (compresses to almost nothing: not for compression figures).
    Zeros,
    /// Varied JSON-like events (ids, names, paths, numbers), as real payloads compress.
    Json,
}

/// How `silt produce` reads stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputArg {
    /// One record per line: the value, or KEY SEP VALUE with --key-separator.
    Text,
    /// One JSON object per line, in the shape `silt -o json consume` prints.
    Json,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to produce to.
    pub topic: String,
    /// Acknowledgement level a record waits for.
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    pub acks: AcksArg,
    /// Send every record to this partition [default: by key hash; keyless records spread].
    #[arg(long)]
    pub partition: Option<u32>,
    /// Split each line into KEY SEP VALUE at the first SEP (`\t` is a tab).
    #[arg(long, conflicts_with = "key")]
    pub key_separator: Option<String>,
    /// One key for every record.
    #[arg(short, long)]
    pub key: Option<String>,
    /// A header K=V added to every record (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// How stdin is read.
    #[arg(long, value_enum, default_value_t = InputArg::Text)]
    pub input: InputArg,
    /// How long a batch waits for more records before it is sent.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Idempotent produce: a retried batch is never appended twice (needs --acks all)
    /// [default: true with --acks all, else false].
    #[arg(long)]
    pub idempotence: Option<bool>,
    /// Produce in transactions of this transactional id: one per --transaction-records input
    /// lines (the last when stdin ends); an older producer with the id is fenced and what it
    /// left open is aborted.
    #[arg(long, conflicts_with_all = ["idempotence", "acks"])]
    pub transactional_id: Option<String>,
    /// Input lines per transaction (with --transactional-id).
    #[arg(long, default_value_t = 1000, requires = "transactional_id")]
    pub transaction_records: u64,
    /// How long a transaction may stay open before the coordinator aborts it.
    #[arg(long, default_value_t = 60_000, requires = "transactional_id")]
    pub transaction_timeout_ms: u32,
    /// Compress batches with this codec.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub compression: CompressionArg,
    /// The codec's level (gzip 1-9, zstd -7..-1 or 1-22) [default: the codec's].
    #[arg(long, allow_hyphen_values = true)]
    pub compression_level: Option<i32>,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// Join this consumer group: start at its committed offsets (where none: earliest, or
    /// --offset/--from-timestamp), commit after printing; Ctrl-C commits and leaves.
    #[arg(long, conflicts_with = "partition")]
    pub group: Option<String>,
    /// Join this share group (a queue): records are shared one by one among every consumer of
    /// the group, each printed then acknowledged (ACCEPT). Starts where the group is; a group
    /// new to a partition starts at its end (--from-beginning: at its start).
    #[arg(long, conflicts_with_all = ["group", "partition", "offset", "from_timestamp", "exit_at_end"])]
    pub share_group: Option<String>,
    /// With --share-group: REJECT (do not print) records whose value matches this regular
    /// expression; they go to the topic's dead-letter topic if it has one.
    #[arg(long, requires = "share_group")]
    pub reject_if: Option<String>,
    /// Read only this partition [default: every partition].
    #[arg(long)]
    pub partition: Option<u32>,
    /// Start at the log start (same as --offset earliest).
    #[arg(long, conflicts_with_all = ["offset", "from_timestamp"])]
    pub from_beginning: bool,
    /// Where to start: earliest, latest, N (an offset) or -N (N records before the end, per
    /// partition) [default: latest; with --group: the committed offset, else earliest].
    #[arg(long, conflicts_with = "from_timestamp", allow_hyphen_values = true)]
    pub offset: Option<String>,
    /// Start at the first record at or after this time: ms since the Unix epoch or an RFC 3339
    /// date-time (2026-12-01T08:00:00Z).
    #[arg(long)]
    pub from_timestamp: Option<String>,
    /// Stop after this many records.
    #[arg(short = 'n', long)]
    pub count: Option<u64>,
    /// Stop after this long with no new record [default: wait forever].
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Stop once every partition's end when consume started is reached (its high watermark;
    /// with --isolation read_committed its last stable offset).
    #[arg(short = 'e', long)]
    pub exit_at_end: bool,
    /// Which records of transactions to read.
    #[arg(long, value_enum, default_value_t = IsolationArg::ReadUncommitted)]
    pub isolation: IsolationArg,
    /// %t topic, %p partition, %o offset, %k key, %v value, %T timestamp, %h headers; `\t`,
    /// `\n`. Ignored with -o json (one JSON object per record).
    #[arg(short, long, default_value = "%v")]
    pub format: String,
}

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Produce generated records as fast as acknowledged (or at --rate); prints throughput and
    /// send-to-ack latency.
    Produce(BenchProduceArgs),
    /// Read records from the start of a topic; prints throughput and per-poll latency.
    Consume(BenchConsumeArgs),
    /// Time consumer-group rebalances: a member joins, then leaves cleanly, N times.
    Rebalance(BenchRebalanceArgs),
    /// Offset commit throughput and latency of one group member.
    Commit(BenchCommitArgs),
}

#[derive(Debug, Args)]
pub struct BenchRebalanceArgs {
    /// An existing topic (its partitions are what the group shares).
    #[arg(long)]
    pub topic: String,
    /// Members before each join [default: partitions - 1, at most 3, so the joining member
    /// gets a partition].
    #[arg(long)]
    pub members: Option<usize>,
    /// Join/leave rounds.
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
}

#[derive(Debug, Args)]
pub struct BenchCommitArgs {
    /// An existing topic (commits name its partitions).
    #[arg(long)]
    pub topic: String,
    /// Commits in all.
    #[arg(long, default_value_t = 10_000)]
    pub commits: u64,
    /// Tasks committing concurrently through one member's committer.
    #[arg(long, default_value_t = 8)]
    pub committers: usize,
}

#[derive(Debug, Args)]
pub struct BenchProduceArgs {
    /// Topic to produce to (it must exist).
    #[arg(long)]
    pub topic: String,
    /// Records in all.
    #[arg(long, default_value_t = 100_000)]
    pub records: u64,
    /// Value size of each record.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Acknowledgement level.
    #[arg(long, value_enum, default_value_t = AcksArg::One)]
    pub acks: AcksArg,
    /// Concurrent producers.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// How long a batch waits for more records.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Largest batch of one partition in a request.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub batch_bytes: usize,
    /// Target rate in records/s over all producers (0 = as fast as possible), for latency at a
    /// given load.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Idempotent produce (needs --acks all) [default: true with --acks all, else false].
    #[arg(long)]
    pub idempotence: Option<bool>,
    /// Produce requests in flight per producer; with idempotence also the batches of one
    /// partition in flight (at most 5), without it one per partition.
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: usize,
    /// Produce in transactions (acks=all), each producer with its own transactional id,
    /// committing every --commit-interval-ms.
    #[arg(long, conflicts_with_all = ["idempotence", "rate"])]
    pub transactional: bool,
    /// How long each transaction stays open (with --transactional).
    #[arg(long, default_value_t = 100, requires = "transactional")]
    pub commit_interval_ms: u64,
    /// Compress batches with this codec.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub compression: CompressionArg,
    /// The codec's level (gzip 1-9, zstd -7..-1 or 1-22) [default: the codec's].
    #[arg(long, allow_hyphen_values = true)]
    pub compression_level: Option<i32>,
    /// Record values: zeros, or varied JSON-like events (for compression figures).
    #[arg(long, value_enum, default_value_t = PayloadArg::Zeros)]
    pub payload: PayloadArg,
    /// Key records `key-0` .. `key-(N-1)` in turn (a compacted topic needs keys) [default: no
    /// keys].
    #[arg(long)]
    pub keys: Option<u64>,
}

#[derive(Debug, Args)]
pub struct BenchConsumeArgs {
    /// Topic to read from its start.
    #[arg(long)]
    pub topic: String,
    /// Records to read before stopping.
    #[arg(long, default_value_t = 100_000)]
    pub records: u64,
    /// Consume as a member of this group (committing as it goes) [default: no group, every
    /// partition assigned, from the earliest offset].
    #[arg(long, conflicts_with = "share_group")]
    pub group: Option<String>,
    /// Consume as --members members of this share group (from the earliest offset, every
    /// record accepted).
    #[arg(long)]
    pub share_group: Option<String>,
    /// Members of the share group, each its own connection.
    #[arg(long, default_value_t = 1, requires = "share_group")]
    pub members: usize,
    /// Work per record: each member sleeps this long per record before accepting it.
    #[arg(long, default_value_t = 0, requires = "share_group")]
    pub work_ms: u64,
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Every consumer group with its state and member count.
    List,
    /// Members, and per subscribed partition: owner, committed offset, high watermark, lag.
    Describe {
        /// Group id.
        group: String,
    },
    /// Set a group's committed offsets for every partition of a topic (the group must be empty).
    #[command(group(clap::ArgGroup::new("to").required(true)))]
    ResetOffsets {
        /// Group id.
        group: String,
        /// Topic whose partitions are reset.
        #[arg(long)]
        topic: String,
        /// To each partition's log start.
        #[arg(long, group = "to")]
        to_earliest: bool,
        /// To each partition's high watermark.
        #[arg(long, group = "to")]
        to_latest: bool,
        /// To this offset (kept within each partition's log).
        #[arg(long, group = "to")]
        to_offset: Option<i64>,
        /// To the first record at or after this time (ms since the Unix epoch or RFC 3339).
        #[arg(long, group = "to")]
        to_timestamp: Option<String>,
        /// To the first record at or after this RFC 3339 date-time (2026-12-01T08:00:00Z).
        #[arg(long, group = "to")]
        to_datetime: Option<String>,
        /// Move each committed offset by N (negative: back), within the log.
        #[arg(long, group = "to", allow_hyphen_values = true)]
        shift_by: Option<i64>,
        /// Show the current and new offsets without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete an empty group and its committed offsets.
    Delete {
        /// Group id.
        group: String,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every subcommand's help, depth first, as Markdown sections.
    fn render(cmd: &mut clap::Command, path: &str, out: &mut String) {
        let help = cmd.render_long_help().to_string();
        out.push_str(&format!("## `{path}`\n\n```text\n{}\n```\n\n", help.trim_end()));
        let names: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_string()).collect();
        for name in names {
            if name == "help" {
                continue;
            }
            let sub = cmd.find_subcommand_mut(&name).expect("invariant: listed subcommand");
            render(sub, &format!("{path} {name}"), out);
        }
    }

    fn reference() -> String {
        let mut cmd = Cli::command();
        cmd.build();
        let mut out = String::from(
            "# `silt` command reference\n\nGenerated from `silt --help` by the test \
             `args::tests::docs_cli_md_matches_the_help` (`SILT_UPDATE_DOCS=1 cargo test -p \
             silt-cli docs_cli_md` rewrites it). The JSON shapes of `-o json` are in \
             [cli-json.md](cli-json.md). Exit codes: 0 success, 1 the operation failed \
             (`error: <what> (<CODE>)` on stderr), 2 usage error.\n\n",
        );
        render(&mut cmd, "silt", &mut out);
        out
    }

    #[test]
    fn every_command_and_flag_has_help() {
        fn check(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(arg.get_help().is_some(), "`{path}` flag {id} has no help line");
            }
            for sub in cmd.get_subcommands() {
                assert!(sub.get_about().is_some(), "`{path} {}` has no help line", sub.get_name());
                check(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        check(&cmd, "silt");
        cmd.debug_assert();
    }

    #[test]
    fn docs_cli_md_matches_the_help() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/cli.md");
        let want = reference();
        if std::env::var_os("SILT_UPDATE_DOCS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/cli.md is out of date: run SILT_UPDATE_DOCS=1 cargo test -p silt-cli docs_cli_md"
        );
    }
}
