//! pcapng encoding of mirror records, so Wireshark/tshark decode mirrored traffic with
//! their own protocol dissectors. Pure: it writes into any [`Write`], opens nothing,
//! reads no clock (the record carries its time).
//!
//! Each connection (`Record::conn`) is framed as a synthetic TCP conversation between
//! `Record::client` and `Record::server` over Ethernet: a handshake on `Opened`, one
//! PSH|ACK segment per message (more for one longer than an IP packet), FIN/ACK both
//! ways on `Closed`. IP and TCP lengths and sequence numbers are those of the message's
//! *full* length; the Enhanced Packet Block's captured length covers only the headers
//! and the bytes we have, so pcapng's own "captured vs original length" carries the
//! truncation and tshark shows a short message as "Packet size limited during capture".
//! Captured bytes a dissector could not take in place follow as a retransmission
//! ([`PcapngWriter::record`] says which and why).
//!
//! Blocks and headers are hand-rolled rather than built with `pcap-file`'s writer or
//! `etherparse`'s builder: the headers must state lengths the bytes do not have (which
//! a builder computes from the payload), and three fixed block layouts are less code to
//! trust than the conversions. Both crates parse the output back in the tests.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::record::{Origin, Record, What};

/// Most TCP payload one synthetic segment carries: the IPv4 total length (and the
/// IPv6 payload length) is 16 bits, less 40 bytes of IP and TCP headers.
pub const MAX_SEGMENT: usize = 65_535 - 20 - 20;

/// Conversations whose sequence numbers are remembered at once. A `Closed` that was
/// dropped by the queue would otherwise leave its entry forever; past this the least
/// recently used is forgotten (its next record starts at a fresh base).
const MAX_CONVERSATIONS: usize = 16_384;

/// Locally administered MACs: the addresses are synthetic, the link is not real.
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// Writes records as pcapng: one section (SHB + one Ethernet IDB) per output, then
/// Enhanced Packet Blocks. Each record goes out in one `write_all`.
#[derive(Debug)]
pub struct PcapngWriter<W: Write> {
    out: W,
    bytes_written: u64,
    conversations: HashMap<Arc<str>, Conversation>,
    /// Use counter for least-recently-used eviction.
    tick: u64,
    /// The blocks of the record being encoded.
    block: Vec<u8>,
    /// The captured bytes of the frame being encoded.
    frame: Vec<u8>,
}

/// Where the next segment of each direction starts.
#[derive(Debug, Clone, Copy)]
struct Conversation {
    client_next: u32,
    server_next: u32,
    last_used: u64,
}

/// The addresses and ports a conversation's packets carry, both of one family.
#[derive(Debug, Clone, Copy)]
struct Endpoints {
    client: (IpAddr, u16),
    server: (IpAddr, u16),
}

impl Endpoints {
    /// IPv4 when both ends are IPv4 (a v4-mapped IPv6 address counts as IPv4), else
    /// IPv6 with any IPv4 end v4-mapped.
    fn of(client: SocketAddr, server: SocketAddr) -> Endpoints {
        let (c, s) = match (client.ip().to_canonical(), server.ip().to_canonical()) {
            (c @ IpAddr::V4(_), s @ IpAddr::V4(_)) => (c, s),
            (c, s) => (IpAddr::V6(v6(c)), IpAddr::V6(v6(s))),
        };
        // tshark tells the sides apart by the server's port: a client that connected
        // from that same port number would have every message read the wrong way
        // round, so it is written with another (ephemeral) port.
        let client_port = if client.port() == server.port() {
            client.port().wrapping_add(1).max(49152)
        } else {
            client.port()
        };
        Endpoints {
            client: (c, client_port),
            server: (s, server.port()),
        }
    }
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// One TCP segment to frame: `len` bytes of payload on the wire, of which the frame
/// holds the first `data.len()`.
#[derive(Clone, Copy)]
struct Segment<'a> {
    from_client: bool,
    seq: u32,
    ack: u32,
    flags: u8,
    len: usize,
    data: &'a [u8],
}

