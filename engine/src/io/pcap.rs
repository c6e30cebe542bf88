//! Reading and writing capture files.
//!
//! Reading accepts classic pcap (either byte order, microsecond or nanosecond
//! magic, version 2.0..=2.4 as libpcap does) and pcapng (any number of
//! sections of either byte order, several interfaces, EPB/SPB packets, every
//! other block skipped), parsed with `pcap-parser`. Frames are normalised to
//! Ethernet at load time so the pipeline only ever sees Ethernet:
//!
//! | link type | becomes |
//! |---|---|
//! | EN10MB (1) | as is (an FCS the link-type field declares is stripped) |
//! | LINUX_SLL (113), LINUX_SLL2 (276) | Ethernet header: source MAC from the cooked header (zero if not 6 bytes), destination the ingress port's MAC, ethertype from the protocol field |
//! | RAW (101, 12, 14), IPV4 (228), IPV6 (229) | Ethernet header with the port's MAC as destination, `02:00:00:00:00:00` as source, ethertype from the IP version |
//! | NULL (0), LOOP (108) | as raw IP, family from the 4-byte header |
//!
//! Any other link type is an error naming it. A capture cut short inside its
//! last record keeps the records before it and reports a warning.
//!
//! Writing produces classic pcap with nanosecond timestamps and link type
//! EN10MB.

use std::io::Write;
use std::path::Path;

use pcap_parser::pcapng::{self, Block};
use pcap_parser::{Linktype, PcapError as PpError};
use thiserror::Error;

use crate::wire::Mac;

/// A capture that cannot be read.
#[derive(Debug, Error)]
pub enum PcapError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: not a pcap or pcapng file (magic {magic:#010x})")]
    NotACapture { file: String, magic: u32 },
    #[error("{file}: unsupported pcap version {major}.{minor} (2.0 to 2.4 are read)")]
    PcapVersion {
        file: String,
        major: u16,
        minor: u16,
    },
    #[error("{file}: unsupported pcapng section version {major}.{minor} (1.0 is read)")]
    PcapngVersion {
        file: String,
        major: u16,
        minor: u16,
    },
    #[error("{file}: link-type field {raw:#010x} has reserved bits set")]
    LinktypeReserved { file: String, raw: u32 },
    #[error("{file}: unsupported link type {name} ({number}); sluice reads Ethernet, Linux cooked (SLL, SLL2), raw IP and NULL/LOOP captures")]
    UnsupportedLinktype {
        file: String,
        number: u32,
        name: &'static str,
    },
    #[error("{file}: corrupt capture at byte {offset}: {what}")]
    Corrupt {
        file: String,
        offset: usize,
        what: String,
    },
}

impl PcapError {
    /// Whether the error is the input's fault (exit 2) rather than I/O (exit 1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            // A file that is not there or cannot be opened is the user's
            // input; a read that fails midway is the machine's.
            PcapError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::IsADirectory
            ),
            _ => true,
        }
    }
}

/// One frame of a loaded capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRec {
    /// Timestamp, nanoseconds since the epoch (saturating at 0).
    pub ts_ns: u64,
    /// Offset of the frame in [`Capture::data`].
    pub off: usize,
    /// Length in bytes.
    pub len: u32,
}

/// A capture loaded into memory, every frame as Ethernet.
#[derive(Debug, Default)]
pub struct Capture {
    pub frames: Vec<FrameRec>,
    pub data: Vec<u8>,
    pub warnings: Vec<String>,
}

impl Capture {
    /// Bytes of frame `i`.
    pub fn frame(&self, i: usize) -> &[u8] {
        self.frames
            .get(i)
            .and_then(|f| self.data.get(f.off..f.off + f.len as usize))
            .unwrap_or(&[])
    }
}

/// Name of a link type, for messages.
pub fn linktype_name(lt: u32) -> &'static str {
    match lt {
        0 => "NULL",
        1 => "EN10MB",
        9 => "PPP",
        12 | 14 | 101 => "RAW",
        104 => "C_HDLC",
        105 => "IEEE802_11",
        108 => "LOOP",
        113 => "LINUX_SLL",
        127 => "IEEE802_11_RADIOTAP",
        147..=162 => "USER0-15",
        192 => "PPI",
        220 => "USB_LINUX_MMAPPED",
        228 => "IPV4",
        229 => "IPV6",
        231 => "DBUS",
        239 => "NFLOG",
        276 => "LINUX_SLL2",
        _ => "unknown",
    }
}

/// How to turn a link type's frames into Ethernet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Ethernet { fcs: usize },
    Sll,
    Sll2,
    Raw,
    RawV4,
    RawV6,
    Null,
    Loop,
}

