//! The DigitalOcean CDN in front of a Spaces bucket, through the DigitalOcean API:
//! purging the cached copies of objects a publish replaced, and reading an endpoint's
//! cache TTL for `doctor` (docs/ARCHITECTURE.md, "CDN purge"). No repository policy:
//! which paths to purge is decided by the caller.

use std::fmt;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The environment variable holding the API token: the name DigitalOcean's Terraform
/// provider and client libraries use.
pub const TOKEN_VARIABLE: &str = "DIGITALOCEAN_TOKEN";
/// doctl's name for the same token, read when [`TOKEN_VARIABLE`] is unset.
pub const DOCTL_TOKEN_VARIABLE: &str = "DIGITALOCEAN_ACCESS_TOKEN";
/// Overrides the API's base URL: for tests (a stand-in on 127.0.0.1) and proxies.
pub const API_VARIABLE: &str = "SPEEDY_DIGITALOCEAN_API";
pub const DEFAULT_API: &str = "https://api.digitalocean.com";

/// The API takes at most this many files per purge request.
pub const MAX_FILES_PER_REQUEST: usize = 50;
/// "CDN endpoints have a rate limit of 5 requests per 10 seconds."
const REQUESTS_PER_WINDOW: usize = 5;
const REQUEST_WINDOW: Duration = Duration::from_secs(10);
/// "There is a rate limit of 50 files per 20 seconds that can be purged."
const FILES_PER_WINDOW: usize = 50;
const FILES_WINDOW: Duration = Duration::from_secs(20);
/// How often one batch is sent again after a 429, and the longest wait honoured.
const RATE_LIMITED_RETRIES: usize = 3;
const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(60);
/// When a 429 says nothing about when to come back: one request window.
const DEFAULT_RETRY_AFTER: Duration = REQUEST_WINDOW;

#[derive(Debug, thiserror::Error)]
pub enum CdnError {
    // Never the token itself: only which variable is wrong.
    #[error("${variable} is set but is not a usable DigitalOcean API token (empty, or with characters an HTTP header cannot carry)")]
    BadToken { variable: &'static str },
    #[error("${API_VARIABLE}: {value:?} is not an http(s) URL (it overrides {DEFAULT_API}, for tests and proxies)")]
    BadApiUrl { value: String },
    #[error("{method} {url}: HTTP {status}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        message: String,
    },
    #[error("{method} {url}: {reason}")]
    Request {
        method: &'static str,
        url: String,
        reason: String,
    },
}

/// A DigitalOcean API token. It only ever goes into the Authorization header: its
/// Debug form is redacted and no error message contains it.
#[derive(Clone)]
pub struct ApiToken(Zeroizing<String>);

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(redacted)")
    }
}

impl ApiToken {
    /// Surrounding whitespace is dropped (a secret pasted with its newline).
    pub fn new(value: &str, variable: &'static str) -> Result<Self, CdnError> {
        let value = value.trim();
        if value.is_empty() || !value.chars().all(|c| c.is_ascii_graphic()) {
            return Err(CdnError::BadToken { variable });
        }
        Ok(ApiToken(Zeroizing::new(value.to_owned())))
    }

    /// `$DIGITALOCEAN_TOKEN`, else `$DIGITALOCEAN_ACCESS_TOKEN`; `None` when neither
    /// is set. Empty counts as unset: a CI secret that does not exist expands to "".
    pub fn from_env() -> Result<Option<Self>, CdnError> {
        for variable in [TOKEN_VARIABLE, DOCTL_TOKEN_VARIABLE] {
            if let Some(value) = std::env::var_os(variable).filter(|v| !v.is_empty()) {
                let value = value
                    .into_string()
                    .map_err(|_| CdnError::BadToken { variable })?;
                return Self::new(&Zeroizing::new(value), variable).map(Some);
            }
        }
        Ok(None)
    }

    fn bearer(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("Bearer {}", self.0.as_str()))
    }
}

