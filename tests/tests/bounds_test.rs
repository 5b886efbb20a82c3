//! Resource bounds (issue 14) with three `siltd` processes: a follower far behind on many
//! partitions at once gets fetch answers within the replication message limit, and catches up.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use silt_client::{Acks, ProducerConfig, ProducerRecord};
use silt_proto::v1;
use silt_tests::cluster::{ClusterSettings, ProcessCluster};

const SILTD: &str = env!("CARGO_BIN_EXE_siltd-under-test");
const TOPIC: &str = "wide";
/// Over two leaders, one leads at least 40: 40 batches of 850 KiB are more than the 32 MiB a
/// replication answer may carry, which every partition getting "at least one batch" exceeded.
const PARTITIONS: u32 = 80;
const VALUE_BYTES: usize = 850 * 1024;

/// A follower killed while every partition it follows gets an 850 KiB batch, then restarted:
/// each leader answers its fetches within the message limit (the partitions in turn, a
/// rotating start, a running byte budget), so it catches up and rejoins every ISR. Before, the
/// leader's answer for ~40 lagging partitions could not be encoded, the follower sent the same
/// request forever, and the partitions stayed under-replicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_on_many_partitions_catches_up_within_the_message_limit() {
    let mut cluster = ProcessCluster::start(ClusterSettings::new(SILTD)).await;
    let client = cluster.client().await;
    let configs = BTreeMap::from([
        ("segment.bytes".to_string(), (4 << 20).to_string()),
        ("min.insync.replicas".to_string(), "1".to_string()),
    ]);
    // Committed at once; opening 240 replicas may outlast the answer's wait on a loaded machine.
    if let Err(e) = client.admin().create_topic(TOPIC, PARTITIONS, 3, configs).await {
        assert_eq!(e.code(), Some(v1::ErrorCode::RequestTimedOut), "{e}");
    }
    for p in 0..PARTITIONS {
        cluster
            .wait_partition(TOPIC, p, Duration::from_secs(60), "a full ISR", |_, _, isr| {
                isr.len() == 3
            })
            .await;
    }
    let follower = 3;
    cluster.kill9(follower);
    for p in 0..PARTITIONS {
        cluster
            .wait_partition(TOPIC, p, Duration::from_secs(60), "the ISR without it", |l, _, isr| {
                l != follower && !isr.contains(&follower)
            })
            .await;
    }
    let producer = client.producer(ProducerConfig { acks: Acks::Leader, ..Default::default() });
    let value = Bytes::from(vec![b'w'; VALUE_BYTES]);
    let mut sent = Vec::new();
    for p in 0..PARTITIONS {
        let rec = ProducerRecord::new(TOPIC, value.clone()).with_partition(p);
        sent.push(producer.send(rec).await.expect("queued"));
    }
    for f in sent {
        f.await.expect("acknowledged by the leader");
    }
    tracing::info!("--- restart the follower: {PARTITIONS} partitions of 850 KiB to copy");
    cluster.restart(follower);
    for p in 0..PARTITIONS {
        cluster
            .wait_partition(TOPIC, p, Duration::from_secs(90), "the follower back", |_, _, isr| {
                isr.len() == 3
            })
            .await;
    }
    let panics = cluster.panics();
    assert!(panics.is_empty(), "a broker panicked: {panics:?}");
    for id in 1..=3 {
        assert_eq!(cluster.sigterm(id), Some(0), "broker {id} exits cleanly");
    }
}
