//! The protobuf codec every vigil.v1 call uses: prost's, with smaller buffers. tonic's default
//! gives each stream an 8 KiB buffer each way, allocated when the stream opens, and a controller
//! holds a stream per agent of its fleet: 16 KiB per agent, thousands of them, for verdicts under
//! 64 bytes and desired states of a few hundred. A buffer that is too small for a message grows
//! by the same step, so large replies (`vigil status` of many data stores) still go through.
use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Each stream's buffer, each way, and the step it grows by.
pub const BUFFER: usize = 1024;
/// How much a stream's encoder batches before it yields (tonic's default).
pub const YIELD_THRESHOLD: usize = 32 * 1024;

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER, YIELD_THRESHOLD)
}

/// prost's codec with [`BUFFER`]-sized buffers; named by the generated services.
#[derive(Debug, Clone)]
pub struct SmallBuffers<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for SmallBuffers<T, U> {
    fn default() -> Self {
        Self { _pd: PhantomData }
    }
}

impl<T, U> Codec for SmallBuffers<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}

#[cfg(test)]
mod tests {
    use tonic::codec::{Decoder, Encoder};

    use super::*;
    use crate::v1;

    #[test]
    fn both_ways_use_the_small_buffers() {
        let mut codec = SmallBuffers::<v1::ControllerMessage, v1::AgentMessage>::default();
        for s in [
            codec.encoder().buffer_settings(),
            codec.decoder().buffer_settings(),
        ] {
            assert_eq!(format!("{s:?}"), format!("{:?}", settings()));
        }
    }
}
