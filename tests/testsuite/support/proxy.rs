//! A fault-injecting HTTP proxy between the S3 store and moto, on 127.0.0.1: the
//! network faults of issue 12 from outside the process, so the SDK's own retries,
//! timeouts and connection handling are what is tested. std only.
//!
//! One upstream connection per request; bytes are forwarded verbatim, and only enough
//! of the HTTP/1.1 framing is parsed (the head, Content-Length, Transfer-Encoding:
//! chunked, which covers aws-chunked bodies too) to find where each request and answer
//! ends, so the client's keep-alive connections work. Faults are chosen by rules
//! (method, key, which occurrence) or at random from a seed; stopped on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers 503 SlowDown (an S3 XML error) without forwarding.
    SlowDown,
    /// Answers 500 InternalError without forwarding.
    InternalError,
    /// Forwards, then closes the connection without answering: the write happened,
    /// the answer is lost.
    DropAnswer,
    /// Forwards, sends the head and part of the body, then resets the connection (a
    /// request without an answer body is reset before it is forwarded).
    ResetMidBody,
    /// Forwards, sends the head with the full Content-Length and part of the body, then
    /// closes (a request without an answer body loses its answer instead).
    TruncateBody,
    /// Reads the request and never answers, until the client gives up.
    Stall,
}

/// Which requests a rule faults: `method` and an object key (the path after the
/// bucket, without the query; a trailing `*` matches any rest, and `""` is the bucket
/// itself), and the `nth` such request (1-based).
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: &'static str,
    pub key: String,
    /// Only requests whose query contains this (e.g. `prefix=pool` for a listing).
    pub query: Option<&'static str>,
    pub nth: usize,
    pub fault: Fault,
}

impl Rule {
    /// Every `method` request of `key` from the first to the `count`th: a fault that
    /// outlasts any retry deadline.
    pub fn every(method: &'static str, key: &str, count: usize, fault: Fault) -> Vec<Self> {
        (1..=count)
            .map(|nth| Rule {
                method,
                key: key.to_owned(),
                query: None,
                nth,
                fault,
            })
            .collect()
    }

    /// The first `method` request of `key`.
    pub fn first(method: &'static str, key: &str, fault: Fault) -> Self {
        Rule {
            method,
            key: key.to_owned(),
            query: None,
            nth: 1,
            fault,
        }
    }
}

/// A request the proxy saw, and what it did to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub key: String,
    /// The query string (`list-type=2&prefix=pool/` for a listing of the pool).
    pub query: String,
    pub fault: Option<Fault>,
}

struct Random {
    state: u64,
    /// Faulted requests per million.
    per_million: u64,
    faults: Vec<Fault>,
}

impl Random {
    /// splitmix64: deterministic from the seed, good enough for choosing faults.
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

struct Plan {
    rules: Vec<(Rule, usize)>,
    random: Option<Random>,
    seen: Vec<Seen>,
}

pub struct FaultProxy {
    pub port: u16,
    stop: Arc<AtomicBool>,
    plan: Arc<Mutex<Plan>>,
    faulted: Arc<AtomicUsize>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy to `upstream` (a port on 127.0.0.1) that faults the requests `rules` name.
    pub fn start(upstream: u16, rules: Vec<Rule>) -> Self {
        Self::start_with(upstream, rules, None)
    }

    /// A proxy that faults `percent` of all requests at random, choosing among `faults`,
    /// deterministically from `seed` (for one sequence of requests).
    pub fn random(upstream: u16, seed: u64, percent: f64, faults: &[Fault]) -> Self {
        Self::start_with(
            upstream,
            Vec::new(),
            Some(Random {
                state: seed,
                per_million: (percent * 10_000.0) as u64,
                faults: faults.to_vec(),
            }),
        )
    }

