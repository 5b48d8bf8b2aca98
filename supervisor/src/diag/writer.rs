//! A bounded line writer: the supervisor's log and the tenant's stamped output go out
//! through a thread, so a blocked terminal or a full pipe never stalls the notification
//! loop. Lines that do not fit in the queue are dropped and counted; the count is
//! written as soon as the output moves again, and at exit.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Lines queued per output before new ones are dropped.
pub const QUEUE_LINES: usize = 8192;

/// How long the writer lets lines gather after writing a batch while lines stream in
/// (a line waits at most this long; 8192 lines in 10 ms is 800 000 a second before
/// anything is dropped).
const BATCH_PAUSE: Duration = Duration::from_millis(10);
/// A window with at least [`BUSY_LINES`] lines (5 000 a second) switches batching on
/// for the next one; fewer switch it off.
const RATE_WINDOW: Duration = Duration::from_millis(100);
const BUSY_LINES: u64 = 500;

/// Builds the notice written after `n` lines were dropped.
pub type DropNotice = fn(name: &str, dropped: u64) -> Vec<u8>;

/// A copy of every line, for a station that collects diagnostics (it queues, never
/// blocks).
pub type Tee = Box<dyn Fn(&[u8]) + Send + Sync>;

/// One output (stderr, stdout, a file).
pub struct LineWriter {
    sender: Mutex<Option<SyncSender<Vec<u8>>>>,
    /// Also given every line (a fleet sink); must not block.
    tee: std::sync::OnceLock<Tee>,
    dropped: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for LineWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineWriter")
            .field("dropped", &self.dropped)
            .field("written", &self.written)
            .field("tee", &self.tee.get().is_some())
            .finish()
    }
}

impl LineWriter {
    /// Starts the writer thread for `out`.
    pub fn start(
        name: &'static str,
        out: Box<dyn Write + Send>,
        notice: DropNotice,
    ) -> std::io::Result<LineWriter> {
        let (sender, receiver) = sync_channel(QUEUE_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let (d, w) = (dropped.clone(), written.clone());
        let thread = crate::sys::spawn_without_signals(&format!("out-{name}"), move || {
            drain(name, receiver, out, notice, &d, &w)
        })?;
        Ok(LineWriter {
            sender: Mutex::new(Some(sender)),
            tee: std::sync::OnceLock::new(),
            dropped,
            written,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues one line (with its newline); drops it if the queue is full.
    pub fn send(&self, line: Vec<u8>) {
        if let Some(tee) = self.tee.get() {
            tee(&line);
        }
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sender) = sender.as_ref() else {
            return;
        };
        match sender.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Gives every line from now on to `tee` as well; false if one is set already.
    pub fn set_tee(&self, tee: Tee) -> bool {
        self.tee.set(tee).is_ok()
    }

    /// Lines dropped so far (never reset).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Writes what is queued and stops the thread; gives up after `patience` (an output
    /// that stays blocked must not keep the supervisor from exiting).
    pub fn close(&self, patience: Duration) {
        drop(self.sender.lock().unwrap_or_else(|p| p.into_inner()).take());
        let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let deadline = std::time::Instant::now() + patience;
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

fn drain(
    name: &str,
    receiver: Receiver<Vec<u8>>,
    mut out: Box<dyn Write + Send>,
    notice: DropNotice,
    dropped: &AtomicU64,
    written: &AtomicU64,
) {
    let mut reported = 0;
    let mut report = |out: &mut Box<dyn Write + Send>| {
        let now = dropped.load(Ordering::Relaxed);
        if now > reported {
            let _ = out.write_all(&notice(name, now - reported));
            reported = now;
        }
    };
    let (mut window_start, mut window_lines, mut counted, mut busy) =
        (std::time::Instant::now(), 0u64, 0u64, false);
    while let Ok(line) = receiver.recv() {
        report(&mut out);
        if out.write_all(&line).is_err() {
            dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        written.fetch_add(1, Ordering::Relaxed);
        // Batch what else is queued before flushing.
        while let Ok(line) = receiver.try_recv() {
            if out.write_all(&line).is_ok() {
                written.fetch_add(1, Ordering::Relaxed);
            } else {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        let _ = out.flush();
        // Under a steady stream, let lines gather before the next wake-up: while this
        // thread sleeps rather than waits on the channel, a send is a queue push with
        // no futex wake and no context switch on the sender's (the notification
        // loop's) side. At a trickle, each line goes out at once.
        let now = std::time::Instant::now();
        window_lines += written.load(Ordering::Relaxed) - counted;
        counted = written.load(Ordering::Relaxed);
        if now.duration_since(window_start) >= RATE_WINDOW {
            busy = window_lines >= BUSY_LINES;
            window_start = now;
            window_lines = 0;
        }
        if busy {
            std::thread::sleep(BATCH_PAUSE);
        }
    }
    report(&mut out);
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that blocks until released, then records.
    struct Gate(Arc<Mutex<Vec<u8>>>, Arc<std::sync::Barrier>, bool);
    impl Write for Gate {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if !self.2 {
                self.1.wait();
                self.2 = true;
            }
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_output_drops_and_counts_instead_of_blocking() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(std::sync::Barrier::new(2));
        let notice: DropNotice = |name, n| format!("[{name}: {n} dropped]\n").into_bytes();
        let writer = LineWriter::start(
            "t",
            Box::new(Gate(seen.clone(), gate.clone(), false)),
            notice,
        )
        .unwrap();
        let total = QUEUE_LINES as u64 + 1000;
        let started = std::time::Instant::now();
        for i in 0..total {
            writer.send(format!("{i}\n").into_bytes());
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "send never blocks"
        );
        let dropped = writer.dropped();
        assert!(dropped >= 999, "dropped {dropped}");
        gate.wait();
        writer.close(Duration::from_secs(5));
        let text = String::from_utf8(seen.lock().unwrap().clone()).unwrap();
        // Drops are reported as they are noticed: the notices add up to the count.
        let noticed: u64 = text
            .lines()
            .filter_map(|l| {
                l.strip_prefix("[t: ")?
                    .strip_suffix(" dropped]")?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        assert_eq!(noticed, dropped, "{}", &text[..text.len().min(200)]);
        assert_eq!(writer.written() + writer.dropped(), total);
    }
}
