//! A TCP station: streams pcapng to a collector (`nc -l PORT | tshark -r -`, or
//! `tshark -i -`), a fresh section (SHB + IDB) at each connection so every stream is a
//! capture on its own. Timeouts turn a collector that is gone or stops reading into an
//! error, which the queue in front turns into drops, never a stall.

use std::io::{self, BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::super::pcapng::PcapngWriter;
use super::super::record::Record;
use super::station::Station;

/// How long a connection attempt may take: the collector is expected nearby.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one write may block on a collector that stopped reading.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Streams pcapng to `addr`.
#[derive(Debug)]
pub struct TcpStation {
    addr: SocketAddr,
    connect_timeout: Duration,
    write_timeout: Duration,
    /// Kept across connections: it holds the conversations' sequence numbers.
    writer: Option<PcapngWriter<BufWriter<TcpStream>>>,
    connected: bool,
    connections: u64,
}

impl TcpStation {
    /// A station for the collector at `addr`, with the default timeouts. Nothing is
    /// connected yet.
    pub fn new(addr: SocketAddr) -> TcpStation {
        TcpStation::with_timeouts(addr, CONNECT_TIMEOUT, WRITE_TIMEOUT)
    }

    /// A station with its own connect and write timeouts.
    pub fn with_timeouts(addr: SocketAddr, connect: Duration, write: Duration) -> TcpStation {
        TcpStation {
            addr,
            connect_timeout: connect,
            write_timeout: write,
            writer: None,
            connected: false,
            connections: 0,
        }
    }

    fn writer(&mut self) -> io::Result<&mut PcapngWriter<BufWriter<TcpStream>>> {
        match (self.connected, self.writer.as_mut()) {
            (true, Some(writer)) => Ok(writer),
            _ => Err(io::Error::new(io::ErrorKind::NotConnected, "not connected")),
        }
    }

    /// Records an error: the connection is given up (it may end in a partial block)
    /// and `connect` makes a new one.
    fn failed<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if result.is_err() {
            self.connected = false;
        }
        result
    }
}

