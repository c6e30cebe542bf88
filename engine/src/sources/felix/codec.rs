//! Felix's framing (`shared/spec/felix.md` section 1): each message is an
//! 8-byte little-endian length followed by that many bytes of protobuf,
//! in both directions (as `felix/dataplane/external/ext_dataplane.go`
//! writes and reads them).
//!
//! [`FrameDecoder`] is sans-IO: bytes go in however the reads split them,
//! whole frames come out. A frame longer than the cap is refused as soon
//! as its header is read (nothing that size is ever buffered); a stream
//! that ends inside a frame is [`FrameError::Truncated`], one that ends
//! between frames is a clean end. After an error the decoder stays failed:
//! the session it belongs to is over. [`FrameReader`] drives it over a
//! blocking reader; [`frame`] and [`write_message`] write.

use std::io::{self, Read, Write};

use thiserror::Error;

/// Bytes of a frame's length header.
pub const HEADER: usize = 8;

/// The default cap on one frame's length (`felix.max_frame`).
pub const DEFAULT_MAX_FRAME: u64 = 64 << 20;

/// Why a stream of frames is unusable. `index` counts frames from 0.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame {index}: length {len} bytes is over the limit of {max} (felix.max_frame)")]
    Oversize { index: u64, len: u64, max: u64 },
    #[error("the stream ended inside frame {index}: {have} of its {need} bytes arrived")]
    Truncated { index: u64, have: u64, need: u64 },
    #[error("frame {index}: not a felix.{what} message: {msg}")]
    Decode {
        index: u64,
        what: &'static str,
        msg: String,
    },
}

/// An error reading frames from a stream.
#[derive(Debug, Error)]
pub enum ReadError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("reading frame {index}: {source}")]
    Io { index: u64, source: io::Error },
}

/// Splits a byte stream into frames (see the module docs).
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out.
    start: usize,
    max: u64,
    frames: u64,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder refusing frames longer than `max` bytes.
    pub fn new(max: u64) -> FrameDecoder {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            max,
            frames: 0,
            failed: None,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame's payload, `None` until more bytes arrive.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let avail = &self.buf[self.start..];
        let Some(head) = avail.first_chunk::<HEADER>() else {
            return Ok(None);
        };
        let len = u64::from_le_bytes(*head);
        if len > self.max {
            let e = FrameError::Oversize {
                index: self.frames,
                len,
                max: self.max,
            };
            self.failed = Some(e.clone());
            return Err(e);
        }
        // len <= max, which the caller chose to fit in memory.
        let len = len as usize;
        if avail.len() - HEADER < len {
            return Ok(None);
        }
        let from = self.start + HEADER;
        self.start = from + len;
        self.frames += 1;
        Ok(Some(&self.buf[from..from + len]))
    }

    /// The stream has ended: fine between frames, an error inside one.
    pub fn finish(&mut self) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let have = (self.buf.len() - self.start) as u64;
        if have == 0 {
            return Ok(());
        }
        let need = match self.buf[self.start..].first_chunk::<HEADER>() {
            Some(h) => HEADER as u64 + u64::from_le_bytes(*h),
            None => HEADER as u64,
        };
        let e = FrameError::Truncated {
            index: self.frames,
            have,
            need,
        };
        self.failed = Some(e.clone());
        Err(e)
    }

    /// Whole frames handed out so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Bytes received and not yet part of a whole frame.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// Whole frames from a blocking reader.
#[derive(Debug)]
pub struct FrameReader<R> {
    r: R,
    dec: FrameDecoder,
    chunk: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    /// Frames of `r`, each at most `max` bytes.
    pub fn new(r: R, max: u64) -> FrameReader<R> {
        FrameReader {
            r,
            dec: FrameDecoder::new(max),
            chunk: vec![0; 64 << 10],
        }
    }

    /// The next frame's payload; `None` at a clean end of the stream.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        loop {
            if let Some(f) = self.dec.next_frame()? {
                return Ok(Some(f.to_vec()));
            }
            let n = match self.r.read(&mut self.chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(ReadError::Io {
                        index: self.dec.frames(),
                        source,
                    })
                }
            };
            if n == 0 {
                self.dec.finish()?;
                return Ok(None);
            }
            self.dec.push(&self.chunk[..n]);
        }
    }

    /// The frames read so far.
    pub fn frames(&self) -> u64 {
        self.dec.frames()
    }
}

/// `payload` framed: its length header, then the bytes.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Encodes and frames a message.
pub fn encode<M: prost::Message>(m: &M) -> Vec<u8> {
    frame(&m.encode_to_vec())
}

/// Writes one framed message (a single write of header and body).
pub fn write_message<M: prost::Message>(w: &mut impl Write, m: &M) -> io::Result<()> {
    w.write_all(&encode(m))
}

/// Decodes frame `index` as a `felix.ToDataplane`.
pub fn decode_to_dataplane(
    index: u64,
    payload: &[u8],
) -> Result<super::proto::ToDataplane, FrameError> {
    prost::Message::decode(payload).map_err(|e: prost::DecodeError| FrameError::Decode {
        index,
        what: "ToDataplane",
        msg: e.to_string(),
    })
}

