//! The gRPC codec of the OTLP receiver: prost's, except that a message that does not decode
//! is the client's fault and answers INVALID_ARGUMENT (prost's codec answers INTERNAL, which
//! exporters treat as a server failure and retry forever).

use std::marker::PhantomData;

use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// [`tonic_prost::ProstCodec`] with decode errors mapped to INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct ClientErrorCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ClientErrorCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for ClientErrorCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ClientErrorDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ClientErrorDecoder(ProstDecoder::default())
    }
}

/// Decodes with prost; a decode error becomes INVALID_ARGUMENT naming what was wrong.
#[derive(Debug, Clone, Default)]
pub struct ClientErrorDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for ClientErrorDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|s| match s.code() {
            tonic::Code::Internal => Status::invalid_argument(format!("undecodable OTLP export: {}", s.message())),
            _ => s,
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
