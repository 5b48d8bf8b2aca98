//! The encoder read back: block lengths, captured vs original, sequence continuity,
//! IPv6, split messages; and real tshark decoding a synthetic PostgreSQL conversation.

use super::*;
use etherparse::{Ethernet2Header, Ipv4Header, Ipv6Header, TcpHeader};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::blocks::section_header::SectionHeaderOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use Origin::{Client, Server};

const C: &str = "10.0.0.1:40000";
const S: &str = "10.0.0.2:5432";
const TIME: u64 = 1_700_000_000_123_456_789;

fn between(client: &str, server: &str, conn: &str, what: What, data: &[u8]) -> Record {
    let (tenant, stream) = (Arc::from("pg-demo"), Arc::from("pg-clients"));
    let (client, server) = (client.parse().unwrap(), server.parse().unwrap());
    let (conn, data) = (Arc::from(conn), data.to_vec());
    Record {
        time_ns: TIME,
        tenant,
        stream,
        conn,
        serial: 3,
        client,
        server,
        what,
        data,
    }
}

fn rec(conn: &str, what: What, data: &[u8]) -> Record {
    between(C, S, conn, what, data)
}

fn msg(kind: &'static str, origin: Origin, original_len: usize, offset: usize) -> What {
    let reason = Arc::from("policy[0]");
    What::Message {
        kind,
        origin,
        original_len,
        offset,
        reason,
    }
}

/// One Enhanced Packet Block read back by `pcap-file`, its headers by `etherparse`.
#[derive(Debug)]
struct Packet {
    time_ns: u128,
    original_len: usize,
    captured_len: usize,
    comment: String,
    ip: Result<Ipv4Header, Ipv6Header>,
    tcp: TcpHeader,
    payload: Vec<u8>,
}

impl Packet {
    fn seq_ack(&self) -> (u32, u32) {
        (self.tcp.sequence_number, self.tcp.acknowledgment_number)
    }
    fn syn_ack_psh_fin(&self) -> (bool, bool, bool, bool) {
        (self.tcp.syn, self.tcp.ack, self.tcp.psh, self.tcp.fin)
    }
}

/// Every packet in `bytes` (any other block but an SHB or IDB fails).
fn packets(bytes: &[u8]) -> Vec<Packet> {
    let mut reader = PcapNgReader::new(bytes).unwrap();
    let mut out = Vec::new();
    while let Some(block) = reader.next_block() {
        let epb = match block.unwrap() {
            Block::EnhancedPacket(epb) => epb,
            Block::SectionHeader(_) | Block::InterfaceDescription(_) => continue,
            other => panic!("{other:?}"),
        };
        let Some(EnhancedPacketOption::Comment(comment)) = epb.options.first() else {
            panic!("no comment on {epb:?}")
        };
        let (eth, rest) = Ethernet2Header::from_slice(&epb.data).unwrap();
        let (ip, rest) = match eth.ether_type.0 {
            0x0800 => Ipv4Header::from_slice(rest)
                .map(|(h, r)| (Ok(h), r))
                .unwrap(),
            _ => Ipv6Header::from_slice(rest)
                .map(|(h, r)| (Err(h), r))
                .unwrap(),
        };
        let (tcp, payload) = TcpHeader::from_slice(rest).unwrap();
        let (time_ns, original_len) = (epb.timestamp.as_nanos(), epb.original_len as usize);
        let (captured_len, comment) = (epb.data.len(), comment.to_string());
        let payload = payload.to_vec();
        out.push(Packet {
            time_ns,
            original_len,
            captured_len,
            comment,
            ip,
            tcp,
            payload,
        });
    }
    out
}

fn encode(records: &[Record]) -> Vec<Packet> {
    let mut writer = PcapngWriter::new(Vec::new(), "").unwrap();
    for r in records {
        writer.record(r).unwrap();
    }
    packets(writer.get_mut())
}

#[test]
fn a_section_is_an_shb_and_an_ethernet_idb_with_nanoseconds() {
    let mut writer = PcapngWriter::new(Vec::new(), "file 1").unwrap();
    let written = writer.bytes_written();
    let bytes = std::mem::take(writer.get_mut());
    assert_eq!(written, bytes.len() as u64);
    let mut reader = PcapNgReader::new(&bytes[..]).unwrap();
    let options = &reader.section().options;
    assert!(options.contains(&SectionHeaderOption::UserApplication("supervise".into())));
    assert!(options.contains(&SectionHeaderOption::Comment("file 1".into())));
    let Some(Ok(Block::InterfaceDescription(idb))) = reader.next_block() else {
        panic!()
    };
    assert_eq!(
        (idb.linktype, idb.snaplen),
        (pcap_file::DataLink::ETHERNET, 0)
    );
    let resolution = InterfaceDescriptionOption::IfTsResol(9);
    assert!(idb.options.contains(&resolution));
    assert!(reader.next_block().is_none());
}