fn link_for(file: &str, raw: u32) -> Result<Link, PcapError> {
    if raw & 0x03ff_0000 != 0 {
        return Err(PcapError::LinktypeReserved {
            file: file.to_string(),
            raw,
        });
    }
    let lt = raw & 0xffff;
    // Bit 26 says the frames carry an FCS of (bits 28..31) 16-bit words.
    let fcs = if raw & 0x0400_0000 != 0 {
        ((raw >> 28) as usize) * 2
    } else {
        0
    };
    Ok(match lt {
        1 => Link::Ethernet { fcs },
        113 => Link::Sll,
        276 => Link::Sll2,
        12 | 14 | 101 => Link::Raw,
        228 => Link::RawV4,
        229 => Link::RawV6,
        0 => Link::Null,
        108 => Link::Loop,
        _ => {
            return Err(PcapError::UnsupportedLinktype {
                file: file.to_string(),
                number: lt,
                name: linktype_name(lt),
            })
        }
    })
}

const SYNTH_SRC: Mac = [0x02, 0, 0, 0, 0, 0];

fn push_eth(out: &mut Vec<u8>, dst: &Mac, src: &Mac, ethertype: u16, payload: &[u8]) {
    out.extend_from_slice(dst);
    out.extend_from_slice(src);
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(payload);
}

fn ip_ethertype(payload: &[u8]) -> u16 {
    match payload.first().map(|b| b >> 4) {
        Some(6) => 0x86dd,
        _ => 0x0800,
    }
}

/// Appends `data` (a frame of link type `link`) to `out` as Ethernet.
/// Returns false when the frame is too short for its link header (it is then
/// kept as a short Ethernet frame, which the parser counts as malformed).
fn normalise(link: Link, data: &[u8], port_mac: &Mac, out: &mut Vec<u8>) {
    match link {
        Link::Ethernet { fcs } => {
            let keep = data.len().saturating_sub(fcs);
            out.extend_from_slice(&data[..keep]);
        }
        Link::Sll => match data.get(..16) {
            Some(h) => {
                let halen = usize::from(u16::from_be_bytes([h[4], h[5]]));
                let mut src = [0u8; 6];
                if halen == 6 {
                    src.copy_from_slice(&h[6..12]);
                }
                let proto = u16::from_be_bytes([h[14], h[15]]);
                push_eth(out, port_mac, &src, proto, &data[16..]);
            }
            None => out.extend_from_slice(&data[..data.len().min(13)]),
        },
        Link::Sll2 => match data.get(..20) {
            Some(h) => {
                let proto = u16::from_be_bytes([h[0], h[1]]);
                let halen = usize::from(h[11]);
                let mut src = [0u8; 6];
                if halen == 6 {
                    src.copy_from_slice(&h[12..18]);
                }
                push_eth(out, port_mac, &src, proto, &data[20..]);
            }
            None => out.extend_from_slice(&data[..data.len().min(13)]),
        },
        Link::Raw => push_eth(out, port_mac, &SYNTH_SRC, ip_ethertype(data), data),
        Link::RawV4 => push_eth(out, port_mac, &SYNTH_SRC, 0x0800, data),
        Link::RawV6 => push_eth(out, port_mac, &SYNTH_SRC, 0x86dd, data),
        Link::Null | Link::Loop => match data.get(..4) {
            Some(h) => {
                let le = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
                let be = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
                let family = if link == Link::Loop || be < 256 {
                    be
                } else {
                    le
                };
                let ethertype = match family {
                    2 => 0x0800,
                    10 | 24 | 28 | 30 => 0x86dd,
                    // Not IP: an ethertype nothing parses, so the kernel gets it.
                    _ => 0x0000,
                };
                push_eth(out, port_mac, &SYNTH_SRC, ethertype, &data[4..]);
            }
            None => out.extend_from_slice(&data[..data.len().min(13)]),
        },
    }
}

/// Loads a capture file, normalising frames to Ethernet. `port_mac` is the
/// ingress port's MAC, used as destination of synthesised Ethernet headers.
pub fn read_file(path: &Path, port_mac: &Mac) -> Result<Capture, PcapError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| PcapError::Io {
        file: file.clone(),
        source,
    })?;
    read_bytes(&bytes, &file, port_mac)
}

/// Loads a capture from memory; `file` names it in errors.
pub fn read_bytes(bytes: &[u8], file: &str, port_mac: &Mac) -> Result<Capture, PcapError> {
    let magic = match bytes.get(..4) {
        Some(m) => u32::from_le_bytes([m[0], m[1], m[2], m[3]]),
        None => {
            return Err(PcapError::NotACapture {
                file: file.to_string(),
                magic: 0,
            })
        }
    };
    match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d | 0xd4c3_b2a1 | 0x4d3c_b2a1 => read_pcap(bytes, file, port_mac),
        0x0a0d_0d0a => read_pcapng(bytes, file, port_mac),
        _ => Err(PcapError::NotACapture {
            file: file.to_string(),
            magic,
        }),
    }
}