/// The API's base URL: `$SPEEDY_DIGITALOCEAN_API`, else the real API.
pub fn api_base_from_env() -> Result<String, CdnError> {
    match std::env::var(API_VARIABLE) {
        Err(std::env::VarError::NotPresent) => Ok(DEFAULT_API.to_owned()),
        Err(std::env::VarError::NotUnicode(value)) => Err(CdnError::BadApiUrl {
            value: value.to_string_lossy().into_owned(),
        }),
        Ok(value) => {
            let url = value.trim_end_matches('/');
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            if !scheme_ok || url.contains(char::is_whitespace) || url.ends_with(':') {
                return Err(CdnError::BadApiUrl { value });
            }
            Ok(url.to_owned())
        }
    }
}

/// Whether an id looks like a CDN endpoint id: the UUID `doctl compute cdn list` shows.
pub fn check_endpoint_id(id: &str) -> Result<(), String> {
    let groups: Vec<&str> = id.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if lengths == [8, 4, 4, 4, 12]
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
    {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not a CDN endpoint id: the UUID that `doctl compute cdn list` shows, like \"19f06b6a-3ace-4315-b086-499a0e521b76\""
        ))
    }
}

/// What `GET /v2/cdn/endpoints/{id}` says about an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// How long the edge caches an object, in seconds.
    pub ttl: u64,
    /// The bucket's host name, e.g. `speedy-apt.nyc3.digitaloceanspaces.com`.
    pub origin: String,
}

/// Time as the purge sees it: injectable, so the pacing is tested without sleeping.
pub trait Pacer {
    /// Time since some fixed instant.
    fn now(&self) -> Duration;
    fn sleep(&self, duration: Duration);
}

/// The real clock.
pub struct WallClock {
    start: Instant,
}

impl Default for WallClock {
    fn default() -> Self {
        WallClock {
            start: Instant::now(),
        }
    }
}

impl Pacer for WallClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// The API's documented limits, applied before each request: at most 5 requests per
/// 10 s to an endpoint and 50 purged files per 20 s. Pure: it is told the time.
#[derive(Debug, Default, Clone)]
pub struct RateLimit {
    /// (when, how many files) of each request sent.
    sent: Vec<(Duration, usize)>,
}

impl RateLimit {
    /// How long to wait at `now` before a request that purges `files` files.
    pub fn delay(&self, now: Duration, files: usize) -> Duration {
        let mut at = now;
        loop {
            let recent: Vec<Duration> = self
                .sent
                .iter()
                .filter(|(sent, _)| *sent + REQUEST_WINDOW > at)
                .map(|(sent, _)| *sent)
                .collect();
            let in_window: Vec<&(Duration, usize)> = self
                .sent
                .iter()
                .filter(|(sent, _)| *sent + FILES_WINDOW > at)
                .collect();
            let purged: usize = in_window.iter().map(|(_, n)| n).sum();
            let mut next = None;
            if recent.len() >= REQUESTS_PER_WINDOW {
                // The oldest of the window leaves it first.
                next = recent.iter().min().map(|oldest| *oldest + REQUEST_WINDOW);
            }
            if purged > 0 && purged + files > FILES_PER_WINDOW {
                let frees = in_window.iter().map(|(sent, _)| *sent + FILES_WINDOW).min();
                next = next.max(frees);
            }
            match next {
                Some(later) if later > at => at = later,
                _ => return at - now,
            }
        }
    }

    pub fn record(&mut self, at: Duration, files: usize) {
        self.sent.push((at, files));
    }
}

/// What a purge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeOutcome {
    pub requests: usize,
    /// Time spent waiting for the rate limits.
    pub waited: Duration,
}

/// A client of the DigitalOcean API's CDN endpoints.
pub struct CdnApi {
    base: String,
    token: ApiToken,
    agent: ureq::Agent,
}

impl fmt::Debug for CdnApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CdnApi").field("base", &self.base).finish()
    }
}

