//! The HTTP port: `/healthz` (the process is up), `/readyz` (it serves requests: in a cluster,
//! registered and not fenced; 503 otherwise) and `/metrics` (Prometheus text). Minimal HTTP/1.1
//! on a plain socket: one request per connection, bounded reads.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Longest request head read before answering 400.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Binds `addr` and serves health checks on a background task.
pub(crate) async fn serve(
    addr: &str,
    shared: Arc<crate::broker::Shared>,
) -> std::io::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "health endpoint listening");
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { continue };
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; MAX_HEAD_BYTES];
                let mut n = 0;
                let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                    while n < buf.len() {
                        match sock.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => break,
                            Ok(k) => n += k,
                        }
                        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                })
                .await;
                let head = String::from_utf8_lossy(&buf[..n]);
                let path = head.split_whitespace().nth(1).unwrap_or("");
                let (status, body) = match (read.is_ok(), path) {
                    (true, "/healthz") => ("200 OK", "ok\n".to_string()),
                    (true, "/readyz") if shared.ready() => ("200 OK", "ok\n".to_string()),
                    (true, "/readyz") => ("503 Service Unavailable", "not ready\n".to_string()),
                    (true, "/metrics") => ("200 OK", crate::metrics::render(&shared)),
                    (true, _) => ("404 Not Found", "not found\n".to_string()),
                    (false, _) => ("400 Bad Request", "bad request\n".to_string()),
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    }))
}
