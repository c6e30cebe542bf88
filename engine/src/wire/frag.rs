//! IPv4 fragmentation as Linux's forwarding does it (`ip_do_fragment`, its
//! slow path, which a forwarded linear packet takes): every fragment but
//! the last carries the largest multiple of 8 bytes of data that fits the
//! MTU after the header; each gets a copy of the header with its own
//! length, offset, more-fragments flag and checksum (the ID, TTL and the
//! rest as the packet has them); after the first fragment, options
//! without the "copied" bit become no-ops (`ip_options_fragment`). A
//! packet that is itself a fragment keeps its offset and, if it was not
//! the last, the flag on every piece.
//!
//! No allocation: [`Fragments`] writes one fragment at a time into a
//! buffer the caller provides (a free frame, live).

const MF: u16 = 0x2000;
const OFFSET: u16 = 0x1fff;

/// The fragments of one packet, written one by one.
#[derive(Clone, Debug)]
pub struct Fragments {
    l3: usize,
    hlen: usize,
    end: usize,
    /// Data bytes in every fragment but the last.
    step: usize,
    /// Next data byte of the packet to send (offset from `l3 + hlen`).
    ptr: usize,
    /// The packet's own fragment offset (bytes).
    base: usize,
    not_last: bool,
}

impl Fragments {
    /// Plans the fragments of the IPv4 packet at `l3` (ending at `end`,
    /// link padding excluded) for an egress MTU of `mtu`; `None` when the
    /// header is malformed or the MTU leaves no room for 8 bytes of data.
    pub fn new(frame: &[u8], l3: usize, end: usize, mtu: usize) -> Option<Fragments> {
        let h = frame.get(l3..end)?;
        if h.len() < 20 || h[0] >> 4 != 4 {
            return None;
        }
        let hlen = usize::from(h[0] & 15) * 4;
        let fo = u16::from_be_bytes([h[6], h[7]]);
        let step = mtu.checked_sub(hlen)? & !7;
        if hlen < 20 || hlen > h.len() || step == 0 {
            return None;
        }
        Some(Fragments {
            l3,
            hlen,
            end,
            step,
            ptr: 0,
            base: usize::from(fo & OFFSET) * 8,
            not_last: fo & MF != 0,
        })
    }

    /// Number of fragments.
    pub fn count(&self) -> usize {
        (self.end - self.l3 - self.hlen).div_ceil(self.step).max(1)
    }

