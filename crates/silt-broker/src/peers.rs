//! Channels to other brokers' internal listeners (transaction and share calls), by address,
//! connected lazily and shared by every client of those services.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use silt_proto::v1::ErrorCode;
use tonic::transport::Channel;

use crate::broker::Shared;
use crate::error::WireError;

#[derive(Debug, Default)]
pub(crate) struct Peers {
    channels: Mutex<HashMap<String, Channel>>,
}

impl Peers {
    /// The channel to broker `node`'s internal listener (`BROKER_NOT_AVAILABLE` when it has no
    /// known address).
    pub fn channel(&self, shared: &Shared, node: u64) -> Result<Channel, WireError> {
        let unreachable = |m: String| {
            WireError::new(ErrorCode::BrokerNotAvailable, format!("broker {node}: {m}"))
        };
        let addr = shared.peer_address(node).ok_or_else(|| unreachable("no address".into()))?;
        let mut m = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = m.get(&addr) {
            return Ok(c.clone());
        }
        let channel = shared
            .cluster
            .internal_endpoint(&addr)
            .map_err(unreachable)?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .connect_lazy();
        m.insert(addr, channel.clone());
        Ok(channel)
    }
}