impl<W: Write> PcapngWriter<W> {
    /// Starts a section on `out`: an SHB (`shb_userappl` "supervise", `opt_comment`
    /// `section_comment` if not empty) and one IDB (Ethernet, snaplen 0 = unlimited,
    /// nanosecond timestamps).
    pub fn new(out: W, section_comment: &str) -> io::Result<Self> {
        let mut writer = PcapngWriter {
            out,
            bytes_written: 0,
            conversations: HashMap::new(),
            tick: 0,
            block: Vec::new(),
            frame: Vec::new(),
        };
        writer.block.clear();
        push_section_header(&mut writer.block, section_comment);
        writer.out.write_all(&writer.block)?;
        writer.bytes_written = writer.block.len() as u64;
        Ok(writer)
    }

    /// Starts a new section on a new output (a rotated file, a new connection), keeping
    /// the conversations' sequence numbers so a reader of both sees them continue.
    /// Returns the old output, unflushed. On error the writer keeps the old output.
    pub fn restart(&mut self, mut out: W, section_comment: &str) -> io::Result<W> {
        self.block.clear();
        push_section_header(&mut self.block, section_comment);
        out.write_all(&self.block)?;
        self.bytes_written = self.block.len() as u64;
        Ok(std::mem::replace(&mut self.out, out))
    }

    /// Bytes written to the current output, its section header included.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// The output (to flush it, or to shut a socket down).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Writes `record` as Enhanced Packet Blocks, each with an `opt_comment` of
    /// `tenant stream conn kind reason` (`opened`/`closed` for those).
    ///
    /// A message is one segment, or several of at most [`MAX_SEGMENT`] bytes, whose
    /// lengths and sequence numbers count its full length. A record claiming a
    /// shorter `original_len` than it holds is framed as long as it holds.
    ///
    /// Where the captured bytes go is chosen so tshark (4.0, default preferences:
    /// sequence analysis and reassembly on) decodes every message it can and is not
    /// thrown off by the ones it cannot; each rule below was checked with it:
    /// - A whole message fills its segments in order; tshark reassembles a split one.
    /// - A prefix (`offset` 0) stays in place, but never fills a whole first segment
    ///   of a message it does not complete: tshark would start reassembling it and
    ///   then dissect the next, truncated segment as a new message. The first segment
    ///   then holds at most `MAX_SEGMENT - 1` bytes, truncated, so tshark skips the
    ///   message's other segments as its continuation.
    /// - Bytes not held in place (a range M..N from `offset` > 0, which has no header
    ///   for a dissector to read, or the rest of a prefix past that first segment)
    ///   follow the message's segments as a retransmission of that range at its true
    ///   sequence numbers: tshark notes a "(suspected) retransmission" (or
    ///   "out-of-order" where it saw that range truncated), shows the bytes as TCP
    ///   segment data and hands them to no dissector. The comment says
    ///   `bytes M..N of L`.
    ///
    /// Only `data` is ever put in a frame. Zero fill up to M was tried and rejected:
    /// tshark reads the zeros as a PostgreSQL message of length 0 and, when the frame
    /// is complete, asks for one more segment for good, swallowing every later
    /// message of that direction.
    pub fn record(&mut self, r: &Record) -> io::Result<()> {
        let ends = Endpoints::of(r.client, r.server);
        let label = format!("{} {} {}", r.tenant, r.stream, r.conn);
        self.block.clear();
        match &r.what {
            What::Opened => {
                let (c, s) = initial_sequences(&r.conn);
                self.remember(&r.conn, c.wrapping_add(1), s.wrapping_add(1));
                let (c1, s1) = (c.wrapping_add(1), s.wrapping_add(1));
                let handshake = [
                    (true, c, 0, SYN),
                    (false, s, c1, SYN | ACK),
                    (true, c1, s1, ACK),
                ];
                self.push_controls(r.time_ns, &ends, &format!("{label} opened"), handshake);
            }
            What::Message {
                kind,
                origin,
                original_len,
                offset,
                reason,
            } => {
                let total = (*original_len).max(offset + r.data.len());
                let from_client = *origin == Origin::Client;
                let conv = self.conversation(&r.conn);
                let (seq, ack) = if from_client {
                    (conv.client_next, conv.server_next)
                } else {
                    (conv.server_next, conv.client_next)
                };
                // TCP counts modulo 2^32; the truncating casts are that modulo.
                let next = seq.wrapping_add(total as u32);
                if from_client {
                    conv.client_next = next;
                } else {
                    conv.server_next = next;
                }
                let comment = format!("{label} {kind} {reason}");
                let in_place = match (*offset, r.data.len()) {
                    (0, held) if held == total => held,
                    (0, held) => held.min(MAX_SEGMENT - 1),
                    _ => 0,
                };
                let (first, rest) = r.data.split_at(in_place);
                let run = Segment {
                    from_client,
                    seq,
                    ack,
                    flags: PSH | ACK,
                    len: total,
                    data: first,
                };
                self.push_run(r.time_ns, &ends, &comment, &run);
                if !rest.is_empty() {
                    let from = offset + in_place;
                    let to = from + rest.len();
                    let comment = format!("{comment} bytes {from}..{to} of {total}");
                    let retransmit = Segment {
                        seq: seq.wrapping_add(from as u32),
                        len: rest.len(),
                        data: rest,
                        ..run
                    };
                    self.push_run(r.time_ns, &ends, &comment, &retransmit);
                }
            }
            What::Closed => {
                let Conversation {
                    client_next: c,
                    server_next: s,
                    ..
                } = *self.conversation(&r.conn);
                self.conversations.remove(&r.conn);
                let (c1, s1) = (c.wrapping_add(1), s.wrapping_add(1));
                let close = [
                    (true, c, s, FIN | ACK),
                    (false, s, c1, FIN | ACK),
                    (true, c1, s1, ACK),
                ];
                self.push_controls(r.time_ns, &ends, &format!("{label} closed"), close);
            }
        }
        self.out.write_all(&self.block)?;
        self.bytes_written += self.block.len() as u64;
        Ok(())
    }