    /// Writes the next fragment (the link header `frame[..l3]`, its IP
    /// header, its data) into `out` and returns its length; `None` when
    /// all are written or `out` is too small. `frame` is the packet (its
    /// options change after the first fragment, as Linux changes them).
    pub fn write_next(&mut self, frame: &mut [u8], out: &mut [u8]) -> Option<usize> {
        let data = self.end - self.l3 - self.hlen;
        if self.ptr >= data && !(data == 0 && self.ptr == 0) {
            return None;
        }
        let left = data - self.ptr;
        let len = if left > self.step { self.step } else { left };
        let total = self.l3 + self.hlen + len;
        let out = out.get_mut(..total)?;
        let start = self.l3 + self.hlen + self.ptr;
        out[..self.l3 + self.hlen].copy_from_slice(frame.get(..self.l3 + self.hlen)?);
        out[self.l3 + self.hlen..].copy_from_slice(frame.get(start..start + len)?);
        let more = left > len || self.not_last;
        let off = ((self.base + self.ptr) >> 3) as u16 & OFFSET;
        let fo = off | if more { MF } else { 0 };
        let h = &mut out[self.l3..self.l3 + self.hlen];
        h[2..4].copy_from_slice(&((self.hlen + len) as u16).to_be_bytes());
        h[6..8].copy_from_slice(&fo.to_be_bytes());
        h[10..12].copy_from_slice(&[0, 0]);
        let c = super::checksum::checksum(h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        if self.ptr == 0 {
            if let Some(opts) = frame.get_mut(self.l3 + 20..self.l3 + self.hlen) {
                options_fragment(opts);
            }
        }
        self.ptr += len.max(1);
        Some(total)
    }
}

/// Linux's `ip_options_fragment`: options not to be copied into later
/// fragments become no-ops.
fn options_fragment(opts: &mut [u8]) {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return,
            1 => i += 1,
            kind => {
                let Some(&n) = opts.get(i + 1) else { return };
                let n = usize::from(n);
                if n < 2 || i + n > opts.len() {
                    return;
                }
                if kind & 0x80 == 0 {
                    opts[i..i + n].fill(1);
                }
                i += n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::checksum;

    /// A frame: 14 bytes of link header, an IPv4 header with `opts`, and
    /// `data` bytes 0, 1, 2, ...
    fn packet(opts: &[u8], data: usize, fo: u16) -> Vec<u8> {
        let hlen = 20 + opts.len();
        let mut f = vec![0xaa; 14];
        let mut h = vec![0u8; 20];
        h[0] = 0x40 | (hlen / 4) as u8;
        h[2..4].copy_from_slice(&((hlen + data) as u16).to_be_bytes());
        h[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        h[6..8].copy_from_slice(&fo.to_be_bytes());
        h[8] = 63;
        h[9] = 17;
        h.extend_from_slice(opts);
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&h);
        f.extend((0..data).map(|i| i as u8));
        f
    }

    fn all(frame: &mut [u8], mtu: usize) -> Vec<Vec<u8>> {
        let end = frame.len();
        let mut fr = Fragments::new(frame, 14, end, mtu).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        while let Some(n) = fr.write_next(frame, &mut buf) {
            out.push(buf[..n].to_vec());
        }
        assert_eq!(out.len(), fr.count());
        out
    }

    #[test]
    fn sizes_offsets_flags_and_checksums_as_linux() {
        // ping -s 1450 without DF through a 1400-byte link: 1376 + 82.
        let mut f = packet(&[], 1458, 0);
        let fr = all(&mut f, 1400);
        assert_eq!(fr.len(), 2);
        assert_eq!(fr[0].len(), 14 + 20 + 1376);
        assert_eq!(fr[1].len(), 14 + 20 + 82);
        for (i, (x, (off, mf))) in fr.iter().zip([(0u16, true), (172, false)]).enumerate() {
            let h = &x[14..34];
            assert_eq!(checksum(h), 0, "fragment {i}: header checksum");
            assert_eq!(
                u16::from_be_bytes([h[6], h[7]]),
                off | if mf { MF } else { 0 }
            );
            assert_eq!(u16::from_be_bytes([h[2], h[3]]) as usize, x.len() - 14);
            assert_eq!(&h[4..6], &[0x12, 0x34], "the ID is kept");
            assert_eq!(h[8], 63, "the TTL as written");
            assert_eq!(&x[..14], &[0xaa; 14], "link header copied");
        }
        // The data, reassembled, is the packet's.
        let data: Vec<u8> = fr.iter().flat_map(|x| x[34..].to_vec()).collect();
        assert_eq!(data, f[34..].to_vec());
    }

    #[test]
    fn a_fragment_keeps_its_offset_and_more_flag() {
        // A middle fragment (offset 800 bytes, MF) split again.
        let mut f = packet(&[], 1000, MF | 100);
        let fr = all(&mut f, 520);
        let fos: Vec<u16> = fr
            .iter()
            .map(|x| u16::from_be_bytes([x[20], x[21]]))
            .collect();
        assert_eq!(fos, vec![MF | 100, MF | 162, MF | 224]);
    }

    #[test]
    fn options_not_copied_become_noops_after_the_first() {
        // Record route (7, not copied) and a copied option (0x94 router
        // alert), then end of list.
        let opts = [7, 7, 4, 0, 0, 0, 0, 0x94, 4, 0, 0, 0];
        let mut f = packet(&opts, 600, 0);
        let fr = all(&mut f, 400);
        assert_eq!(&fr[0][34..46], &opts, "the first keeps every option");
        assert_eq!(&fr[1][34..46], &[1, 1, 1, 1, 1, 1, 1, 0x94, 4, 0, 0, 0]);
        assert_eq!(checksum(&fr[1][14..46]), 0);
    }

    #[test]
    fn impossible_mtus_and_bad_headers_are_refused() {
        let f = packet(&[], 100, 0);
        assert!(Fragments::new(&f, 14, f.len(), 27).is_none());
        assert!(Fragments::new(&f, 14, f.len(), 28).is_some());
        assert!(Fragments::new(&f[..20], 14, 20, 1400).is_none());
        let mut v6 = f.clone();
        v6[14] = 0x60;
        assert!(Fragments::new(&v6, 14, v6.len(), 1400).is_none());
    }
}
