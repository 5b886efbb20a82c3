//! Request/reply over Silt (RabbitMQ's RPC pattern): a responder answers requests from a share
//! group, a requester calls it and waits for each reply.
//!
//! ```text
//! silt dev &                                   # a local cluster on 127.0.0.1:9300
//! cargo run -p silt-client --example rpc       # SILT_BOOTSTRAP=HOST:PORT for another one
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use silt_client::rpc::{Requester, Responder};
use silt_client::{Client, ClientError};

async fn ensure_topic(client: &Client, topic: &str) -> Result<(), ClientError> {
    match client.admin().create_topic(topic, 3, 0, BTreeMap::new()).await {
        Err(e) if e.code() != Some(silt_proto::v1::ErrorCode::TopicAlreadyExists) => Err(e),
        _ => Ok(()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::var("SILT_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9300".into());
    let client = Client::connect(&[bootstrap]).await?;
    ensure_topic(&client, "example.requests").await?;
    ensure_topic(&client, "example.replies").await?;

    // The service: squares numbers. Any number of these may run; they share the requests.
    let mut responder = Responder::join(&client, "example.requests", "squarers").await?;
    let service = tokio::spawn(async move {
        loop {
            let Ok(requests) = responder.poll().await else { continue };
            for r in &requests {
                let n: i64 = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
                    .trim()
                    .parse()
                    .unwrap_or(0);
                if responder.reply(r, Bytes::from((n * n).to_string())).await.is_err() {
                    eprintln!("reply to {}/{}@{} failed", r.topic, r.partition, r.offset);
                }
            }
        }
    });
    // Give the responder a moment to join: a new share group starts at the topic's end.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let requester = Requester::new(&client, "example.requests", "example.replies").await?;
    for n in 1..=5 {
        let reply =
            requester.call(None, Bytes::from(n.to_string()), Duration::from_secs(10)).await?;
        let text = String::from_utf8_lossy(reply.value.as_deref().unwrap_or_default()).into_owned();
        println!("{n}^2 = {text}");
    }
    requester.close().await?;
    service.abort();
    Ok(())
}