impl Station for TcpStation {
    fn kind(&self) -> &'static str {
        "tcp"
    }

    fn connect(&mut self) -> io::Result<()> {
        self.connected = false;
        let stream = TcpStream::connect_timeout(&self.addr, self.connect_timeout)?;
        stream.set_write_timeout(Some(self.write_timeout))?;
        // Flushed when the queue runs empty: send it then, not after a delay.
        stream.set_nodelay(true)?;
        let out = BufWriter::with_capacity(64 * 1024, stream);
        let comment = format!("supervise mirror to {}", self.addr);
        match self.writer.as_mut() {
            // The old stream failed: what it still buffers is discarded, not flushed
            // into a dead socket (which could block for the write timeout).
            Some(writer) => drop(writer.restart(out, &comment)?.into_parts()),
            None => self.writer = Some(PcapngWriter::new(out, &comment)?),
        }
        self.connected = true;
        self.connections += 1;
        Ok(())
    }

    fn write(&mut self, record: &Record) -> io::Result<()> {
        let written = self.writer()?.record(record);
        self.failed(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.writer() {
            Ok(writer) => {
                let flushed = writer.get_mut().flush();
                self.failed(flushed)
            }
            Err(_) => Ok(()),
        }
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "tcp",
            "addr": self.addr.to_string(),
            "connect_timeout_ms": self.connect_timeout.as_millis() as u64,
            "write_timeout_ms": self.write_timeout.as_millis() as u64,
        })
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({
            "connected": self.connected,
            "addr": self.addr.to_string(),
            "connections": self.connections,
            "bytes": self.writer.as_ref().map_or(0, |w| w.bytes_written()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::record::{Origin, What};
    use std::io::Read;
    use std::net::TcpListener;
    use std::sync::Arc;

    fn record(what: What, data: &[u8]) -> Record {
        Record {
            time_ns: 1_700_000_000_000_000_000,
            tenant: Arc::from("pg-demo"),
            stream: Arc::from("pg-clients"),
            conn: Arc::from("pg-demo/pg-clients/c1"),
            serial: 1,
            client: "127.0.0.1:40000".parse().unwrap(),
            server: "127.0.0.1:5432".parse().unwrap(),
            what,
            data: data.to_vec(),
        }
    }

    fn query(text: &[u8]) -> Record {
        let reason = Arc::from("policy[0]");
        let kind = "Query";
        let (origin, original_len, offset) = (Origin::Client, text.len(), 0);
        let what = What::Message {
            kind,
            origin,
            original_len,
            offset,
            reason,
        };
        record(what, text)
    }

    /// Everything the station sent on one accepted connection, which the collector
    /// then closes.
    fn received(listener: &TcpListener, station: &mut TcpStation, records: &[Record]) -> Vec<u8> {
        let (mut peer, _) = listener.accept().unwrap();
        for r in records {
            station.write(r).unwrap();
        }
        station.flush().unwrap();
        let mut bytes = vec![0; station.state()["bytes"].as_u64().unwrap() as usize];
        peer.read_exact(&mut bytes).unwrap();
        bytes
    }

    /// The packets' comments and payloads in one pcapng stream.
    fn packets(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
        let mut reader = pcap_file::pcapng::PcapNgReader::new(bytes).unwrap();
        let mut out = Vec::new();
        while let Some(block) = reader.next_block() {
            if let pcap_file::pcapng::Block::EnhancedPacket(p) = block.unwrap() {
                let Some(EnhancedPacketOption::Comment(c)) = p.options.first() else {
                    panic!()
                };
                out.push((c.to_string(), p.data[54..].to_vec()));
            }
        }
        out
    }

    #[test]
    fn streams_pcapng_reconnects_with_a_new_section_and_fails_without_a_collector() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut station = TcpStation::new(addr);
        station.connect().unwrap();
        let first = received(
            &listener,
            &mut station,
            &[record(What::Opened, b""), query(b"one")],
        );
        assert!(first.starts_with(&0x0A0D_0D0Au32.to_le_bytes()));
        let p = packets(&first);
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].0, "pg-demo pg-clients pg-demo/pg-clients/c1 opened");
        assert_eq!(
            p[3],
            (
                "pg-demo pg-clients pg-demo/pg-clients/c1 Query policy[0]".into(),
                b"one".to_vec()
            )
        );

        // The collector goes away: writing fails (the reset may take a write or two
        // to come back), then connecting fails.
        drop(listener);
        let failed = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            station
                .write(&query(b"lost"))
                .and_then(|()| station.flush())
                .is_err()
        });
        assert!(failed, "writing to a closed collector never failed");
        assert_eq!(station.state()["connected"], false);
        assert!(station.connect().is_err());

        // A collector on the same port again: a new stream, starting with its own SHB.
        let listener = TcpListener::bind(addr).unwrap();
        station.connect().unwrap();
        let second = received(&listener, &mut station, &[query(b"two")]);
        assert!(second.starts_with(&0x0A0D_0D0Au32.to_le_bytes()));
        assert_eq!(packets(&second)[0].1, b"two");
        assert_eq!(station.state()["connections"], 2);
    }

    #[test]
    fn a_collector_that_stops_reading_turns_into_a_write_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut station =
            TcpStation::with_timeouts(addr, CONNECT_TIMEOUT, Duration::from_millis(200));
        station.connect().unwrap();
        let (_peer, _) = listener.accept().unwrap(); // accepted, never read
        let big = query(&vec![b'x'; 60_000]);
        let started = std::time::Instant::now();
        let error = (0..10_000)
            .find_map(|_| station.write(&big).and_then(|()| station.flush()).err())
            .expect("a collector that never reads never blocked a write");
        // SO_SNDTIMEO expiring is EAGAIN.
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock, "{error}");
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(station.state()["connected"], false);
    }
}
