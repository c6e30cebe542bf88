//! A pcapng writer for `ctl capture`: one interface per sluice port, and
//! per packet its direction (the enhanced packet block's flags: inbound or
//! outbound) and a comment with the port and verdict, which tshark shows
//! as `frame.interface_name`, `frame.packet_flags_direction` and
//! `frame.comment`. Little-endian, microsecond timestamps.

use std::io::Write;

/// A packet's direction (`epb_flags` bits 0-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// Writes blocks to `out`.
#[derive(Debug)]
pub struct PcapngWriter<W: Write> {
    out: W,
    written: u64,
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// An option: code, length, value padded to 4 bytes.
fn option(buf: &mut Vec<u8>, code: u16, value: &[u8]) {
    buf.extend_from_slice(&code.to_le_bytes());
    buf.extend_from_slice(&(value.len() as u16).to_le_bytes());
    buf.extend_from_slice(value);
    buf.resize(pad4(buf.len()), 0);
}

impl<W: Write> PcapngWriter<W> {
    /// Writes the section header and one interface description per name
    /// in `interfaces` (Ethernet; interface `i` is port `i`).
    pub fn new(out: W, interfaces: &[String]) -> std::io::Result<Self> {
        let mut w = PcapngWriter { out, written: 0 };
        // Section header: byte-order magic, version 1.0, length unknown.
        let mut body = Vec::new();
        body.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&(-1i64).to_le_bytes());
        option(&mut body, 4, b"sluice ctl capture"); // shb_userappl
        option(&mut body, 0, b"");
        w.block(0x0a0d_0d0a, &body)?;
        for name in interfaces {
            let mut b = Vec::new();
            b.extend_from_slice(&1u16.to_le_bytes()); // LINKTYPE_ETHERNET
            b.extend_from_slice(&0u16.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes()); // no snap length
            option(&mut b, 2, name.as_bytes()); // if_name
            option(&mut b, 9, &[6]); // if_tsresol: microseconds
            option(&mut b, 0, b"");
            w.block(1, &b)?;
        }
        Ok(w)
    }

    fn block(&mut self, kind: u32, body: &[u8]) -> std::io::Result<()> {
        let len = (12 + pad4(body.len())) as u32;
        let mut b = Vec::with_capacity(len as usize);
        b.extend_from_slice(&kind.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(body);
        b.resize(8 + pad4(body.len()), 0);
        b.extend_from_slice(&len.to_le_bytes());
        self.out.write_all(&b)?;
        self.written += u64::from(len);
        Ok(())
    }

    /// Appends a packet seen on interface `iface` at `ts_ns` (Unix time).
    pub fn packet(
        &mut self,
        iface: u32,
        ts_ns: u64,
        frame: &[u8],
        dir: Direction,
        comment: &str,
    ) -> std::io::Result<()> {
        let us = ts_ns / 1000;
        let mut b = Vec::with_capacity(32 + pad4(frame.len()) + pad4(comment.len()) + 16);
        b.extend_from_slice(&iface.to_le_bytes());
        b.extend_from_slice(&((us >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(us as u32).to_le_bytes());
        b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        b.extend_from_slice(frame);
        b.resize(pad4(b.len()), 0);
        if !comment.is_empty() {
            option(&mut b, 1, comment.as_bytes()); // opt_comment
        }
        let flags: u32 = match dir {
            Direction::Inbound => 1,
            Direction::Outbound => 2,
        };
        option(&mut b, 2, &flags.to_le_bytes()); // epb_flags
        option(&mut b, 0, b"");
        self.block(6, &b)
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flushes.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_parser::traits::PcapReaderIterator;

    #[test]
    fn pcap_parser_reads_interfaces_packets_and_options() {
        let mut w = PcapngWriter::new(Vec::new(), &["a (p0)".into(), "b (p1)".into()]).unwrap();
        w.packet(
            1,
            1_700_000_000_123_456_789,
            &[0xab; 61],
            Direction::Outbound,
            "tx port=b",
        )
        .unwrap();
        w.packet(
            0,
            1_700_000_000_223_456_789,
            &[0xcd; 60],
            Direction::Inbound,
            "",
        )
        .unwrap();
        let bytes = w.out.clone();
        assert_eq!(w.written(), bytes.len() as u64);
        let mut rest = &bytes[..];
        let mut reader = pcap_parser::PcapNGReader::new(1 << 16, &mut rest).unwrap();
        let mut seen = Vec::new();
        loop {
            match reader.next() {
                Ok((off, block)) => {
                    if let pcap_parser::PcapBlockOwned::NG(b) = block {
                        match b {
                            pcap_parser::Block::InterfaceDescription(i) => {
                                seen.push(format!("if {}", i.linktype.0))
                            }
                            pcap_parser::Block::EnhancedPacket(p) => {
                                seen.push(format!("pkt {} {} {}", p.if_id, p.caplen, p.data.len()))
                            }
                            _ => {}
                        }
                    }
                    reader.consume(off);
                }
                Err(pcap_parser::PcapError::Eof) => break,
                Err(pcap_parser::PcapError::Incomplete(_)) => reader.refill().unwrap(),
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(seen, vec!["if 1", "if 1", "pkt 1 61 64", "pkt 0 60 60"]);
    }
}
