//! Request/reply over a share group (`silt_client::rpc`): 1,000 concurrent calls through three
//! responders, one killed mid-run. Every reply is the one for its request; the only calls that
//! fail are timeouts, and no more of them than the killed responder held unanswered (its
//! requests stay locked past the callers' timeout).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use silt_client::Client;
use silt_client::rpc::{CallError, Requester, Responder};
use silt_proto::v1::ErrorCode;

const CALLS: usize = 1_000;

/// A responder answering `echo:<request>`; counts what it took and what it answered.
async fn respond(client: Client, taken: Arc<AtomicU64>, answered: Arc<AtomicU64>, slow: bool) {
    let mut r = Responder::join(&client, "requests", "servers").await.unwrap();
    loop {
        let requests = match r.poll().await {
            Ok(v) => v,
            Err(_) => continue,
        };
        taken.fetch_add(requests.len() as u64, Ordering::SeqCst);
        for q in &requests {
            if slow {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(q.value.as_deref().unwrap_or_default());
            if r.reply(q, Bytes::from(reply)).await.is_ok() {
                answered.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_calls_through_three_responders_one_killed() {
    let b = TestBroker::start_with(|dir| silt_broker::BrokerConfig {
        // Longer than the callers wait: a dead responder's requests are not redelivered in time.
        share_record_lock_duration_ms: 60_000,
        ..silt_broker::BrokerConfig::for_test(dir)
    })
    .await;
    assert_eq!(b.create_topic("requests", 3, &[]).await.error_code(), ErrorCode::None);
    assert_eq!(b.create_topic("replies", 4, &[]).await.error_code(), ErrorCode::None);
    let client = Client::connect(std::slice::from_ref(&b.addr)).await.unwrap();
    let counters: Vec<(Arc<AtomicU64>, Arc<AtomicU64>)> =
        (0..3).map(|_| (Arc::default(), Arc::default())).collect();
    let responders: Vec<_> = counters
        .iter()
        .enumerate()
        .map(|(i, (t, a))| tokio::spawn(respond(client.clone(), t.clone(), a.clone(), i == 0)))
        .collect();
    // The responders join (and the group starts at the topic's end) before the first call.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let requester = Arc::new(Requester::new(&client, "requests", "replies").await.unwrap());
    let calls: Vec<_> = (0..CALLS)
        .map(|i| {
            let rq = requester.clone();
            tokio::spawn(async move {
                let req = format!("call-{i}");
                let r = rq.call(None, Bytes::from(req.clone()), Duration::from_secs(8)).await;
                (req, r)
            })
        })
        .collect();
    // Kill the slow responder once it has answered some and holds more.
    let (taken0, answered0) = &counters[0];
    let started = std::time::Instant::now();
    while answered0.load(Ordering::SeqCst) < 20 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    responders[0].abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while !responders[0].is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let held = taken0.load(Ordering::SeqCst) - answered0.load(Ordering::SeqCst);
    let (mut ok, mut timed_out) = (0, 0);
    for c in calls {
        let (req, r) = c.await.unwrap();
        match r {
            Ok(reply) => {
                assert_eq!(reply.value.as_deref(), Some(format!("echo:{req}").as_bytes()));
                ok += 1;
            }
            Err(CallError::Timeout(_)) => timed_out += 1,
            Err(e) => panic!("{req}: {e}"),
        }
    }
    eprintln!("{ok} replies, {timed_out} timeouts; the killed responder held {held}");
    assert!(
        timed_out as u64 <= held,
        "{timed_out} calls timed out but the killed responder held only {held}"
    );
    assert_eq!(ok + timed_out, CALLS);
    for r in &responders[1..] {
        r.abort();
    }
}