#[test]
fn a_conversation_has_a_handshake_continuous_sequences_and_a_close() {
    let query = b"Q\0\0\0\x0dSELECT 1\0";
    let p = encode(&[
        rec("d/s/c1", What::Opened, b""),
        rec("d/s/c1", msg("Query", Client, 14, 0), query),
        rec("d/s/c1", msg("DataRow", Server, 100, 0), b"D\0\0\0\x63"),
        rec("d/s/c1", What::Closed, b""),
    ]);
    assert_eq!(p.len(), 8);
    let (c, s) = (p[0].tcp.sequence_number, p[1].tcp.sequence_number);
    assert_eq!(p[0].syn_ack_psh_fin(), (true, false, false, false));
    assert_eq!(p[1].syn_ack_psh_fin(), (true, true, false, false));
    assert_eq!(p[1].tcp.acknowledgment_number, c + 1);
    assert_eq!(p[2].seq_ack(), (c + 1, s + 1));
    // The query: whole, so both checksums are right and the lengths agree.
    let Ok(ip) = &p[3].ip else { panic!("IPv4") };
    assert_eq!((ip.source, ip.destination), ([10, 0, 0, 1], [10, 0, 0, 2]));
    assert_eq!(
        (p[3].tcp.source_port, p[3].tcp.destination_port),
        (40000, 5432)
    );
    assert_eq!(ip.header_checksum, ip.calc_header_checksum());
    assert_eq!(
        p[3].tcp.checksum,
        p[3].tcp.calc_checksum_ipv4(ip, query).unwrap()
    );
    assert_eq!(
        (&p[3].payload[..], p[3].original_len),
        (&query[..], 54 + 14)
    );
    assert_eq!(p[3].syn_ack_psh_fin(), (false, true, true, false));
    assert_eq!(p[3].seq_ack(), (c + 1, s + 1));
    // The data row: 5 of 100 bytes captured, the headers count all 100.
    let Ok(ip) = &p[4].ip else { panic!("IPv4") };
    assert_eq!(
        (ip.total_len, ip.header_checksum),
        (140, ip.calc_header_checksum())
    );
    assert_eq!((p[4].captured_len, p[4].original_len), (54 + 5, 54 + 100));
    assert_eq!(
        (p[4].tcp.source_port, p[4].tcp.destination_port),
        (5432, 40000)
    );
    assert_eq!(p[4].seq_ack(), (s + 1, c + 15));
    // The close continues both directions.
    assert_eq!(p[5].syn_ack_psh_fin(), (false, true, false, true));
    assert_eq!(p[5].seq_ack(), (c + 15, s + 101));
    assert_eq!(p[6].seq_ack(), (s + 101, c + 16));
    assert_eq!(p[7].seq_ack(), (c + 16, s + 102));
    assert!(p.iter().all(|p| p.time_ns == u128::from(TIME)));
    assert_eq!(p[0].comment, "pg-demo pg-clients d/s/c1 opened");
    assert_eq!(p[4].comment, "pg-demo pg-clients d/s/c1 DataRow policy[0]");
    assert_eq!(p[7].comment, "pg-demo pg-clients d/s/c1 closed");
}

#[test]
fn ipv6_is_used_when_either_end_is_ipv6_and_mapped_v4_stays_v4() {
    let hello = |client, server| between(client, server, "x", msg("line", Client, 5, 0), b"hello");
    let p = encode(&[
        hello("[2001:db8::1]:40000", "[2001:db8::2]:6543"),
        hello("127.0.0.1:40000", "[::1]:5432"),
        hello("[::ffff:10.0.0.1]:1", "10.0.0.2:2"),
    ]);
    let Err(ip) = &p[0].ip else { panic!("IPv6") };
    assert_eq!((ip.payload_length, p[0].original_len), (25, 14 + 40 + 25));
    assert_eq!(
        p[0].tcp.checksum,
        p[0].tcp.calc_checksum_ipv6(ip, b"hello").unwrap()
    );
    let Err(ip) = &p[1].ip else { panic!("IPv6") };
    let mapped: std::net::Ipv6Addr = "::ffff:127.0.0.1".parse().unwrap();
    assert_eq!(ip.source, mapped.octets());
    let Ok(ip) = &p[2].ip else { panic!("IPv4") };
    assert_eq!(ip.source, [10, 0, 0, 1]);
}

