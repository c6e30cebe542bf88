//! What every engine shares: the match fields, the address types, the key
//! and the rule as the engines take them, and the batch size.

use crate::ir::SetCheck;
use crate::ranges::RangeSet;

/// Number of match fields: class, source, destination, protocol, source
/// port field, destination port field.
pub const NFIELDS: usize = 6;

/// Most keys an engine looks up together (`classify_batch` chunks).
pub const BATCH: usize = 64;

/// An address type of the engines: `u32` (IPv4) or `u128` (IPv6).
pub trait Addr:
    Copy + Ord + Eq + Default + std::hash::Hash + std::fmt::Debug + Send + Sync + 'static
{
    /// Width in bits.
    const BITS: u32;
    /// From a value known to fit.
    fn from_u128(v: u128) -> Self;
    /// From a value, saturating at the maximum.
    fn from_u128_sat(v: u128) -> Self;
    /// To `u128`.
    fn to_u128(self) -> u128;
    /// `(self >> shift)` truncated to 32 bits.
    fn shr_u32(self, shift: u8) -> u32;
}

impl Addr for u32 {
    const BITS: u32 = 32;
    #[inline(always)]
    fn from_u128(v: u128) -> Self {
        v as u32
    }
    #[inline(always)]
    fn from_u128_sat(v: u128) -> Self {
        u32::try_from(v).unwrap_or(u32::MAX)
    }
    #[inline(always)]
    fn to_u128(self) -> u128 {
        self as u128
    }
    #[inline(always)]
    fn shr_u32(self, shift: u8) -> u32 {
        self >> (shift & 31)
    }
}

impl Addr for u128 {
    const BITS: u32 = 128;
    #[inline(always)]
    fn from_u128(v: u128) -> Self {
        v
    }
    #[inline(always)]
    fn from_u128_sat(v: u128) -> Self {
        v
    }
    #[inline(always)]
    fn to_u128(self) -> u128 {
        self
    }
    #[inline(always)]
    fn shr_u32(self, shift: u8) -> u32 {
        (self >> (shift & 127)) as u32
    }
}

/// A packet as the engines see it: one value per field, in field order
/// (class, source, destination, protocol, source port field, destination
/// port field), each as the family's address type so that a node's field
/// is an index, not a branch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EKey<A> {
    /// The field values.
    pub f: [A; NFIELDS],
}

impl<A: Addr> EKey<A> {
    /// A key.
    #[inline(always)]
    pub fn new(class: u32, src: A, dst: A, proto: u32, sport: u32, dport: u32) -> EKey<A> {
        EKey {
            f: [
                A::from_u128(class as u128),
                src,
                dst,
                A::from_u128(proto as u128),
                A::from_u128(sport as u128),
                A::from_u128(dport as u128),
            ],
        }
    }
    /// Source address.
    #[inline(always)]
    pub fn src(&self) -> A {
        self.f[1]
    }
    /// Destination address.
    #[inline(always)]
    pub fn dst(&self) -> A {
        self.f[2]
    }
    /// Set the class.
    #[inline(always)]
    pub fn set_class(&mut self, c: u32) {
        self.f[0] = A::from_u128(c as u128);
    }
}

/// One term of one rule, as the engines take it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ERule<'a> {
    /// Priority: lower wins (the rule's index in its segment).
    pub prio: u32,
    /// Value set per field: class, src, dst, proto, sport, dport (borrowed
    /// from the IR: a big IP set is not copied per term).
    pub fields: [&'a RangeSet; NFIELDS],
    /// Set checks that must also hold (see [`super::sets`]); engines that
    /// cannot check sets (the DFA) refuse rules with any.
    pub checks: &'a [SetCheck],
}