    /// The conversation's state, begun at an arbitrary base if it was never opened
    /// here (a rotated-away handshake, a supervisor started mid-connection).
    fn conversation(&mut self, conn: &Arc<str>) -> &mut Conversation {
        if !self.conversations.contains_key(conn) {
            let (c, s) = initial_sequences(conn);
            self.remember(conn, c, s);
        }
        self.tick += 1;
        let conv = self.conversations.get_mut(conn).expect("just inserted");
        conv.last_used = self.tick;
        conv
    }

    fn remember(&mut self, conn: &Arc<str>, client_next: u32, server_next: u32) {
        if self.conversations.len() >= MAX_CONVERSATIONS && !self.conversations.contains_key(conn) {
            let oldest = self
                .conversations
                .iter()
                .min_by_key(|(_, c)| c.last_used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.conversations.remove(&oldest);
            }
        }
        self.tick += 1;
        self.conversations.insert(
            conn.clone(),
            Conversation {
                client_next,
                server_next,
                last_used: self.tick,
            },
        );
    }

    /// Frames `run` (any length) as segments of at most [`MAX_SEGMENT`], its data
    /// filling them in order, PSH on the last; a split is noted as `part i/n`.
    fn push_run(&mut self, time_ns: u64, ends: &Endpoints, comment: &str, run: &Segment<'_>) {
        let parts = run.len.div_ceil(MAX_SEGMENT).max(1);
        for part in 0..parts {
            let start = part * MAX_SEGMENT;
            let end = run.len.min(start + MAX_SEGMENT);
            let segment = Segment {
                seq: run.seq.wrapping_add(start as u32),
                flags: if part + 1 == parts { run.flags } else { ACK },
                len: end - start,
                data: &run.data[start.min(run.data.len())..end.min(run.data.len())],
                ..*run
            };
            if parts > 1 {
                let comment = format!("{comment} part {}/{parts}", part + 1);
                self.push_segment(time_ns, ends, &comment, &segment);
            } else {
                self.push_segment(time_ns, ends, comment, &segment);
            }
        }
    }

