//! Packet bytes: parsing into offsets ([`parse`](mod@parse)), checksums ([`checksum`]),
//! the small in-place rewrites the pipeline performs ([`rewrite`]) and
//! whole frames built from a description ([`build`]); and
//! the network value types every layer above shares ([`addr`]: MAC
//! addresses, IP addresses as `(Family, u128)`, [`Cidr`] prefixes and masks).
//!
//! This is the only module that knows header layouts. Everything else holds a
//! [`Parsed`] (offsets validated once on receive) and calls into here.

pub mod addr;
pub mod build;
pub mod checksum;
pub mod frag;
pub mod icmp;
pub mod parse;
pub mod rewrite;

pub use addr::{from_ip, mac_to_string, mask4, mask6, parse_mac, to_ip, Cidr, Mac};
pub use parse::{parse, parse_into, Family, Frag, L4Kind, Parsed, Unparsed};
