//! Cutting a byte stream into reads at points chosen by the input.

/// Cuts `bytes` into chunks whose sizes a small generator seeded by `seed` picks: the top two
/// bits choose the largest chunk (1, 3, 17 or 4096 bytes), so one byte of the input decides
/// both how finely and where the stream is split.
pub(crate) fn chunks(bytes: &[u8], seed: u8) -> Vec<Vec<u8>> {
    let largest = [1usize, 3, 17, 4096][usize::from(seed >> 6)];
    let mut state = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let size = (1 + (state % largest as u64) as usize).min(rest.len());
        let (chunk, tail) = rest.split_at(size);
        out.push(chunk.to_vec());
        rest = tail;
    }
    out
}
