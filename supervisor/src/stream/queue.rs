//! A FIFO of bytes with a contiguous readable slice (so one `process_vm_writev` or
//! `send` can take it) and amortised O(1) consumption.

/// Bytes waiting for a destination.
#[derive(Debug, Default)]
pub struct ByteQueue {
    buf: Vec<u8>,
    head: usize,
}

impl ByteQueue {
    /// The queued bytes, oldest first.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.head..]
    }

    /// Number of queued bytes.
    pub fn len(&self) -> usize {
        self.buf.len() - self.head
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.head == self.buf.len() {
            self.buf.clear();
            self.head = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Drops the first `n` bytes (they reached their destination).
    pub fn consume(&mut self, n: usize) {
        self.head = (self.head + n).min(self.buf.len());
        if self.head == self.buf.len() {
            self.buf.clear();
            self.head = 0;
        } else if self.head > 64 * 1024 && self.head * 2 > self.buf.len() {
            self.buf.drain(..self.head);
            self.head = 0;
        }
    }

    /// Empties the queue, returning how many bytes were discarded.
    pub fn clear(&mut self) -> usize {
        let n = self.len();
        self.buf.clear();
        self.head = 0;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::ByteQueue;

    #[test]
    fn fifo_order_survives_compaction() {
        let mut q = ByteQueue::default();
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        q.extend(&data);
        q.consume(100_000);
        q.extend(b"tail");
        assert_eq!(&q.as_slice()[..100_000], &data[100_000..]);
        assert_eq!(&q.as_slice()[100_000..], b"tail");
        q.consume(q.len());
        assert!(q.is_empty());
    }
}
