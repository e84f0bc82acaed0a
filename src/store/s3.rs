//! The S3 store: DigitalOcean Spaces or any S3-compatible service.
//!
//! Blocking on the outside (the [`Store`] trait is synchronous, and publishing is a
//! sequence of dependent steps), async inside on a small private tokio runtime.
//! Uploads stream from disk and switch to multipart above a threshold, with a bounded
//! number of parts in flight. Conditional writes (If-None-Match) are probed once, never
//! assumed.
//!
//! Every request is retried, with exponential backoff and full jitter, until it
//! succeeds or the retry deadline (`retry-deadline`) runs out; each attempt has a
//! timeout (`attempt-timeout`, more for an upload, by its size), so a connection that
//! stops answering is abandoned and retried instead of hanging the publish and its
//! lock. The SDK retries up to the response headers; a GET whose body fails mid-stream
//! is retried here, as a whole. Why every write may be retried is in
//! docs/ARCHITECTURE.md, "Retries on a flaky network".
//!
//! Every request goes through one path, [`Link::send`]: it applies the deadline,
//! reports retries that go on for a while ([`RetryNotice`]), notes that the store
//! answered, and words the failure. An endpoint that has never answered in this run
//! (refused, unknown host, TLS failure) is given [`UNANSWERED_DEADLINE`], not the
//! retry deadline: a wrong `--endpoint` fails in seconds.
//!
//! The store answers what it knows (its capabilities, as data: `doctor`'s probes);
//! what to make of them, and any bookkeeping of them in the repository, is the
//! caller's (docs/ARCHITECTURE.md, "Layers").

pub use super::ConditionalWrites;
use super::{
    check_key, Body, Caching, ObjectDigest, ObjectMeta, PutOptions, Store, StoreError, Versioned,
};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ObjectCannedAcl};
use aws_smithy_runtime::client::retries::{RetryPartition, TokenBucket};
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority,
};
use aws_smithy_types::byte_stream::Length;
use std::error::Error as StdError;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Where the bucket is and how to talk to it. Never holds credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// e.g. `nyc3`.
    pub region: String,
    /// e.g. `https://nyc3.digitaloceanspaces.com`.
    pub endpoint: String,
    /// Keys are stored below this prefix (without a trailing slash), if any.
    pub prefix: Option<String>,
    /// `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key`; needed
    /// for bucket names with dots (TLS certificates do not cover them) and local servers.
    pub path_style: bool,
    /// `public-read` objects (apt reads them anonymously) or private ones.
    pub public_read: bool,
    pub checksums: ChecksumMode,
    /// Files larger than this are uploaded in parts.
    pub multipart_threshold: u64,
    pub part_size: u64,
    /// Parts in flight at once.
    pub parallelism: usize,
    /// The Cache-Control of immutable objects (pool/, by-hash/) and of the rest.
    pub cache_immutable: String,
    pub cache_short: String,
    /// How long one request is retried before the publish gives up (`retry-deadline`).
    pub retry_deadline: Duration,
    /// How long one attempt of a small request may take before it is abandoned and
    /// retried (`attempt-timeout`); uploads get more time, by their size.
    pub attempt_timeout: Duration,
}

/// The default `retry-deadline`: rides out a minute or two of a flaky network or a
/// throttling store, short enough that a CI job fails while someone still watches.
pub const DEFAULT_RETRY_DEADLINE: Duration = Duration::from_secs(120);

/// The default `attempt-timeout` of a request without a large body.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The slowest upload rate an attempt is given time for: a body of n bytes gets
/// `attempt-timeout + n / MIN_UPLOAD_RATE` before it is abandoned and retried.
const MIN_UPLOAD_RATE: u64 = 256 * 1024;

/// The first retry waits up to this long (full jitter), doubling with each attempt up
/// to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The longest pause between retries of a store that has not answered yet.
const UNANSWERED_MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Exponential backoff with full jitter (the SDK's standard strategy).
fn retry_config(max_backoff: Duration) -> aws_smithy_types::retry::RetryConfig {
    aws_smithy_types::retry::RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(INITIAL_BACKOFF)
        .with_max_backoff(max_backoff)
}

/// The SDK counts attempts; the deadline is what really bounds them.
const MAX_ATTEMPTS: u32 = 64;

/// How long a store that has never answered in this run is retried when it cannot be
/// connected to (refused, unknown host, TLS failure): long enough for a network that
/// is coming up, short enough that a wrong endpoint fails while the user waits. Once
/// it answered, a connection failure is a flaky network and gets the retry deadline.
pub const UNANSWERED_DEADLINE: Duration = Duration::from_secs(8);

/// A request retried for longer than this says so ([`RetryNotice`]), and again at
/// most every [`NOTICE_EVERY`]: a short blip stays quiet, a long wait is explained.
const NOTICE_AFTER: Duration = Duration::from_secs(3);
const NOTICE_EVERY: Duration = Duration::from_secs(5);

/// When to send the checksum headers recent SDKs add; several S3-compatible stores
/// reject them, so only when an operation requires them by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumMode {
    WhenRequired,
    WhenSupported,
}

impl S3Config {
    /// Spaces defaults for a bucket in a region.
    pub fn spaces(bucket: &str, region: &str) -> Self {
        S3Config {
            bucket: bucket.to_owned(),
            region: region.to_owned(),
            endpoint: format!("https://{region}.digitaloceanspaces.com"),
            prefix: None,
            path_style: bucket.contains('.'),
            public_read: true,
            checksums: ChecksumMode::WhenRequired,
            multipart_threshold: 64 * 1024 * 1024,
            part_size: 16 * 1024 * 1024,
            parallelism: 4,
            cache_immutable: "public, max-age=31536000, immutable".to_owned(),
            cache_short: "public, max-age=60".to_owned(),
            retry_deadline: DEFAULT_RETRY_DEADLINE,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
        }
    }
}

/// Credentials, from the environment only.
pub struct Credentials {
    access_key_id: String,
    secret_access_key: Zeroizing<String>,
    session_token: Option<Zeroizing<String>>,
    /// Which variables they came from, for messages.
    pub source: &'static str,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Explicit credentials (tests, embedding applications); the CLI uses [`Credentials::from_env`].
    pub fn new(access_key_id: &str, secret_access_key: &str) -> Self {
        Credentials {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: Zeroizing::new(secret_access_key.to_owned()),
            session_token: None,
            source: "explicit",
        }
    }

    /// `SPACES_ACCESS_KEY_ID`/`SPACES_SECRET_ACCESS_KEY`, else the standard
    /// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`).
    pub fn from_env() -> Result<Self, StoreError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let (Some(id), Some(secret)) =
            (var("SPACES_ACCESS_KEY_ID"), var("SPACES_SECRET_ACCESS_KEY"))
        {
            return Ok(Credentials {
                access_key_id: id,
                secret_access_key: Zeroizing::new(secret),
                session_token: None,
                source: "SPACES_ACCESS_KEY_ID/SPACES_SECRET_ACCESS_KEY",
            });
        }
        if let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            return Ok(Credentials {
                access_key_id: id,
                secret_access_key: Zeroizing::new(secret),
                session_token: var("AWS_SESSION_TOKEN").map(Zeroizing::new),
                source: "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
            });
        }
        Err(StoreError::Backend {
            store: "s3".into(),
            message: "no credentials: set SPACES_ACCESS_KEY_ID and SPACES_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) in the environment".into(),
        })
    }
}

pub struct S3Store {
    client: aws_sdk_s3::Client,
    runtime: tokio::runtime::Runtime,
    link: Arc<Link>,
    conditional_writes: OnceLock<ConditionalWrites>,
    /// Set once any request showed the bucket exists (an answer from it, or a 404
    /// that names a missing key): a later 404 of a HEAD is a missing key, with no
    /// need to ask the bucket.
    bucket_seen: OnceLock<()>,
}

