//! `SiltCodec`: prost encoding for the generated services, with the encode buffer reserved at the
//! message's exact size. Prost's default codec grows the buffer by doubling from 8 KiB, which
//! copies a 16 MiB fetch response about twice more than needed.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic_prost::{ProstCodec, ProstDecoder};

/// Initial codec buffer and the point past which a stream yields its buffered messages.
const BUFFER_BYTES: usize = 64 * 1024;
const YIELD_THRESHOLD_BYTES: usize = 4 * 1024 * 1024;

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD_BYTES)
}

/// The codec named by the generated clients and servers (see build.rs).
#[derive(Debug)]
pub struct SiltCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SiltCodec<T, U> {
    fn default() -> Self {
        SiltCodec(PhantomData)
    }
}

/// Encodes into a buffer reserved at the message's size.
#[derive(Debug)]
pub struct SiltEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for SiltEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf).map_err(|e| Status::internal(format!("encoding failed: {e}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        settings()
    }
}

impl<T, U> Codec for SiltCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = SiltEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        SiltEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}
