//! A stand-in for the DigitalOcean API on 127.0.0.1 (the real one cannot be reached
//! from the tests): records every request, with its Authorization header and body,
//! and answers as the test says. Stopped when dropped.

use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The CDN endpoint id the tests configure.
pub const ENDPOINT_ID: &str = "19f06b6a-3ace-4315-b086-499a0e521b76";

#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: String,
}

impl ApiRequest {
    /// The `files` of a purge request.
    pub fn files(&self) -> Vec<String> {
        let json: serde_json::Value = serde_json::from_str(&self.body).expect("a JSON body");
        json["files"]
            .as_array()
            .expect("a files array")
            .iter()
            .map(|f| f.as_str().expect("a path").to_owned())
            .collect()
    }
}

pub struct ApiAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl ApiAnswer {
    pub fn new(status: u16, body: &str) -> Self {
        ApiAnswer {
            status,
            headers: Vec::new(),
            body: body.to_owned(),
        }
    }

    /// What the real API answers: 204 to a purge, the endpoint with `ttl` to a GET.
    pub fn like_digitalocean(request: &ApiRequest, ttl: u64) -> Self {
        match request.method.as_str() {
            "DELETE" => ApiAnswer::new(204, ""),
            _ => ApiAnswer::new(
                200,
                &serde_json::json!({"endpoint": {
                    "id": ENDPOINT_ID,
                    "origin": "speedy-apt.nyc3.digitaloceanspaces.com",
                    "endpoint": "speedy-apt.nyc3.cdn.digitaloceanspaces.com",
                    "ttl": ttl,
                }})
                .to_string(),
            ),
        }
    }
}

type Answerer = dyn Fn(&ApiRequest, usize) -> ApiAnswer + Send + Sync;

pub struct StandInApi {
    /// `http://127.0.0.1:PORT`, for `$SPEEDY_DIGITALOCEAN_API`.
    pub url: String,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<ApiRequest>>>,
    thread: Option<JoinHandle<()>>,
}

impl StandInApi {
    /// Answers like the real API, with an endpoint TTL of `ttl` seconds.
    pub fn start(ttl: u64) -> Self {
        Self::answering(move |request, _| ApiAnswer::like_digitalocean(request, ttl))
    }

    /// `answer` gets each request and how many came before it.
    pub fn answering(
        answer: impl Fn(&ApiRequest, usize) -> ApiAnswer + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("non-blocking");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let answer: Arc<Answerer> = Arc::new(answer);
        let thread = {
            let (stop, requests) = (stop.clone(), requests.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = serve(stream, &requests, answer.as_ref());
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        StandInApi {
            url,
            stop,
            requests,
            thread: Some(thread),
        }
    }

    pub fn requests(&self) -> Vec<ApiRequest> {
        self.requests.lock().expect("requests").clone()
    }

    /// The purge requests so far.
    pub fn purges(&self) -> Vec<ApiRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "DELETE")
            .collect()
    }
}

impl Drop for StandInApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request (keep-alive is not offered: one request a connection), records
/// it and answers it.
fn serve(
    stream: TcpStream,
    requests: &Mutex<Vec<ApiRequest>>,
    answer: &Answerer,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = std::io::BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let (mut authorization, mut length) = (None, 0usize);
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "authorization" => authorization = Some(value.trim().to_owned()),
                "content-length" => length = value.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let request = ApiRequest {
        method,
        path,
        authorization,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let earlier = {
        let mut recorded = requests.lock().expect("requests");
        recorded.push(request.clone());
        recorded.len() - 1
    };
    let reply = answer(&request, earlier);
    let mut head = format!(
        "HTTP/1.1 {} Stand-in\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = stream;
    stream.write_all(head.as_bytes())?;
    stream.write_all(reply.body.as_bytes())?;
    stream.flush()
}
