//! Criterion benchmarks of the RTMP codec's hot functions, each measured beside its physical
//! ceiling: a plain `memcpy` of the same bytes on the same machine in the same run, so the
//! figures that matter are ratios (this machine is shared and noisy; see `shared/BENCH.md`).
//!
//! The stream is one 2-second GOP of a 720p30 stream at ~2.5 Mb/s with AAC audio, in timestamp
//! order: a 60,000-byte keyframe, 59 P frames of 8,000–11,000 bytes and 94 AAC frames of
//! 360–380 bytes (about 655 KB of payload in 154 messages).
//!
//! - `writer`: chunking every message of the GOP, at chunk sizes 128, 4096 (the server's
//!   default) and 60,000 (nginx-rtmp's and SRS's), with `chunk_message` into one reused buffer
//!   (the codec alone) and with `ChunkedMessage::new` (what the relay does per message: one
//!   buffer allocated per message). Throughput counts payload bytes; `memcpy` copies the
//!   payload bytes once into a preallocated buffer.
//! - `reader`: `ChunkReader` reassembling the chunked GOP fed in 64 KiB and 4 KiB reads, at
//!   chunk sizes 128 and 4096. Throughput counts the bytes fed (headers included); `memcpy`
//!   copies those bytes once. The reader copies each byte twice (into its input buffer, as a
//!   socket read would, then into the message) and allocates one buffer per message.
//! - `fanout`: what the server does per player per message, with the public pieces it is built
//!   from: a `Bytes` clone pushed into the player's `SubscriberQueue` (sim-core) under its own
//!   `Mutex`, then the writer's side under the lock, `flush_at` + `pop_batch` into a reused
//!   batch (`queue_push_pop`), plus the `IoSlice` array handed to `writev`
//!   (`queue_push_pop_iovec`); beside them the floor of sharing, a bare `Bytes` clone and drop
//!   (`bytes_clone_drop`). Throughput counts players, so the time per element is the cost per
//!   player per message. Not in these figures: the writer task's wake-up
//!   (`serve::outbox::Doorbell`, private to the crate, like `Outbox`, which `Relay::play`
//!   needs; so the real `Relay::publish_media` path cannot be driven from a bench target: the
//!   in-crate `serve::tests::fan_out_cost` measures it) and the `writev` syscall itself.
//!
//! Run: `cargo bench -p native-server --bench codec` (or `cargo xtask bench`); quicker:
//! `cargo bench -p native-server --bench codec -- --warm-up-time 1 --measurement-time 3`.

use std::collections::VecDeque;
use std::hint::black_box;
use std::io::IoSlice;
use std::ops::Range;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use native_server::protocol::chunk::{ChunkReader, ReaderLimits};
use native_server::protocol::writer::{
    chunk_message, chunked_len, ChunkWriter, ChunkedMessage, CSID_AUDIO, CSID_VIDEO,
};
use sim_core::server::{MediaInfo, MediaKind, ServerConfig, SubscriberQueue};
use sim_core::Micros;

/// RTMP message type ids of audio and video.
const TYPE_AUDIO: u8 = 8;
const TYPE_VIDEO: u8 = 9;
/// The message stream id the server chunks shared media with.
const STREAM_ID: u32 = 1;

/// Keyframe of a 720p30 x264 stream at ~2.5 Mb/s (2-second GOP).
const KEYFRAME_BYTES: usize = 60_000;
/// P frames: uniform in this range (average 9.5 KB: 2.48 Mb/s of video with the keyframe).
const P_FRAME_BYTES: Range<usize> = 8_000..11_001;
/// AAC-LC at 128 kb/s, 48 kHz: 1024 samples per frame, ~341 bytes of audio + framing.
const AAC_FRAME_BYTES: Range<usize> = 360..381;
const VIDEO_FRAMES: u32 = 60;
/// 2 s of 48 kHz AAC: 93.75 frames.
const AUDIO_FRAMES: u32 = 94;

