#!/usr/bin/env python3
"""Writes the seed corpus in corpus/<target>/ (committed; rerun after changing this file).

Valid inputs give libFuzzer a head start: whole RTMP sessions as chunk streams (the first byte
of a chunk_reader input picks how the stream is split, see fuzz_entry.rs), AMF0 command and
metadata bodies, FLV audio/video tags (legacy and Enhanced RTMP).

    python3 native-server/fuzz/seeds.py
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# --- AMF0 -----------------------------------------------------------------------------------


def num(x):
    return b"\x00" + struct.pack(">d", x)


def boolean(b):
    return b"\x01" + (b"\x01" if b else b"\x00")


def s(text):
    raw = text.encode()
    return b"\x02" + struct.pack(">H", len(raw)) + raw


def key(k):
    raw = k.encode()
    return struct.pack(">H", len(raw)) + raw


def obj(pairs):
    return b"\x03" + b"".join(key(k) + v for k, v in pairs) + b"\x00\x00\x09"


def ecma(pairs):
    return (
        b"\x08"
        + struct.pack(">I", len(pairs))
        + b"".join(key(k) + v for k, v in pairs)
        + b"\x00\x00\x09"
    )


def strict(items):
    return b"\x0a" + struct.pack(">I", len(items)) + b"".join(items)


NULL = b"\x05"
UNDEFINED = b"\x06"


def date(ms):
    return b"\x0b" + struct.pack(">d", ms) + b"\x00\x00"


def long_string(text):
    raw = text.encode()
    return b"\x0c" + struct.pack(">I", len(raw)) + raw


CONNECT = (
    s("connect")
    + num(1)
    + obj(
        [
            ("app", s("live")),
            ("type", s("nonprivate")),
            ("flashVer", s("FMLE/3.0 (compatible; FMSc/1.0)")),
            ("swfUrl", s("rtmp://127.0.0.1/live")),
            ("tcUrl", s("rtmp://127.0.0.1/live")),
            ("fpad", boolean(False)),
            ("capabilities", num(15)),
            ("audioCodecs", num(4071)),
            ("videoCodecs", num(252)),
            ("videoFunction", num(1)),
            ("fourCcList", strict([s("av01"), s("vp09"), s("hvc1")])),
        ]
    )
)
RELEASE = s("releaseStream") + num(2) + NULL + s("key")
FCPUBLISH = s("FCPublish") + num(3) + NULL + s("key")
CREATE = s("createStream") + num(4) + NULL
PUBLISH = s("publish") + num(5) + NULL + s("key") + s("live")
PLAY = s("play") + num(4) + NULL + s("key") + num(-2000)
METADATA = (
    s("@setDataFrame")
    + s("onMetaData")
    + ecma(
        [
            ("duration", num(0)),
            ("width", num(1280)),
            ("height", num(720)),
            ("videodatarate", num(2500)),
            ("framerate", num(30)),
            ("videocodecid", num(7)),
            ("audiodatarate", num(128)),
            ("audiosamplerate", num(48000)),
            ("audiosamplesize", num(16)),
            ("stereo", boolean(True)),
            ("audiocodecid", num(10)),
            ("encoder", s("Lavf59.27.100")),
            ("filesize", num(0)),
        ]
    )
)
ON_STATUS = (
    s("onStatus")
    + num(0)
    + NULL
    + obj(
        [
            ("level", s("status")),
            ("code", s("NetStream.Publish.Start")),
            ("description", s("Publishing key.")),
        ]
    )
)
MIXED = (
    num(1.5)
    + boolean(True)
    + NULL
    + UNDEFINED
    + date(1.7e12)
    + long_string("x" * 300)
    + strict([num(1), s("a"), obj([("k", ecma([("n", NULL)]))])])
)

# --- FLV tag bodies -----------------------------------------------------------------------------

SPS = bytes.fromhex("6742c00dda0507ec0440000003004000000f03c50aa8")
PPS = bytes.fromhex("68ce0fc8")
AVC_CONFIG = (
    bytes([1, SPS[1], SPS[2], SPS[3], 0xFF, 0xE1])
    + struct.pack(">H", len(SPS))
    + SPS
    + b"\x01"
    + struct.pack(">H", len(PPS))
    + PPS
)
AVC_SEQ = b"\x17\x00\x00\x00\x00" + AVC_CONFIG


def avc_frame(keyframe, n, size=64):
    nal = (b"\x65" if keyframe else b"\x41") + bytes((n + i) & 0xFF for i in range(size))
    return (b"\x17" if keyframe else b"\x27") + b"\x01\x00\x00\x21" + struct.pack(">I", len(nal)) + nal


AAC_SEQ = b"\xaf\x00\x11\x90"
AAC_FRAME = b"\xaf\x01" + bytes(range(40))
MP3_FRAME = b"\x2f" + bytes(range(32))

HEVC_CONFIG = bytes(
    [1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 0x5D, 0xF0, 0, 0xFC, 0xFD, 0xF8, 0xF8, 0, 0, 0x0F, 1]
) + bytes([0x20, 0, 1, 0, 4, 0x40, 1, 0x0C, 1])
# E-RTMP: 0x80 | frame type << 4 | packet type, then FourCC.
HEVC_SEQ = bytes([0x80 | 0x10 | 0]) + b"hvc1" + HEVC_CONFIG
HEVC_FRAME = bytes([0x80 | 0x10 | 1]) + b"hvc1" + b"\x00\x00\x00" + b"\x00\x00\x00\x05\x26\x01\xaf\x00\x00"
HEVC_FRAME_X = bytes([0x80 | 0x20 | 3]) + b"hvc1" + b"\x00\x00\x00\x05\x02\x01\xd0\x00\x00"
AV1_SEQ = bytes([0x80 | 0x10 | 0]) + b"av01" + bytes([0x81, 0x08, 0x0C, 0x00])
AV1_FRAME = bytes([0x80 | 0x10 | 1]) + b"av01" + bytes([0x12, 0x00, 0x0A, 0x0B, 0, 0, 0, 0x24])
VP9_SEQ = bytes([0x80 | 0x10 | 0]) + b"vp09" + bytes([1, 0, 0, 0, 0x1F, 0x80, 2, 2, 2, 0, 0, 0])
VIDEO_END = bytes([0x80 | 0x10 | 2]) + b"hvc1"
VIDEO_META = bytes([0x80 | 0x10 | 4]) + b"hvc1" + s("colorInfo") + obj([("colorConfig", obj([]))])
VIDEO_COMMAND = bytes([0x80 | 0x50 | 1]) + b"\x00"
MODEX = bytes([0x80 | 0x10 | 7, 2, 0, 0, 0, 0x01]) + b"avc1" + b"\x00\x00\x00" + b"\x00"
# Multitrack: packet type 6, then multitrack type << 4 | track packet type.
MULTI_ONE = bytes([0x80 | 0x10 | 6, 0x00 | 1]) + b"av01" + b"\x00" + bytes([0x12, 0x00])
MULTI_MANY = (
    bytes([0x80 | 0x10 | 6, 0x10 | 1])
    + b"hvc1"
    + b"\x00"
    + struct.pack(">I", 6)[1:]
    + b"\x00\x00\x00\x01\x02\x03"
    + b"\x01"
    + struct.pack(">I", 4)[1:]
    + b"\x00\x00\x00\x09"
)
MULTI_CODECS = (
    bytes([0x80 | 0x10 | 6, 0x20 | 0])
    + b"av01"
    + b"\x00"
    + struct.pack(">I", 4)[1:]
    + bytes([0x81, 0x08, 0x0C, 0x00])
    + b"vp09"
    + b"\x01"
    + struct.pack(">I", 4)[1:]
    + bytes([1, 0, 0, 0])
)
# E-RTMP audio: sound format 9 (ExHeader) << 4 | packet type, FourCC.
OPUS_SEQ = bytes([0x90 | 0]) + b"Opus" + b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00"
OPUS_FRAME = bytes([0x90 | 1]) + b"Opus" + bytes([0xFC, 0xFF, 0xFE])
AAC_EX_SEQ = bytes([0x90 | 0]) + b"mp4a" + b"\x11\x90"
AUDIO_MULTI = (
    bytes([0x90 | 5, 0x10 | 1])
    + b"Opus"
    + b"\x00"
    + struct.pack(">I", 3)[1:]
    + bytes([0xFC, 0xFF, 0xFE])
    + b"\x01"
    + struct.pack(">I", 3)[1:]
    + bytes([0xFC, 0xFF, 0xFE])
)

# --- Chunk streams ----------------------------------------------------------------------------


def basic(fmt, csid):
    if csid < 64:
        return bytes([(fmt << 6) | csid])
    if csid < 320:
        return bytes([fmt << 6, csid - 64])
    v = csid - 64
    return bytes([(fmt << 6) | 1, v & 0xFF, v >> 8])


def u24(x):
    return struct.pack(">I", x)[1:]


def chunk(fmt, csid, ts, type_id, msid, payload, chunk_size, repeat_ext=True):
    """One message as chunks; ts is absolute (fmt 0) or a delta (fmt 1, 2)."""
    ext = ts >= 0xFFFFFF
    h = basic(fmt, csid)
    if fmt <= 2:
        h += u24(min(ts, 0xFFFFFF))
    if fmt <= 1:
        h += u24(len(payload)) + bytes([type_id])
    if fmt == 0:
        h += struct.pack("<I", msid)
    if ext and fmt <= 2:
        h += struct.pack(">I", ts)
    out = h + payload[:chunk_size]
    rest = payload[chunk_size:]
    while rest:
        out += basic(3, csid)
        if ext and repeat_ext:
            out += struct.pack(">I", ts)
        out += rest[:chunk_size]
        rest = rest[chunk_size:]
    return out


def set_chunk_size(n):
    return chunk(0, 2, 0, 1, 0, struct.pack(">I", n), 128)


def publish_session(split):
    cs = 4096
    out = set_chunk_size(cs)
    out += chunk(0, 3, 0, 20, 0, CONNECT, cs)
    out += chunk(0, 2, 0, 5, 0, struct.pack(">I", 2500000), cs)
    out += chunk(1, 3, 0, 20, 0, RELEASE, cs)
    out += chunk(1, 3, 0, 20, 0, FCPUBLISH, cs)
    out += chunk(1, 3, 0, 20, 0, CREATE, cs)
    out += chunk(0, 4, 0, 20, 1, PUBLISH, cs)
    out += chunk(0, 5, 0, 18, 1, METADATA, cs)
    out += chunk(0, 6, 0, 9, 1, AVC_SEQ, cs)
    out += chunk(0, 4, 0, 8, 1, AAC_SEQ, cs)
    out += chunk(0, 6, 0, 9, 1, avc_frame(True, 0, 6000), cs)
    out += chunk(1, 6, 33, 9, 1, avc_frame(False, 1), cs)
    out += chunk(3, 6, 0, 9, 1, avc_frame(False, 2), cs)
    out += chunk(2, 6, 34, 9, 1, avc_frame(False, 3), cs)
    out += chunk(1, 4, 21, 8, 1, AAC_FRAME, cs)
    out += chunk(3, 4, 0, 8, 1, AAC_FRAME, cs)
    out += chunk(1, 3, 0, 20, 0, s("FCUnpublish") + num(6) + NULL + s("key"), cs)
    out += chunk(1, 3, 0, 20, 0, s("deleteStream") + num(7) + NULL + num(1), cs)
    return bytes([split]) + out


def play_session(split):
    out = chunk(0, 3, 0, 20, 0, CONNECT, 128)
    out += chunk(0, 2, 0, 5, 0, struct.pack(">I", 2500000), 128)
    out += chunk(1, 3, 0, 20, 0, CREATE, 128)
    out += chunk(0, 8, 0, 20, 1, PLAY, 128)
    out += chunk(0, 2, 0, 4, 0, struct.pack(">HII", 3, 1, 3000), 128)
    out += chunk(0, 2, 0, 3, 0, struct.pack(">I", 5000), 128)
    out += chunk(0, 2, 0, 4, 0, struct.pack(">HI", 7, 1234), 128)
    return bytes([split]) + out


def interleaved(split):
    """Video on csid 6 and audio on csid 4, chunks interleaved, at chunk size 128."""
    v = chunk(0, 6, 1000, 9, 1, avc_frame(True, 9, 600), 128)
    a = chunk(0, 4, 1000, 8, 1, AAC_FRAME * 5, 128)
    # Split each at chunk boundaries (first chunk 12 + 128 bytes, then 1 + 128).
    def pieces(b):
        out = [b[:140]]
        b = b[140:]
        while b:
            out.append(b[:129])
            b = b[129:]
        return out

    pv, pa = pieces(v), pieces(a)
    out = b""
    for i in range(max(len(pv), len(pa))):
        out += (pv[i] if i < len(pv) else b"") + (pa[i] if i < len(pa) else b"")
    return bytes([split]) + out


def chunk3(csid, ext, payload, chunk_size):
    """A type-3 header starting a new message (every field reused); `ext` is the repeated
    extended timestamp field, if the previous header had one."""
    out = b""
    while True:
        out += basic(3, csid)
        if ext is not None:
            out += struct.pack(">I", ext)
        out += payload[:chunk_size]
        payload = payload[chunk_size:]
        if not payload:
            return out


def extended(split):
    out = chunk(0, 6, 0x1000000, 9, 1, avc_frame(True, 1, 300), 128)
    out += chunk3(6, 0x1000000, avc_frame(False, 2, 300), 128)
    out += chunk(0, 6, 0x1000000, 9, 1, avc_frame(True, 3, 300), 128, repeat_ext=False)
    out += chunk(1, 6, 0xFFFFFFF, 9, 1, avc_frame(False, 4, 200), 128)
    out += chunk(0, 4, 0xFFFFFE, 8, 1, AAC_FRAME, 128)
    out += chunk(2, 4, 23, 8, 1, AAC_FRAME, 128)
    out += chunk(0, 4, 5, 8, 1, AAC_FRAME, 128)
    return bytes([split]) + out


def control(split):
    out = chunk(0, 2, 0, 5, 0, struct.pack(">I", 5000000), 128)
    out += chunk(0, 2, 0, 6, 0, struct.pack(">IB", 5000000, 2), 128)
    out += chunk(0, 2, 0, 3, 0, struct.pack(">I", 123456), 128)
    out += chunk(0, 2, 0, 4, 0, struct.pack(">HI", 0, 1), 128)
    out += chunk(0, 2, 0, 4, 0, struct.pack(">HI", 6, 99), 128)
    # Abort a half-sent message on csid 6.
    out += chunk(0, 6, 0, 9, 1, avc_frame(True, 5, 400), 128)[:140]
    out += chunk(0, 2, 0, 2, 0, struct.pack(">I", 6), 128)
    # Aggregate (type 22) of a video and an audio FLV tag.
    def tag(t, ts, body):
        return (
            bytes([t])
            + u24(len(body))
            + u24(ts & 0xFFFFFF)
            + bytes([ts >> 24])
            + u24(0)
            + body
            + struct.pack(">I", 11 + len(body))
        )

    agg = tag(9, 40, avc_frame(False, 6)) + tag(8, 41, AAC_FRAME)
    out += chunk(0, 6, 40, 22, 1, agg, 128)
    out += set_chunk_size(65536)
    out += chunk(0, 6, 80, 9, 1, avc_frame(True, 7, 5000), 65536)
    # 2- and 3-byte basic headers.
    out += chunk(0, 100, 0, 20, 0, CREATE, 65536)
    out += chunk(0, 400, 0, 18, 1, METADATA, 65536)
    return bytes([split]) + out


def enhanced_session(split):
    out = chunk(0, 6, 0, 9, 1, HEVC_SEQ, 128)
    out += chunk(1, 6, 33, 9, 1, HEVC_FRAME, 128)
    out += chunk(1, 6, 33, 9, 1, MULTI_MANY, 128)
    out += chunk(1, 6, 33, 9, 1, MULTI_CODECS, 128)
    out += chunk(0, 4, 0, 8, 1, OPUS_SEQ, 128)
    out += chunk(1, 4, 20, 8, 1, AUDIO_MULTI, 128)
    return bytes([split]) + out


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    write("chunk_reader", "publish-session", publish_session(63))
    write("chunk_reader", "publish-session-split7", publish_session(6))
    write("chunk_reader", "play-session", play_session(31))
    write("chunk_reader", "interleaved-128", interleaved(12))
    write("chunk_reader", "extended-timestamps", extended(2))
    write("chunk_reader", "control-abort-aggregate", control(40))
    write("chunk_reader", "enhanced-rtmp", enhanced_session(17))

    for name, body in [
        ("connect", CONNECT),
        ("release-fcpublish-create-publish", RELEASE + FCPUBLISH + CREATE + PUBLISH),
        ("play", PLAY),
        ("set-data-frame", METADATA),
        ("on-status", ON_STATUS),
        ("mixed-values", MIXED),
    ]:
        write("amf0", name, body)

    for name, body in [
        ("avc-sequence-header", AVC_SEQ),
        ("avc-keyframe", avc_frame(True, 1)),
        ("avc-inter", avc_frame(False, 2)),
        ("aac-sequence-header", AAC_SEQ),
        ("aac-frame", AAC_FRAME),
        ("mp3-frame", MP3_FRAME),
        ("hevc-sequence-start", HEVC_SEQ),
        ("hevc-coded-frames", HEVC_FRAME),
        ("hevc-coded-frames-x", HEVC_FRAME_X),
        ("av1-sequence-start", AV1_SEQ),
        ("av1-coded-frames", AV1_FRAME),
        ("vp9-sequence-start", VP9_SEQ),
        ("video-sequence-end", VIDEO_END),
        ("video-metadata", VIDEO_META),
        ("video-command", VIDEO_COMMAND),
        ("video-modex", MODEX),
        ("multitrack-one", MULTI_ONE),
        ("multitrack-many", MULTI_MANY),
        ("multitrack-many-codecs", MULTI_CODECS),
        ("opus-sequence-start", OPUS_SEQ),
        ("opus-frame", OPUS_FRAME),
        ("aac-ex-sequence-start", AAC_EX_SEQ),
        ("audio-multitrack", AUDIO_MULTI),
        ("aac-audio-specific-config", b"\x11\x90"),
    ]:
        write("flv", name, body)


if __name__ == "__main__":
    main()
