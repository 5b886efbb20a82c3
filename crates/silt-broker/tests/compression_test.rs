//! Compressed record batches through one broker: every codec from producer to consumer, the
//! decompression bound, a topic's `compression.type`, and plain-record produce asking the broker
//! to compress.

mod common;

use bytes::Bytes;
use common::*;
use silt_client::{
    Client, Compression, ConsumerConfig, ProducerConfig, ProducerRecord, Seek, TopicPartition,
};
use silt_core::batch::{BatchBuilder, BatchHeader, BatchIter, CRC_POS, Record};
use silt_proto::v1::{self, ErrorCode, partition_produce_data::Data};

/// A batch of `n` JSON-ish values `prefix-i`, compressed with `codec`.
fn compressed(prefix: &str, n: usize, codec: Compression) -> Bytes {
    let mut b = BatchBuilder::new();
    b.set_compression(codec, None);
    for i in 0..n {
        b.push(&Record {
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!(
                "{prefix}-{i} {{\"pad\":\"{}\"}}",
                "z".repeat(i % 40)
            ))),
            headers: vec![],
            timestamp_ms: 1_700_000_000_000 + i as i64,
        });
    }
    b.build().expect("a batch")
}

/// The codecs of the batches stored in `topic`-0, in order (raw fetch from offset 0).
async fn stored_codecs(b: &TestBroker, topic: &str) -> Vec<Compression> {
    let mut req = fetch_req(topic, 0, 0, 0, false);
    req.min_bytes = 0;
    let r = b.data().await.fetch(req).await.unwrap().into_inner();
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code(), ErrorCode::None, "{}", p.error_message);
    BatchIter::new(p.record_batches.clone())
        .map(|b| BatchHeader::parse(&b.expect("framed")).unwrap().codec().expect("a codec"))
        .collect()
}

