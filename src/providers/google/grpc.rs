#[allow(unused_imports)]
use super::*;

// ------------------------------------------------------------------ connection and auth

#[derive(Debug, thiserror::Error)]
pub enum GoogleInitError {
    #[error("invalid Google endpoint {url:?}: {detail}")]
    Endpoint { url: String, detail: String },
    #[error(
        "no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS to a service-account JSON file or {ACCESS_TOKEN_ENV} to a bearer token ({0})"
    )]
    Credentials(String),
}

#[derive(Clone)]
pub(super) enum TokenSource {
    /// Plain-http loopback endpoint (the test fakes): no auth.
    None,
    Static(String),
    Gcp(Arc<dyn gcp_auth::TokenProvider>),
}

/// One Google gRPC service: its endpoint, the shared channel and how requests are authorised.
pub(super) struct GrpcService {
    pub(super) url: String,
    pub(super) endpoint: Endpoint,
    /// Lazy until the first `connect`, then the connected channel; every request clones it
    /// (clones share the one HTTP/2 connection).
    pub(super) channel: RwLock<Channel>,
    pub(super) connected: AtomicBool,
    pub(super) auth: TokenSource,
}

/// tonic's transport errors say only "transport error"; the cause is in the source chain.
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A gRPC status as a provider failure of the right kind: what may pass (overload, a dropped
/// connection, an aborted stream) is retryable; bad requests, auth and wiring are fatal.
pub(super) fn status_error(what: &str, status: &tonic::Status) -> ProviderError {
    use tonic::Code;
    let reason = format!("{what} {:?}: {}", status.code(), status.message());
    match status.code() {
        Code::DeadlineExceeded => ProviderError::timeout(reason),
        Code::Unavailable
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Internal
        | Code::Unknown
        | Code::Cancelled => ProviderError::retryable(reason),
        _ => ProviderError::fatal(reason),
    }
}

pub(super) fn is_plain_loopback(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    u.scheme() == "http"
        && match u.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
}

impl GrpcService {
    pub(super) async fn new(
        configured: &str,
        default: &str,
        timeout: Duration,
    ) -> Result<Self, GoogleInitError> {
        let url = if configured.trim().is_empty() {
            default.to_string()
        } else {
            configured.trim().to_string()
        };
        let bad = |detail: String| GoogleInitError::Endpoint {
            url: url.clone(),
            detail,
        };
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            // Keeps the warmed connection alive between calls.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if url.starts_with("https://") {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_webpki_roots())
                .map_err(|e| bad(e.to_string()))?;
        }
        let auth = if is_plain_loopback(&url) {
            TokenSource::None
        } else if let Some(token) = std::env::var(ACCESS_TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty())
        {
            TokenSource::Static(token.trim().to_string())
        } else {
            // One lookup per process, shared by STT and TTS: without credentials it probes the
            // metadata server, which takes seconds.
            static PROVIDER: tokio::sync::OnceCell<
                Result<Arc<dyn gcp_auth::TokenProvider>, String>,
            > = tokio::sync::OnceCell::const_new();
            let provider = PROVIDER
                .get_or_init(|| async { gcp_auth::provider().await.map_err(|e| e.to_string()) })
                .await
                .clone()
                .map_err(GoogleInitError::Credentials)?;
            TokenSource::Gcp(provider)
        };
        let channel = RwLock::new(endpoint.connect_lazy());
        Ok(Self {
            url,
            endpoint,
            channel,
            connected: AtomicBool::new(false),
            auth,
        })
    }

    pub(super) fn channel(&self) -> Channel {
        self.channel
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// [`Self::connect`], given up after `timeout` (a warm-up must not hang start-up).
    pub(super) async fn connect_within(&self, timeout: Duration) -> Result<(), ProviderError> {
        tokio::time::timeout(timeout, self.connect())
            .await
            .map_err(|_| ProviderError::timeout(format!("connecting to {}", self.url)))?
    }

    /// Connects once (later calls return at once: the channel reconnects by itself).
    pub(super) async fn connect(&self) -> Result<(), ProviderError> {
        if self.connected.load(Ordering::Acquire) {
            return Ok(());
        }
        let channel = self.endpoint.connect().await.map_err(|e| {
            ProviderError::retryable(format!(
                "cannot connect to {}: {}",
                self.url,
                error_chain(&e)
            ))
        })?;
        *self.channel.write().unwrap_or_else(|p| p.into_inner()) = channel;
        self.connected.store(true, Ordering::Release);
        Ok(())
    }

    pub(super) async fn authorise<T>(
        &self,
        req: &mut tonic::Request<T>,
    ) -> Result<(), tonic::Status> {
        let token = match &self.auth {
            TokenSource::None => return Ok(()),
            TokenSource::Static(t) => t.clone(),
            TokenSource::Gcp(p) => p
                .token(&[SCOPE])
                .await
                .map_err(|e| tonic::Status::unauthenticated(format!("token: {e}")))?
                .as_str()
                .to_string(),
        };
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| tonic::Status::unauthenticated("token is not a valid header value"))?;
        req.metadata_mut().insert("authorization", value);
        Ok(())
    }
}
