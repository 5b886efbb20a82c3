//! The idempotent producer's identity and sequences (Kafka's `enable.idempotence`, on by default
//! with `acks=all`). Each batch is stamped once, just before its first send, with the producer
//! id and epoch and the partition's next sequence; retries resend the same bytes, so a leader
//! that already appended it answers its original offsets instead of appending it again.
//!
//! Sequences stay gap-free because batches are stamped in sealing order, each partition's
//! retries go out in that order (the pipeline's lanes), and a leader refuses a batch whose
//! predecessor it has not appended. When a batch fails for good with its outcome unknown, or a
//! leader refuses the oldest batch in flight for its sequence (it lost the producer's state),
//! the identity is dropped: the next batch takes a new producer id and every partition starts
//! again at sequence 0 (a new id needs no history on the brokers). Each identity is a
//! generation; a batch stamped under an older one is stamped again only when it was refused
//! (nothing appended), so no record is ever sent under two identities.

use std::collections::HashMap;
use std::time::Duration;

use silt_proto::v1::{self, ErrorCode};
use tokio::sync::Mutex;

use super::accumulator::Sealed;
use crate::{Client, ProduceError};

/// How long getting a producer id may take before the batch fails.
const INIT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct State {
    /// Producer id and epoch; `None` until the first batch, and after a reset.
    id: Option<(i64, i16)>,
    /// The next sequence of each partition under `id`.
    next: HashMap<(String, u32), i32>,
    /// Counts resets: the generation of the current (or next) identity.
    generation: u64,
}

/// One producer's identity, shared by its sending tasks.
#[derive(Debug, Default)]
pub(crate) struct Idempotence {
    state: Mutex<State>,
}

impl Idempotence {
    /// The generation of the current identity.
    pub(crate) async fn generation(&self) -> u64 {
        self.state.lock().await.generation
    }

    /// Stamps `batch` with the producer's id and the partition's next sequence, getting an id
    /// from the cluster first if there is none; returns the generation stamped, or `None` (and
    /// stamps nothing) if the identity is no longer of generation `expected`.
    pub(crate) async fn stamp<W>(
        &self,
        client: &Client,
        batch: &mut Sealed<W>,
        expected: u64,
    ) -> Result<Option<u64>, ProduceError> {
        let mut s = self.state.lock().await;
        if s.generation != expected {
            return Ok(None);
        }
        let (id, epoch) = match s.id {
            Some(id) => id,
            None => {
                let id = init_producer_id(client).await?;
                tracing::debug!(producer_id = id.0, "idempotent producer id");
                s.id = Some(id);
                s.next.clear();
                id
            }
        };
        let count = i32::try_from(batch.waiters.len()).unwrap_or(i32::MAX);
        let key = (batch.topic.clone(), batch.partition);
        let seq = s.next.get(&key).copied().unwrap_or(0);
        let next = seq_after(seq, i64::from(count));
        // Patched in place when no request holds the bytes any more (the usual case).
        let mut data = match std::mem::take(&mut batch.data).try_into_mut() {
            Ok(unique) => unique,
            Err(shared) => bytes::BytesMut::from(&shared[..]),
        };
        let stamped = silt_core::batch::stamp_producer(&mut data, id, epoch, seq);
        batch.data = data.freeze();
        if !stamped {
            return Err(ProduceError {
                code: None,
                message: "a batch shorter than its header".into(),
                definitely_not_stored: true,
            });
        }
        s.next.insert(key, next);
        Ok(Some(s.generation))
    }

    /// A stamped batch that was definitely not stored gives its sequences back, if it is still
    /// its partition's last one under the current identity (the next batch reuses them).
    pub(crate) async fn release<W>(&self, batch: &Sealed<W>) {
        let Some(h) = silt_core::batch::BatchHeader::parse(&batch.data) else { return };
        let mut s = self.state.lock().await;
        if s.id != Some((h.producer_id, h.producer_epoch)) {
            return;
        }
        let key = (batch.topic.clone(), batch.partition);
        let after = seq_after(h.base_sequence, i64::from(h.record_count));
        if s.next.get(&key) == Some(&after) {
            s.next.insert(key, h.base_sequence);
        }
    }

    /// Drops the identity of generation `generation` (nothing if it was dropped already): the
    /// next stamp takes a new producer id, sequences from 0.
    pub(crate) async fn reset(&self, why: &str, generation: u64) {
        let mut s = self.state.lock().await;
        if s.generation != generation {
            return;
        }
        s.generation += 1;
        if let Some((id, _)) = s.id.take() {
            tracing::info!(
                producer_id = id,
                why,
                "dropping the idempotent producer id; the next batches use a new one"
            );
        }
        s.next.clear();
    }
}

/// The sequence after `count` records from `seq`: sequences wrap from `i32::MAX` to 0 (as the
/// brokers expect).
fn seq_after(seq: i32, count: i64) -> i32 {
    ((i64::from(seq) + count) % (i64::from(i32::MAX) + 1)) as i32
}

/// A refusal that means the leader cannot place the batch in this producer's sequence: a new
/// identity fixes it (the batch was not appended).
pub(crate) fn needs_new_identity(code: ErrorCode) -> bool {
    matches!(code, ErrorCode::OutOfOrderSequenceNumber | ErrorCode::UnknownProducerId)
}

/// Asks the brokers, one after another, for a producer id.
async fn init_producer_id(client: &Client) -> Result<(i64, i16), ProduceError> {
    let deadline = tokio::time::Instant::now() + INIT_TIMEOUT;
    let mut last = String::from("no broker answered");
    let mut backoff = Duration::from_millis(50);
    while tokio::time::Instant::now() < deadline {
        for addr in client.any_addresses() {
            let Ok(mut c) = client.data(&addr) else { continue };
            let call = c.init_producer_id(v1::InitProducerIdRequest::default());
            match tokio::time::timeout(Duration::from_secs(5), call).await {
                Ok(Ok(r)) => {
                    let r = r.into_inner();
                    if r.error_code == ErrorCode::None as i32 && r.producer_id >= 0 {
                        let epoch = i16::try_from(r.producer_epoch).unwrap_or(0);
                        return Ok((r.producer_id, epoch));
                    }
                    // A refusal (not authorized) is the same at every broker.
                    if r.error_code() == ErrorCode::ClusterAuthorizationFailed {
                        return Err(ProduceError {
                            code: Some(r.error_code()),
                            message: format!("no idempotent producer id: {}", r.error_message),
                            definitely_not_stored: true,
                        });
                    }
                    last = format!("{addr}: {} {}", r.error_code().as_str_name(), r.error_message);
                }
                Ok(Err(status)) => last = format!("{addr}: {status}"),
                Err(_) => last = format!("{addr}: timed out"),
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
    Err(ProduceError {
        code: None,
        message: format!("no idempotent producer id: {last}"),
        definitely_not_stored: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(seq_after(0, 5), 5);
        assert_eq!(seq_after(i32::MAX - 1, 2), 0);
        assert_eq!(seq_after(i32::MAX, 3), 2);
    }
}