#[tokio::test]
async fn every_codec_round_trips_through_produce_fetch_and_decode_stored_as_sent() {
    let b = TestBroker::start().await;
    assert_eq!(b.create_topic("zipped", 1, &[]).await.error_code(), ErrorCode::None);
    let mut c = b.data().await;
    let mut expected = Vec::new();
    for (i, codec) in Compression::ALL.into_iter().enumerate() {
        let batch = compressed(codec.name(), 50, codec);
        let r = produce(&mut c, "zipped", 0, v1::Acks::All, batch.clone()).await;
        assert_eq!(r.error_code(), ErrorCode::None, "{codec}: {}", r.error_message);
        assert_eq!(r.base_offset, i as i64 * 50);
        // Served byte for byte as sent (but for the offset and epoch the leader stamps).
        let raw =
            c.fetch(fetch_req("zipped", 0, r.base_offset, 0, false)).await.unwrap().into_inner();
        let served = BatchIter::new(raw.topics[0].partitions[0].record_batches.clone())
            .next()
            .expect("a batch")
            .expect("framed");
        assert_eq!(served[CRC_POS..], batch[CRC_POS..], "{codec}: stored as sent");
        expected.extend(
            (0..50).map(|j| format!("{}-{j} {{\"pad\":\"{}\"}}", codec.name(), "z".repeat(j % 40))),
        );
    }
    assert_eq!(stored_codecs(&b, "zipped").await, Compression::ALL);
    // Decoded by the broker (decode_records) ...
    let (code, vals) = fetch_values(&mut c, "zipped", 0, 0).await;
    assert_eq!(code, ErrorCode::None);
    let mut got: Vec<String> = vals.iter().map(|(_, v)| v.clone()).collect();
    // ... one fetch may stop early; read the rest.
    while got.len() < expected.len() {
        let (_, more) = fetch_values(&mut c, "zipped", 0, got.len() as i64).await;
        assert!(!more.is_empty(), "records missing after {}", got.len());
        got.extend(more.into_iter().map(|(_, v)| v));
    }
    assert_eq!(got, expected);
    // ... and by the Rust client's consumer, from raw batches.
    let client = Client::connect(std::slice::from_ref(&b.addr)).await.unwrap();
    let mut consumer = client.consumer(ConsumerConfig { max_wait_ms: 100, ..Default::default() });
    let tp = TopicPartition { topic: "zipped".into(), partition: 0 };
    consumer.assign(vec![tp], Seek::Earliest).await.unwrap();
    let mut read = Vec::new();
    for _ in 0..50 {
        if read.len() >= expected.len() {
            break;
        }
        for r in consumer.poll().await.unwrap() {
            assert_eq!(r.offset, read.len() as i64, "offsets in order, none skipped");
            read.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
    }
    assert_eq!(read, expected);
}

#[tokio::test]
async fn the_client_producer_compresses_with_every_codec() {
    let b = TestBroker::start().await;
    assert_eq!(b.create_topic("by-client", 1, &[]).await.error_code(), ErrorCode::None);
    let client = Client::connect(std::slice::from_ref(&b.addr)).await.unwrap();
    for codec in Compression::ALL {
        let level = match codec {
            Compression::Gzip => Some(1),
            Compression::Zstd => Some(19),
            _ => None,
        };
        let producer = client
            .try_producer(ProducerConfig {
                compression: codec,
                compression_level: level,
                linger_ms: 20,
                ..ProducerConfig::default()
            })
            .unwrap();
        let mut acks = Vec::new();
        for i in 0..200 {
            let value = Bytes::from(format!("{{\"codec\":\"{codec}\",\"i\":{i}}}"));
            acks.push(producer.send(ProducerRecord::new("by-client", value)).await.unwrap());
        }
        for a in acks {
            a.await.unwrap();
        }
        producer.close().await.unwrap();
    }
    let codecs = stored_codecs(&b, "by-client").await;
    for codec in Compression::ALL {
        assert!(codecs.contains(&codec), "{codec} batches stored: {codecs:?}");
    }
    let (_, vals) = fetch_values(&mut b.data().await, "by-client", 0, 0).await;
    assert!(vals.len() >= 200, "decoded {}", vals.len());
    assert_eq!(vals[0].1, "{\"codec\":\"none\",\"i\":0}");
    // A level outside the codec's range is refused before anything is sent.
    let bad = ProducerConfig {
        compression: Compression::Gzip,
        compression_level: Some(12),
        ..ProducerConfig::default()
    };
    assert!(client.try_producer(bad).is_err());
}

#[tokio::test]
async fn a_batch_past_the_decompression_bound_is_refused_as_corrupt_and_changes_nothing() {
    let b = TestBroker::start_with(|dir| silt_broker::BrokerConfig {
        max_decompressed_batch_bytes: 1 << 20,
        ..silt_broker::BrokerConfig::for_test(dir)
    })
    .await;
    assert_eq!(b.create_topic("bombs", 1, &[]).await.error_code(), ErrorCode::None);
    let mut c = b.data().await;
    let ok =
        produce(&mut c, "bombs", 0, v1::Acks::All, compressed("fine", 10, Compression::Zstd)).await;
    assert_eq!(ok.error_code(), ErrorCode::None);
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        // Two records of 1 MiB of zeros: a few KiB compressed, 2 MiB decompressed.
        let mut bomb = BatchBuilder::new();
        bomb.set_compression(codec, None);
        for _ in 0..2 {
            bomb.push(&Record::value(vec![0u8; 1 << 20], 1));
        }
        let bomb = bomb.build().unwrap();
        assert!(bomb.len() < 200 * 1024, "{codec}: {} bytes", bomb.len());
        let r = produce(&mut c, "bombs", 0, v1::Acks::All, bomb).await;
        assert_eq!(r.error_code(), ErrorCode::CorruptMessage, "{codec}");
        assert!(r.error_message.contains("decompress"), "{codec}: {}", r.error_message);
    }
    // A compressed batch with a broken record inside is refused too.
    let plain = batch("x", 3, 5);
    let mut records = plain[silt_core::batch::HEADER_LEN..].to_vec();
    records[0] = 0x7f;
    let bad = silt_core::batch::recompress(&plain, &records, Compression::Gzip, None);
    let r = produce(&mut c, "bombs", 0, v1::Acks::All, Bytes::from(bad)).await;
    assert_eq!(r.error_code(), ErrorCode::CorruptMessage);
    let (_, vals) = fetch_values(&mut c, "bombs", 0, 0).await;
    assert_eq!(vals.len(), 10, "only the good batch is stored");
}