    fn start_with(upstream: u16, rules: Vec<Rule>, random: Option<Random>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let plan = Arc::new(Mutex::new(Plan {
            rules: rules.into_iter().map(|r| (r, 0)).collect(),
            random,
            seen: Vec::new(),
        }));
        let faulted = Arc::new(AtomicUsize::new(0));
        let accept = {
            let stop = stop.clone();
            let plan = plan.clone();
            let faulted = faulted.clone();
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let plan = plan.clone();
                    let stop = stop.clone();
                    let faulted = faulted.clone();
                    std::thread::spawn(move || {
                        let _ = serve(client, upstream, &plan, &stop, &faulted);
                    });
                }
            })
        };
        FaultProxy {
            port,
            stop,
            plan,
            faulted,
            accept: Some(accept),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request so far, in the order they arrived.
    pub fn seen(&self) -> Vec<Seen> {
        self.plan.lock().expect("plan").seen.clone()
    }

    /// How many requests were faulted.
    pub fn faulted(&self) -> usize {
        self.faulted.load(Ordering::SeqCst)
    }

    /// Whether every rule has fired.
    pub fn all_rules_fired(&self) -> bool {
        self.plan
            .lock()
            .expect("plan")
            .rules
            .iter()
            .all(|(rule, count)| *count >= rule.nth)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// One HTTP message head: the start line, the header lines, and the raw bytes.
struct Head {
    raw: Vec<u8>,
    start: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    fn content_length(&self) -> Option<usize> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }
}

/// Reads a head up to the blank line; `None` at a clean end of the connection.
fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut raw = Vec::new();
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return if raw.is_empty() {
                Ok(None)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed inside a head",
                ))
            };
        }
        raw.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        if text.is_empty() {
            if lines.is_empty() {
                // Stray CRLF between messages.
                raw.clear();
                continue;
            }
            break;
        }
        lines.push(text);
    }
    let start = lines.remove(0);
    let headers = lines
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Some(Head {
        raw,
        start,
        headers,
    }))
}

/// Reads a body framed by `head` verbatim (chunk sizes, extensions and trailers
/// included). `until_close` reads to the end of the connection when there is no
/// framing (an answer only).
fn read_body(
    reader: &mut impl BufRead,
    head: &Head,
    until_close: bool,
) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if head.chunked() {
        loop {
            let mut size_line = Vec::new();
            if reader.read_until(b'\n', &mut size_line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            body.extend_from_slice(&size_line);
            let text = String::from_utf8_lossy(&size_line);
            let hex = text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(hex, 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {hex:?}")))?;
            if size == 0 {
                // Trailers, up to the blank line.
                loop {
                    let mut line = Vec::new();
                    if reader.read_until(b'\n', &mut line)? == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    body.extend_from_slice(&line);
                    if line == b"\r\n" || line == b"\n" {
                        return Ok(body);
                    }
                }
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
        }
    }
    if let Some(length) = head.content_length() {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
        return Ok(body);
    }
    if until_close {
        reader.read_to_end(&mut body)?;
    }
    Ok(body)
}

/// The object key of a request line's target: the path after the bucket.
fn key_of(target: &str) -> String {
    let path = target.split('?').next().unwrap_or("");
    let path = path.strip_prefix("http://").map_or(path, |rest| {
        rest.find('/').map_or("", |slash| &rest[slash..])
    });
    path.trim_start_matches('/')
        .split_once('/')
        .map(|(_, key)| key.to_owned())
        .unwrap_or_default()
}

fn choose(plan: &Mutex<Plan>, method: &str, key: &str, query: &str) -> Option<Fault> {
    let mut plan = plan.lock().ok()?;
    let mut chosen = None;
    for (rule, count) in &mut plan.rules {
        let key_matches = match rule.key.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => rule.key == key,
        };
        let query_matches = rule.query.is_none_or(|q| query.contains(q));
        if rule.method.eq_ignore_ascii_case(method) && key_matches && query_matches {
            *count += 1;
            if *count == rule.nth && chosen.is_none() {
                chosen = Some(rule.fault);
            }
        }
    }
    if chosen.is_none() {
        if let Some(random) = &mut plan.random {
            if random.next() % 1_000_000 < random.per_million && !random.faults.is_empty() {
                let index = (random.next() % random.faults.len() as u64) as usize;
                chosen = Some(random.faults[index]);
            }
        }
    }
    plan.seen.push(Seen {
        method: method.to_owned(),
        key: key.to_owned(),
        query: query.to_owned(),
        fault: chosen,
    });
    chosen
}

fn error_answer(status: &str, code: &str, message: &str, head_request: bool) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>speedy-fault-proxy</RequestId></Error>"
    );
    let mut answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nx-amz-request-id: speedy-fault-proxy\r\n\r\n",
        if head_request { 0 } else { body.len() }
    )
    .into_bytes();
    if !head_request {
        answer.extend_from_slice(body.as_bytes());
    }
    answer
}

/// Closes with a TCP reset instead of a FIN (SO_LINGER with a zero timeout).
fn reset(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Linger {
        onoff: i32,
        linger: i32,
    }
    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, len: u32) -> i32;
    }
    const SOL_SOCKET: i32 = 1;
    const SO_LINGER: i32 = 13;
    let linger = Linger {
        onoff: 1,
        linger: 0,
    };
    // SAFETY: a valid socket descriptor and a correctly sized, live option value.
    unsafe {
        setsockopt(
            stream.as_raw_fd(),
            SOL_SOCKET,
            SO_LINGER,
            &linger,
            std::mem::size_of::<Linger>() as u32,
        );
    }
    drop(stream);
}