#[test]
fn a_200_kb_message_is_split_and_a_partial_one_keeps_its_first_segment_short() {
    let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    let p = encode(&[
        rec("x", msg("DataRow", Server, 200_000, 0), &data),
        rec("x", msg("DataRow", Server, 200_000, 0), &data[..100_000]),
    ]);
    assert_eq!(p.len(), 4 + 4 + 1);
    let (base, last) = (p[0].tcp.sequence_number, 200_000 - 3 * MAX_SEGMENT);
    let lens: Vec<usize> = p.iter().map(|p| p.original_len - 54).collect();
    assert_eq!(
        lens[..8],
        [MAX_SEGMENT, MAX_SEGMENT, MAX_SEGMENT, last].repeat(2)
    );
    let caps: Vec<usize> = p.iter().map(|p| p.payload.len()).collect();
    let short = MAX_SEGMENT - 1;
    assert_eq!(
        caps[..8],
        [MAX_SEGMENT, MAX_SEGMENT, MAX_SEGMENT, last, short, 0, 0, 0]
    );
    for (i, p) in p[..8].iter().enumerate() {
        let start = (i / 4) * 200_000 + (i % 4) * MAX_SEGMENT;
        assert_eq!(p.tcp.sequence_number, base + start as u32);
        assert_eq!(p.tcp.psh, i % 4 == 3);
        let part = format!("part {}/4", i % 4 + 1);
        assert!(p.comment.ends_with(&part), "{}", p.comment);
    }
    let whole: Vec<u8> = p[..4].iter().flat_map(|p| p.payload.clone()).collect();
    assert_eq!(whole, data);
    // The rest of the prefix, as a retransmission at its own place.
    assert_eq!(p[8].tcp.sequence_number, base + 200_000 + short as u32);
    assert_eq!(p[8].payload, data[short..100_000]);
    let range = format!("bytes {short}..100000 of 200000");
    assert!(p[8].comment.ends_with(&range), "{}", p[8].comment);
}

#[test]
fn a_byte_range_is_a_retransmission_of_just_those_bytes() {
    let p = encode(&[
        rec("x", msg("Query", Client, 100, 10), b"0123456789"),
        rec("x", msg("Query", Client, 5, 0), b"Q\0\0\0\x04"),
    ]);
    assert_eq!(p.len(), 3);
    let base = p[0].tcp.sequence_number;
    assert_eq!((p[0].captured_len, p[0].original_len), (54, 154));
    assert_eq!(p[1].tcp.sequence_number, base + 10);
    assert_eq!(
        (&p[1].payload[..], p[1].original_len),
        (&b"0123456789"[..], 64)
    );
    let comment = "Query policy[0] bytes 10..20 of 100";
    assert!(p[1].comment.ends_with(comment), "{}", p[1].comment);
    assert_eq!(p[2].tcp.sequence_number, base + 100);
}

#[test]
fn unopened_empty_and_inconsistent_records_frame_without_panic() {
    let p = encode(&[
        rec("x", msg("line", Server, 0, 0), b""),
        rec("x", msg("line", Server, 2, 0), b"abcd"),
        rec("x", msg("line", Server, 0, 3), b""),
        rec("y", What::Closed, b""),
    ]);
    assert_eq!(p.len(), 6);
    assert_eq!((p[0].original_len, p[1].original_len), (54, 58));
    assert_eq!(p[1].payload, b"abcd");
    assert_eq!(
        p[2].tcp.sequence_number,
        p[1].tcp.sequence_number.wrapping_add(4)
    );
    assert_eq!((p[2].captured_len, p[2].original_len), (54, 57));
}

#[test]
fn a_restart_writes_a_new_section_and_sequences_continue() {
    let mut w = PcapngWriter::new(Vec::new(), "one").unwrap();
    w.record(&rec("x", msg("line", Client, 10, 0), b"0123456789"))
        .unwrap();
    let first = w.restart(Vec::new(), "two").unwrap();
    assert_eq!(w.bytes_written(), w.get_mut().len() as u64);
    w.record(&rec("x", msg("line", Client, 3, 0), b"abc"))
        .unwrap();
    let (a, b) = (packets(&first), packets(w.get_mut()));
    assert_eq!(b[0].tcp.sequence_number, a[0].tcp.sequence_number + 10);
}
