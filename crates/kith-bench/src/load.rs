//! The load driver: keep-alive connections posting prepared requests, closed-loop (each
//! connection sends its next request when the previous one is answered) or open-loop at a
//! fixed rate, with per-request latencies.
//!
//! At a fixed rate, request *i* is due at `start + i / rate`. A request that waits for a free
//! connection because the server is slow counts its latency from when it was due, so a stall
//! shows in the percentiles instead of slowing the load down (the coordinated-omission
//! correction of wrk2 and `oha --latency-correction`); a connection that was idle and woke up
//! late counts from when it actually sent, so the 1 ms timer granularity of the driver itself
//! does not pollute sub-millisecond figures.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::http::{Connection, Target};
use crate::workload::Workload;

/// How requests are sent.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Concurrent connections.
    pub connections: usize,
    /// Requests per second, or as fast as answers come back.
    pub rate: Option<f64>,
    /// How long to send for, cycling through the requests; without it each request is sent once.
    pub duration: Option<Duration>,
    /// Retry requests answered 429/503 after a pause (as Segment does) instead of counting them as failed.
    pub retry_shed: bool,
}

/// Prepared requests and the events each carries.
pub struct Requests {
    /// Complete HTTP requests.
    pub bytes: Vec<Vec<u8>>,
    /// Events in each.
    pub events: Vec<u32>,
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Wall time from the first request to the last answer.
    pub elapsed: Duration,
    /// Requests answered 2xx.
    pub ok: u64,
    /// Events in requests answered 2xx.
    pub events: u64,
    /// 2xx batch answers that listed refused events.
    pub partial: u64,
    /// 429/503 answers (retried when `retry_shed`).
    pub shed: u64,
    /// Other answers.
    pub failed: u64,
    /// Connection errors.
    pub io_errors: u64,
    /// Whether a timed run sent some requests a second time because it ran out of new ones.
    pub wrapped: bool,
    /// Latencies of answered requests in microseconds, sorted.
    pub latencies_us: Vec<u32>,
}

impl Report {
    /// Requests answered 2xx per second.
    pub fn requests_per_sec(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Events accepted per second.
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency percentile in milliseconds (`q` in 0..=1).
    pub fn percentile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let index = ((self.latencies_us.len() as f64 - 1.0) * q).round() as usize;
        f64::from(self.latencies_us[index]) / 1000.0
    }

    /// One line for a person.
    pub fn summary(&self) -> String {
        format!(
            "{:.2} s, {} ok ({:.0} req/s, {:.0} events/s), latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms, \
             {} shed, {} failed, {} partial, {} connection errors{}",
            self.elapsed.as_secs_f64(),
            self.ok,
            self.requests_per_sec(),
            self.events_per_sec(),
            self.percentile_ms(0.5),
            self.percentile_ms(0.99),
            self.percentile_ms(1.0),
            self.shed,
            self.failed,
            self.partial,
            self.io_errors,
            if self.wrapped { " (it ran out of requests and sent some again)" } else { "" }
        )
    }

    fn merge(&mut self, other: Report) {
        self.ok += other.ok;
        self.events += other.events;
        self.partial += other.partial;
        self.shed += other.shed;
        self.failed += other.failed;
        self.io_errors += other.io_errors;
        self.wrapped |= other.wrapped;
        self.latencies_us.extend(other.latencies_us);
    }
}

/// Prepares a workload's bodies as requests.
pub fn prepare(target: &Target, workload: &Workload) -> Requests {
    let bytes = workload.bodies.iter().map(|body| target.post(workload.path, body.as_bytes())).collect();
    Requests { bytes, events: workload.counts.clone() }
}

/// Sends the requests and measures.
pub async fn run(target: &Target, requests: Arc<Requests>, options: Options) -> Report {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = options.duration.map(|d| start + d);
    let workers: Vec<_> = (0..options.connections.max(1))
        .map(|n| {
            let (requests, next, addr) = (requests.clone(), next.clone(), target.addr_for(n));
            tokio::spawn(async move { worker(Connection::new(addr), &requests, &next, start, deadline, options).await })
        })
        .collect();
    let mut report = Report::default();
    for worker in workers {
        if let Ok(part) = worker.await {
            report.merge(part);
        }
    }
    report.elapsed = start.elapsed();
    report.latencies_us.sort_unstable();
    report
}

async fn worker(
    mut connection: Connection,
    requests: &Requests,
    next: &AtomicUsize,
    start: Instant,
    deadline: Option<Instant>,
    options: Options,
) -> Report {
    let mut report = Report::default();
    let total = requests.bytes.len();
    loop {
        let sequence = next.fetch_add(1, Ordering::Relaxed);
        if deadline.is_none() && sequence >= total {
            break;
        }
        let due = options.rate.map(|rate| start + Duration::from_secs_f64(sequence as f64 / rate));
        if let (Some(due), Some(deadline)) = (due, deadline) {
            if due >= deadline {
                break;
            }
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            break;
        }
        if sequence >= total {
            report.wrapped = true;
        }
        let index = sequence % total;
        let origin = match due {
            Some(due) if due > Instant::now() => {
                tokio::time::sleep_until(due.into()).await;
                Instant::now()
            }
            Some(due) => due,
            None => Instant::now(),
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            match connection.send(&requests.bytes[index]).await {
                Ok(answer) if matches!(answer.status, 429 | 503) => {
                    report.shed += 1;
                    if options.retry_shed && attempts < 1000 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
                Ok(answer) if (200..300).contains(&answer.status) => {
                    report.ok += 1;
                    report.events += u64::from(requests.events[index]);
                    if contains(&answer.body, b"\"rejected\":[{") {
                        report.partial += 1;
                    }
                    let micros = origin.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                    report.latencies_us.push(micros);
                }
                Ok(answer) => {
                    report.failed += 1;
                    if report.failed <= 3 {
                        eprintln!("answer {}: {}", answer.status, String::from_utf8_lossy(&answer.body));
                    }
                }
                Err(error) => {
                    report.io_errors += 1;
                    if attempts < 3 {
                        continue;
                    }
                    eprintln!("request failed: {error}");
                }
            }
            break;
        }
    }
    report
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_read_from_sorted_latencies() {
        let report = Report { latencies_us: (1..=100).map(|ms| ms * 1000).collect(), ..Report::default() };
        assert_eq!(report.percentile_ms(0.5), 51.0);
        assert_eq!(report.percentile_ms(0.99), 99.0);
        assert_eq!(report.percentile_ms(1.0), 100.0);
    }
}
