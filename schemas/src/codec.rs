//! MessagePack encoding with named fields, shared by every publisher and subscriber.

use serde::{de::DeserializeOwned, Serialize};

/// Header set on every message we publish.
pub const CONTENT_TYPE_HEADER: &str = "Content-Type";
pub const CONTENT_TYPE: &str = "application/msgpack";

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encode: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("decode: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
}

/// Encodes a message as a MessagePack map (field names included, readable from any language).
pub fn encode<T: Serialize + ?Sized>(msg: &T) -> Result<Vec<u8>, CodecError> {
    Ok(rmp_serde::to_vec_named(msg)?)
}

/// Encodes into a reused buffer (hot paths).
pub fn encode_into<T: Serialize + ?Sized>(buf: &mut Vec<u8>, msg: &T) -> Result<(), CodecError> {
    buf.clear();
    let mut ser = rmp_serde::Serializer::new(buf).with_struct_map();
    msg.serialize(&mut ser)?;
    Ok(())
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    Ok(rmp_serde::from_slice(bytes)?)
}