/// Chunk sizes: the spec's initial size, the server's default, nginx-rtmp's and SRS's.
const WRITER_CHUNK_SIZES: [u32; 3] = [128, 4096, 60_000];
const READER_CHUNK_SIZES: [u32; 2] = [128, 4096];
/// Socket read sizes fed to the reader: the server's (`READ_CHUNK_BYTES`) and a small one.
const READ_SIZES: [usize; 2] = [64 * 1024, 4 * 1024];
/// Players fanned out to per message.
const PLAYER_COUNTS: [usize; 2] = [100, 1000];
/// The server writer's batch bound and iovec count (`serve::outbox`).
const WRITE_BATCH_BYTES: u64 = 256 * 1024;
const MAX_IOVECS: usize = 64;
/// A 30 fps video frame interval: the fan-out sends one P frame per round, 33 ms of media time
/// apart (the queues' duration bound stays idle).
const FRAME_INTERVAL: Micros = Micros::from_ms(33);

/// One media message of the GOP; its payload is a range of [`Gop::payloads`].
struct Message {
    csid: u32,
    timestamp_ms: u32,
    type_id: u8,
    payload: Range<usize>,
}

/// The GOP's messages in timestamp order, their payloads back to back in one buffer (so the
/// memcpy ceiling copies exactly the bytes the writer reads).
struct Gop {
    payloads: Vec<u8>,
    messages: Vec<Message>,
}

impl Gop {
    fn payload(&self, m: &Message) -> &[u8] {
        self.payloads.get(m.payload.clone()).unwrap_or(&[])
    }

    /// Appends every message chunked at `chunk_size` with `chunk_message` (what the relay does
    /// per message, without the per-message buffer).
    fn chunk_into(&self, out: &mut BytesMut, chunk_size: u32) {
        for m in &self.messages {
            chunk_message(
                out,
                m.csid,
                m.timestamp_ms,
                m.type_id,
                STREAM_ID,
                self.payload(m),
                chunk_size,
            )
            .expect("chunk");
        }
    }

    /// The whole GOP chunked at `chunk_size` the way a publisher's stream arrives at the
    /// server: Set Chunk Size (at 128) first when needed, then every message with a type-0
    /// header.
    fn chunked(&self, chunk_size: u32) -> Bytes {
        let mut w = ChunkWriter::new();
        if chunk_size != w.chunk_size() {
            w.set_chunk_size(chunk_size).expect("chunk size");
        }
        for m in &self.messages {
            w.write(
                m.csid,
                m.timestamp_ms,
                m.type_id,
                STREAM_ID,
                self.payload(m),
            )
            .expect("chunk");
        }
        w.take()
    }
}

/// xorshift64: deterministic sizes without a dependency.
struct Sizes(u64);

impl Sizes {
    fn next_in(&mut self, range: Range<usize>) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let span = (range.end - range.start) as u64;
        range.start + (self.0 % span) as usize
    }
}

fn gop() -> Gop {
    let mut sizes = Sizes(0x5eed_1234_abcd_0001);
    // (timestamp in µs for ordering, kind, size)
    let mut order: Vec<(u64, bool, usize)> = Vec::new();
    for i in 0..VIDEO_FRAMES {
        let size = if i == 0 {
            KEYFRAME_BYTES
        } else {
            sizes.next_in(P_FRAME_BYTES)
        };
        order.push((u64::from(i) * 1_000_000 / 30, true, size));
    }
    for i in 0..AUDIO_FRAMES {
        let size = sizes.next_in(AAC_FRAME_BYTES);
        order.push((u64::from(i) * 1024 * 1_000_000 / 48_000, false, size));
    }
    order.sort_by_key(|&(ts, video, _)| (ts, !video));
    let mut payloads = Vec::new();
    let mut messages = Vec::new();
    for (n, &(ts_us, video, size)) in order.iter().enumerate() {
        let start = payloads.len();
        // FLV tag header bytes first (AVC key/inter NALU, AAC raw), then filler.
        let head: &[u8] = match (video, n) {
            (true, 0) => &[0x17, 0x01, 0, 0, 0],
            (true, _) => &[0x27, 0x01, 0, 0, 0],
            (false, _) => &[0xAF, 0x01],
        };
        payloads.extend_from_slice(head);
        payloads.extend((head.len()..size).map(|i| (i as u8).wrapping_mul(31) ^ n as u8));
        messages.push(Message {
            csid: if video { CSID_VIDEO } else { CSID_AUDIO },
            timestamp_ms: (ts_us / 1000) as u32,
            type_id: if video { TYPE_VIDEO } else { TYPE_AUDIO },
            payload: start..payloads.len(),
        });
    }
    Gop { payloads, messages }
}

