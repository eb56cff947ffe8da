//! A scripted RTMP client written for the tests, independent of native-server's codec (so a bug
//! shared by both sides cannot hide): the plain (version 3, no digest) handshake, AMF0, a chunk
//! writer that compresses headers the way FFmpeg does (or sends exactly the headers a test
//! builds), and a strict chunk reader for what the server sends back.
//!
//! The reader is strict where real players are: on a type-3 continuation chunk of a message
//! whose header carried an extended timestamp it expects the 4-byte extended timestamp to be
//! repeated (FFmpeg and librtmp read it unconditionally), and it fails on anything malformed.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub const SET_CHUNK_SIZE: u8 = 1;
pub const ABORT: u8 = 2;
pub const ACKNOWLEDGEMENT: u8 = 3;
pub const USER_CONTROL: u8 = 4;
pub const WINDOW_ACK_SIZE: u8 = 5;
pub const SET_PEER_BANDWIDTH: u8 = 6;
pub const AUDIO: u8 = 8;
pub const VIDEO: u8 = 9;
pub const DATA_AMF0: u8 = 18;
pub const COMMAND_AMF0: u8 = 20;

/// Chunk stream ids the client uses (FFmpeg's choices).
pub const CSID_CONTROL: u32 = 2;
pub const CSID_COMMAND: u32 = 3;
pub const CSID_AUDIO: u32 = 4;
pub const CSID_VIDEO: u32 = 6;
pub const CSID_DATA: u32 = 5;

pub const HANDSHAKE_SIZE: usize = 1536;

// ---------------------------------------------------------------------------------------------
// AMF0
// ---------------------------------------------------------------------------------------------

/// An AMF0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf {
    Number(f64),
    Bool(bool),
    String(String),
    Object(Vec<(String, Amf)>),
    Null,
    Undefined,
    EcmaArray(Vec<(String, Amf)>),
    StrictArray(Vec<Amf>),
    Date(f64),
}

impl Amf {
    pub fn str(s: &str) -> Amf {
        Amf::String(s.to_string())
    }