/// A request that has been retried for a while, as the store tells its caller
/// ([`S3Store::set_retry_notice`]); the CLI prints it, so a long wait is never silent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryNotice {
    /// The request: `PUT pool/main/s/speedy-app/speedy-app_1.4.0-1_amd64.deb`.
    pub request: String,
    /// What the last attempt ran into: `HTTP 503 Service Unavailable`, `connection refused`.
    pub failure: String,
    /// The attempt that just failed, from 1.
    pub attempt: u32,
    /// How much longer the request is retried before it fails.
    pub time_left: Duration,
    /// The store has not answered at all in this run: the endpoint may be wrong.
    pub never_answered: bool,
}

/// Where [`RetryNotice`]s go.
pub type RetryNoticeFn = Arc<dyn Fn(&RetryNotice) + Send + Sync>;

/// What every request of one store shares: the settings, whether the store ever
/// answered, and where retry notices go. Shared with the retry classifier of each
/// request and with the tasks that upload parts, hence its own `Arc`.
struct Link {
    config: S3Config,
    /// `describe()`, for messages.
    store: String,
    /// Any HTTP answer (an error status too) since the store was made.
    answered: AtomicBool,
    /// When the first request started: the clock of [`UNANSWERED_DEADLINE`].
    first_request: OnceLock<Instant>,
    notice: RwLock<Option<RetryNoticeFn>>,
}

/// A request that failed: the SDK's error, for the caller to tell an expected answer
/// (404, 412) from a failure, and the failure worded for the user.
struct Failed<E> {
    sdk: SdkError<E, HttpResponse>,
    error: StoreError,
}

impl<E: ProvideErrorMetadata> Failed<E> {
    fn status(&self) -> Option<u16> {
        status_of(&self.sdk)
    }

    fn code(&self) -> Option<&str> {
        self.sdk.code()
    }
}

impl<E> From<Failed<E>> for StoreError {
    fn from(failed: Failed<E>) -> Self {
        failed.error
    }
}

impl Link {
    fn answered(&self) -> bool {
        self.answered.load(Ordering::SeqCst)
    }

    /// The one path of every request: `request` gets the per-request settings (the
    /// timeouts, the retry deadline and the retry notices) and must pass them to
    /// `.customize().config_override(..)` before `.send()`; a unit test holds every
    /// request of this file to that.
    async fn send<T, E, Fut>(
        self: &Arc<Self>,
        op: &'static str,
        what: &str,
        body_size: u64,
        deadline: Duration,
        request: impl FnOnce(aws_sdk_s3::config::Builder) -> Fut,
    ) -> Result<T, Failed<E>>
    where
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + StdError + 'static,
    {
        let first = *self.first_request.get_or_init(Instant::now);
        let now = Instant::now();
        let policy = RequestPolicy {
            link: self.clone(),
            request: format!("{op} {what}"),
            started: now,
            until: now + deadline,
            attempts: AtomicU32::new(0),
            last_notice: Mutex::new(None),
        };
        match request(per_request(&self.config, body_size, policy)).await {
            Ok(output) => {
                self.answered.store(true, Ordering::SeqCst);
                Ok(output)
            }
            Err(sdk) => {
                if sdk.raw_response().is_some() {
                    self.answered.store(true, Ordering::SeqCst);
                }
                let error = describe_failure(
                    &self.store,
                    &self.config,
                    what,
                    &sdk,
                    self.answered(),
                    first.elapsed(),
                );
                Err(Failed { sdk, error })
            }
        }
    }

    fn notify(&self, notice: &RetryNotice) {
        if let Ok(slot) = self.notice.read() {
            if let Some(notify) = slot.as_ref() {
                notify(notice);
            }
        }
    }
}

/// What kind of failure ended a request, from the SDK's error types and the store's
/// status and code (never from message text, which changes between versions).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// No connection could be made: refused, unknown host, TLS handshake. `reason`
    /// is the innermost cause, for the message.
    Connect { reason: String },
    /// No answer within the attempt timeout.
    Timeout { reason: String },
    /// The connection failed during the request (reset, closed).
    Connection { reason: String },
    /// An answer came but was cut off or could not be read.
    CutOff,
    /// The store answered with an error status (a HEAD answer has no body, no code).
    Status {
        status: u16,
        code: Option<String>,
        message: Option<String>,
    },
    /// The request could not be made at all (a bug or a bad setting).
    Other,
}

fn classify<E>(error: &SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    match error {
        SdkError::DispatchFailure(failure) => match failure.as_connector_error() {
            Some(connector) => classify_connector(connector),
            None => Failure::Other,
        },
        SdkError::TimeoutError(_) => Failure::Timeout {
            reason: innermost(error),
        },
        SdkError::ResponseError(_) => Failure::CutOff,
        SdkError::ServiceError(service) => Failure::Status {
            status: service.raw().status().as_u16(),
            code: error.code().map(str::to_owned),
            message: error.message().map(str::to_owned),
        },
        _ => Failure::Other,
    }
}

/// A failure of the connector (below HTTP): connecting, waiting, or mid-request.
fn classify_connector(error: &ConnectorError) -> Failure {
    if is_connect_failure(error) {
        return Failure::Connect {
            reason: connect_reason(error),
        };
    }
    if error.is_timeout() {
        Failure::Timeout {
            reason: innermost(error),
        }
    } else {
        Failure::Connection {
            reason: innermost(error),
        }
    }
}

/// Whether no connection was made: hyper's client marks the failures of connecting
/// (TCP, DNS, TLS handshake); a refused connection is also known by its I/O kind.
fn is_connect_failure(error: &ConnectorError) -> bool {
    let mut next: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(error) = next {
        if let Some(client) = error.downcast_ref::<hyper_util::client::legacy::Error>() {
            if client.is_connect() {
                return true;
            }
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
                    | std::io::ErrorKind::AddrNotAvailable
            ) {
                return true;
            }
        }
        next = error.source();
    }
    false
}

/// "connection refused" for a refused connection, else the innermost cause.
fn connect_reason(error: &ConnectorError) -> String {
    let mut next: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(error) = next {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return "connection refused".to_owned();
            }
        }
        next = error.source();
    }
    innermost(error)
}

