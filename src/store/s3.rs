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

use super::{check_key, Body, Caching, ObjectMeta, PutOptions, Store, StoreError, Versioned};
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ObjectCannedAcl};
use aws_smithy_runtime::client::retries::{RetryPartition, TokenBucket};
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority,
};
use aws_smithy_types::byte_stream::Length;
use std::sync::Arc;
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

/// The SDK counts attempts; the deadline is what really bounds them.
const MAX_ATTEMPTS: u32 = 64;

/// Where the last probe of conditional writes is recorded in the bucket, so that a
/// publish costs one GET for it rather than four requests
/// (docs/ARCHITECTURE.md, "Publishing at the cost of what changed").
const PROBE_RECORD_KEY: &str = ".speedy/conditional-writes.json";

/// How long a recorded probe is trusted before the store is probed again.
const PROBE_RECORD_TTL_SECONDS: u64 = 7 * 24 * 60 * 60;

/// A probe's result as recorded in the bucket.
#[derive(serde::Serialize, serde::Deserialize)]
struct ProbeRecord {
    #[serde(flatten)]
    found: ConditionalWrites,
    /// Unix seconds.
    probed_at: u64,
}

/// Now, in unix seconds (the store layer may not use `crate::clock`:
/// docs/ARCHITECTURE.md, "Layers").
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

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

/// Which conditional writes the store honours, found by probing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConditionalWrites {
    /// `If-None-Match: *` on PUT: create only if absent (the publish lock).
    pub create: bool,
    /// `If-Match: <etag>` on PUT: replace only if unchanged (renewing and taking over
    /// a lock lease).
    pub replace: bool,
}

pub struct S3Store {
    client: aws_sdk_s3::Client,
    runtime: tokio::runtime::Runtime,
    config: S3Config,
    conditional_writes: std::sync::OnceLock<ConditionalWrites>,
    /// Set once any request showed the bucket exists (an answer from it, or a 404
    /// that names a missing key): a later 404 of a HEAD is a missing key, with no
    /// need to ask the bucket.
    bucket_seen: std::sync::OnceLock<()>,
}

