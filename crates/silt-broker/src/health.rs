//! The HTTP port: `/healthz` (the process is up) and `/readyz` (it serves requests). Minimal
//! HTTP/1.1 on a plain socket: one request per connection, bounded reads. Metrics join later.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Longest request head read before answering 400.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Binds `addr` and serves health checks on a background task.
pub async fn serve(addr: &str) -> std::io::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "health endpoint listening");
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { continue };
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
                    (true, "/healthz") | (true, "/readyz") => ("200 OK", "ok\n"),
                    (true, _) => ("404 Not Found", "not found\n"),
                    (false, _) => ("400 Bad Request", "bad request\n"),
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    }))
}