/// The innermost cause of an error: the most specific words for it ("Connection
/// reset by peer"), without the layers of context around it.
fn innermost(error: &(dyn StdError + 'static)) -> String {
    let mut last = error;
    while let Some(source) = last.source() {
        last = source;
    }
    last.to_string()
}

/// What went wrong with one request, in terms a user can act on. `answered`: whether
/// the store answered any request in this run; `waited`: since its first request.
fn describe_failure<E>(
    store: &str,
    config: &S3Config,
    what: &str,
    error: &SdkError<E, HttpResponse>,
    answered: bool,
    waited: Duration,
) -> StoreError
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    let deadline = config.retry_deadline.as_secs();
    let message = match classify(error) {
        Failure::Status { code: Some(code), .. } if code == "NoSuchBucket" => format!(
            "the bucket {:?} does not exist at {} (create it, or check `bucket` and `region`)",
            config.bucket, config.endpoint
        ),
        Failure::Status { status, code, .. }
            if status == 401
                || matches!(code.as_deref(), Some("InvalidAccessKeyId" | "SignatureDoesNotMatch")) =>
        {
            format!(
                "{what}: the credentials were refused ({}); check SPACES_ACCESS_KEY_ID/SPACES_SECRET_ACCESS_KEY",
                code.unwrap_or_else(|| format!("HTTP {status}"))
            )
        }
        Failure::Status { status: 403, code, .. } => format!(
            "{what}: access denied{}; the key needs read and write access to the bucket",
            code.map(|c| format!(" ({c})")).unwrap_or_default()
        ),
        Failure::Connect { reason } if !answered => format!(
            "cannot reach {}: {reason} (no answer in {} s); check --endpoint (`endpoint` in \
             [workspace.metadata.speedy.repo.spaces]) and the network",
            config.endpoint,
            waited.as_secs()
        ),
        Failure::Connect { reason } => format!(
            "{what}: cannot reach {} any more: {reason}, also when retried until the retry deadline ({deadline} s)",
            config.endpoint
        ),
        Failure::Timeout { reason } => format!(
            "{what}: {} did not answer in time, also when retried until the retry deadline ({deadline} s): {reason}",
            config.endpoint
        ),
        Failure::Connection { reason } => format!(
            "{what}: the connection to {} failed during the request, also when retried until the retry deadline ({deadline} s): {reason}",
            config.endpoint
        ),
        Failure::CutOff => format!(
            "{what}: the answer from {} was cut off, also when retried until the retry deadline ({deadline} s): {}",
            config.endpoint,
            DisplayErrorContext(error)
        ),
        Failure::Status { status, code: None, .. } => format!(
            "{what}: HTTP {status} {}, no error code (a HEAD answer has no body){}",
            reason_phrase(status),
            if status >= 500 {
                format!("; the store kept failing until the retry deadline ({deadline} s)")
            } else {
                String::new()
            }
        ),
        Failure::Status { status, code: Some(code), message } => {
            format!("{what}: HTTP {status} {code} {}", message.unwrap_or_default())
        }
        Failure::Other => format!("{what}: {}", DisplayErrorContext(error)),
    };
    StoreError::Backend {
        store: store.to_owned(),
        message,
    }
}

/// The timeouts of a request whose body is `body_size` bytes: each attempt gets
/// `attempt-timeout` plus the time to send the body at [`MIN_UPLOAD_RATE`]; all
/// attempts together get the deadline plus one attempt and one backoff, a hard cap
/// behind [`RetryDeadline`], which ends the retries with the last real failure.
fn timeouts(
    config: &S3Config,
    body_size: u64,
    deadline: Duration,
) -> aws_smithy_types::timeout::TimeoutConfig {
    let attempt = attempt_timeout(config, body_size);
    aws_smithy_types::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10).min(attempt))
        .operation_attempt_timeout(attempt)
        .operation_timeout(deadline + attempt + MAX_BACKOFF)
        .build()
}

fn attempt_timeout(config: &S3Config, body_size: u64) -> Duration {
    config.attempt_timeout + Duration::from_secs(body_size / MIN_UPLOAD_RATE)
}

/// How long to wait before retry number `attempt` (1-based) of a GET whose body
/// failed: exponential backoff with full jitter, as the SDK does for the rest.
fn backoff(attempt: u32) -> Duration {
    let ceiling = INITIAL_BACKOFF
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    ceiling.mul_f64(rand::random::<f64>())
}

/// The retry rule of one request, run after the SDK's own classifiers, which it only
/// ever vetoes: no retry once the deadline has passed, so that the SDK's retry loop
/// ends with the last failure (a 503, a reset) rather than with a bare timeout; no
/// retry of a failed connection once a store that never answered has had
/// [`UNANSWERED_DEADLINE`]; and a [`RetryNotice`] when the retries go on for a while.
/// It also notes any answer, so that "never answered" holds across the retries of a
/// request that fails in the end.
struct RequestPolicy {
    link: Arc<Link>,
    /// `GET dists/dev/InRelease`, for notices.
    request: String,
    started: Instant,
    until: Instant,
    attempts: AtomicU32,
    last_notice: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for RequestPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestPolicy")
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

impl RequestPolicy {
    /// What the attempt that just failed ran into, for the notice.
    fn attempt_failure(ctx: &InterceptorContext) -> (String, bool) {
        if let Some(response) = ctx.response() {
            let status = response.status().as_u16();
            return (format!("HTTP {status} {}", reason_phrase(status)), false);
        }
        match ctx.output_or_error() {
            Some(Err(error)) => match error.as_connector_error() {
                Some(connector) => match classify_connector(connector) {
                    Failure::Connect { reason } => (reason, true),
                    Failure::Timeout { .. } => ("no answer in time".to_owned(), false),
                    Failure::Connection { reason } => (reason, false),
                    _ => (error.to_string(), false),
                },
                None => (innermost(error), false),
            },
            _ => ("no answer".to_owned(), false),
        }
    }

    /// Says that the request is being retried, at most every [`NOTICE_EVERY`] and only
    /// once it has gone on for [`NOTICE_AFTER`].
    fn notice(&self, failure: String, attempt: u32, until: Instant, now: Instant) {
        if now.duration_since(self.started) < NOTICE_AFTER {
            return;
        }
        let Ok(mut last) = self.last_notice.lock() else {
            return;
        };
        if last.is_some_and(|at| now.duration_since(at) < NOTICE_EVERY) {
            return;
        }
        *last = Some(now);
        drop(last);
        self.link.notify(&RetryNotice {
            request: self.request.clone(),
            failure,
            attempt,
            time_left: until.saturating_duration_since(now),
            never_answered: !self.link.answered(),
        });
    }
}

impl ClassifyRetry for RequestPolicy {
    fn classify_retry(&self, _ctx: &InterceptorContext) -> RetryAction {
        RetryAction::NoActionIndicated
    }

    fn classify_retry_v2(&self, ctx: &InterceptorContext, previous: &RetryAction) -> RetryAction {
        if ctx.response().is_some() {
            self.link.answered.store(true, Ordering::SeqCst);
        }
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        if !previous.should_retry() {
            return RetryAction::NoActionIndicated;
        }
        let now = Instant::now();
        let (failure, connect_failed) = Self::attempt_failure(ctx);
        let mut until = self.until;
        if connect_failed && !self.link.answered() {
            if let Some(first) = self.link.first_request.get() {
                until = until.min(*first + UNANSWERED_DEADLINE);
            }
        }
        if now >= until {
            return RetryAction::RetryForbidden;
        }
        self.notice(failure, attempt, until, now);
        RetryAction::NoActionIndicated
    }

    fn name(&self) -> &'static str {
        "cargo-speedy retry deadline"
    }

    fn priority(&self) -> RetryClassifierPriority {
        // After every classifier of the SDK (theirs are at most a little above the
        // transient-error classifier).
        let mut priority = RetryClassifierPriority::transient_error_classifier();
        for _ in 0..50 {
            priority = RetryClassifierPriority::run_after(priority);
        }
        priority
    }
}

/// The per-request settings: its timeouts (an upload's by its `body_size`) and its
/// retry rule. Only [`Link::send`] calls it.
fn per_request(
    config: &S3Config,
    body_size: u64,
    policy: RequestPolicy,
) -> aws_sdk_s3::config::Builder {
    let deadline = policy.until.saturating_duration_since(policy.started);
    // Until the store answers, retry often: a backoff of 10 s would overshoot
    // UNANSWERED_DEADLINE, and a network coming up is noticed sooner.
    let max_backoff = if policy.link.answered() {
        MAX_BACKOFF
    } else {
        UNANSWERED_MAX_BACKOFF
    };
    aws_sdk_s3::Config::builder()
        .timeout_config(timeouts(config, body_size, deadline))
        .retry_config(retry_config(max_backoff))
        .retry_classifier(policy)
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

fn status_of<E>(error: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    error.raw_response().map(|r| r.status().as_u16())
}

/// What an S3 store sends its requests through: the I/O runtime and the HTTPS
/// client, whose TLS roots come from the system's trust store (milliseconds to read
/// and parse). Nothing in it depends on the bucket, so a command makes it while it
/// reads its settings.
pub struct S3Transport {
    runtime: tokio::runtime::Runtime,
    http_client: aws_smithy_runtime_api::client::http::SharedHttpClient,
}

impl S3Transport {
    pub fn new() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        // The system's TLS roots are read once per process, when the first connector
        // is made; made here, that happens while the settings are read.
        let _ = aws_smithy_runtime_api::client::http::HttpClient::validate_base_client_config(
            &http_client,
            &aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder::new(
                "cargo-speedy",
            ),
            &aws_smithy_types::config_bag::ConfigBag::base(),
        );
        Ok(S3Transport {
            runtime,
            http_client,
        })
    }
}

