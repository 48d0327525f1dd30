//! Bit packing: the reference's 12-bit index pairs, 16-bit indices, and 2-bit codes.

/// Packs 12-bit values in pairs into 3 bytes, exactly as the reference's `pack_12bit_indices`:
/// `b0 = a & 0xFF`, `b1 = (a >> 8) & 0x0F | (b & 0x0F) << 4`, `b2 = (b >> 4) & 0xFF`.
/// An odd trailing value is packed as if paired with 0. Values must be < 4096 (higher bits dropped).
pub fn pack12(idx: &[u16], out: &mut Vec<u8>) {
    out.reserve(packed12_len(idx.len()));
    let mut pairs = idx.chunks_exact(2);
    for p in &mut pairs {
        let (a, b) = (p[0] as u32 & 0xFFF, p[1] as u32 & 0xFFF);
        out.extend_from_slice(&[
            (a & 0xFF) as u8,
            ((a >> 8) | ((b & 0xF) << 4)) as u8,
            (b >> 4) as u8,
        ]);
    }
    if let [a] = pairs.remainder() {
        let a = *a as u32 & 0xFFF;
        out.extend_from_slice(&[(a & 0xFF) as u8, (a >> 8) as u8, 0]);
    }
}

/// Bytes used by `n` 12-bit values.
pub fn packed12_len(n: usize) -> usize {
    n.div_ceil(2) * 3
}

/// Unpacks `n` 12-bit values; `bytes` must be exactly `packed12_len(n)` long (checked by callers).
/// Returns false if the padding of an odd count is not zero.
pub fn unpack12(bytes: &[u8], n: usize, out: &mut Vec<u16>) -> bool {
    out.reserve(n);
    let mut it = bytes.chunks_exact(3);
    for t in (&mut it).take(n / 2) {
        let (b0, b1, b2) = (t[0] as u16, t[1] as u16, t[2] as u16);
        out.push(b0 | ((b1 & 0xF) << 8));
        out.push((b1 >> 4) | (b2 << 4));
    }
    if n % 2 == 1 {
        match it.next() {
            Some(t) => {
                out.push(t[0] as u16 | ((t[1] as u16 & 0xF) << 8));
                return t[1] >> 4 == 0 && t[2] == 0;
            }
            None => return false,
        }
    }
    true
}

/// Packs 2-bit codes, four per byte, first code in the lowest bits.
pub fn pack2(codes: &[u8], out: &mut Vec<u8>) {
    out.reserve(codes.len().div_ceil(4));
    let mut quads = codes.chunks_exact(4);
    for q in &mut quads {
        out.push((q[0] & 3) | (q[1] & 3) << 2 | (q[2] & 3) << 4 | (q[3] & 3) << 6);
    }
    let rem = quads.remainder();
    if !rem.is_empty() {
        let mut b = 0u8;
        for (i, &c) in rem.iter().enumerate() {
            b |= (c & 3) << (2 * i);
        }
        out.push(b);
    }
}

/// Unpacks `n` 2-bit codes from exactly `n.div_ceil(4)` bytes. Returns false if the unused high
/// bits of the last byte are not zero.
pub fn unpack2(bytes: &[u8], n: usize, out: &mut Vec<u8>) -> bool {
    out.reserve(n);
    let full = n / 4;
    for &b in &bytes[..full.min(bytes.len())] {
        out.extend_from_slice(&[b & 3, (b >> 2) & 3, (b >> 4) & 3, b >> 6]);
    }
    let rem = n % 4;
    if rem > 0 {
        let Some(&b) = bytes.get(full) else {
            return false;
        };
        for i in 0..rem {
            out.push((b >> (2 * i)) & 3);
        }
        return b >> (2 * rem) == 0;
    }
    true
}

/// Packs indices as little-endian u16 (for chunks longer than 4096 values).
pub fn pack16(idx: &[u16], out: &mut Vec<u8>) {
    out.reserve(idx.len() * 2);
    for &i in idx {
        out.extend_from_slice(&i.to_le_bytes());
    }
}

/// Unpacks little-endian u16 indices (caller checks the length).
pub fn unpack16(bytes: &[u8], out: &mut Vec<u16>) {
    out.extend(
        bytes
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]])),
    );
}
