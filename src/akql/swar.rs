//! Byte searches eight bytes at a time in a `u64` ("SIMD within a register"), for the short
//! texts an event holds (keys, labels, paths): below 16 bytes `memchr` falls back to a byte
//! loop, and its call costs more than such a text's whole search (BENCHMARKS.md §1b).

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// The eight bytes at `at` as a little-endian word (byte `at` lowest); `None` past the end.
#[inline]
pub fn word(b: &[u8], at: usize) -> Option<u64> {
    let chunk: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(chunk))
}

/// `c` in every byte of a word.
#[inline]
pub const fn splat(c: u8) -> u64 {
    ONES * c as u64
}

/// The high bit of every byte of `v` that is zero, and possibly of some bytes above the
/// lowest zero byte (a borrow): no zero byte is missed, and the lowest flag is always a
/// zero byte. Callers read only the lowest flag, or check each flagged position.
#[inline]
pub fn zero_bytes(v: u64) -> u64 {
    v.wrapping_sub(ONES) & !v & HIGHS
}

/// The byte index of a flag of [`zero_bytes`] (the lowest one set).
#[inline]
pub fn first(flags: u64) -> usize {
    (flags.trailing_zeros() / 8) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The lowest flag is the first zero byte, and every zero byte is flagged.
        #[test]
        fn zero_bytes_flags_every_zero_and_the_lowest_is_exact(
            b in proptest::array::uniform8(prop_oneof![Just(0u8), Just(1u8), Just(0x80u8), any::<u8>()])
        ) {
            let flags = zero_bytes(u64::from_le_bytes(b));
            prop_assert_eq!(
                (flags != 0).then(|| first(flags)),
                b.iter().position(|&c| c == 0)
            );
            for (i, &c) in b.iter().enumerate() {
                if c == 0 {
                    prop_assert!(flags & (0x80 << (8 * i)) != 0);
                }
            }
        }
    }
}