impl S3Store {
    pub fn new(config: S3Config, credentials: Credentials) -> Result<Self, StoreError> {
        let transport = S3Transport::new().map_err(|e| StoreError::Backend {
            store: config.bucket.clone(),
            message: format!("cannot start the I/O runtime: {e}"),
        })?;
        Ok(Self::with_transport(config, credentials, transport))
    }

    /// A store sending through `transport`.
    pub fn with_transport(
        config: S3Config,
        credentials: Credentials,
        transport: S3Transport,
    ) -> Self {
        let S3Transport {
            runtime,
            http_client,
        } = transport;
        let sdk_credentials = aws_credential_types::Credentials::new(
            credentials.access_key_id.clone(),
            credentials.secret_access_key.as_str(),
            credentials.session_token.as_ref().map(|t| t.to_string()),
            None,
            "cargo-speedy-environment",
        );
        let sdk_config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .endpoint_url(config.endpoint.clone())
            .force_path_style(config.path_style)
            .credentials_provider(sdk_credentials)
            .http_client(http_client)
            .request_checksum_calculation(match config.checksums {
                ChecksumMode::WhenRequired => RequestChecksumCalculation::WhenRequired,
                ChecksumMode::WhenSupported => RequestChecksumCalculation::WhenSupported,
            })
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            // Retries are bounded by the deadline (the operation timeout), not by the
            // SDK's retry quota, which is shared by every client of the process and
            // would let a burst of faults fail a publish early.
            .retry_config(retry_config(MAX_BACKOFF))
            .retry_partition(
                RetryPartition::custom("cargo-speedy")
                    .token_bucket(TokenBucket::unlimited())
                    .build(),
            )
            .timeout_config(timeouts(&config, 0, config.retry_deadline))
            .build();
        let store = describe(&config);
        S3Store {
            client: aws_sdk_s3::Client::from_conf(sdk_config),
            runtime,
            link: Arc::new(Link {
                config,
                store,
                answered: AtomicBool::new(false),
                first_request: OnceLock::new(),
                notice: RwLock::new(None),
            }),
            conditional_writes: OnceLock::new(),
            bucket_seen: OnceLock::new(),
        }
    }

    /// GETs `key` and feeds its body, chunk by chunk as it arrives, into what `start`
    /// makes afresh for each attempt; with the object's version, or `None` when
    /// missing. The SDK retries up to the headers within what is left of the
    /// deadline; a body cut off or stalled is retried here, as a whole.
    fn read_body<S>(
        &self,
        key: &str,
        start: impl Fn() -> S,
        mut feed: impl FnMut(&mut S, &[u8]),
    ) -> Result<Option<(S, String)>, StoreError> {
        check_key(key).map_err(StoreError::InvalidKey)?;
        let started = Instant::now();
        let deadline = self.deadline();
        let object_key = self.object_key(key);
        self.runtime.block_on(async {
            let mut attempt = 0u32;
            loop {
                attempt += 1;
                let remaining = deadline.saturating_sub(started.elapsed());
                let output = match self
                    .link
                    .send("GET", key, 0, remaining, |retry| {
                        self.client
                            .get_object()
                            .bucket(&self.config().bucket)
                            .key(&object_key)
                            .customize()
                            .config_override(retry)
                            .send()
                    })
                    .await
                {
                    Ok(output) => {
                        let _ = self.bucket_seen.set(());
                        output
                    }
                    Err(e) if e.status() == Some(404) && e.code() != Some("NoSuchBucket") => {
                        if e.code() == Some("NoSuchKey") {
                            let _ = self.bucket_seen.set(());
                        }
                        return Ok(None);
                    }
                    Err(e) => return Err(e.into()),
                };
                let version = output.e_tag().unwrap_or_default().to_owned();
                let size = output.content_length().unwrap_or(0).max(0) as u64;
                let timeout = attempt_timeout(self.config(), size);
                let mut body = output.body;
                let mut sink = start();
                let why = loop {
                    match tokio::time::timeout(timeout, body.try_next()).await {
                        Ok(Ok(Some(chunk))) => feed(&mut sink, &chunk),
                        Ok(Ok(None)) => return Ok(Some((sink, version))),
                        Ok(Err(e)) => {
                            break format!("the connection failed while reading the body: {e}")
                        }
                        Err(_) => {
                            break format!(
                                "no data for {} s while reading the body",
                                timeout.as_secs()
                            )
                        }
                    }
                };
                let pause = backoff(attempt);
                if started.elapsed() + pause >= deadline {
                    return Err(StoreError::Backend {
                        store: self.describe(),
                        message: format!(
                            "{key}: {why} (gave up after {attempt} attempt(s) in {} s; retry-deadline is {} s)",
                            started.elapsed().as_secs(),
                            deadline.as_secs()
                        ),
                    });
                }
                if started.elapsed() >= NOTICE_AFTER {
                    self.link.notify(&RetryNotice {
                        request: format!("GET {key}"),
                        failure: why,
                        attempt,
                        time_left: deadline.saturating_sub(started.elapsed()),
                        never_answered: false,
                    });
                }
                tokio::time::sleep(pause).await;
            }
        })
    }

    /// Where [`RetryNotice`]s go (the CLI prints them); without it, retries are silent.
    pub fn set_retry_notice(&self, notice: RetryNoticeFn) {
        if let Ok(mut slot) = self.link.notice.write() {
            *slot = Some(notice);
        }
    }

    pub fn config(&self) -> &S3Config {
        &self.link.config
    }

    fn object_key(&self, key: &str) -> String {
        match &self.config().prefix {
            Some(prefix) => format!("{prefix}/{key}"),
            None => key.to_owned(),
        }
    }

    fn acl(&self, options: &PutOptions) -> ObjectCannedAcl {
        if options.public && self.config().public_read {
            ObjectCannedAcl::PublicRead
        } else {
            ObjectCannedAcl::Private
        }
    }

    fn cache_control(&self, options: &PutOptions) -> String {
        match options.caching {
            Caching::Immutable => self.config().cache_immutable.clone(),
            Caching::Short => self.config().cache_short.clone(),
        }
    }

    /// The deadline of a request that is not a GET with its own body retries.
    fn deadline(&self) -> Duration {
        self.config().retry_deadline
    }

