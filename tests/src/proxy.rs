//! A fault-injecting TCP proxy for broker-to-broker links. Each broker reaches each peer through
//! its own proxy (the `peers` setting names the proxy), so the harness can cut one direction of
//! one link, or every link of a broker, while clients still reach every broker directly.
//! Cutting closes the open connections and refuses new ones until healed.

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A listening proxy to one target address.
#[derive(Debug)]
pub struct Proxy {
    pub addr: String,
    cut: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub async fn start(target: String) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let (cut, cut_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else { return };
                if *cut_rx.borrow() {
                    drop(sock);
                    continue;
                }
                tokio::spawn(pipe(sock, target.clone(), cut_rx.clone()));
            }
        });
        Ok(Proxy { addr, cut, task })
    }

    /// Cuts (true) or heals (false) the link.
    pub fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut.send_replace(true);
        self.task.abort();
    }
}

async fn pipe(mut inbound: TcpStream, target: String, mut cut: watch::Receiver<bool>) {
    let connect =
        tokio::time::timeout(std::time::Duration::from_secs(2), TcpStream::connect(&target));
    let Ok(Ok(mut outbound)) = connect.await else { return };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    tokio::select! {
        _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
        _ = cut.wait_for(|c| *c) => {}
    }
}