    pub fn obj(pairs: &[(&str, Amf)]) -> Amf {
        Amf::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    /// A property of an object or ECMA array.
    pub fn get(&self, key: &str) -> Option<&Amf> {
        match self {
            Amf::Object(p) | Amf::EcmaArray(p) => p.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf::Number(n) => Some(*n),
            _ => None,
        }
    }
}

fn put_utf8(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn encode_value(out: &mut Vec<u8>, v: &Amf) {
    match v {
        Amf::Number(n) => {
            out.push(0x00);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Amf::Bool(b) => {
            out.push(0x01);
            out.push(u8::from(*b));
        }
        Amf::String(s) if s.len() > 0xFFFF => {
            out.push(0x0C);
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Amf::String(s) => {
            out.push(0x02);
            put_utf8(out, s);
        }
        Amf::Object(props) => {
            out.push(0x03);
            for (k, v) in props {
                put_utf8(out, k);
                encode_value(out, v);
            }
            out.extend_from_slice(&[0, 0, 0x09]);
        }
        Amf::Null => out.push(0x05),
        Amf::Undefined => out.push(0x06),
        Amf::EcmaArray(props) => {
            out.push(0x08);
            out.extend_from_slice(&(props.len() as u32).to_be_bytes());
            for (k, v) in props {
                put_utf8(out, k);
                encode_value(out, v);
            }
            out.extend_from_slice(&[0, 0, 0x09]);
        }
        Amf::StrictArray(items) => {
            out.push(0x0A);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for v in items {
                encode_value(out, v);
            }
        }
        Amf::Date(ms) => {
            out.push(0x0B);
            out.extend_from_slice(&ms.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        }
    }
}

/// Encodes a sequence of AMF0 values (a command or data message body).
pub fn amf_encode(values: &[Amf]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        encode_value(&mut out, v);
    }
    out
}

struct AmfIn<'a> {
    data: &'a [u8],
    pos: usize,
}

impl AmfIn<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.pos.checked_add(n).ok_or("overflow")?;
        let s = self
            .data
            .get(self.pos..end)
            .ok_or_else(|| format!("AMF0 truncated at byte {}", self.pos))?;
        self.pos = end;
        Ok(s)
    }

    fn u16(&mut self) -> Result<usize, String> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u32(&mut self) -> Result<usize, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn utf8(&mut self, len: usize) -> Result<String, String> {
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    fn props(&mut self, depth: usize) -> Result<Vec<(String, Amf)>, String> {
        let mut props = Vec::new();
        loop {
            let len = self.u16()?;
            if len == 0 && self.data.get(self.pos) == Some(&0x09) {
                self.pos += 1;
                return Ok(props);
            }
            let key = self.utf8(len)?;
            let v = self.value(depth + 1)?;
            props.push((key, v));
        }
    }

    fn value(&mut self, depth: usize) -> Result<Amf, String> {
        if depth > 64 {
            return Err("AMF0 nested deeper than 64 in a server reply".into());
        }
        let marker = self.take(1)?[0];
        Ok(match marker {
            0x00 => {
                let b = self.take(8)?;
                Amf::Number(f64::from_be_bytes(b.try_into().unwrap()))
            }
            0x01 => Amf::Bool(self.take(1)?[0] != 0),
            0x02 => {
                let len = self.u16()?;
                Amf::String(self.utf8(len)?)
            }
            0x03 => Amf::Object(self.props(depth)?),
            0x05 => Amf::Null,
            0x06 => Amf::Undefined,
            0x08 => {
                let _count = self.u32()?;
                Amf::EcmaArray(self.props(depth)?)
            }
            0x0A => {
                let n = self.u32()?;
                let mut items = Vec::new();
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Amf::StrictArray(items)
            }
            0x0B => {
                let b = self.take(8)?;
                let ms = f64::from_be_bytes(b.try_into().unwrap());
                self.take(2)?;
                Amf::Date(ms)
            }
            0x0C => {
                let len = self.u32()?;
                Amf::String(self.utf8(len)?)
            }
            other => {
                return Err(format!(
                    "AMF0 marker {other:#04x} not handled by the test client"
                ))
            }
        })
    }
}

/// Decodes a whole command or data message body.
pub fn amf_decode(data: &[u8]) -> Result<Vec<Amf>, String> {
    let mut r = AmfIn { data, pos: 0 };
    let mut out = Vec::new();
    while r.pos < data.len() {
        out.push(r.value(0)?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Chunk writing
// ---------------------------------------------------------------------------------------------

/// Appends a basic header (1, 2 or 3 bytes depending on the csid).
pub fn basic_header(out: &mut Vec<u8>, fmt: u8, csid: u32) {
    assert!(fmt < 4 && (2..=65599).contains(&csid), "csid {csid}");
    let f = fmt << 6;
    if csid < 64 {
        out.push(f | csid as u8);
    } else if csid < 320 {
        out.push(f);
        out.push((csid - 64) as u8);
    } else {
        let v = csid - 64;
        out.push(f | 1);
        out.push((v & 0xFF) as u8);
        out.push((v >> 8) as u8);
    }
}

/// One chunk header, written exactly as described (no compression decisions).
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub fmt: u8,
    pub csid: u32,
    /// Absolute timestamp (fmt 0) or delta (fmt 1, 2); 0xFFFFFF or more goes in the extended
    /// field. For fmt 3 only used when `ext_on_fmt3` is set.
    pub ts_field: u32,
    pub length: u32,
    pub type_id: u8,
    pub msid: u32,
    /// fmt 3 only: write the 4-byte extended timestamp (`ts_field`) after the basic header.
    pub ext_on_fmt3: bool,
}

impl Header {
    pub fn full(csid: u32, ts: u32, type_id: u8, msid: u32, length: u32) -> Header {
        Header {
            fmt: 0,
            csid,
            ts_field: ts,
            length,
            type_id,
            msid,
            ext_on_fmt3: false,
        }
    }

    fn extended(&self) -> bool {
        if self.fmt == 3 {
            self.ext_on_fmt3
        } else {
            self.ts_field >= 0xFF_FFFF
        }
    }
}

/// Appends a chunk header.
pub fn write_header(out: &mut Vec<u8>, h: &Header) {
    basic_header(out, h.fmt, h.csid);
    let ts24 = h.ts_field.min(0xFF_FFFF);
    if h.fmt <= 2 {
        out.extend_from_slice(&ts24.to_be_bytes()[1..]);
    }
    if h.fmt <= 1 {
        out.extend_from_slice(&h.length.to_be_bytes()[1..]);
        out.push(h.type_id);
    }
    if h.fmt == 0 {
        out.extend_from_slice(&h.msid.to_le_bytes());
    }
    if h.extended() {
        out.extend_from_slice(&h.ts_field.to_be_bytes());
    }
}

/// Appends `payload` as chunks: the first with header `h`, the rest type-3 continuations
/// (repeating the extended timestamp when `h` has one and `repeat_ext` is set, as FFmpeg and
/// librtmp do).
pub fn write_chunks(
    out: &mut Vec<u8>,
    h: &Header,
    payload: &[u8],
    chunk_size: usize,
    repeat_ext: bool,
) {
    write_header(out, h);
    let mut rest = payload;
    let first = rest.len().min(chunk_size);
    out.extend_from_slice(&rest[..first]);
    rest = &rest[first..];
    while !rest.is_empty() {
        basic_header(out, 3, h.csid);
        if repeat_ext && h.extended() {
            out.extend_from_slice(&h.ts_field.to_be_bytes());
        }
        let n = rest.len().min(chunk_size);
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}

#[derive(Debug, Clone, Copy)]
struct OutState {
    ts: u32,
    ts_field: u32,
    length: u32,
    type_id: u8,
    msid: u32,
}

/// Chunk writer that compresses headers like FFmpeg's (fmt 0 on a new csid, a new stream id or
/// a timestamp going backwards; otherwise fmt 1/2/3 with deltas).
#[derive(Debug)]
pub struct ChunkWriter {
    pub chunk_size: usize,
    /// Repeat the extended timestamp on continuation chunks (FFmpeg, librtmp: yes).
    pub repeat_ext: bool,
    /// Always write fmt 0 headers.
    pub always_full: bool,
    state: HashMap<u32, OutState>,
}

impl Default for ChunkWriter {
    fn default() -> Self {
        ChunkWriter {
            chunk_size: 128,
            repeat_ext: true,
            always_full: false,
            state: HashMap::new(),
        }
    }
}

impl ChunkWriter {
    /// Appends one message, header compressed against the csid's previous one.
    pub fn write(
        &mut self,
        out: &mut Vec<u8>,
        csid: u32,
        ts: u32,
        type_id: u8,
        msid: u32,
        payload: &[u8],
    ) {
        let length = payload.len() as u32;
        let prev = self.state.get(&csid).copied();
        let h = match prev {
            Some(p) if !self.always_full && p.msid == msid && ts >= p.ts => {
                let delta = ts - p.ts;
                let same_shape = p.length == length && p.type_id == type_id;
                let fmt = if !same_shape {
                    1
                } else if delta == p.ts_field {
                    3
                } else {
                    2
                };
                Header {
                    fmt,
                    csid,
                    ts_field: delta,
                    length,
                    type_id,
                    msid,
                    ext_on_fmt3: delta >= 0xFF_FFFF,
                }
            }
            _ => Header::full(csid, ts, type_id, msid, length),
        };
        write_chunks(out, &h, payload, self.chunk_size, self.repeat_ext);
        self.state.insert(
            csid,
            OutState {
                ts,
                ts_field: h.ts_field,
                length,
                type_id,
                msid,
            },
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Chunk reading (strict)
// ---------------------------------------------------------------------------------------------

/// One reassembled message.
#[derive(Debug, Clone)]
pub struct Msg {
    pub csid: u32,
    pub type_id: u8,
    pub timestamp: u32,
    pub msid: u32,
    pub payload: Vec<u8>,
}

impl Msg {
    /// The AMF0 values of a command or data message.
    pub fn amf(&self) -> Result<Vec<Amf>, String> {
        amf_decode(&self.payload)
    }

    pub fn is_media(&self) -> bool {
        matches!(self.type_id, AUDIO | VIDEO | DATA_AMF0)
    }
}

#[derive(Debug, Default, Clone)]
struct InState {
    ts: u32,
    ts_field: u32,
    ext: bool,
    length: u32,
    type_id: u8,
    msid: u32,
    partial: Option<Vec<u8>>,
}

/// Strict reassembly of the server's chunk stream.
#[derive(Debug)]
pub struct ChunkReader {
    buf: Vec<u8>,
    pub chunk_size: usize,
    streams: HashMap<u32, InState>,
}

impl Default for ChunkReader {
    fn default() -> Self {
        ChunkReader {
            buf: Vec::new(),
            chunk_size: 128,
            streams: HashMap::new(),
        }
    }
}

fn be(b: &[u8]) -> u32 {
    b.iter().fold(0u32, |acc, &x| (acc << 8) | u32::from(x))
}

impl ChunkReader {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Msg>, String> {
        loop {
            let b = &self.buf;
            let Some(&b0) = b.first() else {
                return Ok(None);
            };
            let fmt = b0 >> 6;
            let (csid, mut pos) = match b0 & 0x3F {
                0 => match b.get(1) {
                    Some(&x) => (u32::from(x) + 64, 2),
                    None => return Ok(None),
                },
                1 => match b.get(1..3) {
                    Some(x) => (u32::from(x[0]) + u32::from(x[1]) * 256 + 64, 3),
                    None => return Ok(None),
                },
                n => (u32::from(n), 1),
            };
            let fields = [11usize, 7, 3, 0][usize::from(fmt)];
            let Some(f) = b.get(pos..pos + fields) else {
                return Ok(None);
            };
            let f = f.to_vec();
            pos += fields;
            let prev = self.streams.get(&csid).cloned();
            if fmt != 0 && prev.is_none() {
                return Err(format!(
                    "server sent a type-{fmt} chunk on csid {csid} with no previous header"
                ));
            }
            let mut st = prev.unwrap_or_default();
            let continuation = fmt == 3 && st.partial.is_some();
            if fmt == 3 {
                if st.ext {
                    let Some(x) = b.get(pos..pos + 4) else {
                        return Ok(None);
                    };
                    let ext = be(x);
                    pos += 4;
                    if continuation && ext != st.ts_field {
                        return Err(format!(
                            "csid {csid}: type-3 continuation chunk of a message with extended \
                             timestamp {:#x} carries {ext:#x} instead (FFmpeg and librtmp \
                             expect the extended timestamp repeated)",
                            st.ts_field
                        ));
                    }
                    st.ts_field = ext;
                }
                if !continuation {
                    st.ts = st.ts.wrapping_add(st.ts_field);
                }
            } else {
                if st.partial.is_some() {
                    return Err(format!(
                        "csid {csid}: a type-{fmt} header started a new message while {} of \
                         {} bytes of the previous one were still missing",
                        st.length as usize - st.partial.as_ref().map_or(0, Vec::len),
                        st.length
                    ));
                }
                let mut field = be(&f[0..3]);
                st.ext = field == 0xFF_FFFF;
                if st.ext {
                    let Some(x) = b.get(pos..pos + 4) else {
                        return Ok(None);
                    };
                    field = be(x);
                    pos += 4;
                }
                st.ts_field = field;
                if fmt <= 1 {
                    st.length = be(&f[3..6]);
                    st.type_id = f[6];
                }
                if fmt == 0 {
                    st.msid = u32::from_le_bytes([f[7], f[8], f[9], f[10]]);
                    st.ts = field;
                } else {
                    st.ts = st.ts.wrapping_add(field);
                }
            }
            let have = st.partial.as_ref().map_or(0, Vec::len);
            let want = (st.length as usize - have).min(self.chunk_size);
            let Some(data) = b.get(pos..pos + want) else {
                return Ok(None);
            };
            let mut partial = st.partial.take().unwrap_or_default();
            partial.extend_from_slice(data);
            pos += want;
            self.buf.drain(..pos);
            let done = partial.len() >= st.length as usize;
            let msg = done.then(|| Msg {
                csid,
                type_id: st.type_id,
                timestamp: st.ts,
                msid: st.msid,
                payload: std::mem::take(&mut partial),
            });
            st.partial = (!done).then_some(partial);
            self.streams.insert(csid, st);
            if let Some(m) = msg {
                if m.type_id == SET_CHUNK_SIZE {
                    let n = m.payload.get(..4).map(be).unwrap_or(0) & 0x7FFF_FFFF;
                    if n == 0 {
                        return Err("server sent Set Chunk Size 0".into());
                    }
                    self.chunk_size = n as usize;
                }
                return Ok(Some(m));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

/// Timeout for one step of a session (a reply, a status).
pub const STEP: Duration = Duration::from_secs(5);

/// A blocking RTMP client over one TCP connection.
pub struct Client {
    pub sock: TcpStream,
    pub reader: ChunkReader,
    pub writer: ChunkWriter,
    pub addr: SocketAddr,
    next_tx: f64,
    window: u64,
    bytes_in: u64,
    last_ack: u64,
    /// Stream id from createStream.
    pub stream_id: u32,
    /// Messages read while waiting for something else (replies skipped by `wait_*`), for
    /// diagnostics.
    pub seen: Vec<String>,
    /// Media messages read while waiting for a command reply, handed out by `next_media` first.
    pending_media: std::collections::VecDeque<Msg>,
}

fn describe(m: &Msg) -> String {
    match m.type_id {
        COMMAND_AMF0 | DATA_AMF0 => format!(
            "type {} ts {} {:?}",
            m.type_id,
            m.timestamp,
            m.amf().unwrap_or_default()
        ),
        _ => format!(
            "type {} ts {} len {}",
            m.type_id,
            m.timestamp,
            m.payload.len()
        ),
    }
}

impl Client {
    /// TCP connect only (no handshake).
    pub fn tcp(addr: SocketAddr) -> io::Result<TcpStream> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(s)
    }

    /// TCP connect and the plain RTMP handshake (C0 = 3, C1 = time 0, zero version, pseudo-random
    /// bytes; C2 = S1 echoed).
    pub fn handshake(addr: SocketAddr) -> io::Result<Client> {
        let mut sock = Self::tcp(addr)?;
        let mut c0c1 = vec![3u8];
        c0c1.extend_from_slice(&[0u8; 8]);
        let mut x = 0x9E37_79B9u32;
        for _ in 8..HANDSHAKE_SIZE {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            c0c1.push(x as u8);
        }
        sock.write_all(&c0c1)?;
        sock.set_read_timeout(Some(STEP))?;
        let mut s0s1s2 = vec![0u8; 1 + 2 * HANDSHAKE_SIZE];
        sock.read_exact(&mut s0s1s2)?;
        if s0s1s2[0] != 3 {
            return Err(io::Error::other(format!(
                "S0 is {} (expected version 3)",
                s0s1s2[0]
            )));
        }
        // S2 echoes C1 in the plain handshake.
        if s0s1s2[1 + HANDSHAKE_SIZE + 8..] != c0c1[1 + 8..] {
            return Err(io::Error::other("S2 does not echo C1's random bytes"));
        }
        sock.write_all(&s0s1s2[1..1 + HANDSHAKE_SIZE])?;
        Ok(Client {
            sock,
            reader: ChunkReader::default(),
            writer: ChunkWriter::default(),
            addr,
            next_tx: 1.0,
            window: 2_500_000,
            bytes_in: 0,
            last_ack: 0,
            stream_id: 0,
            seen: Vec::new(),
            pending_media: Default::default(),
        })
    }

    /// Sends bytes as they are. The compressing writer does not see them: after a raw message
    /// on a csid that `send` also uses, set `writer.always_full` (its next delta headers would
    /// be computed against the wrong previous message).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sock.write_all(bytes)
    }

    /// Sends one message through the compressing writer.
    pub fn send(
        &mut self,
        csid: u32,
        ts: u32,
        type_id: u8,
        msid: u32,
        payload: &[u8],
    ) -> io::Result<()> {
        let mut out = Vec::new();
        self.writer
            .write(&mut out, csid, ts, type_id, msid, payload);
        self.send_raw(&out)
    }

    /// Sends Set Chunk Size and uses the new size from then on.
    pub fn set_chunk_size(&mut self, size: u32) -> io::Result<()> {
        self.send(CSID_CONTROL, 0, SET_CHUNK_SIZE, 0, &size.to_be_bytes())?;
        self.writer.chunk_size = size as usize;
        Ok(())
    }

    /// Reads until one message is complete or `deadline` passes (`Ok(None)`). A closed
    /// connection is `Err(UnexpectedEof)`. Answers pings and sends acknowledgements itself.
    pub fn recv(&mut self, deadline: Instant) -> io::Result<Option<Msg>> {
        loop {
            match self.reader.next_message() {
                Ok(Some(m)) => {
                    self.handle_control(&m)?;
                    return Ok(Some(m));
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.sock
                .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))?;
            let mut buf = [0u8; 65536];
            match self.sock.read(&mut buf) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "server closed the connection",
                    ))
                }
                Ok(n) => {
                    self.bytes_in += n as u64;
                    self.reader.push(&buf[..n]);
                    if self.bytes_in - self.last_ack >= self.window / 2 {
                        self.last_ack = self.bytes_in;
                        let ack = (self.bytes_in as u32).to_be_bytes();
                        self.send(CSID_CONTROL, 0, ACKNOWLEDGEMENT, 0, &ack)?;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn handle_control(&mut self, m: &Msg) -> io::Result<()> {
        match m.type_id {
            WINDOW_ACK_SIZE => {
                if let Some(b) = m.payload.get(..4) {
                    self.window = u64::from(be(b)).max(1);
                }
            }
            USER_CONTROL if m.payload.get(..2) == Some(&[0, 6]) => {
                let mut pong = vec![0, 7];
                pong.extend_from_slice(m.payload.get(2..6).unwrap_or(&[0; 4]));
                self.send(CSID_CONTROL, 0, USER_CONTROL, 0, &pong)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Sends a command; returns its transaction id.
    pub fn call(&mut self, name: &str, args: &[Amf], msid: u32) -> io::Result<f64> {
        let tx = self.next_tx;
        self.next_tx += 1.0;
        self.call_tx(name, tx, args, msid)?;
        Ok(tx)
    }

    pub fn call_tx(&mut self, name: &str, tx: f64, args: &[Amf], msid: u32) -> io::Result<()> {
        let mut values = vec![Amf::str(name), Amf::Number(tx)];
        values.extend_from_slice(args);
        let body = amf_encode(&values);
        self.send(CSID_COMMAND, 0, COMMAND_AMF0, msid, &body)
    }

    /// Reads until `accept` returns `Some` for a message, within `timeout`.
    pub fn wait_for<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut accept: impl FnMut(&Msg) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv(deadline) {
                Ok(Some(m)) => {
                    if let Some(t) = accept(&m) {
                        return Ok(t);
                    }
                    if self.seen.len() < 200 {
                        self.seen.push(describe(&m));
                    }
                    if matches!(m.type_id, AUDIO | VIDEO | DATA_AMF0) {
                        self.pending_media.push_back(m);
                    }
                }
                Ok(None) => {
                    return Err(format!(
                        "timed out after {timeout:?} waiting for {what}; read meanwhile: {:?}",
                        self.seen
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "{e} while waiting for {what}; read meanwhile: {:?}",
                        self.seen
                    ))
                }
            }
        }
    }

    /// Waits for `_result`/`_error` with transaction id `tx`: (name, values after the tx).
    pub fn wait_reply(&mut self, tx: f64, timeout: Duration) -> Result<(String, Vec<Amf>), String> {
        self.wait_for(timeout, &format!("the reply to transaction {tx}"), |m| {
            if m.type_id != COMMAND_AMF0 {
                return None;
            }
            let v = m.amf().ok()?;
            let name = v.first()?.as_str()?.to_string();
            let t = v.get(1)?.as_f64()?;
            ((name == "_result" || name == "_error") && t == tx).then(|| (name, v[2..].to_vec()))
        })
    }

    /// Waits for an `onStatus` whose code `accept` accepts; returns (code, info object).
    pub fn wait_status(
        &mut self,
        timeout: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> Result<(String, Amf), String> {
        self.wait_for(timeout, "onStatus", |m| {
            if m.type_id != COMMAND_AMF0 {
                return None;
            }
            let v = m.amf().ok()?;
            if v.first()?.as_str()? != "onStatus" {
                return None;
            }
            let info = v.iter().skip(2).find(|x| x.get("code").is_some())?.clone();
            let code = info.get("code")?.as_str()?.to_string();
            accept(&code).then_some((code, info))
        })
    }

    /// `connect` to `app`, as FFmpeg sends it; fails unless the reply is `_result`.
    pub fn connect_app(&mut self, app: &str) -> Result<Vec<Amf>, String> {
        let tc_url = format!("rtmp://{}/{app}", self.addr);
        let tx = self
            .call(
                "connect",
                &[Amf::obj(&[
                    ("app", Amf::str(app)),
                    ("flashVer", Amf::str("FMLE/3.0 (compatible; e2e)")),
                    ("tcUrl", Amf::str(&tc_url)),
                    ("type", Amf::str("nonprivate")),
                    ("fpad", Amf::Bool(false)),
                    ("capabilities", Amf::Number(15.0)),
                    ("audioCodecs", Amf::Number(4071.0)),
                    ("videoCodecs", Amf::Number(252.0)),
                    ("videoFunction", Amf::Number(1.0)),
                ])],
                0,
            )
            .map_err(|e| format!("send connect: {e}"))?;
        let (name, v) = self.wait_reply(tx, STEP)?;
        if name != "_result" {
            return Err(format!("connect answered {name} {v:?}"));
        }
        Ok(v)
    }

    pub fn create_stream(&mut self) -> Result<u32, String> {
        let tx = self
            .call("createStream", &[Amf::Null], 0)
            .map_err(|e| format!("send createStream: {e}"))?;
        let (name, v) = self.wait_reply(tx, STEP)?;
        let id = v.iter().find_map(Amf::as_f64);
        match (name.as_str(), id) {
            ("_result", Some(id)) if id >= 1.0 && id.fract() == 0.0 => {
                self.stream_id = id as u32;
                Ok(self.stream_id)
            }
            _ => Err(format!("createStream answered {name} {v:?}")),
        }
    }

    /// releaseStream, FCPublish, createStream, publish (as FFmpeg and OBS do). Returns the code
    /// of the first `NetStream.Publish.*` status (Start, BadName, …).
    pub fn publish(&mut self, key: &str) -> Result<String, String> {
        let send = |c: &mut Client, name: &str| {
            c.call(name, &[Amf::Null, Amf::str(key)], 0)
                .map_err(|e| format!("send {name}: {e}"))
        };
        send(self, "releaseStream")?;
        send(self, "FCPublish")?;
        self.create_stream()?;
        let msid = self.stream_id;
        self.call_tx(
            "publish",
            0.0,
            &[Amf::Null, Amf::str(key), Amf::str("live")],
            msid,
        )
        .map_err(|e| format!("send publish: {e}"))?;
        let (code, _) = self.wait_status(STEP, |c| {
            c.starts_with("NetStream.Publish.") || c.ends_with("Failed") || c.contains("Error")
        })?;
        Ok(code)
    }

    /// createStream, play (start -2: live or recorded), Set Buffer Length. Returns the first
    /// `NetStream.Play.*` code other than `Reset` (normally `NetStream.Play.Start`).
    pub fn play(&mut self, key: &str) -> Result<String, String> {
        self.create_stream()?;
        let msid = self.stream_id;
        self.call_tx(
            "play",
            0.0,
            &[Amf::Null, Amf::str(key), Amf::Number(-2.0)],
            msid,
        )
        .map_err(|e| format!("send play: {e}"))?;
        let mut buflen = vec![0, 3];
        buflen.extend_from_slice(&msid.to_be_bytes());
        buflen.extend_from_slice(&3000u32.to_be_bytes());
        self.send(CSID_CONTROL, 0, USER_CONTROL, 0, &buflen)
            .map_err(|e| format!("send set buffer length: {e}"))?;
        let (code, _) = self.wait_status(STEP, |c| {
            c != "NetStream.Play.Reset"
                && (c.starts_with("NetStream.Play.") || c.ends_with("Failed"))
        })?;
        Ok(code)
    }

    pub fn send_video(&mut self, ts: u32, payload: &[u8]) -> io::Result<()> {
        let msid = self.stream_id;
        self.send(CSID_VIDEO, ts, VIDEO, msid, payload)
    }

    pub fn send_audio(&mut self, ts: u32, payload: &[u8]) -> io::Result<()> {
        let msid = self.stream_id;
        self.send(CSID_AUDIO, ts, AUDIO, msid, payload)
    }

    pub fn send_data(&mut self, ts: u32, values: &[Amf]) -> io::Result<()> {
        let msid = self.stream_id;
        self.send(CSID_DATA, ts, DATA_AMF0, msid, &amf_encode(values))
    }

    /// The next audio, video or data message within `timeout` (`Ok(None)` on timeout).
    pub fn next_media(&mut self, timeout: Duration) -> Result<Option<Msg>, String> {
        if let Some(m) = self.pending_media.pop_front() {
            return Ok(Some(m));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv(deadline) {
                Ok(Some(m)) if m.is_media() => return Ok(Some(m)),
                Ok(Some(m)) => {
                    if self.seen.len() < 200 {
                        self.seen.push(describe(&m));
                    }
                }
                Ok(None) => return Ok(None),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Reads and discards until the server closes the connection (true) or `timeout` passes.
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        wait_closed(&mut self.sock, timeout)
    }
}

/// Reads and discards until the peer closes `sock` (EOF or reset: true) or `timeout` passes.
pub fn wait_closed(sock: &mut TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 65536];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let _ = sock.set_read_timeout(Some(deadline - now));
        match sock.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
}

/// Handshake, connect to `app`, and publish `key`; fails unless `NetStream.Publish.Start`.
pub fn publisher(addr: SocketAddr, app: &str, key: &str) -> Result<Client, String> {
    let mut c = Client::handshake(addr).map_err(|e| format!("handshake: {e}"))?;
    c.connect_app(app)?;
    let code = c.publish(key)?;
    if code != "NetStream.Publish.Start" {
        return Err(format!("publish {app}/{key} answered {code}"));
    }
    Ok(c)
}

/// Handshake, connect to `app`, and play `key`; fails unless `NetStream.Play.Start`.
pub fn player(addr: SocketAddr, app: &str, key: &str) -> Result<Client, String> {
    let mut c = Client::handshake(addr).map_err(|e| format!("handshake: {e}"))?;
    c.connect_app(app)?;
    let code = c.play(key)?;
    if code != "NetStream.Play.Start" {
        return Err(format!("play {app}/{key} answered {code}"));
    }
    Ok(c)
}

// ---------------------------------------------------------------------------------------------
// Synthetic media
// ---------------------------------------------------------------------------------------------

/// A real H.264 Baseline SPS (320x240) and PPS, from x264.
pub const SPS: &[u8] = &[
    0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x07, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00,
    0x00, 0x0f, 0x03, 0xc5, 0x0a, 0xa8,
];
pub const PPS: &[u8] = &[0x68, 0xce, 0x0f, 0xc8];

/// FLV video tag body: AVC sequence header (AVCDecoderConfigurationRecord).
pub fn avc_sequence_header() -> Vec<u8> {
    let mut v = vec![0x17, 0x00, 0, 0, 0];
    v.extend_from_slice(&[0x01, SPS[1], SPS[2], SPS[3], 0xFF, 0xE1]);
    v.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
    v.extend_from_slice(SPS);
    v.push(1);
    v.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
    v.extend_from_slice(PPS);
    v
}

fn filler(out: &mut Vec<u8>, marker: u32, size: usize) {
    let mut x = marker.wrapping_mul(2_654_435_761) | 1;
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.push(x as u8);
    }
}

/// FLV video tag body: one AVC NAL unit (IDR when `key`) carrying `marker`, `size` bytes in all
/// (at least 14), filled with bytes derived from the marker so corruption is detectable.
pub fn avc_frame(key: bool, marker: u32, size: usize) -> Vec<u8> {
    let size = size.max(14);
    let mut v = vec![if key { 0x17 } else { 0x27 }, 0x01, 0, 0, 0];
    v.extend_from_slice(&((size - 9) as u32).to_be_bytes());
    v.push(if key { 0x65 } else { 0x41 });
    v.extend_from_slice(&marker.to_be_bytes());
    filler(&mut v, marker, size);
    v
}

/// FLV audio tag body: AAC sequence header (AAC-LC, 48 kHz, stereo).
pub fn aac_sequence_header() -> Vec<u8> {
    vec![0xAF, 0x00, 0x11, 0x90]
}

/// FLV audio tag body: one raw AAC frame carrying `marker`, `size` bytes (at least 6).
pub fn aac_frame(marker: u32, size: usize) -> Vec<u8> {
    let mut v = vec![0xAF, 0x01];
    v.extend_from_slice(&marker.to_be_bytes());
    filler(&mut v, marker, size.max(6));
    v
}

/// `@setDataFrame onMetaData {…}` as FFmpeg sends it.
pub fn metadata(width: f64, height: f64, fps: f64) -> Vec<Amf> {
    vec![
        Amf::str("@setDataFrame"),
        Amf::str("onMetaData"),
        Amf::EcmaArray(vec![
            ("width".into(), Amf::Number(width)),
            ("height".into(), Amf::Number(height)),
            ("framerate".into(), Amf::Number(fps)),
            ("videocodecid".into(), Amf::Number(7.0)),
            ("audiocodecid".into(), Amf::Number(10.0)),
            ("encoder".into(), Amf::str("e2e scripted client")),
        ]),
    ]
}

/// What a received media message is, for assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    VideoSeq,
    Video { key: bool, marker: u32 },
    AudioSeq,
    Audio { marker: u32 },
    Data,
    Other,
}

/// Classifies a received message built by this module's helpers.
pub fn classify(m: &Msg) -> Frame {
    let p = &m.payload;
    match (m.type_id, p.first(), p.get(1)) {
        (VIDEO, Some(&b), Some(0)) if b & 0x0F == 7 => Frame::VideoSeq,
        (VIDEO, Some(&b), Some(1)) if b & 0x0F == 7 && p.len() >= 14 => Frame::Video {
            key: b >> 4 == 1,
            marker: be(&p[10..14]),
        },
        (AUDIO, Some(&0xAF), Some(0)) => Frame::AudioSeq,
        (AUDIO, Some(&0xAF), Some(1)) if p.len() >= 6 => Frame::Audio {
            marker: be(&p[2..6]),
        },
        (DATA_AMF0, _, _) => Frame::Data,
        _ => Frame::Other,
    }
}