    /// Probes which conditional writes the store honours, leaving nothing behind:
    /// create a probe object, create it again (refused if If-None-Match works), then
    /// replace it naming a wrong version (refused if If-Match works). The result is
    /// kept for the store's lifetime. Whether to trust an earlier probe instead is the
    /// caller's decision ([`Store::assume_conditional_writes`]).
    pub fn probe_conditional_writes_afresh(&self) -> Result<ConditionalWrites, StoreError> {
        let relative = format!(".speedy/probe-{:016x}", rand::random::<u64>());
        let key = self.object_key(&relative);
        let key = &key;
        let put = |if_none_match: Option<&'static str>, if_match: Option<&'static str>| {
            self.link.send(
                "PUT",
                "probing conditional writes",
                0,
                self.deadline(),
                move |retry| {
                    self.client
                        .put_object()
                        .bucket(&self.config().bucket)
                        .key(key)
                        .set_if_none_match(if_none_match.map(str::to_owned))
                        .set_if_match(if_match.map(str::to_owned))
                        .acl(ObjectCannedAcl::Private)
                        .body(ByteStream::from_static(b"probe"))
                        .customize()
                        .config_override(retry)
                        .send()
                },
            )
        };
        let refused =
            |e: &Failed<_>| e.status() == Some(412) || e.code() == Some("PreconditionFailed");
        let unsupported = |e: &Failed<_>| matches!(e.status(), Some(400 | 501));
        let probed = self.runtime.block_on(async {
            // A 412 here means the create happened and its answer was lost: the SDK's
            // retry found the object, which only a store that honours If-None-Match
            // refuses.
            let first_refused = match put(Some("*"), None).await {
                Ok(_) => false,
                Err(e) if refused(&e) => true,
                Err(e) => return Err(StoreError::from(e)),
            };
            let create = first_refused
                || match put(Some("*"), None).await {
                    Ok(_) => false,
                    Err(e) if refused(&e) => true,
                    Err(e) if unsupported(&e) => false,
                    Err(e) => return Err(e.into()),
                };
            let replace = match put(None, Some("\"00000000000000000000000000000000\"")).await {
                Ok(_) => false,
                Err(e) if refused(&e) => true,
                Err(e) if unsupported(&e) => false,
                Err(e) => return Err(e.into()),
            };
            Ok(ConditionalWrites { create, replace })
        });
        // Best effort: a probe object left behind is private and tiny.
        let _ = self.delete(&relative);
        let probed = probed?;
        let _ = self.conditional_writes.set(probed);
        Ok(probed)
    }

    /// Lists at most one object of the bucket: whether the credentials and the bucket
    /// work at all (`doctor`).
    pub fn check_access(&self) -> Result<(), StoreError> {
        self.runtime.block_on(async {
            self.link
                .send("LIST", "listing the bucket", 0, self.deadline(), |retry| {
                    self.client
                        .list_objects_v2()
                        .bucket(&self.config().bucket)
                        .max_keys(1)
                        .customize()
                        .config_override(retry)
                        .send()
                })
                .await?;
            Ok(())
        })
    }

    /// Turns the bucket's versioning on: an overwrite or a plain DELETE then keeps the
    /// earlier version.
    pub fn enable_versioning(&self) -> Result<(), StoreError> {
        use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
        self.runtime.block_on(async {
            self.link
                .send(
                    "PUT",
                    "the bucket's versioning",
                    0,
                    self.deadline(),
                    |retry| {
                        self.client
                            .put_bucket_versioning()
                            .bucket(&self.config().bucket)
                            .versioning_configuration(
                                VersioningConfiguration::builder()
                                    .status(BucketVersioningStatus::Enabled)
                                    .build(),
                            )
                            .customize()
                            .config_override(retry)
                            .send()
                    },
                )
                .await?;
            Ok(())
        })
    }

    /// Sets the bucket's lifecycle to one rule, `id`, for the keys under `prefix`:
    /// objects expire `days` after they were written, earlier versions `days` after
    /// they were replaced, and unfinished multipart uploads after a day. Replaces
    /// the bucket's other rules (S3 sets a lifecycle as a whole).
    pub fn set_expiration_rule(&self, id: &str, prefix: &str, days: i32) -> Result<(), StoreError> {
        use aws_sdk_s3::types::{
            AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus,
            LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, NoncurrentVersionExpiration,
        };
        let invalid = |e: aws_smithy_types::error::operation::BuildError| StoreError::Backend {
            store: self.describe(),
            message: format!("the lifecycle rule: {e}"),
        };
        let rule = LifecycleRule::builder()
            .id(id)
            .filter(
                LifecycleRuleFilter::builder()
                    .prefix(self.object_key(prefix))
                    .build(),
            )
            .status(ExpirationStatus::Enabled)
            .expiration(LifecycleExpiration::builder().days(days).build())
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(days)
                    .build(),
            )
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(1)
                    .build(),
            )
            .build()
            .map_err(invalid)?;
        let lifecycle = BucketLifecycleConfiguration::builder()
            .rules(rule)
            .build()
            .map_err(invalid)?;
        self.runtime.block_on(async {
            self.link
                .send(
                    "PUT",
                    "the bucket's lifecycle",
                    0,
                    self.deadline(),
                    |retry| {
                        self.client
                            .put_bucket_lifecycle_configuration()
                            .bucket(&self.config().bucket)
                            .lifecycle_configuration(lifecycle.clone())
                            .customize()
                            .config_override(retry)
                            .send()
                    },
                )
                .await?;
            Ok(())
        })
    }

    /// Writes a small private object with a CRC32 checksum header, as
    /// `checksums = "when-supported"` would, and deletes it: whether the store accepts
    /// such headers (several S3-compatible stores reject them).
    pub fn probe_checksum_headers(&self) -> Result<ChecksumHeaders, StoreError> {
        let relative = format!("speedy-doctor-{:016x}-checksum", rand::random::<u64>());
        let key = self.object_key(&relative);
        let written =
            self.runtime.block_on(
                self.link
                    .send("PUT", &relative, 0, self.deadline(), |retry| {
                        self.client
                            .put_object()
                            .bucket(&self.config().bucket)
                            .key(&key)
                            .acl(ObjectCannedAcl::Private)
                            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32)
                            .body(ByteStream::from_static(b"checksum probe"))
                            .customize()
                            .config_override(retry)
                            .send()
                    }),
            );
        let found = match written {
            Ok(_) => ChecksumHeaders::Accepted,
            Err(e) => match e.status() {
                Some(status) => ChecksumHeaders::Rejected {
                    code: e
                        .code()
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("HTTP {status}")),
                },
                None => return Err(e.into()),
            },
        };
        let _ = self.delete(&relative);
        Ok(found)
    }

    /// Writes `body` at `key` with the `public-read` or the private ACL, whatever the
    /// store's `public_read` setting (`doctor` checks both ACLs as servers see them).
    pub fn put_with_acl(&self, key: &str, body: &[u8], public: bool) -> Result<(), StoreError> {
        check_key(key).map_err(StoreError::InvalidKey)?;
        let object_key = self.object_key(key);
        self.runtime.block_on(async {
            self.link
                .send("PUT", key, body.len() as u64, self.deadline(), |retry| {
                    self.client
                        .put_object()
                        .bucket(&self.config().bucket)
                        .key(&object_key)
                        .acl(if public {
                            ObjectCannedAcl::PublicRead
                        } else {
                            ObjectCannedAcl::Private
                        })
                        .content_type("text/plain")
                        .body(ByteStream::from(body.to_vec()))
                        .customize()
                        .config_override(retry)
                        .send()
                })
                .await?;
            Ok(())
        })
    }

    async fn put_multipart(
        &self,
        key: &str,
        path: &std::path::Path,
        size: u64,
        options: &PutOptions,
    ) -> Result<(), StoreError> {
        let object_key = self.object_key(key);
        let bucket = &self.config().bucket;
        let created = self
            .link
            .send("PUT (multipart create)", key, 0, self.deadline(), |retry| {
                self.client
                    .create_multipart_upload()
                    .bucket(bucket)
                    .key(&object_key)
                    .acl(self.acl(options))
                    .content_type(options.content_type)
                    .cache_control(self.cache_control(options))
                    .customize()
                    .config_override(retry)
                    .send()
            })
            .await?;
        let upload_id = created.upload_id().unwrap_or_default().to_owned();
        let result = self.upload_parts(&object_key, &upload_id, path, size).await;
        match result {
            Ok(parts) => {
                let completed = self
                    .link
                    .send(
                        "POST (multipart complete)",
                        key,
                        0,
                        self.deadline(),
                        |retry| {
                            self.client
                                .complete_multipart_upload()
                                .bucket(bucket)
                                .key(&object_key)
                                .upload_id(&upload_id)
                                .multipart_upload(
                                    CompletedMultipartUpload::builder()
                                        .set_parts(Some(parts))
                                        .build(),
                                )
                                .customize()
                                .config_override(retry)
                                .send()
                        },
                    )
                    .await;
                match completed {
                    Ok(_) => Ok(()),
                    // A retry after a lost answer finds the upload already completed:
                    // the object is there with all its bytes.
                    Err(e) if e.code() == Some("NoSuchUpload") => {
                        let head = self
                            .link
                            .send("HEAD", key, 0, self.deadline(), |retry| {
                                self.client
                                    .head_object()
                                    .bucket(bucket)
                                    .key(&object_key)
                                    .customize()
                                    .config_override(retry)
                                    .send()
                            })
                            .await?;
                        if head.content_length().and_then(|l| u64::try_from(l).ok()) == Some(size) {
                            Ok(())
                        } else {
                            Err(e.into())
                        }
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Err(error) => {
                // Abandoned parts are billed until aborted.
                let _ = self
                    .link
                    .send(
                        "DELETE (multipart abort)",
                        key,
                        0,
                        self.deadline(),
                        |retry| {
                            self.client
                                .abort_multipart_upload()
                                .bucket(bucket)
                                .key(&object_key)
                                .upload_id(&upload_id)
                                .customize()
                                .config_override(retry)
                                .send()
                        },
                    )
                    .await;
                Err(error)
            }
        }
    }

    async fn upload_parts(
        &self,
        object_key: &str,
        upload_id: &str,
        path: &std::path::Path,
        size: u64,
    ) -> Result<Vec<CompletedPart>, StoreError> {
        let part_size = self.config().part_size.max(5 * 1024 * 1024);
        let count = size.div_ceil(part_size);
        let limit = Arc::new(tokio::sync::Semaphore::new(
            self.config().parallelism.max(1),
        ));
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..count {
            let permit = limit
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| StoreError::Backend {
                    store: self.describe(),
                    message: e.to_string(),
                })?;
            let client = self.client.clone();
            let link = self.link.clone();
            let key = object_key.to_owned();
            let upload_id = upload_id.to_owned();
            let path = path.to_owned();
            tasks.spawn(async move {
                let _permit = permit;
                let offset = index * part_size;
                let length = part_size.min(size - offset);
                let body = ByteStream::read_from()
                    .path(&path)
                    .offset(offset)
                    .length(Length::Exact(length))
                    .build()
                    .await
                    .map_err(|e| StoreError::ReadLocal {
                        path: path.clone(),
                        cause: std::io::Error::other(e),
                    })?;
                let part_number = i32::try_from(index + 1).unwrap_or(i32::MAX);
                let what = format!("{key} (part {part_number})");
                let deadline = link.config.retry_deadline;
                let uploaded = link
                    .send("PUT", &what, length, deadline, |retry| {
                        client
                            .upload_part()
                            .bucket(&link.config.bucket)
                            .key(&key)
                            .upload_id(upload_id)
                            .part_number(part_number)
                            .body(body)
                            .customize()
                            .config_override(retry)
                            .send()
                    })
                    .await?;
                Ok::<_, StoreError>(
                    CompletedPart::builder()
                        .part_number(part_number)
                        .set_e_tag(uploaded.e_tag().map(str::to_owned))
                        .build(),
                )
            });
        }
        let mut parts = Vec::with_capacity(count as usize);
        while let Some(joined) = tasks.join_next().await {
            let part = joined.map_err(|e| StoreError::Backend {
                store: self.describe(),
                message: e.to_string(),
            })??;
            parts.push(part);
        }
        parts.sort_by_key(|p| p.part_number());
        Ok(parts)
    }
}

/// Whether the store accepts the checksum headers recent SDKs add
/// ([`S3Store::probe_checksum_headers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChecksumHeaders {
    Accepted,
    /// Refused, with the store's error code (or `HTTP <status>`).
    Rejected {
        code: String,
    },
}

