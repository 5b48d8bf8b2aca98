//! Listening stations behind bounded queues. A [`Sink`] is one `[[mirror.sink]]`: one
//! station (a pcapng or JSON-lines file, a NATS server) or several (TCP collectors,
//! connections spread over them by a stable hash and moved off one that fails). Each
//! station has its own thread and queue: the loop only ever `try_send`s, so a station
//! that is slow, stalled or down costs the tenant nothing; what does not fit is
//! dropped and counted.

pub mod jsonl;
pub mod nats;
pub mod nats_proto;
pub mod pcapng_file;
pub mod station;
pub mod tcp;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::record::Record;
use crate::diag::{Dpid, Kind};
use station::Station;

/// A self-test's answer, delivered by the station's thread.
pub type TestReply = Box<dyn FnOnce(Result<String, String>) + Send>;

enum Job {
    Record(Arc<Record>),
    Test(Arc<Record>, TestReply),
    /// A diagnostics line (fleet stations keep them).
    Line(Vec<u8>),
}

/// What one station's thread reports (read by state and metrics on other threads).
#[derive(Debug, Default)]
pub struct Counters {
    /// Records written.
    pub written: AtomicU64,
    /// Records dropped because the queue was full.
    pub dropped_full: AtomicU64,
    /// Records dropped because the station was down.
    pub dropped_down: AtomicU64,
    /// Failed connects and writes.
    pub errors: AtomicU64,
    /// Whether the station is connected (open).
    pub up: AtomicBool,
    /// Set when the sink closes: the thread writes what is queued and ends (the log
    /// tee holds a sender, so the queue alone would never report the end).
    pub closing: AtomicBool,
    /// The last error, and the station's own state, refreshed by its thread.
    pub detail: Mutex<(Option<String>, Value)>,
}

/// One station and the queue in front of it.
#[derive(Debug)]
struct Lane {
    sender: SyncSender<Job>,
    counters: Arc<Counters>,
    config: Value,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Record(_) => "Record",
            Job::Test(..) => "Test",
            Job::Line(_) => "Line",
        })
    }
}

/// One `[[mirror.sink]]`.
#[derive(Debug)]
pub struct Sink {
    /// `TENANT/@sink/NAME`.
    pub dpid: Dpid,
    /// Its name.
    pub name: String,
    lanes: Vec<Lane>,
}

/// Under a steady stream of records (at least `BUSY_JOBS` within `RATE_WINDOW`), a
/// station's thread pauses this long each time its queue runs dry: while it sleeps
/// rather than waits on the channel, queueing a record is a push with no futex wake
/// and no context switch on the loop's side. At a trickle each record goes at once.
const BATCH_PAUSE: Duration = Duration::from_millis(10);
const RATE_WINDOW: Duration = Duration::from_millis(100);
const BUSY_JOBS: u64 = 200;

/// How long closing a sink waits, in all, for its stations to write what they hold.
pub const CLOSE_PATIENCE: Duration = Duration::from_secs(5);

/// How long a station's thread waits before flushing what it wrote.
const FLUSH_AFTER: Duration = Duration::from_millis(200);
/// Retry delays of a station that is down.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

impl Sink {
    /// Starts one thread per station, each behind a queue of `queue` records.
    pub fn start(dpid: Dpid, name: String, stations: Vec<Box<dyn Station>>, queue: usize) -> Sink {
        let lanes = stations
            .into_iter()
            .map(|station| {
                let (sender, receiver) = sync_channel(queue);
                let counters = Arc::new(Counters::default());
                let config = station.config();
                let c = counters.clone();
                let label = format!("{dpid}");
                let tenant = dpid.tenant_name().to_owned();
                let thread = crate::sys::spawn_without_signals("supervise-sink", move || {
                    run(station, receiver, &c, &label, &tenant)
                })
                .ok();
                Lane {
                    sender,
                    counters,
                    config,
                    thread,
                }
            })
            .collect();
        Sink { dpid, name, lanes }
    }

    /// The lane for connection `serial`: the highest-scoring of the stations that are
    /// up (rendezvous hashing: a station coming or going moves only its share).
    fn lane_for(&self, serial: u64) -> &Lane {
        if self.lanes.len() == 1 {
            return &self.lanes[0];
        }
        let score = |i: usize| {
            let mut h = DefaultHasher::new();
            (serial, i).hash(&mut h);
            h.finish()
        };
        let up: Vec<usize> = (0..self.lanes.len())
            .filter(|i| self.lanes[*i].counters.up.load(Ordering::Relaxed))
            .collect();
        let pool: Vec<usize> = if up.is_empty() {
            (0..self.lanes.len()).collect()
        } else {
            up
        };
        let best = pool.into_iter().max_by_key(|i| score(*i)).unwrap_or(0);
        &self.lanes[best]
    }