fn corrupt(file: &str, offset: usize, what: impl Into<String>) -> PcapError {
    PcapError::Corrupt {
        file: file.to_string(),
        offset,
        what: what.into(),
    }
}

fn read_pcap(bytes: &[u8], file: &str, port_mac: &Mac) -> Result<Capture, PcapError> {
    let (mut rest, hdr) = pcap_parser::pcap::parse_pcap_header(bytes)
        .map_err(|_| corrupt(file, 0, "global header cut short"))?;
    if hdr.version_major != 2 || hdr.version_minor > 4 {
        return Err(PcapError::PcapVersion {
            file: file.to_string(),
            major: hdr.version_major,
            minor: hdr.version_minor,
        });
    }
    let link = link_for(file, hdr.network.0 as u32)?;
    let nano = hdr.is_nanosecond_precision();
    let be = hdr.is_bigendian();
    let mut cap = Capture::default();
    while !rest.is_empty() {
        let offset = bytes.len() - rest.len();
        let parsed = if be {
            pcap_parser::pcap::parse_pcap_frame_be(rest)
        } else {
            pcap_parser::pcap::parse_pcap_frame(rest)
        };
        match parsed {
            Ok((r, f)) => {
                let sub = if nano {
                    u64::from(f.ts_usec)
                } else {
                    u64::from(f.ts_usec) * 1000
                };
                let ts = u64::from(f.ts_sec) * 1_000_000_000 + sub;
                let off = cap.data.len();
                normalise(link, f.data, port_mac, &mut cap.data);
                cap.frames.push(FrameRec {
                    ts_ns: ts,
                    off,
                    len: (cap.data.len() - off) as u32,
                });
                rest = r;
            }
            Err(_) => {
                cap.warnings.push(format!(
                    "{file}: record at byte {offset} is cut short; {} records read",
                    cap.frames.len()
                ));
                break;
            }
        }
    }
    Ok(cap)
}

struct Iface {
    link: Result<Link, PcapError>,
    /// Timestamp units per second.
    res: u64,
    offset_s: i64,
}

fn read_pcapng(bytes: &[u8], file: &str, port_mac: &Mac) -> Result<Capture, PcapError> {
    let mut cap = Capture::default();
    let mut rest = bytes;
    let mut big_endian = false;
    let mut ifaces: Vec<Iface> = Vec::new();
    while !rest.is_empty() {
        let offset = bytes.len() - rest.len();
        let is_shb = rest.get(..4) == Some(&[0x0a, 0x0d, 0x0d, 0x0a]);
        let parsed = if is_shb {
            pcapng::parse_sectionheaderblock(rest).map(|(r, b)| (r, Block::SectionHeader(b)))
        } else if big_endian {
            pcapng::parse_block_be(rest)
        } else {
            pcapng::parse_block_le(rest)
        };
        let (r, block) = match parsed {
            Ok(x) => x,
            Err(pcap_parser::nom::Err::Incomplete(_))
            | Err(pcap_parser::nom::Err::Error(PpError::Incomplete(_))) => {
                if offset == 0 {
                    return Err(corrupt(file, 0, "section header cut short"));
                }
                cap.warnings.push(format!(
                    "{file}: block at byte {offset} is cut short; {} packets read",
                    cap.frames.len()
                ));
                break;
            }
            Err(e) => {
                return Err(corrupt(
                    file,
                    offset,
                    format!("invalid block ({})", describe(&e)),
                ));
            }
        };
        match block {
            Block::SectionHeader(shb) => {
                if shb.major_version != 1 || shb.minor_version != 0 {
                    return Err(PcapError::PcapngVersion {
                        file: file.to_string(),
                        major: shb.major_version,
                        minor: shb.minor_version,
                    });
                }
                big_endian = shb.big_endian();
                ifaces.clear();
            }
            Block::InterfaceDescription(idb) => {
                let Linktype(lt) = idb.linktype;
                ifaces.push(Iface {
                    link: link_for(file, lt as u32),
                    res: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                    offset_s: idb.ts_offset(),
                });
            }
            Block::EnhancedPacket(epb) => {
                let iface = ifaces.get(epb.if_id as usize).ok_or_else(|| {
                    corrupt(
                        file,
                        offset,
                        format!("packet on undeclared interface {}", epb.if_id),
                    )
                })?;
                let link = iface.link.as_ref().map_err(clone_err)?;
                let units = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                let ns = u128::from(units) * 1_000_000_000 / u128::from(iface.res);
                let ns = (ns as i128 + i128::from(iface.offset_s) * 1_000_000_000).max(0);
                let caplen = (epb.caplen as usize).min(epb.data.len());
                let off = cap.data.len();
                normalise(*link, &epb.data[..caplen], port_mac, &mut cap.data);
                cap.frames.push(FrameRec {
                    ts_ns: u64::try_from(ns).unwrap_or(u64::MAX),
                    off,
                    len: (cap.data.len() - off) as u32,
                });
            }
            Block::SimplePacket(spb) => {
                let iface = ifaces
                    .first()
                    .ok_or_else(|| corrupt(file, offset, "simple packet before any interface"))?;
                let link = iface.link.as_ref().map_err(clone_err)?;
                let caplen = (spb.origlen as usize).min(spb.data.len());
                let off = cap.data.len();
                normalise(*link, &spb.data[..caplen], port_mac, &mut cap.data);
                // Simple packets carry no timestamp: keep the last one.
                let ts = cap.frames.last().map(|f| f.ts_ns).unwrap_or(0);
                cap.frames.push(FrameRec {
                    ts_ns: ts,
                    off,
                    len: (cap.data.len() - off) as u32,
                });
            }
            _ => {}
        }
        if r.len() >= rest.len() {
            return Err(corrupt(file, offset, "block makes no progress"));
        }
        rest = r;
    }
    Ok(cap)
}