fn writer(c: &mut Criterion) {
    let gop = gop();
    let payload_bytes = gop.payloads.len();
    let mut group = c.benchmark_group("writer");
    group.throughput(Throughput::Bytes(payload_bytes as u64));

    let mut dst = vec![0u8; payload_bytes];
    group.bench_function("memcpy", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&gop.payloads));
            black_box(&mut dst);
        })
    });

    for chunk_size in WRITER_CHUNK_SIZES {
        let wire: usize = gop
            .messages
            .iter()
            .map(|m| chunked_len(m.csid, m.timestamp_ms, m.payload.len(), chunk_size))
            .sum::<Result<usize, _>>()
            .expect("chunked length");
        let mut out = BytesMut::with_capacity(wire);
        gop.chunk_into(&mut out, chunk_size);
        assert_eq!(out.len(), wire, "the writer wrote what chunked_len says");
        group.bench_with_input(
            BenchmarkId::new("chunk_message", chunk_size),
            &chunk_size,
            |b, &chunk_size| {
                b.iter(|| {
                    out.clear();
                    black_box(&gop).chunk_into(&mut out, chunk_size);
                    black_box(&mut out);
                })
            },
        );
    }

    for chunk_size in WRITER_CHUNK_SIZES {
        group.bench_with_input(
            BenchmarkId::new("ChunkedMessage::new", chunk_size),
            &chunk_size,
            |b, &chunk_size| {
                b.iter(|| {
                    for m in &gop.messages {
                        let chunked = ChunkedMessage::new(
                            m.csid,
                            m.timestamp_ms,
                            m.type_id,
                            STREAM_ID,
                            black_box(gop.payload(m)),
                            chunk_size,
                        )
                        .expect("chunk");
                        black_box(&chunked);
                    }
                })
            },
        );
    }
    group.finish();
}

fn reader(c: &mut Criterion) {
    let gop = gop();
    let mut group = c.benchmark_group("reader");

    // The ceiling: one copy of the bytes fed (the default chunk size's stream).
    let wire = gop.chunked(4096);
    let mut dst = vec![0u8; wire.len()];
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("memcpy", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&wire));
            black_box(&mut dst);
        })
    });

    for chunk_size in READER_CHUNK_SIZES {
        let wire = gop.chunked(chunk_size);
        // Set Chunk Size (when sent) and every media message come out, each payload intact.
        let expected = gop.messages.len() + usize::from(chunk_size != 128);
        let mut check = ChunkReader::new(ReaderLimits::default());
        check.push(&wire);
        let mut got = Vec::new();
        while let Some(m) = check.next_message().expect("valid stream") {
            got.push(m);
        }
        assert_eq!(got.len(), expected);
        let media = got
            .iter()
            .filter(|m| m.type_id == TYPE_VIDEO || m.type_id == TYPE_AUDIO);
        for (m, raw) in gop.messages.iter().zip(media) {
            assert_eq!(raw.payload.as_ref(), gop.payload(m));
        }

        group.throughput(Throughput::Bytes(wire.len() as u64));
        for read_size in READ_SIZES {
            let id = format!("ChunkReader/{chunk_size}/{}KiB", read_size / 1024);
            group.bench_function(id, |b| {
                b.iter(|| {
                    let mut reader = ChunkReader::new(ReaderLimits::default());
                    let mut messages = 0usize;
                    for read in black_box(&wire).chunks(read_size) {
                        reader.read_buffer(read_size).extend_from_slice(read);
                        while let Some(m) = reader.next_message().expect("valid stream") {
                            messages += 1;
                            black_box(m);
                        }
                    }
                    assert_eq!(messages, expected);
                })
            });
        }
    }
    group.finish();
}