/// `s3://bucket/prefix (endpoint)`: where the store is, never credentials.
fn describe(config: &S3Config) -> String {
    let prefix = config
        .prefix
        .as_deref()
        .map(|p| format!("/{p}"))
        .unwrap_or_default();
    format!("s3://{}{prefix} ({})", config.bucket, config.endpoint)
}

/// The precondition of a conditional PUT.
#[derive(Debug, Clone, Copy)]
enum Condition<'a> {
    /// `If-None-Match: *`: create only.
    IfAbsent,
    /// `If-Match: <etag>`: replace only that version.
    IfMatch(&'a str),
}

/// What a single PUT got: the object's new version, or the failure, for the caller to
/// tell "precondition failed" from one.
type PutAnswer = Result<
    aws_sdk_s3::operation::put_object::PutObjectOutput,
    Failed<aws_sdk_s3::operation::put_object::PutObjectError>,
>;

impl S3Store {
    /// One conditional PUT, after checking that the store honours the condition (from
    /// what the caller told the store, or else a probe). The outer error is ours (bad
    /// key, a file that cannot be read, unsupported); the inner result is the
    /// request's, for the caller to tell "precondition failed" from a failure.
    ///
    /// A file body streams from disk as in `put`: the SDK re-opens the file for each
    /// retry, so a retried attempt sends the whole body again. A file above the
    /// multipart threshold is `ConditionalWritesUnsupported`: a multipart upload's
    /// completion is not known to honour the condition on every S3-compatible store
    /// (docs/ARCHITECTURE.md, "Store contract").
    fn conditional_put(
        &self,
        key: &str,
        body: Body<'_>,
        options: &PutOptions,
        condition: Condition<'_>,
    ) -> Result<PutAnswer, StoreError> {
        check_key(key).map_err(StoreError::InvalidKey)?;
        let unsupported = || StoreError::ConditionalWritesUnsupported {
            store: self.describe(),
        };
        let size = body_size(body)?;
        if matches!(body, Body::File(_)) && size > self.config().multipart_threshold {
            return Err(unsupported());
        }
        let support = match self.conditional_writes.get() {
            Some(known) => *known,
            None => self.probe_conditional_writes_afresh()?,
        };
        let supported = match condition {
            Condition::IfAbsent => support.create,
            Condition::IfMatch(_) => support.replace,
        };
        if !supported {
            return Err(unsupported());
        }
        self.runtime
            .block_on(self.single_put(key, body, size, options, Some(condition)))
    }

    /// One PUT of the whole body (`size` bytes), with its precondition if any. The
    /// outer error is a file that cannot be read; the inner result is the request's.
    async fn single_put(
        &self,
        key: &str,
        body: Body<'_>,
        size: u64,
        options: &PutOptions,
        condition: Option<Condition<'_>>,
    ) -> Result<PutAnswer, StoreError> {
        let (if_none_match, if_match) = match condition {
            None => (None, None),
            Some(Condition::IfAbsent) => (Some("*".to_owned()), None),
            Some(Condition::IfMatch(version)) => (None, Some(version.to_owned())),
        };
        let stream = match body {
            Body::Bytes(bytes) => ByteStream::from(bytes.to_vec()),
            Body::File(path) => file_stream(path).await?,
        };
        let object_key = self.object_key(key);
        Ok(self
            .link
            .send("PUT", key, size, self.deadline(), |retry| {
                self.client
                    .put_object()
                    .bucket(&self.config().bucket)
                    .key(&object_key)
                    .set_if_none_match(if_none_match)
                    .set_if_match(if_match)
                    .acl(self.acl(options))
                    .content_type(options.content_type)
                    .cache_control(self.cache_control(options))
                    .body(stream)
                    .customize()
                    .config_override(retry)
                    .send()
            })
            .await)
    }
}

