//! Record batch compression: Kafka's codecs and ids (attributes bits 0-2).
//!
//! A compressed batch keeps its 61-byte header as is; only the records section (everything after
//! the header) is compressed, as one stream, so `record_count`, offsets, timestamps and producer
//! fields stay readable without decompressing. The formats are the ones Kafka's clients write and
//! read, so a batch compressed by any Kafka client is stored, served and decoded by Silt, and the
//! other way round:
//!
//! | id | codec  | format                                                        |
//! |----|--------|---------------------------------------------------------------|
//! | 1  | gzip   | one gzip member (RFC 1952)                                    |
//! | 2  | snappy | snappy-java's stream ("xerial" framing) on write; raw too on read |
//! | 3  | lz4    | an LZ4 frame, independent 64 KiB blocks                       |
//! | 4  | zstd   | a zstd frame                                                  |
//!
//! Decompression is always bounded: output beyond the caller's limit stops the decoder and the
//! batch is refused ([`BatchError::DecompressedTooLarge`]), so a small "bomb" cannot make a
//! broker or a consumer allocate more than the limit.

use std::io::{Read, Write};
use std::str::FromStr;

use super::BatchError;

/// The decompressed size a reader accepts for one batch's records unless told otherwise.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;

/// A batch codec, with Kafka's ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// snappy-java's stream header: magic, then version 1 and minimum compatible version 1.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;
/// snappy-java's default block size: each block is compressed on its own.
const XERIAL_BLOCK: usize = 32 * 1024;

impl Compression {
    /// Every codec, `None` first.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The id in `attributes` bits 0-2.
    pub fn id(self) -> u16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec of an id; `None` (the option) for 5-7, which no codec has.
    pub fn from_id(id: u16) -> Option<Compression> {
        Compression::ALL.into_iter().find(|c| c.id() == id)
    }

    /// The name used in configuration and on the command line (Kafka's).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// Checks a `compression.level` for this codec: gzip 1-9, zstd 1-22 (or negative, zstd's
    /// fast levels down to -7); none, snappy and lz4 take none (lz4_flex has only LZ4's fast mode,
    /// not the HC levels of Kafka's Java client).
    pub fn check_level(self, level: Option<i32>) -> Result<(), String> {
        let Some(level) = level else { return Ok(()) };
        let ok = match self {
            Compression::Gzip => (1..=9).contains(&level),
            Compression::Zstd => (-7..=22).contains(&level) && level != 0,
            Compression::None | Compression::Snappy | Compression::Lz4 => {
                return Err(format!("compression {} takes no level", self.name()));
            }
        };
        if ok {
            Ok(())
        } else {
            let range = if self == Compression::Gzip { "1-9" } else { "-7..-1 or 1-22" };
            Err(format!("compression level {level} is outside {range} for {}", self.name()))
        }
    }

    /// Compresses `input` (a batch's records section). `level` outside the codec's range is
    /// clamped into it (check it with [`check_level`](Self::check_level) first).
    pub fn compress(self, level: Option<i32>, input: &[u8]) -> Vec<u8> {
        match self {
            Compression::None => input.to_vec(),
            Compression::Gzip => {
                let level = level.unwrap_or(6).clamp(1, 9) as u32;
                let out = Vec::with_capacity(input.len() / 2 + 64);
                let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::new(level));
                // Writing into a Vec cannot fail.
                enc.write_all(input).expect("gzip into memory");
                enc.finish().expect("gzip into memory")
            }
            Compression::Snappy => {
                let mut out = Vec::with_capacity(XERIAL_HEADER_LEN + input.len() / 2 + 64);
                out.extend_from_slice(&XERIAL_MAGIC);
                out.extend_from_slice(&1i32.to_be_bytes());
                out.extend_from_slice(&1i32.to_be_bytes());
                let mut enc = snap::raw::Encoder::new();
                for block in input.chunks(XERIAL_BLOCK) {
                    let c = enc.compress_vec(block).expect("a block under snappy's limit");
                    out.extend_from_slice(&(c.len() as u32).to_be_bytes());
                    out.extend_from_slice(&c);
                }
                out
            }
            Compression::Lz4 => {
                let info = lz4_flex::frame::FrameInfo::new()
                    .block_mode(lz4_flex::frame::BlockMode::Independent);
                let out = Vec::with_capacity(input.len() / 2 + 64);
                let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
                enc.write_all(input).expect("lz4 into memory");
                enc.finish().expect("lz4 into memory")
            }
            Compression::Zstd => {
                let level = level.unwrap_or(3).clamp(-7, 22);
                zstd::bulk::compress(input, level).expect("zstd into memory at a valid level")
            }
        }
    }

    /// Decompresses `input`, refusing output past `limit` bytes.
    pub fn decompress(self, input: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
        let codec = self.id();
        let fail = |e: std::io::Error| BatchError::Decompression { codec, reason: e.to_string() };
        match self {
            Compression::None => {
                if input.len() > limit {
                    return Err(BatchError::DecompressedTooLarge { limit });
                }
                Ok(input.to_vec())
            }
            Compression::Gzip => {
                read_bounded(flate2::read::GzDecoder::new(input), input.len(), limit, codec)
            }
            Compression::Snappy => snappy_decompress(input, limit),
            Compression::Lz4 => {
                read_bounded(lz4_flex::frame::FrameDecoder::new(input), input.len(), limit, codec)
            }
            Compression::Zstd => {
                let mut dec = zstd::stream::read::Decoder::with_buffer(input).map_err(fail)?;
                // The window the decoder allocates is the frame's to choose: keep it within what
                // the limit could ever need (2^10 .. 2^27, zstd's own range).
                let window_log = usize::BITS - limit.max(1).leading_zeros();
                dec.window_log_max(window_log.clamp(10, 27)).map_err(fail)?;
                read_bounded(dec, input.len(), limit, codec)
            }
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compression {
    type Err = String;

    /// Kafka's names; `uncompressed` (Kafka's topic-level spelling) is `none`.
    fn from_str(s: &str) -> Result<Compression, String> {
        match s {
            "uncompressed" => Ok(Compression::None),
            _ => Compression::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| {
                format!("unknown compression {s:?} (none, gzip, snappy, lz4 or zstd)")
            }),
        }
    }
}

/// Reads `r` to its end into memory, failing once more than `limit` bytes come out.
fn read_bounded(
    r: impl Read,
    input_len: usize,
    limit: usize,
    codec: u16,
) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::with_capacity(input_len.saturating_mul(4).min(limit).min(1 << 20));
    r.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BatchError::Decompression { codec, reason: e.to_string() })?;
    if out.len() > limit {
        return Err(BatchError::DecompressedTooLarge { limit });
    }
    Ok(out)
}