    /// Segments with no payload (handshake, close): (from client, seq, ack, flags).
    fn push_controls(
        &mut self,
        time_ns: u64,
        ends: &Endpoints,
        comment: &str,
        segments: [(bool, u32, u32, u8); 3],
    ) {
        for (from_client, seq, ack, flags) in segments {
            let segment = Segment {
                from_client,
                seq,
                ack,
                flags,
                len: 0,
                data: &[],
            };
            self.push_segment(time_ns, ends, comment, &segment);
        }
    }

    fn push_segment(
        &mut self,
        time_ns: u64,
        ends: &Endpoints,
        comment: &str,
        segment: &Segment<'_>,
    ) {
        let original_len = build_frame(&mut self.frame, ends, segment);
        push_enhanced_packet(&mut self.block, time_ns, &self.frame, original_len, comment);
    }
}

/// Both directions' initial sequence numbers, from the connection's name so a file
/// is reproducible (FNV-1a).
fn initial_sequences(conn: &str) -> (u32, u32) {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in conn.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    ((hash >> 32) as u32, hash as u32)
}

/// Fills `frame` with the Ethernet, IP and TCP headers and the captured payload of
/// `segment`; returns the frame's length on the wire.
fn build_frame(frame: &mut Vec<u8>, ends: &Endpoints, segment: &Segment<'_>) -> u32 {
    let [(src, sport, smac), (dst, dport, dmac)] = {
        let client = (ends.client.0, ends.client.1, CLIENT_MAC);
        let server = (ends.server.0, ends.server.1, SERVER_MAC);
        if segment.from_client {
            [client, server]
        } else {
            [server, client]
        }
    };
    // At most MAX_SEGMENT, so the IP lengths below fit 16 bits.
    let tcp_len = 20 + segment.len.min(MAX_SEGMENT);
    frame.clear();
    frame.extend_from_slice(&dmac);
    frame.extend_from_slice(&smac);
    let address_sum = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            frame.extend_from_slice(&0x0800u16.to_be_bytes());
            let ip = frame.len();
            frame.extend_from_slice(&[0x45, 0]);
            frame.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
            // Identification 0, Don't Fragment, TTL 64, TCP, checksum filled below.
            frame.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
            frame.extend_from_slice(&s.octets());
            frame.extend_from_slice(&d.octets());
            let checksum = finish(sum(0, &frame[ip..]));
            frame[ip + 10..ip + 12].copy_from_slice(&checksum.to_be_bytes());
            sum(sum(0, &s.octets()), &d.octets())
        }
        (s, d) => {
            let (s, d) = (v6(s), v6(d));
            frame.extend_from_slice(&0x86ddu16.to_be_bytes());
            frame.extend_from_slice(&[0x60, 0, 0, 0]);
            frame.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            frame.extend_from_slice(&[6, 64]);
            frame.extend_from_slice(&s.octets());
            frame.extend_from_slice(&d.octets());
            sum(sum(0, &s.octets()), &d.octets())
        }
    };
    let tcp = frame.len();
    frame.extend_from_slice(&sport.to_be_bytes());
    frame.extend_from_slice(&dport.to_be_bytes());
    frame.extend_from_slice(&segment.seq.to_be_bytes());
    frame.extend_from_slice(&segment.ack.to_be_bytes());
    // Data offset 5 words, flags, window 65535, checksum (below), urgent pointer 0.
    frame.extend_from_slice(&[5 << 4, segment.flags, 0xff, 0xff, 0, 0, 0, 0]);
    frame.extend_from_slice(&segment.data[..segment.data.len().min(tcp_len - 20)]);
    // The checksum is right only over the whole segment: computed when we hold it all,
    // else left 0 (tshark does not check TCP checksums by default, and cannot over a
    // truncated frame anyway).
    if frame.len() - tcp == tcp_len {
        let checksum = finish(sum(address_sum + 6 + tcp_len as u64, &frame[tcp..]));
        frame[tcp + 16..tcp + 18].copy_from_slice(&checksum.to_be_bytes());
    }
    (tcp + tcp_len) as u32
}