/// The size of a body to upload.
fn body_size(body: Body<'_>) -> Result<u64, StoreError> {
    match body {
        Body::Bytes(bytes) => Ok(bytes.len() as u64),
        Body::File(path) => std::fs::metadata(path)
            .map(|metadata| metadata.len())
            .map_err(|cause| StoreError::ReadLocal {
                path: path.to_owned(),
                cause,
            }),
    }
}

/// A file's bytes as an upload body, streamed from disk; the SDK opens the file
/// afresh for each attempt, so a retry sends the whole file again.
async fn file_stream(path: &std::path::Path) -> Result<ByteStream, StoreError> {
    ByteStream::from_path(path)
        .await
        .map_err(|e| StoreError::ReadLocal {
            path: path.to_owned(),
            cause: std::io::Error::other(e),
        })
}

impl Store for S3Store {
    fn public_acl(&self) -> Option<&'static str> {
        Some(if self.config().public_read {
            "public-read"
        } else {
            "private"
        })
    }

    fn set_acl(&self, key: &str, options: &PutOptions) -> Result<(), StoreError> {
        check_key(key).map_err(StoreError::InvalidKey)?;
        let object_key = self.object_key(key);
        self.runtime.block_on(async {
            self.link
                .send("PUT (acl)", key, 0, self.deadline(), |retry| {
                    self.client
                        .put_object_acl()
                        .bucket(&self.config().bucket)
                        .key(&object_key)
                        .acl(self.acl(options))
                        .customize()
                        .config_override(retry)
                        .send()
                })
                .await?;
            Ok(())
        })
    }

    fn describe(&self) -> String {
        self.link.store.clone()
    }

    fn probe_conditional_writes(&self) -> Result<Option<ConditionalWrites>, StoreError> {
        self.probe_conditional_writes_afresh().map(Some)
    }

    fn assume_conditional_writes(&self, found: ConditionalWrites) {
        let _ = self.conditional_writes.set(found);
    }

    fn get_versioned(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self
            .read_body(key, Vec::new, |bytes, chunk| bytes.extend_from_slice(chunk))?
            .map(|(bytes, version)| Versioned { bytes, version }))
    }

    fn digest(&self, key: &str) -> Result<Option<ObjectDigest>, StoreError> {
        use sha2::Digest;
        let read = self.read_body(
            key,
            || (sha2::Sha256::new(), 0u64),
            |(hasher, size), chunk| {
                hasher.update(chunk);
                *size += chunk.len() as u64;
            },
        )?;
        Ok(read.map(|((hasher, size), _)| ObjectDigest {
            size,
            sha256: format!("{:x}", hasher.finalize()),
        }))
    }

    fn put_if_version(
        &self,
        key: &str,
        body: &[u8],
        version: &str,
        options: &PutOptions,
    ) -> Result<Option<String>, StoreError> {
        match self.conditional_put(key, Body::Bytes(body), options, Condition::IfMatch(version))? {
            Ok(output) => Ok(Some(output.e_tag().unwrap_or_default().to_owned())),
            // Changed since it was read (412), gone (404), or another conditional write
            // to the same key in flight (409).
            Err(e)
                if matches!(e.status(), Some(404 | 409 | 412))
                    || e.code() == Some("PreconditionFailed") =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        check_key(key).map_err(StoreError::InvalidKey)?;
        let object_key = self.object_key(key);
        let bucket = &self.config().bucket;
        self.runtime.block_on(async {
            let headed = self
                .link
                .send("HEAD", key, 0, self.deadline(), |retry| {
                    self.client
                        .head_object()
                        .bucket(bucket)
                        .key(&object_key)
                        .customize()
                        .config_override(retry)
                        .send()
                })
                .await;
            match headed {
                Ok(output) => Ok(Some(ObjectMeta {
                    key: key.to_owned(),
                    size: output
                        .content_length()
                        .and_then(|l| u64::try_from(l).ok())
                        .unwrap_or(0),
                    modified: output
                        .last_modified()
                        .and_then(|t| u64::try_from(t.secs()).ok()),
                })),
                Err(e) if e.status() == Some(404) => {
                    // HEAD has no body to tell a missing key from a missing bucket: the
                    // bucket is asked once per store, not after every 404, which would
                    // double the cost of checking each new pool file
                    // (docs/ARCHITECTURE.md, "Publishing at the cost of what changed").
                    if self.bucket_seen.get().is_none() {
                        let what = format!("{key} was not found; checking the bucket");
                        self.link
                            .send("HEAD", &what, 0, self.deadline(), |retry| {
                                self.client
                                    .head_bucket()
                                    .bucket(bucket)
                                    .customize()
                                    .config_override(retry)
                                    .send()
                            })
                            .await?;
                        let _ = self.bucket_seen.set(());
                    }
                    Ok(None)
                }
                Err(e) if e.code().is_none() && matches!(e.status(), Some(400 | 401 | 403)) => {
                    // A HEAD answer has no body, so no error code to explain it; a
                    // listing of the bucket fails the same way and says why.
                    let listed = self
                        .link
                        .send("LIST", key, 0, self.deadline(), |retry| {
                            self.client
                                .list_objects_v2()
                                .bucket(bucket)
                                .max_keys(1)
                                .customize()
                                .config_override(retry)
                                .send()
                        })
                        .await;
                    match listed {
                        Err(listing) => Err(listing.into()),
                        Ok(_) => Err(e.into()),
                    }
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    fn put(&self, key: &str, body: Body<'_>, options: &PutOptions) -> Result<(), StoreError> {
        check_key(key).map_err(StoreError::InvalidKey)?;
        self.runtime.block_on(async {
            let size = body_size(body)?;
            match body {
                Body::File(path) if size > self.config().multipart_threshold => {
                    self.put_multipart(key, path, size, options).await?
                }
                _ => {
                    self.single_put(key, body, size, options, None).await??;
                }
            }
            let _ = self.bucket_seen.set(());
            Ok(())
        })
    }

    fn put_if_absent(
        &self,
        key: &str,
        body: Body<'_>,
        options: &PutOptions,
    ) -> Result<Option<String>, StoreError> {
        match self.conditional_put(key, body, options, Condition::IfAbsent)? {
            Ok(output) => {
                let _ = self.bucket_seen.set(());
                Ok(Some(output.e_tag().unwrap_or_default().to_owned()))
            }
            // Exists (412), also when a retry finds what the attempt whose answer was
            // lost created (the caller reads back when it must know), or another
            // conditional write to the same key in flight (409).
            Err(e)
                if matches!(e.status(), Some(409 | 412))
                    || e.code() == Some("PreconditionFailed") =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let full_prefix = self.object_key(prefix);
        let strip = self
            .config()
            .prefix
            .as_ref()
            .map(|p| p.len() + 1)
            .unwrap_or(0);
        // What a retry notice names: the prefix listed.
        let listed = if prefix.is_empty() {
            "the bucket"
        } else {
            prefix
        };
        self.runtime.block_on(async {
            let mut found = Vec::new();
            let mut continuation: Option<String> = None;
            loop {
                let page = self
                    .link
                    .send("LIST", listed, 0, self.deadline(), |retry| {
                        self.client
                            .list_objects_v2()
                            .bucket(&self.config().bucket)
                            .prefix(&full_prefix)
                            .set_continuation_token(continuation.take())
                            .customize()
                            .config_override(retry)
                            .send()
                    })
                    .await?;
                for object in page.contents() {
                    let Some(key) = object.key() else { continue };
                    let Some(relative) = key.get(strip..) else {
                        continue;
                    };
                    found.push(ObjectMeta {
                        key: relative.to_owned(),
                        size: object
                            .size()
                            .and_then(|s| u64::try_from(s).ok())
                            .unwrap_or(0),
                        modified: object
                            .last_modified()
                            .and_then(|t| u64::try_from(t.secs()).ok()),
                    });
                }
                match page.next_continuation_token() {
                    Some(token) if page.is_truncated() == Some(true) => {
                        continuation = Some(token.to_owned())
                    }
                    _ => break,
                }
            }
            found.sort_by(|a, b| a.key.cmp(&b.key));
            let _ = self.bucket_seen.set(());
            Ok(found)
        })
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key).map_err(StoreError::InvalidKey)?;
        let object_key = self.object_key(key);
        self.runtime.block_on(async {
            self.link
                .send("DELETE", key, 0, self.deadline(), |retry| {
                    self.client
                        .delete_object()
                        .bucket(&self.config().bucket)
                        .key(&object_key)
                        .customize()
                        .config_override(retry)
                        .send()
                })
                .await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    type Error = SdkError<GetObjectError, HttpResponse>;

    fn dispatch(error: ConnectorError) -> Error {
        SdkError::dispatch_failure(error)
    }

    fn answered(status: u16, code: Option<&str>) -> Error {
        let mut meta = ErrorMetadata::builder().message("the store says why");
        if let Some(code) = code {
            meta = meta.code(code);
        }
        SdkError::service_error(
            GetObjectError::generic(meta.build()),
            HttpResponse::new(status.try_into().unwrap(), SdkBody::empty()),
        )
    }

    fn io(kind: std::io::ErrorKind) -> Box<dyn StdError + Send + Sync> {
        Box::new(std::io::Error::from(kind))
    }

    #[test]
    fn failures_are_classified_by_type_and_code() {
        assert_eq!(
            classify(&dispatch(ConnectorError::io(io(
                std::io::ErrorKind::ConnectionRefused
            )))),
            Failure::Connect {
                reason: "connection refused".into()
            }
        );
        assert!(matches!(
            classify(&dispatch(ConnectorError::io(io(
                std::io::ErrorKind::ConnectionReset
            )))),
            Failure::Connection { .. }
        ));
        assert!(matches!(
            classify(&dispatch(ConnectorError::timeout(io(
                std::io::ErrorKind::TimedOut
            )))),
            Failure::Timeout { .. }
        ));
        assert!(matches!(
            classify(&Error::timeout_error(io(std::io::ErrorKind::TimedOut))),
            Failure::Timeout { .. }
        ));
        assert_eq!(
            classify(&Error::response_error(
                io(std::io::ErrorKind::UnexpectedEof),
                HttpResponse::new(200.try_into().unwrap(), SdkBody::empty())
            )),
            Failure::CutOff
        );
        assert_eq!(
            classify(&answered(412, Some("PreconditionFailed"))),
            Failure::Status {
                status: 412,
                code: Some("PreconditionFailed".into()),
                message: Some("the store says why".into())
            }
        );
        assert!(matches!(
            classify(&answered(500, None)),
            Failure::Status {
                status: 500,
                code: None,
                ..
            }
        ));
    }

    fn message(error: &Error, answered: bool) -> String {
        let config = S3Config::spaces("bucket", "nyc3");
        describe_failure(
            "s3://bucket",
            &config,
            "dists/dev/InRelease",
            error,
            answered,
            Duration::from_secs(8),
        )
        .to_string()
    }

    #[test]
    fn messages_say_what_to_do() {
        let refused = dispatch(ConnectorError::io(io(
            std::io::ErrorKind::ConnectionRefused,
        )));
        let never = message(&refused, false);
        assert!(
            never.contains("cannot reach https://nyc3.digitaloceanspaces.com: connection refused")
                && never.contains("--endpoint")
                && never.contains("network"),
            "{never}"
        );
        let later = message(&refused, true);
        assert!(later.contains("retry deadline"), "{later}");
        let reset = message(
            &dispatch(ConnectorError::io(io(std::io::ErrorKind::ConnectionReset))),
            false,
        );
        assert!(!reset.contains("cannot reach"), "{reset}");
        assert!(message(&answered(404, Some("NoSuchBucket")), true).contains("does not exist"));
        assert!(message(&answered(403, Some("SignatureDoesNotMatch")), true)
            .contains("credentials were refused"));
        assert!(message(&answered(403, Some("AccessDenied")), true).contains("access denied"));
        assert!(message(&answered(500, None), true).contains("no error code"));
    }

    /// Every request of this file goes through [`Link::send`], which applies the
    /// deadline and words the failure: a `.send()` must take the settings `send` made
    /// (`config_override(retry)`), and nothing else may build those settings.
    #[test]
    fn every_request_goes_through_the_one_path() {
        let source = include_str!("s3.rs");
        let code = &source[..source.find("#[cfg(test)]").unwrap()];
        let flat: String = code
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
            .collect();
        let sends = flat.matches(".send()").count();
        let through = flat
            .matches(".customize().config_override(retry).send()")
            .count();
        assert!(sends > 10, "{sends}");
        assert_eq!(
            sends, through,
            "a request bypasses Link::send: every `.send()` in src/store/s3.rs must be \
             `.customize().config_override(retry).send()` inside a `self.link.send(..)` closure"
        );
        assert_eq!(
            flat.matches("per_request(").count(),
            2,
            "per_request is defined once and called only by Link::send"
        );
        assert_eq!(flat.matches("|retry|").count(), through);
    }

    /// An endpoint that refuses every connection fails within seconds, not after the
    /// retry deadline, and says so; the retries in between are reported.
    #[test]
    fn a_store_that_never_answers_fails_fast() {
        let mut config = S3Config::spaces("bucket", "us-east-1");
        config.endpoint = "http://127.0.0.1:1".into();
        config.path_style = true;
        let store = S3Store::new(config, Credentials::new("id", "secret")).unwrap();
        let notices = Arc::new(Mutex::new(Vec::new()));
        let seen = notices.clone();
        store.set_retry_notice(Arc::new(move |n: &RetryNotice| {
            seen.lock().unwrap().push(n.clone())
        }));
        let started = Instant::now();
        let error = store.get("dists/dev/InRelease").unwrap_err().to_string();
        let first = started.elapsed();
        assert!(
            error.contains("cannot reach http://127.0.0.1:1: connection refused"),
            "{error}"
        );
        assert!(
            first < UNANSWERED_DEADLINE + Duration::from_secs(3),
            "{first:?}"
        );
        assert!(first >= UNANSWERED_DEADLINE, "retried first: {first:?}");
        // A second request gives up at its first refusal.
        let again = Instant::now();
        assert!(store.get(".speedy/lock").is_err());
        assert!(
            again.elapsed() < Duration::from_secs(2),
            "{:?}",
            again.elapsed()
        );
        let notices = notices.lock().unwrap();
        assert!(!notices.is_empty(), "no retry notice");
        let notice = &notices[0];
        assert_eq!(notice.request, "GET dists/dev/InRelease");
        assert_eq!(notice.failure, "connection refused");
        assert!(notice.never_answered && notice.attempt > 1, "{notice:?}");
        assert!(notice.time_left <= UNANSWERED_DEADLINE, "{notice:?}");
    }
}