    /// Queues `record` for its connection's station; never blocks. Returns whether it
    /// was queued (otherwise it was dropped and counted).
    pub fn send(&self, record: Arc<Record>) -> bool {
        let lane = self.lane_for(record.serial);
        match lane.sender.try_send(Job::Record(record)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                lane.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// A function that queues a diagnostics line for this sink's first station that
    /// is up (never blocking; a full queue drops and counts), for the log writer's tee.
    pub fn line_tap(&self) -> impl Fn(&[u8]) + Send + Sync + 'static {
        let lanes: Vec<(SyncSender<Job>, Arc<Counters>)> = self
            .lanes
            .iter()
            .map(|l| (l.sender.clone(), l.counters.clone()))
            .collect();
        move |line: &[u8]| {
            let lane = lanes
                .iter()
                .find(|(_, c)| c.up.load(Ordering::Relaxed))
                .or(lanes.first());
            if let Some((sender, counters)) = lane {
                if sender.try_send(Job::Line(line.to_vec())).is_err() {
                    counters.dropped_full.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Asks every station to write `record` as a test; each answers through `reply`
    /// on its own thread (the loop does not wait). Returns how many were asked.
    pub fn test(
        &self,
        record: Arc<Record>,
        reply: impl Fn(usize, Result<String, String>) + Send + Sync + 'static,
    ) -> usize {
        let reply = Arc::new(reply);
        for (i, lane) in self.lanes.iter().enumerate() {
            let r = reply.clone();
            let answer: TestReply = Box::new(move |result| r(i, result));
            if let Err(
                TrySendError::Full(Job::Test(_, answer))
                | TrySendError::Disconnected(Job::Test(_, answer)),
            ) = lane.sender.try_send(Job::Test(record.clone(), answer))
            {
                answer(Err("the station's queue is full".into()));
            }
        }
        self.lanes.len()
    }

    /// Totals over the stations: (written, dropped, errors).
    pub fn totals(&self) -> (u64, u64, u64) {
        self.lanes.iter().fold((0, 0, 0), |(w, d, e), l| {
            let c = &l.counters;
            (
                w + c.written.load(Ordering::Relaxed),
                d + c.dropped_full.load(Ordering::Relaxed) + c.dropped_down.load(Ordering::Relaxed),
                e + c.errors.load(Ordering::Relaxed),
            )
        })
    }

    /// Each station's configuration.
    pub fn config(&self) -> Value {
        json!(self
            .lanes
            .iter()
            .map(|l| l.config.clone())
            .collect::<Vec<_>>())
    }

    /// Each station's counters and state.
    pub fn state(&self) -> Value {
        let stations: Vec<Value> = self
            .lanes
            .iter()
            .map(|l| {
                let c = &l.counters;
                let detail = c.detail.lock().unwrap_or_else(|p| p.into_inner());
                json!({
                    "up": c.up.load(Ordering::Relaxed),
                    "written": c.written.load(Ordering::Relaxed),
                    "dropped_queue_full": c.dropped_full.load(Ordering::Relaxed),
                    "dropped_station_down": c.dropped_down.load(Ordering::Relaxed),
                    "errors": c.errors.load(Ordering::Relaxed),
                    "last_error": detail.0,
                    "station": detail.1,
                })
            })
            .collect();
        json!({ "name": self.name, "stations": stations })
    }

    /// Per-station counters for metrics: (index, written, dropped, errors, up).
    pub fn per_station(&self) -> Vec<(usize, u64, u64, u64, bool)> {
        self.lanes
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let c = &l.counters;
                (
                    i,
                    c.written.load(Ordering::Relaxed),
                    c.dropped_full.load(Ordering::Relaxed) + c.dropped_down.load(Ordering::Relaxed),
                    c.errors.load(Ordering::Relaxed),
                    c.up.load(Ordering::Relaxed),
                )
            })
            .collect()
    }
}

impl Drop for Sink {
    /// Closes the queues and lets each station write what it holds, for at most
    /// `CLOSE_PATIENCE` in all.
    fn drop(&mut self) {
        for lane in &mut self.lanes {
            lane.counters.closing.store(true, Ordering::Relaxed);
            let (dead, _) = sync_channel(0);
            drop(std::mem::replace(&mut lane.sender, dead));
        }
        // Bounded as a whole: a collector that keeps reading slowly never trips a
        // write timeout, and must not hold the supervisor's exit. A thread still
        // writing at the deadline is left to the process's end.
        let deadline = Instant::now() + CLOSE_PATIENCE;
        for lane in &mut self.lanes {
            if let Some(t) = lane.thread.take() {
                while !t.is_finished() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if t.is_finished() {
                    let _ = t.join();
                } else {
                    let written = lane.counters.written.load(Ordering::Relaxed);
                    tracing::warn!(target: Kind::Sink.target(), dpid = %self.dpid, written, "station still writing at close; what it holds is dropped");
                }
            }
        }
    }
}

/// A station's thread: connect (with backoff), write what comes, flush when idle.
fn run(
    mut station: Box<dyn Station>,
    jobs: Receiver<Job>,
    counters: &Counters,
    dpid: &str,
    tenant: &str,
) {
    let mut backoff = BACKOFF_FIRST;
    let mut retry_at = Instant::now();
    let mut dirty = false;
    let (mut window_start, mut window_jobs, mut busy) = (Instant::now(), 0u64, false);
    let note = |error: Option<String>, station: &dyn Station| {
        let mut d = counters.detail.lock().unwrap_or_else(|p| p.into_inner());
        if error.is_some() {
            d.0 = error;
        }
        d.1 = station.state();
    };
    loop {
        let up = counters.up.load(Ordering::Relaxed);
        if !up && Instant::now() >= retry_at {
            match station.connect() {
                Ok(()) => {
                    counters.up.store(true, Ordering::Relaxed);
                    backoff = BACKOFF_FIRST;
                    tracing::info!(target: Kind::Sink.target(), dpid, "station connected");
                    note(None, &*station);
                }
                Err(e) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    if backoff == BACKOFF_FIRST {
                        tracing::warn!(target: Kind::Sink.target(), dpid, error = %e, "station unreachable; records are dropped (and counted) until it is back");
                    }
                    note(Some(format!("connect: {e}")), &*station);
                    retry_at = Instant::now() + backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        let closing = counters.closing.load(Ordering::Relaxed);
        let next = if closing {
            jobs.try_recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            match jobs.try_recv() {
                Ok(job) => Ok(job),
                Err(_) => {
                    // The queue ran dry: measure the rate, pause under a steady stream.
                    let now = Instant::now();
                    if now.duration_since(window_start) >= RATE_WINDOW {
                        busy = window_jobs >= BUSY_JOBS;
                        (window_start, window_jobs) = (now, 0);
                    }
                    if busy {
                        std::thread::sleep(BATCH_PAUSE);
                    }
                    jobs.recv_timeout(FLUSH_AFTER)
                }
            }
        };
        window_jobs += 1;
        let job = match next {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                if dirty {
                    flush(&mut *station, counters, &mut dirty, dpid);
                }
                note(None, &*station);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let (record, reply) = match job {
            Job::Record(r) => (r, None),
            Job::Test(r, reply) => (r, Some(reply)),
            Job::Line(line) => {
                if !counters.up.load(Ordering::Relaxed) {
                    counters.dropped_down.fetch_add(1, Ordering::Relaxed);
                } else if let Err(e) = station.diagnostic(tenant, &line) {
                    down(counters, &*station, dpid, &e);
                    counters.dropped_down.fetch_add(1, Ordering::Relaxed);
                } else {
                    dirty = true;
                }
                continue;
            }
        };
        if !counters.up.load(Ordering::Relaxed) {
            counters.dropped_down.fetch_add(1, Ordering::Relaxed);
            if let Some(reply) = reply {
                reply(Err("the station is down".into()));
            }
            continue;
        }
        let mut result = station.write(&record).map(|()| dirty = true);
        if reply.is_some() && result.is_ok() {
            result = station.flush();
            dirty = false;
        }
        match &result {
            Ok(()) => {
                counters.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                down(counters, &*station, dpid, e);
                note(Some(format!("write: {e}")), &*station);
                counters.dropped_down.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(reply) = reply {
            reply(
                result
                    .map(|()| format!("wrote a test record ({})", station.state()))
                    .map_err(|e| format!("could not write a test record: {e}")),
            );
        }
    }
    if dirty {
        flush(&mut *station, counters, &mut dirty, dpid);
    }
}

fn flush(station: &mut dyn Station, counters: &Counters, dirty: &mut bool, dpid: &str) {
    *dirty = false;
    if let Err(e) = station.flush() {
        down(counters, station, dpid, &e);
    }
}

fn down(counters: &Counters, station: &dyn Station, dpid: &str, error: &std::io::Error) {
    counters.errors.fetch_add(1, Ordering::Relaxed);
    if counters.up.swap(false, Ordering::Relaxed) {
        tracing::warn!(target: Kind::Sink.target(), dpid, kind = station.kind(), %error, "station failed; reconnecting, records dropped (and counted) meanwhile");
    }
}

#[cfg(test)]
mod tests;