fn clone_err(e: &PcapError) -> PcapError {
    match e {
        PcapError::UnsupportedLinktype { file, number, name } => PcapError::UnsupportedLinktype {
            file: file.clone(),
            number: *number,
            name,
        },
        PcapError::LinktypeReserved { file, raw } => PcapError::LinktypeReserved {
            file: file.clone(),
            raw: *raw,
        },
        other => PcapError::Corrupt {
            file: String::new(),
            offset: 0,
            what: other.to_string(),
        },
    }
}

fn describe(e: &pcap_parser::nom::Err<PpError<&[u8]>>) -> String {
    match e {
        pcap_parser::nom::Err::Incomplete(_) => "cut short".into(),
        pcap_parser::nom::Err::Error(x) | pcap_parser::nom::Err::Failure(x) => match x {
            PpError::NomError(_, k) => format!("{k:?}"),
            PpError::HeaderNotRecognized => "header not recognised".into(),
            other => format!("{other:?}").chars().take(60).collect(),
        },
    }
}

/// Writes classic pcap (nanosecond timestamps, Ethernet).
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header.
    pub fn new(mut out: W) -> std::io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&0xa1b2_3c4du32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&262_144u32.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out })
    }

    /// Appends a frame.
    pub fn write(&mut self, ts_ns: u64, frame: &[u8]) -> std::io::Result<()> {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&((ts_ns / 1_000_000_000) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&((ts_ns % 1_000_000_000) as u32).to_le_bytes());
        h[8..12].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(frame)
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: Mac = [2, 0, 0, 0, 0, 1];

    #[test]
    fn write_then_read() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(1_500_000_000_123, &[1; 60]).unwrap();
        w.write(1_500_000_001_000, &[2; 14]).unwrap();
        let bytes = w.finish().unwrap();
        let c = read_bytes(&bytes, "mem", &MAC).unwrap();
        assert_eq!(c.frames.len(), 2);
        assert_eq!(c.frames[0].ts_ns, 1_500_000_000_123);
        assert_eq!(c.frame(0), &[1; 60][..]);
        assert_eq!(c.frame(1), &[2; 14][..]);
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn truncated_last_record_is_a_warning() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(1, &[1; 60]).unwrap();
        w.write(2, &[2; 60]).unwrap();
        let mut bytes = w.finish().unwrap();
        bytes.truncate(bytes.len() - 10);
        let c = read_bytes(&bytes, "mem", &MAC).unwrap();
        assert_eq!(c.frames.len(), 1);
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn raw_ip_becomes_ethernet() {
        let mut out = Vec::new();
        normalise(Link::Raw, &[0x60, 0, 0, 0], &MAC, &mut out);
        assert_eq!(&out[0..6], &MAC);
        assert_eq!(&out[12..14], &[0x86, 0xdd]);
        assert_eq!(&out[14..], &[0x60, 0, 0, 0]);
    }

    #[test]
    fn rejects_unknown() {
        assert!(matches!(
            read_bytes(b"hello world", "x", &MAC),
            Err(PcapError::NotACapture { .. })
        ));
        let mut h = PcapWriter::new(Vec::new()).unwrap().finish().unwrap();
        h[20..24].copy_from_slice(&239u32.to_le_bytes());
        let e = read_bytes(&h, "x.pcap", &MAC).unwrap_err().to_string();
        assert!(e.contains("NFLOG (239)"), "{e}");
    }
}