fn fanout(c: &mut Criterion) {
    let gop = gop();
    let Some(p_frame) = gop
        .messages
        .iter()
        .find(|m| m.type_id == TYPE_VIDEO && m.timestamp_ms > 0)
    else {
        return;
    };
    let message = ChunkedMessage::new(
        p_frame.csid,
        p_frame.timestamp_ms,
        p_frame.type_id,
        STREAM_ID,
        gop.payload(p_frame),
        4096,
    )
    .expect("chunk");
    let shared = message.bytes().clone();
    let cfg = ServerConfig::default();
    let mut group = c.benchmark_group("fanout");

    for players in PLAYER_COUNTS {
        group.throughput(Throughput::Elements(players as u64));

        // The floor of sharing one buffer: a reference-count increment and decrement.
        let mut clones: Vec<Bytes> = Vec::with_capacity(players);
        group.bench_with_input(
            BenchmarkId::new("bytes_clone_drop", players),
            &players,
            |b, &players| {
                b.iter(|| {
                    clones.extend((0..players).map(|_| shared.clone()));
                    black_box(&mut clones);
                    clones.clear();
                })
            },
        );

        let queues: Vec<Mutex<SubscriberQueue<Bytes>>> = (0..players)
            .map(|_| Mutex::new(SubscriberQueue::new(&cfg, false)))
            .collect();
        let mut batch: VecDeque<Bytes> = VecDeque::with_capacity(MAX_IOVECS);
        let mut timestamp = Micros::ZERO;
        let size_bytes = message.wire_len() as u32;
        // One round outside the measurement: every player gets the message and writes it.
        timestamp += FRAME_INTERVAL;
        fan_out_round::<true>(&queues, &mut batch, timestamp, &shared, size_bytes);
        let delivered: u64 = queues
            .iter()
            .map(|q| q.lock().map(|q| q.stats().delivered).unwrap_or(0))
            .sum();
        assert_eq!(delivered, players as u64, "every player popped the message");
        group.bench_with_input(
            BenchmarkId::new("queue_push_pop", players),
            &players,
            |b, _| {
                b.iter(|| {
                    timestamp += FRAME_INTERVAL;
                    fan_out_round::<false>(&queues, &mut batch, timestamp, &shared, size_bytes);
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("queue_push_pop_iovec", players),
            &players,
            |b, _| {
                b.iter(|| {
                    timestamp += FRAME_INTERVAL;
                    fan_out_round::<true>(&queues, &mut batch, timestamp, &shared, size_bytes);
                })
            },
        );
    }
    group.finish();
}

/// One message to every player, then every player's writer round: the message (a `Bytes`
/// clone, P frame) pushed into each queue under its lock; then per player, under the lock,
/// `flush_at` and `pop_batch` into the writer's reused batch, and (`IOVECS`) the `IoSlice`
/// array `writev` would get, built as `serve::outbox` builds it.
fn fan_out_round<const IOVECS: bool>(
    queues: &[Mutex<SubscriberQueue<Bytes>>],
    batch: &mut VecDeque<Bytes>,
    timestamp: Micros,
    shared: &Bytes,
    size_bytes: u32,
) {
    let info = MediaInfo {
        kind: MediaKind::Video,
        keyframe: false,
        sequence_header: false,
        timestamp,
        size_bytes,
    };
    for q in queues {
        let mut q = q.lock().unwrap_or_else(|e| e.into_inner());
        black_box(q.push(timestamp, info, shared.clone()));
    }
    for q in queues {
        {
            let mut q = q.lock().unwrap_or_else(|e| e.into_inner());
            if q.flush_at().is_some_and(|at| at <= timestamp) {
                q.pop_batch(WRITE_BATCH_BYTES, |_, b| batch.push_back(b));
            }
        }
        if IOVECS {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (slot, buf) in slices.iter_mut().zip(batch.iter()) {
                *slot = IoSlice::new(buf);
                count += 1;
            }
            black_box(&slices[..count]);
        } else {
            black_box(&*batch);
        }
        batch.clear();
    }
}

criterion_group!(benches, writer, reader, fanout);
criterion_main!(benches);
