//! A tonic codec carrying serde types as postcard bytes.

use bytes::{Buf, BufMut};
use serde::{Serialize, de::DeserializeOwned};
use std::marker::PhantomData;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

pub struct PostcardCodec<E, D>(PhantomData<fn(E) -> D>);

impl<E, D> Default for PostcardCodec<E, D> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<E, D> Codec for PostcardCodec<E, D>
where
    E: Serialize + Send + 'static,
    D: DeserializeOwned + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = PostcardEncoder<E>;
    type Decoder = PostcardDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        PostcardEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        PostcardDecoder(PhantomData)
    }
}

pub struct PostcardEncoder<E>(PhantomData<fn(E)>);

impl<E: Serialize> Encoder for PostcardEncoder<E> {
    type Item = E;
    type Error = Status;

    /// Serialises straight into tonic's buffer: a relayed payload (~80 KB for DKLS23) is
    /// not first built in a vector of its own.
    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        postcard::to_io(&item, dst.writer())
            .map(|_| ())
            .map_err(|e| Status::internal(format!("encoding a message: {e}")))
    }
}

pub struct PostcardDecoder<D>(PhantomData<fn() -> D>);

impl<D: DeserializeOwned> Decoder for PostcardDecoder<D> {
    type Item = D;
    type Error = Status;

    /// Reads the frame where tonic buffered it (one contiguous chunk) instead of copying
    /// it out first; a frame split over chunks is gathered into one.
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        let len = src.remaining();
        let item = if src.chunk().len() == len {
            let item = postcard::from_bytes(src.chunk());
            src.advance(len);
            item
        } else {
            postcard::from_bytes(&src.copy_to_bytes(len))
        };
        item.map(Some).map_err(|e| {
            // A peer of another wire version fails here first: say which one this is.
            Status::invalid_argument(format!(
                "malformed message (this side speaks wire version {}): {e}",
                crate::WIRE_VERSION
            ))
        })
    }
}