/// Serves one client connection: requests one after another (keep-alive).
fn serve(
    client: TcpStream,
    upstream: u16,
    plan: &Mutex<Plan>,
    stop: &AtomicBool,
    faulted: &AtomicUsize,
) -> std::io::Result<()> {
    let mut writer = client.try_clone()?;
    let mut reader = BufReader::new(client.try_clone()?);
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let Some(mut request) = read_head(&mut reader)? else {
            return Ok(());
        };
        let mut parts = request.start.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("").to_owned();
        let key = key_of(&target);
        let query = target.split_once('?').map_or("", |(_, q)| q).to_owned();
        if request
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            // Answer the expectation here, and forward without it.
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            let text = String::from_utf8_lossy(&request.raw).into_owned();
            let kept: String = text
                .split_inclusive("\r\n")
                .filter(|l| !l.to_ascii_lowercase().starts_with("expect:"))
                .collect();
            request.raw = kept.into_bytes();
        }
        let body = read_body(&mut reader, &request, false)?;
        let fault = choose(plan, &method, &key, &query);
        if fault.is_some() {
            faulted.fetch_add(1, Ordering::SeqCst);
        }
        let head_request = method.eq_ignore_ascii_case("HEAD");
        match fault {
            Some(Fault::SlowDown) => {
                writer.write_all(&error_answer(
                    "503 Slow Down",
                    "SlowDown",
                    "Please reduce your request rate.",
                    head_request,
                ))?;
                continue;
            }
            Some(Fault::InternalError) => {
                writer.write_all(&error_answer(
                    "500 Internal Server Error",
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                    head_request,
                ))?;
                continue;
            }
            Some(Fault::Stall) => {
                // Never answer; wait for the client to give up (or the proxy to stop).
                let _ = client.set_read_timeout(Some(Duration::from_millis(200)));
                let mut sink = [0u8; 4096];
                loop {
                    match reader.get_mut().read(&mut sink) {
                        Ok(0) => return Ok(()),
                        Ok(_) => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            if stop.load(Ordering::SeqCst) {
                                return Ok(());
                            }
                        }
                        Err(_) => return Ok(()),
                    }
                }
            }
            _ => {}
        }
        let has_answer_body = !head_request;
        if fault == Some(Fault::ResetMidBody) && !method.eq_ignore_ascii_case("GET") {
            // A reset while the request is on its way: it never reaches the store.
            reset(client);
            return Ok(());
        }
        let upstream_address: SocketAddr = ([127, 0, 0, 1], upstream).into();
        let mut up = TcpStream::connect(upstream_address)?;
        up.write_all(&request.raw)?;
        up.write_all(&body)?;
        let mut up_reader = BufReader::new(up.try_clone()?);
        // Skip interim 1xx answers from the store.
        let answer = loop {
            let Some(answer) = read_head(&mut up_reader)? else {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            };
            let status = answer.start.split_whitespace().nth(1).unwrap_or("");
            if status.starts_with('1') {
                continue;
            }
            break answer;
        };
        let status: u16 = answer
            .start
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let bodiless = !has_answer_body || status == 204 || status == 304;
        let framed = answer.chunked() || answer.content_length().is_some();
        let answer_body = if bodiless {
            Vec::new()
        } else {
            read_body(&mut up_reader, &answer, true)?
        };
        let _ = up.shutdown(Shutdown::Both);
        match fault {
            Some(Fault::DropAnswer) => {
                let _ = writer.shutdown(Shutdown::Both);
                return Ok(());
            }
            Some(Fault::ResetMidBody) | Some(Fault::TruncateBody) if answer_body.len() >= 2 => {
                writer.write_all(&answer.raw)?;
                writer.write_all(&answer_body[..answer_body.len() / 2])?;
                writer.flush()?;
                // Let the client see the partial body before the connection ends.
                std::thread::sleep(Duration::from_millis(20));
                if fault == Some(Fault::ResetMidBody) {
                    reset(client);
                } else {
                    let _ = writer.shutdown(Shutdown::Both);
                }
                return Ok(());
            }
            Some(Fault::ResetMidBody) | Some(Fault::TruncateBody) => {
                // No body to cut: the answer is lost instead.
                let _ = writer.shutdown(Shutdown::Both);
                return Ok(());
            }
            _ => {}
        }
        writer.write_all(&answer.raw)?;
        writer.write_all(&answer_body)?;
        writer.flush()?;
        let closes = answer
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
            || answer.start.starts_with("HTTP/1.0")
            || (!bodiless && !framed);
        if closes {
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}