#[tokio::test]
async fn a_topic_compression_type_stores_every_batch_in_its_codec() {
    let b = TestBroker::start().await;
    let zstd = [("compression.type", "zstd"), ("compression.zstd.level", "7")];
    assert_eq!(b.create_topic("as-zstd", 1, &zstd).await.error_code(), ErrorCode::None);
    let raw = [("compression.type", "uncompressed")];
    assert_eq!(b.create_topic("as-raw", 1, &raw).await.error_code(), ErrorCode::None);
    assert_eq!(
        b.create_topic("bad", 1, &[("compression.type", "brotli")]).await.error_code(),
        ErrorCode::InvalidConfig
    );
    let mut c = b.data().await;
    for codec in [Compression::None, Compression::Gzip, Compression::Zstd] {
        for topic in ["as-zstd", "as-raw"] {
            let r = produce(&mut c, topic, 0, v1::Acks::All, compressed("v", 20, codec)).await;
            assert_eq!(r.error_code(), ErrorCode::None, "{topic} {codec}: {}", r.error_message);
        }
    }
    // Plain records: the topic's codec wins over the request's.
    let list = v1::RecordList {
        records: vec![v1::Record {
            value: Some(Bytes::from_static(b"plain")),
            ..Default::default()
        }],
        compression: v1::Compression::Lz4 as i32,
    };
    for topic in ["as-zstd", "as-raw"] {
        let resp = c
            .produce(produce_req(topic, 0, v1::Acks::All, Data::Records(list.clone())))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.topics[0].partitions[0].error_code(), ErrorCode::None);
    }
    assert_eq!(stored_codecs(&b, "as-zstd").await, vec![Compression::Zstd; 4]);
    assert_eq!(stored_codecs(&b, "as-raw").await, vec![Compression::None; 4]);
    for topic in ["as-zstd", "as-raw"] {
        let (_, vals) = fetch_values(&mut c, topic, 0, 0).await;
        assert_eq!(vals.len(), 61, "{topic}");
        assert_eq!(vals[0].1, "v-0 {\"pad\":\"\"}");
        assert_eq!(vals[60].1, "plain");
    }
}

#[tokio::test]
async fn plain_record_produce_can_ask_the_broker_to_compress() {
    let b = TestBroker::start().await;
    assert_eq!(b.create_topic("plain", 1, &[]).await.error_code(), ErrorCode::None);
    let mut c = b.data().await;
    for codec in [v1::Compression::Gzip, v1::Compression::Snappy, v1::Compression::None] {
        let list = v1::RecordList {
            records: (0..30)
                .map(|i| v1::Record {
                    value: Some(Bytes::from(format!("{codec:?}-{i}"))),
                    ..Default::default()
                })
                .collect(),
            compression: codec as i32,
        };
        let resp = c
            .produce(produce_req("plain", 0, v1::Acks::All, Data::Records(list)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.topics[0].partitions[0].error_code(), ErrorCode::None);
    }
    assert_eq!(
        stored_codecs(&b, "plain").await,
        [Compression::Gzip, Compression::Snappy, Compression::None]
    );
    let (_, vals) = fetch_values(&mut c, "plain", 0, 0).await;
    assert_eq!(vals.len(), 90);
    assert_eq!(vals[30].1, "Snappy-0");
    // An unknown codec number is refused.
    let list = v1::RecordList {
        records: vec![v1::Record { value: Some(Bytes::from_static(b"x")), ..Default::default() }],
        compression: 6,
    };
    let resp = c
        .produce(produce_req("plain", 0, v1::Acks::All, Data::Records(list)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.topics[0].partitions[0].error_code(), ErrorCode::InvalidRequest);
}