/// Adds `bytes` as big-endian 16-bit words (the last odd byte padded with zero).
fn sum(mut acc: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(2);
    for word in &mut words {
        acc += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// The Internet checksum of a sum: folded to 16 bits, complemented.
fn finish(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Section Header Block (little-endian section) and the one Interface Description
/// Block every packet refers to.
fn push_section_header(block: &mut Vec<u8>, comment: &str) {
    let start = begin_block(block, 0x0A0D_0D0A);
    block.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    block.extend_from_slice(&1u16.to_le_bytes());
    block.extend_from_slice(&0u16.to_le_bytes());
    block.extend_from_slice(&(-1i64).to_le_bytes()); // section length unknown
    if !comment.is_empty() {
        push_option(block, 1, clip(comment).as_bytes());
    }
    push_option(block, 4, b"supervise"); // shb_userappl
    push_option(block, 0, &[]);
    end_block(block, start);

    let start = begin_block(block, 1);
    block.extend_from_slice(&1u16.to_le_bytes()); // LINKTYPE_ETHERNET
    block.extend_from_slice(&0u16.to_le_bytes());
    block.extend_from_slice(&0u32.to_le_bytes()); // snaplen: unlimited
    push_option(block, 2, b"mirror"); // if_name
    push_option(block, 9, &[9]); // if_tsresol: 10^-9 s
    push_option(block, 0, &[]);
    end_block(block, start);
}

fn push_enhanced_packet(
    block: &mut Vec<u8>,
    time_ns: u64,
    frame: &[u8],
    original_len: u32,
    comment: &str,
) {
    let start = begin_block(block, 6);
    block.extend_from_slice(&0u32.to_le_bytes()); // interface 0
    block.extend_from_slice(&((time_ns >> 32) as u32).to_le_bytes());
    block.extend_from_slice(&(time_ns as u32).to_le_bytes());
    block.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    block.extend_from_slice(&original_len.to_le_bytes());
    block.extend_from_slice(frame);
    pad(block);
    push_option(block, 1, clip(comment).as_bytes()); // opt_comment
    push_option(block, 0, &[]);
    end_block(block, start);
}

/// Writes the block type and a length placeholder; returns where the block starts.
fn begin_block(block: &mut Vec<u8>, kind: u32) -> usize {
    let start = block.len();
    block.extend_from_slice(&kind.to_le_bytes());
    block.extend_from_slice(&0u32.to_le_bytes());
    start
}

/// Writes the trailing length and patches the leading one.
fn end_block(block: &mut Vec<u8>, start: usize) {
    let len = (block.len() - start + 4) as u32;
    block.extend_from_slice(&len.to_le_bytes());
    block[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
}

fn push_option(block: &mut Vec<u8>, code: u16, value: &[u8]) {
    block.extend_from_slice(&code.to_le_bytes());
    block.extend_from_slice(&(value.len() as u16).to_le_bytes());
    block.extend_from_slice(value);
    pad(block);
}

fn pad(block: &mut Vec<u8>) {
    block.resize(block.len().next_multiple_of(4), 0);
}

/// An option value is at most 65535 bytes: cut at a character boundary below that.
fn clip(s: &str) -> &str {
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
#[path = "pcapng_tests.rs"]
mod tests;
