//! Rate limits in fixed one-minute windows: anonymous callers by client address, signed-in
//! callers by token subject, admins exempt. Counting is behind a port: in-process by default,
//! or shared through Redis (`movies-cache`'s `RedisCounter`) so every replica counts the same
//! caller once; if the shared counter cannot answer, the in-process one does.
//!
//! `X-Forwarded-For` is believed only from configured proxies: the client is the right-most
//! address in it that is not itself a trusted proxy.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::{BoxFuture, Either};
use movies_events::Role;
use tower::{Layer, Service};

use crate::auth::verified;
use crate::{JwtKeys, Principal, Problem};

const WINDOW_SECONDS: u64 = 60;

/// What is never limited: health, readiness and metrics are polled by load balancers and
/// scrapers from few addresses; the docs, the console's bundled assets and the key set are
/// static. They cost nothing worth limiting. Everything else is: the API, and the console's
/// pages, which run the same searches and sign-ins.
const EXEMPT: [&str; 6] = ["/health", "/ready", "/metrics", "/docs", "/assets/", "/.well-known/"];

fn limited(path: &str) -> bool {
    !EXEMPT.iter().any(|exempt| path.starts_with(exempt))
}

/// Requests per minute for each kind of caller; 0 means unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    pub anonymous_per_minute: u64,
    pub user_per_minute: u64,
    /// Peers whose `X-Forwarded-For` is believed (load balancers, CDNs).
    pub trusted_proxies: Vec<IpAddr>,
}

impl RateLimits {
    pub fn unlimited() -> Self {
        Self { anonymous_per_minute: 0, user_per_minute: 0, trusted_proxies: Vec::new() }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self { anonymous_per_minute: 600, user_per_minute: 3000, trusted_proxies: Vec::new() }
    }
}

/// The client's address as the rate limits see it (through trusted proxies), left in each API
/// request's extensions for handlers that count per client (sign-in throttling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

/// Counts hits per key and window.
#[async_trait]
pub trait HitCounter: Send + Sync + 'static {
    /// Adds one hit to `key` in `window` and returns the window's count, or `None` when the
    /// counter cannot answer (the in-process one then does).
    async fn hit(&self, key: &str, window: u64) -> Option<u64>;
}

/// The in-process counter: each key's current window only.
#[derive(Default)]
pub struct LocalCounter {
    counts: Mutex<HashMap<String, (u64, u64)>>,
}

/// Above this many keys, the windows that are over are dropped.
const LOCAL_KEYS: usize = 100_000;

#[async_trait]
impl HitCounter for LocalCounter {
    async fn hit(&self, key: &str, window: u64) -> Option<u64> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() > LOCAL_KEYS {
            counts.retain(|_, (w, _)| *w == window);
        }
        let entry = counts.entry(key.to_owned()).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        entry.1 += 1;
        Some(entry.1)
    }
}

pub struct RateLimiter {
    limits: RateLimits,
    keys: Arc<JwtKeys>,
    counter: Arc<dyn HitCounter>,
    fallback: LocalCounter,
}

impl RateLimiter {
    pub fn new(limits: RateLimits, keys: Arc<JwtKeys>, counter: Option<Arc<dyn HitCounter>>) -> Arc<Self> {
        Arc::new(Self {
            limits,
            keys,
            counter: counter.unwrap_or_else(|| Arc::new(LocalCounter::default())),
            fallback: LocalCounter::default(),
        })
    }

    /// Who the caller is for counting, and their limit; `None` for the exempt and unlimited.
    fn bucket(
        &self,
        headers: &HeaderMap,
        caller: Option<&Principal>,
        peer: Option<IpAddr>,
    ) -> Option<(String, u64)> {
        match caller {
            Some(principal) if principal.role == Role::Admin => None,
            Some(principal) => (self.limits.user_per_minute > 0)
                .then(|| (format!("user:{}", principal.subject), self.limits.user_per_minute)),
            None => (self.limits.anonymous_per_minute > 0).then(|| {
                let client =
                    peer.map(|p| self.client(headers, p).to_string()).unwrap_or_else(|| "unknown".into());
                (format!("ip:{client}"), self.limits.anonymous_per_minute)
            }),
        }
    }

    fn client(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        if !self.limits.trusted_proxies.contains(&peer) {
            return peer;
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        forwarded.into_iter().rev().find(|a| !self.limits.trusted_proxies.contains(a)).unwrap_or(peer)
    }
}

/// The layer: counts each API request, answers 429 over the limit, and tells the caller where
/// they stand (`RateLimit-Limit`, `-Remaining`, `-Reset`). Exempt and unlimited callers pass
/// straight through, at no cost beyond telling who they are.
#[derive(Clone)]
pub struct RateLimitLayer(Arc<RateLimiter>);

impl RateLimitLayer {
    pub fn new(limiter: Arc<RateLimiter>) -> Self {
        Self(limiter)
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> RateLimited<S> {
        RateLimited { limiter: self.0.clone(), inner }
    }
}

#[derive(Clone)]
pub struct RateLimited<S> {
    limiter: Arc<RateLimiter>,
    inner: S,
}

impl<S> Service<Request> for RateLimited<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        if !limited(request.uri().path()) {
            return Either::Left(crate::take_ready(&mut self.inner).call(request));
        }
        let limiter = &self.limiter;
        let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(p)| p.ip());
        if let Some(peer) = peer {
            let client = ClientAddress(limiter.client(request.headers(), peer));
            request.extensions_mut().insert(client);
        }
        // A token that does not verify counts as anonymous here (the endpoint then refuses it);
        // one that does is handed on, so the endpoint does not verify it again.
        let caller = verified(request.headers(), &limiter.keys).ok().flatten();
        let bucket = limiter.bucket(request.headers(), caller.as_ref(), peer);
        if let Some(principal) = caller {
            request.extensions_mut().insert(principal);
        }
        let mut inner = crate::take_ready(&mut self.inner);
        let Some((key, limit)) = bucket else {
            return Either::Left(inner.call(request));
        };
        let limiter = limiter.clone();
        Either::Right(Box::pin(async move {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let (window, reset) = (now / WINDOW_SECONDS, WINDOW_SECONDS - now % WINDOW_SECONDS);
            let count = match limiter.counter.hit(&key, window).await {
                Some(count) => count,
                None => limiter.fallback.hit(&key, window).await.unwrap_or(1),
            };
            let mut response = if count > limit {
                let detail = format!("more than {limit} requests a minute; retry in {reset} s");
                let mut response =
                    Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", Some(detail)).into_response();
                response.headers_mut().insert("retry-after", HeaderValue::from(reset));
                response
            } else {
                inner.call(request).await?
            };
            let headers = response.headers_mut();
            headers.insert("ratelimit-limit", HeaderValue::from(limit));
            headers.insert("ratelimit-remaining", HeaderValue::from(limit.saturating_sub(count)));
            headers.insert("ratelimit-reset", HeaderValue::from(reset));
            Ok(response)
        }))
    }
}