/// snappy-java's framed stream or, as Kafka's clients also accept, one raw snappy block. Each
/// block's declared length is checked against what remains of `limit` before it is decoded.
fn snappy_decompress(input: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    let codec = Compression::Snappy.id();
    let bad = |reason: String| BatchError::Decompression { codec, reason };
    let mut out = Vec::new();
    let mut dec = snap::raw::Decoder::new();
    let mut block = |data: &[u8], out: &mut Vec<u8>| -> Result<(), BatchError> {
        let n = snap::raw::decompress_len(data).map_err(|e| bad(e.to_string()))?;
        if n > limit - out.len() {
            return Err(BatchError::DecompressedTooLarge { limit });
        }
        let start = out.len();
        out.resize(start + n, 0);
        let written = dec.decompress(data, &mut out[start..]).map_err(|e| bad(e.to_string()))?;
        out.truncate(start + written);
        Ok(())
    };
    if !input.starts_with(&XERIAL_MAGIC) {
        block(input, &mut out)?;
        return Ok(out);
    }
    let mut rest = input.get(XERIAL_HEADER_LEN..).ok_or_else(|| bad("short header".into()))?;
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(|| bad("short block".into()))?;
        let len = u32::from_be_bytes(*len) as usize;
        if len > tail.len() {
            return Err(bad(format!("block of {len} bytes, {} left", tail.len())));
        }
        block(&tail[..len], &mut out)?;
        rest = &tail[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..100_000u32)
            .flat_map(|i| format!("{{\"id\":{i},\"v\":\"x{}\"}}", i % 97).into_bytes())
            .collect()
    }

    #[test]
    fn every_codec_round_trips_and_shrinks_repetitive_input() {
        let input = sample();
        for c in Compression::ALL {
            let z = c.compress(None, &input);
            if c != Compression::None {
                assert!(z.len() < input.len() / 2, "{c}: {} of {}", z.len(), input.len());
            }
            assert_eq!(c.decompress(&z, input.len()).expect("decompress"), input, "{c}");
        }
    }

    #[test]
    fn output_past_the_limit_is_refused_for_every_codec() {
        let zeros = vec![0u8; 1 << 20];
        for c in Compression::ALL {
            let z = c.compress(None, &zeros);
            assert_eq!(
                c.decompress(&z, (1 << 20) - 1),
                Err(BatchError::DecompressedTooLarge { limit: (1 << 20) - 1 }),
                "{c}"
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let junk: Vec<u8> =
            (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        for c in Compression::ALL.into_iter().skip(1) {
            assert!(c.decompress(&junk, 1 << 20).is_err(), "{c}");
            let mut z = c.compress(None, &sample());
            z.truncate(z.len() / 2);
            assert!(c.decompress(&z, 1 << 24).is_err(), "{c} truncated");
        }
        let mut lying = XERIAL_MAGIC.to_vec();
        lying.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff]);
        assert!(Compression::Snappy.decompress(&lying, 1 << 20).is_err());
    }

    #[test]
    fn raw_snappy_is_read_too() {
        let input = sample();
        let raw = snap::raw::Encoder::new().compress_vec(&input).expect("compress");
        assert_eq!(Compression::Snappy.decompress(&raw, input.len()).expect("raw"), input);
    }

    #[test]
    fn names_ids_and_levels() {
        for c in Compression::ALL {
            assert_eq!(c.name().parse::<Compression>(), Ok(c));
            assert_eq!(Compression::from_id(c.id()), Some(c));
        }
        assert_eq!(Compression::from_id(5), None);
        assert!("brotli".parse::<Compression>().is_err());
        assert!(Compression::Gzip.check_level(Some(9)).is_ok());
        assert!(Compression::Gzip.check_level(Some(10)).is_err());
        assert!(Compression::Zstd.check_level(Some(19)).is_ok());
        assert!(Compression::Zstd.check_level(Some(0)).is_err());
        assert!(Compression::Lz4.check_level(Some(1)).is_err());
        assert!(Compression::Snappy.check_level(None).is_ok());
    }
}
