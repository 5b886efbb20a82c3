//! The command line of `silt` (CLI.md). Names, flags and defaults here are a contract.

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "silt", version, about = "Command-line client for Silt")]
pub struct Cli {
    /// Brokers to bootstrap from, HOST:PORT[,HOST:PORT...].
    #[arg(short, long, global = true, env = "SILT_BOOTSTRAP", default_value = "127.0.0.1:9300")]
    pub bootstrap: String,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
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
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Brokers, controller and Raft term.
    Info,
}

#[derive(Debug, Subcommand)]
pub enum TopicCmd {
    Create {
        name: String,
        #[arg(short, long)]
        partitions: Option<u32>,
        #[arg(short = 'r', long = "replication-factor")]
        replication_factor: Option<u32>,
        /// KEY=VALUE topic config (repeatable).
        #[arg(short, long = "config")]
        config: Vec<String>,
    },
    List,
    Describe {
        name: String,
    },
    Alter {
        name: String,
        /// KEY=VALUE to set (repeatable); KEY= (empty value) returns KEY to its default.
        #[arg(short, long = "config", required = true)]
        config: Vec<String>,
    },
    Delete {
        name: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcksArg {
    #[value(name = "0")]
    Zero,
    #[value(name = "1")]
    One,
    #[value(name = "all")]
    All,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    pub topic: String,
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    pub acks: AcksArg,
    #[arg(long)]
    pub partition: Option<u32>,
    /// Split each line into KEY SEP VALUE at the first SEP.
    #[arg(long)]
    pub key_separator: Option<String>,
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Join this consumer group: start at its committed offsets, commit after printing.
    #[arg(long, conflicts_with = "partition")]
    pub group: Option<String>,
    #[arg(long)]
    pub partition: Option<u32>,
    #[arg(long, conflicts_with_all = ["offset", "from_timestamp"])]
    pub from_beginning: bool,
    #[arg(long, conflicts_with = "from_timestamp")]
    pub offset: Option<i64>,
    /// Start at the first record with a timestamp >= this (ms since the Unix epoch).
    #[arg(long)]
    pub from_timestamp: Option<i64>,
    /// Stop after this many records.
    #[arg(short = 'n', long)]
    pub count: Option<u64>,
    /// Stop after this long with no new record.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// %t topic, %p partition, %o offset, %k key, %v value, %T timestamp, %h headers.
    #[arg(short, long, default_value = "%v")]
    pub format: String,
}

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    Produce(BenchProduceArgs),
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
    /// Members before each join.
    #[arg(long, default_value_t = 3)]
    pub members: usize,
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
}

#[derive(Debug, Args)]
pub struct BenchCommitArgs {
    /// An existing topic (commits name its partitions).
    #[arg(long)]
    pub topic: String,
    #[arg(long, default_value_t = 10_000)]
    pub commits: u64,
    /// Tasks committing concurrently through one member's committer.
    #[arg(long, default_value_t = 8)]
    pub committers: usize,
}

#[derive(Debug, Args)]
pub struct BenchProduceArgs {
    #[arg(long)]
    pub topic: String,
    #[arg(long, default_value_t = 100_000)]
    pub records: u64,
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    #[arg(long, value_enum, default_value_t = AcksArg::One)]
    pub acks: AcksArg,
    /// Concurrent producers.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    #[arg(long, default_value_t = 1024 * 1024)]
    pub batch_bytes: usize,
    /// Target rate in records/s over all producers (0 = as fast as possible), for latency at a
    /// given load.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
}

#[derive(Debug, Args)]
pub struct BenchConsumeArgs {
    #[arg(long)]
    pub topic: String,
    #[arg(long, default_value_t = 100_000)]
    pub records: u64,
    /// Consume as a member of this group (committing as it goes).
    #[arg(long)]
    pub group: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Every consumer group with its state and member count.
    List,
    /// Members, assignment, committed offset, high watermark and lag per partition.
    Describe { group: String },
    /// Set a group's committed offsets for every partition of a topic (the group must be empty).
    #[command(group(clap::ArgGroup::new("to").required(true)))]
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        #[arg(long, group = "to")]
        to_earliest: bool,
        #[arg(long, group = "to")]
        to_latest: bool,
        #[arg(long, group = "to")]
        to_offset: Option<i64>,
        /// The first record at or after this time (ms since the Unix epoch).
        #[arg(long, group = "to")]
        to_timestamp: Option<i64>,
    },
    /// Delete an empty group and its committed offsets.
    Delete { group: String },
}