impl CdnApi {
    pub fn new(base: &str, token: ApiToken) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        CdnApi {
            base: base.trim_end_matches('/').to_owned(),
            token,
            agent,
        }
    }

    fn endpoint_url(&self, id: &str) -> String {
        format!("{}/v2/cdn/endpoints/{id}", self.base)
    }

    /// One request with the token: the answer's status, its Retry-After and its body.
    fn send(
        &self,
        method: &'static str,
        url: &str,
        body: Option<&[u8]>,
    ) -> Result<Answer, CdnError> {
        let failed = |reason: String| CdnError::Request {
            method,
            url: url.to_owned(),
            reason,
        };
        let bearer = self.token.bearer();
        let sent = match body {
            None => self
                .agent
                .get(url)
                .header("Authorization", bearer.as_str())
                .header("Accept", "application/json")
                .call(),
            Some(body) => self
                .agent
                .delete(url)
                .header("Authorization", bearer.as_str())
                .header("Content-Type", "application/json")
                .force_send_body()
                .send(body),
        };
        let mut response = sent.map_err(|e| failed(e.to_string()))?;
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response
            .body_mut()
            .read_to_vec()
            .map_err(|e| failed(e.to_string()))?;
        let status = response.status().as_u16();
        if status == 429 || (200..300).contains(&status) {
            return Ok(Answer {
                status,
                retry_after,
                body,
            });
        }
        Err(status_error(method, url, status, &body))
    }

    /// `GET /v2/cdn/endpoints/{id}`.
    pub fn endpoint(&self, id: &str) -> Result<Endpoint, CdnError> {
        let url = self.endpoint_url(id);
        let answer = self.send("GET", &url, None)?;
        if answer.status == 429 {
            return Err(status_error("GET", &url, answer.status, &answer.body));
        }
        let failed = |reason: String| CdnError::Request {
            method: "GET",
            url: url.clone(),
            reason,
        };
        let json: serde_json::Value = serde_json::from_slice(&answer.body)
            .map_err(|e| failed(format!("the answer is not JSON: {e}")))?;
        let endpoint = &json["endpoint"];
        let ttl = endpoint["ttl"]
            .as_u64()
            .ok_or_else(|| failed("the answer has no endpoint.ttl".into()))?;
        Ok(Endpoint {
            ttl,
            origin: endpoint["origin"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// `DELETE /v2/cdn/endpoints/{id}/cache` for `files` (paths relative to the
    /// origin), at most 50 a request, paced by the API's rate limits; a 429 is sent
    /// again after its Retry-After. Stops at the first other failure.
    pub fn purge(
        &self,
        id: &str,
        files: &[String],
        pacer: &dyn Pacer,
    ) -> Result<PurgeOutcome, CdnError> {
        let url = format!("{}/cache", self.endpoint_url(id));
        let mut limit = RateLimit::default();
        let mut outcome = PurgeOutcome::default();
        for batch in files.chunks(MAX_FILES_PER_REQUEST) {
            let body = serde_json::json!({ "files": batch }).to_string();
            let mut rate_limited = 0;
            loop {
                let delay = limit.delay(pacer.now(), batch.len());
                if !delay.is_zero() {
                    pacer.sleep(delay);
                    outcome.waited += delay;
                }
                limit.record(pacer.now(), batch.len());
                outcome.requests += 1;
                let answer = self.send("DELETE", &url, Some(body.as_bytes()))?;
                if answer.status != 429 {
                    break;
                }
                if rate_limited == RATE_LIMITED_RETRIES {
                    return Err(status_error("DELETE", &url, answer.status, &answer.body));
                }
                rate_limited += 1;
                let wait = answer
                    .retry_after
                    .unwrap_or(DEFAULT_RETRY_AFTER)
                    .min(LONGEST_RETRY_AFTER);
                pacer.sleep(wait);
                outcome.waited += wait;
            }
        }
        Ok(outcome)
    }
}

/// A successful or rate-limited answer.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

/// An error for an HTTP status, with the API's own `message` when it sent one.
fn status_error(method: &'static str, url: &str, status: u16, body: &[u8]) -> CdnError {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|json| json["message"].as_str().map(str::to_owned))
        .unwrap_or_default();
    // The API's message is for people; keep it to one short line.
    let message: String = message
        .chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    CdnError::Status {
        method,
        url: url.to_owned(),
        status,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn small_purges_go_out_at_once() {
        let mut limit = RateLimit::default();
        for i in 0..5 {
            assert_eq!(limit.delay(secs(i), 1), Duration::ZERO);
            limit.record(secs(i), 1);
        }
        // The sixth request within 10 s waits for the first to leave the window.
        assert_eq!(limit.delay(secs(5), 1), secs(5));
        assert_eq!(limit.delay(secs(12), 1), Duration::ZERO);
    }

    #[test]
    fn at_most_fifty_files_per_twenty_seconds() {
        let mut limit = RateLimit::default();
        assert_eq!(limit.delay(secs(0), 50), Duration::ZERO);
        limit.record(secs(0), 50);
        assert_eq!(limit.delay(secs(1), 1), secs(19));
        assert_eq!(limit.delay(secs(20), 50), Duration::ZERO);
        limit.record(secs(20), 30);
        // 30 in the window: 20 more fit, 21 wait.
        assert_eq!(limit.delay(secs(21), 20), Duration::ZERO);
        assert_eq!(limit.delay(secs(21), 21), secs(19));
    }

    #[test]
    fn both_limits_together() {
        let mut limit = RateLimit::default();
        // Five one-file requests at 0..4 s, then one at 5 s: the request limit.
        for i in 0..5 {
            limit.record(secs(i), 1);
        }
        assert_eq!(limit.delay(secs(5), 40), secs(5));
        limit.record(secs(10), 40);
        // 45 files in the last 20 s: 10 more wait until four of the one-file requests
        // have left the files window (at 24 s).
        assert_eq!(limit.delay(secs(11), 10), secs(13));
    }

    /// A clock that only advances when slept on.
    struct FakeClock(std::cell::Cell<Duration>, std::cell::RefCell<Vec<Duration>>);

    impl Pacer for FakeClock {
        fn now(&self) -> Duration {
            self.0.get()
        }
        fn sleep(&self, d: Duration) {
            self.1.borrow_mut().push(d);
            self.0.set(self.0.get() + d);
        }
    }

    #[test]
    fn a_purge_that_cannot_connect_fails_without_the_token() {
        let token = ApiToken::new("dop_v1_secret-token", TOKEN_VARIABLE).unwrap();
        assert_eq!(format!("{token:?}"), "ApiToken(redacted)");
        // Port 9 (discard) on 127.0.0.1 has no listener here: the connection is refused.
        let api = CdnApi::new("http://127.0.0.1:9", token);
        let clock = FakeClock(Default::default(), Default::default());
        let error = api
            .purge(
                "19f06b6a-3ace-4315-b086-499a0e521b76",
                &["dists/dev/InRelease".to_owned()],
                &clock,
            )
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("DELETE http://127.0.0.1:9/v2/cdn/endpoints/"),
            "{error}"
        );
        assert!(!error.contains("secret-token"), "{error}");
        assert!(format!("{api:?}").find("secret").is_none());
    }

    #[test]
    fn tokens_and_ids_are_checked() {
        assert!(ApiToken::new("  dop_v1_abc\n", TOKEN_VARIABLE).is_ok());
        for bad in ["", "  ", "a b", "tok\u{e9}n"] {
            let error = ApiToken::new(bad, TOKEN_VARIABLE).unwrap_err().to_string();
            assert!(error.contains("$DIGITALOCEAN_TOKEN"), "{error}");
        }
        assert!(check_endpoint_id("19f06b6a-3ace-4315-b086-499a0e521b76").is_ok());
        for bad in [
            "",
            "19f06b6a",
            "19f06b6a-3ace-4315-b086-499a0e521b7g",
            "../x",
        ] {
            assert!(check_endpoint_id(bad).is_err(), "{bad}");
        }
    }
}
