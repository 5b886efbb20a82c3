//! Zig-zag varints (as in protobuf `sint32`/`sint64` and Kafka's record format).
//!
//! Decoding is bounded: a varint longer than its type allows is an error, never a loop.

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarintError {
    /// The buffer ended inside the varint.
    Truncated,
    /// More continuation bytes than the type can hold.
    TooLong,
}

/// Appends `v` zig-zag encoded.
pub(crate) fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Appends a 32-bit value zig-zag encoded.
pub(crate) fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_varlong(out, i64::from(v));
}

/// The encoded size of `v`.
pub(crate) fn varlong_len(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

/// Reads a zig-zag varlong at `*pos`, advancing it.
pub(crate) fn get_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, VarintError> {
    let mut z: u64 = 0;
    for i in 0..10 {
        let b = *buf.get(*pos).ok_or(VarintError::Truncated)?;
        *pos += 1;
        z |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    Err(VarintError::TooLong)
}

/// Reads a zig-zag varint that must fit 32 bits.
pub(crate) fn get_varint(buf: &[u8], pos: &mut usize) -> Result<i32, VarintError> {
    let v = get_varlong(buf, pos)?;
    i32::try_from(v).map_err(|_| VarintError::TooLong)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrips_edge_values_with_predicted_length() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i32::MAX as i64,
            i32::MIN as i64,
            i64::MAX,
            i64::MIN,
        ] {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            assert_eq!(out.len(), varlong_len(v));
            let mut pos = 0;
            assert_eq!(get_varlong(&out, &mut pos), Ok(v));
            assert_eq!(pos, out.len());
        }
    }

    #[test]
    fn zigzag_matches_protobuf_sint_encoding() {
        let enc = |v| {
            let mut o = Vec::new();
            put_varlong(&mut o, v);
            o
        };
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(-1), [0x01]);
        assert_eq!(enc(1), [0x02]);
        assert_eq!(enc(-2), [0x03]);
        assert_eq!(enc(150), [0xac, 0x02]);
    }

    #[test]
    fn truncated_and_overlong_varints_are_errors() {
        let mut pos = 0;
        assert_eq!(get_varlong(&[0x80, 0x80], &mut pos), Err(VarintError::Truncated));
        let mut pos = 0;
        assert_eq!(get_varlong(&[0xff; 11], &mut pos), Err(VarintError::TooLong));
        let mut out = Vec::new();
        put_varlong(&mut out, i64::from(i32::MAX) + 1);
        let mut pos = 0;
        assert_eq!(get_varint(&out, &mut pos), Err(VarintError::TooLong));
    }
}
