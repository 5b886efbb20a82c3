//! A TLS connection with what the broker learned about its peer: the remote address, the
//! verified client certificate's subject CN, and the principal a password login established
//! (cached for the connection's life, so the credential is verified once per connection).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use super::Principal;

/// A verified password login on one connection.
#[derive(Debug, Clone)]
pub(crate) struct Login {
    /// SHA-256 of the credentials presented, so other credentials on the same connection are
    /// verified again.
    pub presented: [u8; 32],
    /// The stored key it was verified against: a changed or deleted user is verified again.
    pub stored_key: Vec<u8>,
    pub principal: Principal,
}

/// What every request on a connection carries (tonic puts it in the request's extensions).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: Option<SocketAddr>,
    /// The principal name of the client certificate the handshake verified (its subject CN,
    /// or a SAN with `tls_principal = "san"`); `None` without one.
    pub certificate_name: Option<Arc<str>>,
    pub(crate) login: Arc<Mutex<Option<Login>>>,
}

/// A server-side TLS connection and its [`ConnInfo`].
#[derive(Debug)]
pub struct TlsConn {
    inner: TlsStream<TcpStream>,
    info: ConnInfo,
}

impl TlsConn {
    pub fn new(inner: TlsStream<TcpStream>, principal: crate::tls::PrincipalSource) -> TlsConn {
        let (tcp, session) = inner.get_ref();
        let certificate_name = session
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| principal.name_of(c.as_ref()))
            .map(Arc::from);
        let info =
            ConnInfo { remote: tcp.peer_addr().ok(), certificate_name, login: Arc::default() };
        TlsConn { inner, info }
    }
}

impl Connected for TlsConn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