/// Decodes frame `index` as a `felix.FromDataplane`.
pub fn decode_from_dataplane(
    index: u64,
    payload: &[u8],
) -> Result<super::proto::FromDataplane, FrameError> {
    prost::Message::decode(payload).map_err(|e: prost::DecodeError| FrameError::Decode {
        index,
        what: "FromDataplane",
        msg: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    // Tests: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::super::proto::{self, to_dataplane::Payload, ToDataplane};
    use super::*;

    fn msgs() -> Vec<ToDataplane> {
        let mut cfg = proto::ConfigUpdate::default();
        cfg.config
            .insert("InterfacePrefix".into(), "cali,tap".into());
        vec![
            ToDataplane {
                sequence_number: 0,
                payload: Some(Payload::ConfigUpdate(cfg)),
            },
            ToDataplane {
                sequence_number: 1,
                payload: Some(Payload::IpsetUpdate(proto::IpSetUpdate {
                    id: "s:abc".into(),
                    members: vec!["10.0.0.1/32".into(), "fd00::/64".into()],
                    r#type: proto::IpSetType::Net as i32,
                })),
            },
            // An empty message is a zero-length frame.
            ToDataplane::default(),
            ToDataplane {
                sequence_number: 3,
                payload: Some(Payload::InSync(proto::InSync {})),
            },
        ]
    }

    fn stream() -> Vec<u8> {
        msgs().iter().flat_map(encode).collect()
    }

    fn decode_all(dec: &mut FrameDecoder) -> Vec<ToDataplane> {
        let mut out = Vec::new();
        loop {
            let i = dec.frames();
            let Some(f) = dec.next_frame().unwrap() else {
                return out;
            };
            out.push(decode_to_dataplane(i, f).unwrap());
        }
    }

    #[test]
    fn round_trip_in_one_read() {
        let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME);
        d.push(&stream());
        assert_eq!(decode_all(&mut d), msgs());
        assert_eq!(d.frames(), 4);
        assert!(d.finish().is_ok());
    }

    #[test]
    fn split_reads_at_every_byte_boundary() {
        let s = stream();
        for cut in 0..=s.len() {
            let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME);
            d.push(&s[..cut]);
            let mut got = decode_all(&mut d);
            d.push(&s[cut..]);
            got.extend(decode_all(&mut d));
            assert_eq!(got, msgs(), "cut at {cut}");
            assert!(d.finish().is_ok(), "cut at {cut}");
        }
        // And one byte at a time.
        let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut got = Vec::new();
        for b in &s {
            d.push(std::slice::from_ref(b));
            got.extend(decode_all(&mut d));
        }
        assert_eq!(got, msgs());
    }

    /// A reader handing out at most `n` bytes per read.
    struct Trickle(Vec<u8>, usize, usize);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len() - self.2);
            buf[..n].copy_from_slice(&self.0[self.2..self.2 + n]);
            self.2 += n;
            Ok(n)
        }
    }

    #[test]
    fn reader_over_short_reads_ends_cleanly_between_frames() {
        for n in [1, 3, 8, 9, 1000] {
            let mut r = FrameReader::new(Trickle(stream(), n, 0), DEFAULT_MAX_FRAME);
            let mut got = Vec::new();
            while let Some(f) = r.next_frame().unwrap() {
                got.push(decode_to_dataplane(r.frames() - 1, &f).unwrap());
            }
            assert_eq!(got, msgs(), "reads of {n}");
        }
        // Nothing at all is a clean (empty) stream.
        let mut r = FrameReader::new(&[][..], DEFAULT_MAX_FRAME);
        assert!(r.next_frame().unwrap().is_none());
    }

    #[test]
    fn eof_inside_a_frame_is_truncated() {
        let s = stream();
        let first = encode(&msgs()[0]).len();
        // Inside the second frame's header, then inside its body.
        for cut in [first + 3, first + HEADER + 2] {
            let mut r = FrameReader::new(&s[..cut], DEFAULT_MAX_FRAME);
            assert!(r.next_frame().unwrap().is_some());
            let e = r.next_frame().unwrap_err();
            let ReadError::Frame(FrameError::Truncated { index, have, need }) = e else {
                panic!("{e}");
            };
            assert_eq!((index, have), (1, (cut - first) as u64));
            let body = encode(&msgs()[1]).len() as u64;
            assert_eq!(need, if cut - first < HEADER { 8 } else { body });
        }
    }

    #[test]
    fn oversize_frames_are_refused_from_the_header() {
        let mut d = FrameDecoder::new(16);
        d.push(&frame(&[7; 16]));
        assert_eq!(d.next_frame().unwrap(), Some(&[7u8; 16][..]));
        // Only the header of a huge frame: refused at once, and for good.
        d.push(&u64::MAX.to_le_bytes());
        let e = d.next_frame().unwrap_err();
        assert_eq!(
            e,
            FrameError::Oversize {
                index: 1,
                len: u64::MAX,
                max: 16
            }
        );
        assert!(e.to_string().contains("felix.max_frame"), "{e}");
        d.push(&frame(b"x"));
        assert_eq!(d.next_frame().unwrap_err(), e);
        assert_eq!(d.finish().unwrap_err(), e);
    }

    #[test]
    fn garbage_is_a_decode_error_naming_the_frame() {
        // Field 1, wire type 2 (length-delimited), length 100, 1 byte.
        let e = decode_to_dataplane(5, &[0x0a, 100, 0]).unwrap_err();
        assert!(
            matches!(
                e,
                FrameError::Decode {
                    index: 5,
                    what: "ToDataplane",
                    ..
                }
            ),
            "{e}"
        );
        // An unknown payload field (a newer Felix) decodes, as no payload.
        let mut unknown = vec![0xf8, 0x07, 0x01]; // field 127, varint 1
        unknown.extend_from_slice(&[0x78, 9]); // sequence_number = 9
        let m = decode_to_dataplane(0, &unknown).unwrap();
        assert_eq!((m.sequence_number, m.payload), (9, None));
    }
}
