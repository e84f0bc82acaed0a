//! A load client on loopback: several workers, each opening a new connection per
//! request (the fixture app closes every connection), paced to a total rate, counting
//! what a load balancer would count as a failure.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the client saw between `start` and `stop`.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub requests: usize,
    /// Refused or reset connections, timeouts and answers other than 200, with why.
    pub failures: Vec<String>,
    /// The longest a single request took, connection included.
    pub longest: Duration,
    /// The longest time between two answered requests (200s), the load's edges
    /// included: how long clients saw nothing work.
    pub longest_gap: Duration,
    pub elapsed: Duration,
}

impl LoadReport {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

pub struct LoadClient {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<LoadReport>>,
    /// When each answered request finished.
    answered: Arc<Mutex<Vec<Instant>>>,
    workers: Vec<JoinHandle<()>>,
    started: Instant,
}

/// A request that takes longer than this counts as failed: a client behind a load
/// balancer would have given up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl LoadClient {
    /// `workers` connections at a time asking `GET path`, `rate` requests per second
    /// in total.
    pub fn start(address: SocketAddr, path: &str, workers: usize, rate: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let answered = Arc::new(Mutex::new(Vec::new()));
        let interval = Duration::from_secs_f64(workers as f64 / f64::from(rate));
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        let workers = (0..workers)
            .map(|_| {
                let (stop, report, request) = (stop.clone(), report.clone(), request.clone());
                let answered = answered.clone();
                std::thread::spawn(move || {
                    let mut next = Instant::now();
                    while !stop.load(Ordering::SeqCst) {
                        let began = Instant::now();
                        let outcome = one_request(address, &request);
                        let took = began.elapsed();
                        {
                            let mut report = report.lock().expect("load report");
                            report.requests += 1;
                            report.longest = report.longest.max(took);
                            match outcome {
                                Ok(()) => answered.lock().expect("answers").push(Instant::now()),
                                Err(why) => report.failures.push(why),
                            }
                        }
                        next += interval;
                        if let Some(wait) = next.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        } else {
                            next = Instant::now();
                        }
                    }
                })
            })
            .collect();
        LoadClient {
            stop,
            report,
            answered,
            workers,
            started: Instant::now(),
        }
    }

    /// Stops the workers after their request in flight and returns the report.
    pub fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        for worker in self.workers {
            worker.join().expect("a load worker panicked");
        }
        let stopped = Instant::now();
        let mut report = self.report.lock().expect("load report").clone();
        report.elapsed = stopped - self.started;
        let mut answered = self.answered.lock().expect("answers").clone();
        answered.sort();
        let edges = std::iter::once(self.started)
            .chain(answered)
            .chain(std::iter::once(stopped))
            .collect::<Vec<_>>();
        report.longest_gap = edges
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .max()
            .unwrap_or_default();
        report
    }
}

fn one_request(address: SocketAddr, request: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&address, REQUEST_TIMEOUT)
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(REQUEST_TIMEOUT)))
        .map_err(|e| format!("timeouts: {e}"))?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("receive: {e}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let status_line = answer.lines().next().unwrap_or_default();
    if status_line.starts_with("HTTP/1.1 200 ") {
        Ok(())
    } else {
        Err(format!("answer: {status_line:?}"))
    }
}