/// What went wrong with one request, in terms a user can act on.
fn describe_failure<E>(
    store: &str,
    config: &S3Config,
    what: &str,
    error: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = error.raw_response().map(|r| r.status().as_u16());
    let code = error.code().unwrap_or("");
    let message = match (status, code) {
        (_, "NoSuchBucket") => format!("the bucket {:?} does not exist at {} (create it, or check `bucket` and `region`)", config.bucket, config.endpoint),
        (_, "InvalidAccessKeyId" | "SignatureDoesNotMatch") | (Some(401), _) => format!(
            "{what}: the credentials were refused ({code}); check SPACES_ACCESS_KEY_ID/SPACES_SECRET_ACCESS_KEY"
        ),
        (Some(403), _) => format!(
            "{what}: access denied{}; the key needs read and write access to the bucket",
            if code.is_empty() { String::new() } else { format!(" ({code})") }
        ),
        _ if matches!(error, SdkError::ResponseError(_)) => format!(
            "{what}: the answer from {} was cut off, also when retried until the retry deadline ({} s): {}",
            config.endpoint,
            config.retry_deadline.as_secs(),
            DisplayErrorContext(error)
        ),
        (None, _) => match error {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                // The context repeats itself in Debug form after the readable part.
                let text = DisplayErrorContext(error).to_string();
                let readable = text.split(" (DispatchFailure").next().unwrap_or(&text).to_owned();
                let connect_failed = text.contains("client error (Connect)")
                    || text.contains("Connection refused")
                    || text.contains("dns error");
                if connect_failed {
                    format!("cannot reach {}: {readable}", config.endpoint)
                } else if matches!(error, SdkError::TimeoutError(_))
                    || matches!(error, SdkError::DispatchFailure(d) if d.is_timeout())
                {
                    format!(
                        "{what}: {} did not answer in time, also when retried until the retry deadline ({} s): {readable}",
                        config.endpoint,
                        config.retry_deadline.as_secs()
                    )
                } else {
                    format!(
                        "{what}: the connection to {} failed during the request, also when retried until the retry deadline ({} s): {readable}",
                        config.endpoint,
                        config.retry_deadline.as_secs()
                    )
                }
            }
            _ => format!("{what}: {}", DisplayErrorContext(error)),
        },
        (Some(status), "") => format!(
            "{what}: HTTP {status} {}, no error code (a HEAD answer has no body){}",
            reason_phrase(status),
            if status >= 500 {
                format!("; the store kept failing until the retry deadline ({} s)", config.retry_deadline.as_secs())
            } else {
                String::new()
            }
        ),
        (Some(status), _) => format!("{what}: HTTP {status} {code} {}", error.message().unwrap_or("")),
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

/// Forbids further retries of one request once its deadline has passed, so that the
/// SDK's retry loop ends with the last failure (a 503, a reset) rather than with a
/// bare timeout. Runs after the SDK's own classifiers and only ever vetoes them.
#[derive(Debug)]
struct RetryDeadline {
    until: Instant,
}

impl ClassifyRetry for RetryDeadline {
    fn classify_retry(&self, _ctx: &InterceptorContext) -> RetryAction {
        RetryAction::NoActionIndicated
    }

    fn classify_retry_v2(&self, _ctx: &InterceptorContext, previous: &RetryAction) -> RetryAction {
        if previous.should_retry() && Instant::now() >= self.until {
            RetryAction::RetryForbidden
        } else {
            RetryAction::NoActionIndicated
        }
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

/// The per-request settings: its timeouts (an upload's by its `body_size`) and a
/// retry deadline `deadline` from now.
fn per_request(
    config: &S3Config,
    body_size: u64,
    deadline: Duration,
) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::Config::builder()
        .timeout_config(timeouts(config, body_size, deadline))
        .retry_classifier(RetryDeadline {
            until: Instant::now() + deadline,
        })
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

impl S3Store {
    pub fn new(config: S3Config, credentials: Credentials) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend {
                store: config.bucket.clone(),
                message: format!("cannot start the I/O runtime: {e}"),
            })?;
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
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
            .retry_config(
                aws_smithy_types::retry::RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(INITIAL_BACKOFF)
                    .with_max_backoff(MAX_BACKOFF),
            )
            .retry_partition(
                RetryPartition::custom("cargo-speedy")
                    .token_bucket(TokenBucket::unlimited())
                    .build(),
            )
            .timeout_config(timeouts(&config, 0, config.retry_deadline))
            .build();
        Ok(S3Store {
            client: aws_sdk_s3::Client::from_conf(sdk_config),
            runtime,
            config,
            conditional_writes: std::sync::OnceLock::new(),
            bucket_seen: std::sync::OnceLock::new(),
        })
    }

    pub fn config(&self) -> &S3Config {
        &self.config
    }

    fn object_key(&self, key: &str) -> String {
        match &self.config.prefix {
            Some(prefix) => format!("{prefix}/{key}"),
            None => key.to_owned(),
        }
    }

    fn acl(&self, options: &PutOptions) -> ObjectCannedAcl {
        if options.public && self.config.public_read {
            ObjectCannedAcl::PublicRead
        } else {
            ObjectCannedAcl::Private
        }
    }

    fn cache_control(&self, options: &PutOptions) -> String {
        match options.caching {
            Caching::Immutable => self.config.cache_immutable.clone(),
            Caching::Short => self.config.cache_short.clone(),
        }
    }

    /// Which conditional writes the store honours: what this store found before, or
    /// the probe recorded in the bucket within the last week, or else a new probe
    /// (`probe_conditional_writes_afresh`).
    pub fn probe_conditional_writes(&self) -> Result<ConditionalWrites, StoreError> {
        if let Some(known) = self.conditional_writes.get() {
            return Ok(*known);
        }
        // A store that cannot be read cannot be probed either: its error is the
        // answer. A record that does not parse, or is stale, is no answer: probe again.
        let recorded = self
            .get(PROBE_RECORD_KEY)?
            .and_then(|bytes| serde_json::from_slice::<ProbeRecord>(&bytes).ok())
            .filter(|record| {
                let now = unix_now();
                record.probed_at <= now && now - record.probed_at < PROBE_RECORD_TTL_SECONDS
            });
        if let Some(record) = recorded {
            return Ok(*self.conditional_writes.get_or_init(|| record.found));
        }
        let probed = self.probe_conditional_writes_afresh()?;
        let record = ProbeRecord {
            found: probed,
            probed_at: unix_now(),
        };
        if let Ok(bytes) = serde_json::to_vec(&record) {
            // Only saves the next publish its probe: a failure costs nothing more.
            let _ = self.put(
                PROBE_RECORD_KEY,
                Body::Bytes(&bytes),
                &PutOptions {
                    content_type: "application/json",
                    caching: Caching::Short,
                    public: false,
                },
            );
        }
        Ok(probed)
    }

    /// Probes which conditional writes the store honours, leaving nothing behind
    /// (`doctor`): create a probe object, create it again (refused if If-None-Match
    /// works), then replace it naming a wrong version (refused if If-Match works).
    /// The result is kept for the store's lifetime.
    pub fn probe_conditional_writes_afresh(&self) -> Result<ConditionalWrites, StoreError> {
        let key = self.object_key(&format!(".speedy/probe-{:016x}", rand::random::<u64>()));
        let put = |if_none_match: Option<&'static str>, if_match: Option<&'static str>| {
            self.client
                .put_object()
                .bucket(&self.config.bucket)
                .key(&key)
                .set_if_none_match(if_none_match.map(str::to_owned))
                .set_if_match(if_match.map(str::to_owned))
                .acl(ObjectCannedAcl::Private)
                .body(ByteStream::from_static(b"probe"))
                .customize()
                .config_override(per_request(&self.config, 0, self.config.retry_deadline))
                .send()
        };
        let refused = |e: &SdkError<_, _>| {
            status_of(e) == Some(412) || ProvideErrorMetadata::code(e) == Some("PreconditionFailed")
        };
        let store = self.describe();
        let failure = |e: &SdkError<_, _>| {
            describe_failure(&store, &self.config, "probing conditional writes", e)
        };
        let probed = self.runtime.block_on(async {
            // A 412 here means the create happened and its answer was lost: the SDK's
            // retry found the object, which only a store that honours If-None-Match
            // refuses.
            let first_refused = match put(Some("*"), None).await {
                Ok(_) => false,
                Err(e) if refused(&e) => true,
                Err(e) => return Err(failure(&e)),
            };
            let create = first_refused
                || match put(Some("*"), None).await {
                    Ok(_) => false,
                    Err(e) if refused(&e) => true,
                    Err(e) if matches!(status_of(&e), Some(400 | 501)) => false,
                    Err(e) => return Err(failure(&e)),
                };
            let replace = match put(None, Some("\"00000000000000000000000000000000\"")).await {
                Ok(_) => false,
                Err(e) if refused(&e) => true,
                Err(e) if matches!(status_of(&e), Some(400 | 501)) => false,
                Err(e) => return Err(failure(&e)),
            };
            Ok(ConditionalWrites { create, replace })
        });
        let _ = self.runtime.block_on(
            self.client
                .delete_object()
                .bucket(&self.config.bucket)
                .key(&key)
                .send(),
        );
        let probed = probed?;
        let _ = self.conditional_writes.set(probed);
        Ok(probed)
    }

    async fn put_multipart(
        &self,
        key: &str,
        path: &std::path::Path,
        size: u64,
        options: &PutOptions,
    ) -> Result<(), StoreError> {
        let store = self.describe();
        let object_key = self.object_key(key);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.config.bucket)
            .key(&object_key)
            .acl(self.acl(options))
            .content_type(options.content_type)
            .cache_control(self.cache_control(options))
            .customize()
            .config_override(per_request(&self.config, 0, self.config.retry_deadline))
            .send()
            .await
            .map_err(|e| describe_failure(&store, &self.config, key, &e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_owned();
        let result = self.upload_parts(&object_key, &upload_id, path, size).await;
        match result {
            Ok(parts) => {
                let completed = self
                    .client
                    .complete_multipart_upload()
                    .bucket(&self.config.bucket)
                    .key(&object_key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .customize()
                    .config_override(per_request(&self.config, 0, self.config.retry_deadline))
                    .send()
                    .await;
                match completed {
                    Ok(_) => Ok(()),
                    // A retry after a lost answer finds the upload already completed:
                    // the object is there with all its bytes.
                    Err(e) if e.code() == Some("NoSuchUpload") => {
                        let head = self
                            .client
                            .head_object()
                            .bucket(&self.config.bucket)
                            .key(&object_key)
                            .send()
                            .await
                            .map_err(|e| describe_failure(&store, &self.config, key, &e))?;
                        if head.content_length().and_then(|l| u64::try_from(l).ok()) == Some(size) {
                            Ok(())
                        } else {
                            Err(describe_failure(&store, &self.config, key, &e))
                        }
                    }
                    Err(e) => Err(describe_failure(&store, &self.config, key, &e)),
                }
            }
            Err(error) => {
                // Abandoned parts are billed until aborted.
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.config.bucket)
                    .key(&object_key)
                    .upload_id(&upload_id)
                    .send()
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
        let part_size = self.config.part_size.max(5 * 1024 * 1024);
        let count = size.div_ceil(part_size);
        let limit = Arc::new(tokio::sync::Semaphore::new(self.config.parallelism.max(1)));
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
            let bucket = self.config.bucket.clone();
            let key = object_key.to_owned();
            let upload_id = upload_id.to_owned();
            let path = path.to_owned();
            let store = self.describe();
            let config = self.config.clone();
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
                        source: std::io::Error::other(e),
                    })?;
                let part_number = i32::try_from(index + 1).unwrap_or(i32::MAX);
                let uploaded = client
                    .upload_part()
                    .bucket(bucket)
                    .key(&key)
                    .upload_id(upload_id)
                    .part_number(part_number)
                    .body(body)
                    .customize()
                    .config_override(per_request(&config, length, config.retry_deadline))
                    .send()
                    .await
                    .map_err(|e| describe_failure(&store, &config, &key, &e))?;
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

/// The precondition of a conditional PUT.
#[derive(Debug, Clone, Copy)]
enum Condition<'a> {
    /// `If-None-Match: *`: create only.
    IfAbsent,
    /// `If-Match: <etag>`: replace only that version.
    IfMatch(&'a str),
}

impl S3Store {
    /// One conditional PUT, after checking that the store honours the condition. The
    /// outer error is ours (bad key, unsupported); the inner result is the request's,
    /// for the caller to tell "precondition failed" from a failure.
    #[allow(clippy::type_complexity)]
    fn conditional_put(
        &self,
        key: &str,
        body: &[u8],
        options: &PutOptions,
        condition: Condition<'_>,
    ) -> Result<
        Result<
            aws_sdk_s3::operation::put_object::PutObjectOutput,
            SdkError<
                aws_sdk_s3::operation::put_object::PutObjectError,
                aws_sdk_s3::config::http::HttpResponse,
            >,
        >,
        StoreError,
    > {
        check_key(key).map_err(StoreError::InvalidKey)?;
        let support = self.probe_conditional_writes()?;
        let supported = match condition {
            Condition::IfAbsent => support.create,
            Condition::IfMatch(_) => support.replace,
        };
        if !supported {
            return Err(StoreError::ConditionalWritesUnsupported {
                store: self.describe(),
            });
        }
        let (if_none_match, if_match) = match condition {
            Condition::IfAbsent => (Some("*".to_owned()), None),
            Condition::IfMatch(version) => (None, Some(version.to_owned())),
        };
        Ok(self.runtime.block_on(
            self.client
                .put_object()
                .bucket(&self.config.bucket)
                .key(self.object_key(key))
                .set_if_none_match(if_none_match)
                .set_if_match(if_match)
                .acl(self.acl(options))
                .content_type(options.content_type)
                .cache_control(self.cache_control(options))
                .body(ByteStream::from(body.to_vec()))
                .customize()
                .config_override(per_request(
                    &self.config,
                    body.len() as u64,
                    self.config.retry_deadline,
                ))
                .send(),
        ))
    }
}

impl Store for S3Store {
    fn describe(&self) -> String {
        let prefix = self
            .config
            .prefix
            .as_deref()
            .map(|p| format!("/{p}"))
            .unwrap_or_default();
        format!(
            "s3://{}{prefix} ({})",
            self.config.bucket, self.config.endpoint
        )
    }

    fn get_versioned(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        check_key(key).map_err(StoreError::InvalidKey)?;
        let store = self.describe();
        let started = Instant::now();
        let deadline = self.config.retry_deadline;
        self.runtime.block_on(async {
            let mut attempt = 0u32;
            loop {
                attempt += 1;
                // The SDK retries up to the headers within what is left of the deadline;
                // the body is read here, and a body cut off is retried as a whole.
                let remaining = deadline.saturating_sub(started.elapsed());
                let output = match self
                    .client
                    .get_object()
                    .bucket(&self.config.bucket)
                    .key(self.object_key(key))
                    .customize()
                    .config_override(per_request(&self.config, 0, remaining))
                    .send()
                    .await
                {
                    Ok(output) => {
                        let _ = self.bucket_seen.set(());
                        output
                    }
                    Err(e) if status_of(&e) == Some(404) && e.code() != Some("NoSuchBucket") => {
                        if e.code() == Some("NoSuchKey") {
                            let _ = self.bucket_seen.set(());
                        }
                        return Ok(None);
                    }
                    Err(e) => return Err(describe_failure(&store, &self.config, key, &e)),
                };
                let version = output.e_tag().unwrap_or_default().to_owned();
                let size = output.content_length().unwrap_or(0).max(0) as u64;
                let read = tokio::time::timeout(
                    attempt_timeout(&self.config, size),
                    output.body.collect(),
                )
                .await;
                let why = match read {
                    Ok(Ok(bytes)) => {
                        return Ok(Some(Versioned {
                            bytes: bytes.into_bytes().to_vec(),
                            version,
                        }))
                    }
                    Ok(Err(e)) => format!("the connection failed while reading the body: {e}"),
                    Err(_) => format!(
                        "no data for {} s while reading the body",
                        attempt_timeout(&self.config, size).as_secs()
                    ),
                };
                let pause = backoff(attempt);
                if started.elapsed() + pause >= deadline {
                    return Err(StoreError::Backend {
                        store: store.clone(),
                        message: format!(
                            "{key}: {why} (gave up after {attempt} attempt(s) in {} s; retry-deadline is {} s)",
                            started.elapsed().as_secs(),
                            deadline.as_secs()
                        ),
                    });
                }
                tokio::time::sleep(pause).await;
            }
        })
    }

    fn put_if_version(
        &self,
        key: &str,
        body: &[u8],
        version: &str,
        options: &PutOptions,
    ) -> Result<Option<String>, StoreError> {
        let store = self.describe();
        match self.conditional_put(key, body, options, Condition::IfMatch(version))? {
            Ok(output) => Ok(Some(output.e_tag().unwrap_or_default().to_owned())),
            // Changed since it was read (412), gone (404), or another conditional write
            // to the same key in flight (409).
            Err(e)
                if matches!(status_of(&e), Some(404 | 409 | 412))
                    || e.code() == Some("PreconditionFailed") =>
            {
                Ok(None)
            }
            Err(e) => Err(describe_failure(&store, &self.config, key, &e)),
        }
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        check_key(key).map_err(StoreError::InvalidKey)?;
        let store = self.describe();
        self.runtime.block_on(async {
            match self
                .client
                .head_object()
                .bucket(&self.config.bucket)
                .key(self.object_key(key))
                .customize()
                .config_override(per_request(&self.config, 0, self.config.retry_deadline))
                .send()
                .await
            {
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
                Err(e) if status_of(&e) == Some(404) => {
                    // HEAD has no body to tell a missing key from a missing bucket: the
                    // bucket is asked once per store, not after every 404, which would
                    // double the cost of checking each new pool file
                    // (docs/ARCHITECTURE.md, "Publishing at the cost of what changed").
                    if self.bucket_seen.get().is_none() {
                        self.client
                            .head_bucket()
                            .bucket(&self.config.bucket)
                            .customize()
                            .config_override(per_request(
                                &self.config,
                                0,
                                self.config.retry_deadline,
                            ))
                            .send()
                            .await
                            .map_err(|e| {
                                describe_failure(
                                    &store,
                                    &self.config,
                                    &format!("{key} was not found; checking the bucket"),
                                    &e,
                                )
                            })?;
                        let _ = self.bucket_seen.set(());
                    }
                    Ok(None)
                }
                Err(e) if e.code().is_none() && matches!(status_of(&e), Some(400 | 401 | 403)) => {
                    // A HEAD answer has no body, so no error code to explain it; a
                    // listing of the bucket fails the same way and says why.
                    match self
                        .client
                        .list_objects_v2()
                        .bucket(&self.config.bucket)
                        .max_keys(1)
                        .send()
                        .await
                    {
                        Err(listing) => Err(describe_failure(&store, &self.config, key, &listing)),
                        Ok(_) => Err(describe_failure(&store, &self.config, key, &e)),
                    }
                }
                Err(e) => Err(describe_failure(&store, &self.config, key, &e)),
            }
        })
    }

    fn put(&self, key: &str, body: Body<'_>, options: &PutOptions) -> Result<(), StoreError> {
        check_key(key).map_err(StoreError::InvalidKey)?;
        let store = self.describe();
        self.runtime.block_on(async {
            let (stream, size) = match body {
                Body::Bytes(bytes) => (ByteStream::from(bytes.to_vec()), bytes.len() as u64),
                Body::File(path) => {
                    let size = std::fs::metadata(path)
                        .map_err(|source| StoreError::ReadLocal {
                            path: path.to_owned(),
                            source,
                        })?
                        .len();
                    if size > self.config.multipart_threshold {
                        return self.put_multipart(key, path, size, options).await;
                    }
                    let stream =
                        ByteStream::from_path(path)
                            .await
                            .map_err(|e| StoreError::ReadLocal {
                                path: path.to_owned(),
                                source: std::io::Error::other(e),
                            })?;
                    (stream, size)
                }
            };
            self.client
                .put_object()
                .bucket(&self.config.bucket)
                .key(self.object_key(key))
                .acl(self.acl(options))
                .content_type(options.content_type)
                .cache_control(self.cache_control(options))
                .body(stream)
                .customize()
                .config_override(per_request(&self.config, size, self.config.retry_deadline))
                .send()
                .await
                .map_err(|e| describe_failure(&store, &self.config, key, &e))?;
            let _ = self.bucket_seen.set(());
            Ok(())
        })
    }

    fn put_if_absent(
        &self,
        key: &str,
        body: &[u8],
        options: &PutOptions,
    ) -> Result<bool, StoreError> {
        let store = self.describe();
        match self.conditional_put(key, body, options, Condition::IfAbsent)? {
            Ok(_) => {
                let _ = self.bucket_seen.set(());
                Ok(true)
            }
            // Exists (412), or another conditional write to the same key in flight (409).
            Err(e)
                if matches!(status_of(&e), Some(409 | 412))
                    || e.code() == Some("PreconditionFailed") =>
            {
                Ok(false)
            }
            Err(e) => Err(describe_failure(&store, &self.config, key, &e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let store = self.describe();
        let full_prefix = self.object_key(prefix);
        let strip = self
            .config
            .prefix
            .as_ref()
            .map(|p| p.len() + 1)
            .unwrap_or(0);
        self.runtime.block_on(async {
            let mut found = Vec::new();
            let mut continuation: Option<String> = None;
            loop {
                let page = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.config.bucket)
                    .prefix(&full_prefix)
                    .set_continuation_token(continuation.take())
                    .customize()
                    .config_override(per_request(&self.config, 0, self.config.retry_deadline))
                    .send()
                    .await
                    .map_err(|e| describe_failure(&store, &self.config, "listing", &e))?;
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
        let store = self.describe();
        self.runtime.block_on(async {
            self.client
                .delete_object()
                .bucket(&self.config.bucket)
                .key(self.object_key(key))
                .customize()
                .config_override(per_request(&self.config, 0, self.config.retry_deadline))
                .send()
                .await
                .map_err(|e| describe_failure(&store, &self.config, key, &e))?;
            Ok(())
        })
    }
}

/// The outcome of one `cargo speedy doctor` check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    /// Works, but not as well as it could; publishing still works.
    Warn,
    Fail,
    Skip,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DoctorCheck {
    pub check: &'static str,
    pub status: CheckStatus,
    pub detail: String,
}

/// An anonymous GET, as apt on a server does it: (status, body).
fn anonymous_get(url: &str) -> Result<(u16, Vec<u8>), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(15)))
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}

impl S3Store {
    /// Probes the bucket the way publishing will use it; changes nothing but short-lived
    /// probe objects, which it deletes.
    pub fn doctor(&self, public_url: &str) -> Vec<DoctorCheck> {
        let mut checks = Vec::new();
        let store = self.describe();
        let listed = self.runtime.block_on(
            self.client
                .list_objects_v2()
                .bucket(&self.config.bucket)
                .max_keys(1)
                .send(),
        );
        match listed {
            Ok(_) => checks.push(DoctorCheck {
                check: "credentials and bucket",
                status: CheckStatus::Pass,
                detail: format!("listed {store}"),
            }),
            Err(e) => {
                let detail =
                    describe_failure(&store, &self.config, "listing the bucket", &e).to_string();
                checks.push(DoctorCheck {
                    check: "credentials and bucket",
                    status: CheckStatus::Fail,
                    detail,
                });
                for check in [
                    "conditional writes",
                    "checksum headers",
                    "anonymous public read",
                    "private objects",
                ] {
                    checks.push(DoctorCheck {
                        check,
                        status: CheckStatus::Skip,
                        detail: "needs the bucket".into(),
                    });
                }
                return checks;
            }
        }
        checks.push(match self.probe_conditional_writes_afresh() {
            Ok(ConditionalWrites { create: true, replace: true }) => DoctorCheck {
                check: "conditional writes",
                status: CheckStatus::Pass,
                detail: "If-None-Match and If-Match honoured: publishes take a lock, and a lock whose lease expired is taken over safely".into(),
            },
            Ok(ConditionalWrites { create: true, replace: false }) => DoctorCheck {
                check: "conditional writes",
                status: CheckStatus::Warn,
                detail: "If-None-Match honoured, If-Match not: publishes take a lock, but a lock left by a dead publisher on another host needs --break-lock".into(),
            },
            Ok(_) => DoctorCheck {
                check: "conditional writes",
                status: CheckStatus::Warn,
                detail: "not honoured: publishes run without a lock, re-reading InRelease before and after the switch".into(),
            },
            Err(e) => DoctorCheck { check: "conditional writes", status: CheckStatus::Fail, detail: e.to_string() },
        });

        let probe = |suffix: &str| {
            self.object_key(&format!(
                "speedy-doctor-{:016x}-{suffix}",
                rand::random::<u64>()
            ))
        };
        let checksum_key = probe("checksum");
        let with_checksum = self.runtime.block_on(
            self.client
                .put_object()
                .bucket(&self.config.bucket)
                .key(&checksum_key)
                .acl(ObjectCannedAcl::Private)
                .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32)
                .body(ByteStream::from_static(b"checksum probe"))
                .send(),
        );
        checks.push(match with_checksum {
            Ok(_) => DoctorCheck {
                check: "checksum headers",
                status: CheckStatus::Pass,
                detail: "accepted (checksums = \"when-supported\" would work)".into(),
            },
            Err(e) => DoctorCheck {
                check: "checksum headers",
                status: CheckStatus::Warn,
                detail: format!(
                    "rejected ({}): keep checksums = \"when-required\"",
                    e.code().unwrap_or("error")
                ),
            },
        });

        let public_key = probe("public.txt");
        let private_key = probe("private.txt");
        let put = |key: &str, acl: ObjectCannedAcl, what: &str| {
            self.runtime
                .block_on(
                    self.client
                        .put_object()
                        .bucket(&self.config.bucket)
                        .key(key)
                        .acl(acl)
                        .content_type("text/plain")
                        .body(ByteStream::from_static(b"speedy doctor probe"))
                        .send(),
                )
                .map(|_| ())
                .map_err(|e| describe_failure(&store, &self.config, what, &e).to_string())
        };
        let relative = |key: &str| {
            key.strip_prefix(&format!("{}/", self.config.prefix.as_deref().unwrap_or("")))
                .unwrap_or(key)
                .to_owned()
        };
        checks.push(match put(&public_key, ObjectCannedAcl::PublicRead, "writing a public-read object") {
            Err(detail) => DoctorCheck { check: "anonymous public read", status: CheckStatus::Fail, detail },
            Ok(_) => {
                let url = format!("{public_url}{}", relative(&public_key));
                match anonymous_get(&url) {
                    Ok((200, body)) if body == b"speedy doctor probe" => DoctorCheck { check: "anonymous public read", status: CheckStatus::Pass, detail: format!("GET {url}: 200") },
                    Ok((status, _)) => DoctorCheck {
                        check: "anonymous public read",
                        status: CheckStatus::Fail,
                        detail: format!("GET {url}: HTTP {status}; servers could not read the repository (check public-url and the ACL)"),
                    },
                    Err(e) => DoctorCheck { check: "anonymous public read", status: CheckStatus::Fail, detail: format!("GET {url}: {e}") },
                }
            }
        });
        checks.push(match put(&private_key, ObjectCannedAcl::Private, "writing a private object") {
            Err(detail) => DoctorCheck { check: "private objects", status: CheckStatus::Fail, detail },
            Ok(_) => {
                let url = format!("{public_url}{}", relative(&private_key));
                match anonymous_get(&url) {
                    Ok((200, _)) => DoctorCheck {
                        check: "private objects",
                        status: CheckStatus::Fail,
                        detail: format!("GET {url}: 200: private objects (the publish lock) are readable by anyone"),
                    },
                    Ok((status, _)) => DoctorCheck { check: "private objects", status: CheckStatus::Pass, detail: format!("GET {url}: HTTP {status}") },
                    Err(e) => DoctorCheck { check: "private objects", status: CheckStatus::Warn, detail: format!("GET {url}: {e}") },
                }
            }
        });
        for key in [checksum_key, public_key, private_key] {
            let _ = self.runtime.block_on(
                self.client
                    .delete_object()
                    .bucket(&self.config.bucket)
                    .key(key)
                    .send(),
            );
        }
        checks
    }
}
