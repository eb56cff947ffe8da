//! Entry points for fuzzing: each runs one parser over arbitrary bytes and checks the
//! invariants that must hold whatever the input (no panic, limits respected). The lead wires
//! `cargo fuzz` targets to these; the unit tests below run them over a small corpus so they
//! stay compiled and correct.

use bytes::Bytes;

use super::amf0::{self, Amf0Limits};
use super::chunk::{ChunkReader, RawMessage, ReaderLimits};
use super::command;
use super::flv;
use super::message::{self, Message};

/// Small limits so the fuzzer reaches limit errors quickly.
const FUZZ_READER_LIMITS: ReaderLimits = ReaderLimits {
    max_message_length: 64 * 1024,
    max_partial_bytes: 128 * 1024,
    max_chunk_streams: 16,
    max_chunk_size: 0x7FFF_FFFF,
};

/// Feeds `data` to a [`ChunkReader`] in splits chosen by the data itself, and parses every
/// message it yields as the server would.
pub fn fuzz_chunk_reader(data: &[u8]) {
    let Some((&split_seed, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(split_seed % 64) + 1;
    let mut reader = ChunkReader::new(FUZZ_READER_LIMITS);
    for piece in stream.chunks(step) {
        reader.push(piece);
        loop {
            match reader.next_message() {
                Ok(Some(raw)) => {
                    assert!(raw.payload.len() <= FUZZ_READER_LIMITS.max_message_length as usize);
                    handle_message(&raw);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(reader.partial_bytes() <= FUZZ_READER_LIMITS.max_partial_bytes);
        // Drained: at most an incomplete chunk header is left.
        assert!(reader.buffered_len() < super::chunk::MAX_CHUNK_HEADER_LEN);
    }
}

fn handle_message(raw: &RawMessage) {
    let limits = Amf0Limits::default();
    match Message::parse(raw, &limits) {
        Ok(Message::Audio(payload)) => fuzz_flv_audio(&payload),
        Ok(Message::Video(payload)) => fuzz_flv_video(&payload),
        Ok(Message::Data(payload)) => {
            let _ = command::parse_metadata(&payload, &limits);
        }
        Ok(Message::Aggregate(_)) => {
            if let Ok(subs) = message::split_aggregate(raw) {
                for sub in &subs {
                    assert!(sub.payload.len() <= raw.payload.len());
                }
            }
        }
        Ok(Message::Command(c)) => {
            let _ = command::ConnectRequest::from_command(&c);
            let _ = command::PublishRequest::from_command(&c);
            let _ = command::PlayRequest::from_command(&c);
        }
        Ok(_) | Err(_) => {}
    }
}

/// Decodes `data` as AMF0 with tight limits, and as a command and a metadata message;
/// re-encodes what decodes and checks it decodes to the same values.
pub fn fuzz_amf0(data: &[u8]) {
    let limits = Amf0Limits {
        max_depth: 16,
        max_values: 4096,
    };
    if let Ok(values) = amf0::decode_all(data, &limits) {
        assert!(values.len() <= limits.max_values);
        let encoded = amf0::to_bytes(&values);
        let again = amf0::decode_all(&encoded, &limits);
        // NaN payloads compare unequal; only check when the values are NaN-free.
        if !format!("{values:?}").contains("NaN") {
            assert_eq!(again.as_ref(), Ok(&values));
        }
    }
    let _ = command::parse_command(data, &limits);
    let _ = command::parse_metadata(&Bytes::copy_from_slice(data), &limits);
}

fn fuzz_flv_video(data: &[u8]) {
    if let Ok(tag) = flv::parse_video_tag(data) {
        assert!(tag.body.start <= tag.body.end && tag.body.end <= data.len());
        for track in &tag.tracks {
            assert!(track.body.end <= data.len());
        }
        if tag.sequence_header {
            if let Some(body) = data.get(tag.body.clone()) {
                let _ = flv::parse_avc_config(body);
                let _ = flv::parse_hevc_config(body);
            }
        }
    }
}

fn fuzz_flv_audio(data: &[u8]) {
    if let Ok(tag) = flv::parse_audio_tag(data) {
        assert!(tag.body.start <= tag.body.end && tag.body.end <= data.len());
        if tag.sequence_header {
            if let Some(body) = data.get(tag.body.clone()) {
                let _ = flv::parse_aac_config(body);
            }
        }
    }
}

/// Parses `data` as both a video and an audio tag, and the codec configuration parsers.
pub fn fuzz_flv(data: &[u8]) {
    fuzz_flv_video(data);
    fuzz_flv_audio(data);
    let _ = flv::parse_aac_config(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn corpus_runs() {
        let mut chunk_stream = vec![7u8];
        let mut out = bytes::BytesMut::new();
        crate::protocol::writer::chunk_message(
            &mut out,
            3,
            0,
            20,
            0,
            &amf0::to_bytes(&[amf0::Value::string("connect"), amf0::Value::Number(1.0)]),
            128,
        )
        .unwrap();
        crate::protocol::writer::chunk_message(
            &mut out,
            6,
            0,
            9,
            1,
            &[0x17, 0, 0, 0, 0, 1, 100, 0, 41],
            128,
        )
        .unwrap();
        crate::protocol::writer::chunk_message(&mut out, 4, 0, 8, 1, &[0xAF, 0, 0x12, 0x10], 128)
            .unwrap();
        chunk_stream.extend_from_slice(&out);
        fuzz_chunk_reader(&chunk_stream);
        fuzz_chunk_reader(&[]);
        fuzz_amf0(&[0x02, 0x00, 0x01, b'a', 0x05]);
        fuzz_amf0(&[0x03; 1000]);
        fuzz_flv(&[0x17, 0x01, 0, 0, 0]);
        fuzz_flv(&[]);
    }

    proptest! {
        #[test]
        fn entries_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
            fuzz_chunk_reader(&data);
            fuzz_amf0(&data);
            fuzz_flv(&data);
        }
    }
}
