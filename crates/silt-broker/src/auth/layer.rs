//! The tower wrapper that authenticates every request of a client service before its body is
//! read (with auth on), and hands the principal to the handler in the request's extensions.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;

use super::connection::ConnInfo;
use super::{Credentials, authenticate};
use crate::broker::Shared;

/// A client service whose requests are authenticated first.
#[derive(Debug, Clone)]
pub(crate) struct Authenticated<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Authenticated<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Authenticated<S> {
        Authenticated { inner, shared }
    }
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

/// The credentials in a request's metadata; an error for half of them or bad encoding.
fn credentials(headers: &http::HeaderMap) -> Result<Option<Credentials>, tonic::Status> {
    if !headers.contains_key(silt_proto::USER_METADATA)
        && !headers.contains_key(silt_proto::PASSWORD_METADATA)
    {
        return Ok(None);
    }
    let md = MetadataMap::from_headers(headers.clone());
    let get = |key: &str| {
        md.get_bin(key).and_then(|v| v.to_bytes().ok()).map(|b| b.to_vec()).ok_or_else(|| {
            tonic::Status::unauthenticated(format!("the credentials need a valid {key}"))
        })
    };
    let user = String::from_utf8(get(silt_proto::USER_METADATA)?)
        .map_err(|_| tonic::Status::unauthenticated("the user name is not UTF-8"))?;
    Ok(Some(Credentials { user, password: get(silt_proto::PASSWORD_METADATA)? }))
}

impl<S> Service<http::Request<Body>> for Authenticated<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        // The clone that was made ready serves this call (tower's rule for cloned services).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !self.shared.auth.enabled() {
            return Box::pin(inner.call(req));
        }
        let shared = self.shared.clone();
        Box::pin(async move {
            let creds = match credentials(req.headers()) {
                Ok(c) => c,
                Err(status) => return Ok(status.into_http()),
            };
            let conn = req.extensions().get::<ConnInfo>().cloned();
            match authenticate(&shared, conn.as_ref(), creds).await {
                Ok(principal) => {
                    req.extensions_mut().insert(principal);
                    inner.call(req).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}
