//! AMF0 (Action Message Format, version 0): the value encoding of RTMP commands (message type
//! 20) and data messages (type 18, e.g. `onMetaData`).
//!
//! The decoder is iterative (an explicit stack on the heap, never the call stack), so a hostile
//! peer cannot overflow the stack with deep nesting; depth and the total number of values are
//! bounded by [`Amf0Limits`]. Every declared length is checked against the remaining input
//! before anything is allocated. The encoder is iterative too and cannot fail.
//!
//! What it does not do: AMF3. The AMF0 "switch to AMF3" marker (0x11) is rejected with
//! [`Amf0Error::Amf3NotSupported`]; references (0x07) are kept as [`Value::Reference`] and not
//! resolved (RTMP peers do not send them in practice).

use bytes::{BufMut, BytesMut};
use thiserror::Error;

/// Default maximum nesting of objects and arrays. Real commands nest 2–3 levels
/// (`connect` → command object → `videoFourCcInfoMap`); 64 is generous and keeps the
/// decoder's explicit stack small.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Default maximum number of values decoded from one payload. A command has < 20 values; an
/// `onMetaData` re-streamed from an FLV file may carry a keyframe index of a few thousand
/// numbers. Each decoded value costs ~56 bytes, so 65,536 values bound the memory a single
/// message can make us allocate to a few MiB regardless of how the bytes are arranged.
pub const DEFAULT_MAX_VALUES: usize = 65_536;

/// Largest string that fits the short-string form (16-bit length).
pub const MAX_SHORT_STRING_LEN: usize = u16::MAX as usize;

/// Type markers (AMF0 specification, section 2.1).
mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const MOVIE_CLIP: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const REFERENCE: u8 = 0x07;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0A;
    pub const DATE: u8 = 0x0B;
    pub const LONG_STRING: u8 = 0x0C;
    pub const UNSUPPORTED: u8 = 0x0D;
    pub const RECORD_SET: u8 = 0x0E;
    pub const XML_DOCUMENT: u8 = 0x0F;
    pub const TYPED_OBJECT: u8 = 0x10;
    pub const AVMPLUS: u8 = 0x11;
}

/// Bounds for one decode call. Exceeding either is an error, never a truncation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amf0Limits {
    /// Maximum nesting of objects, ECMA arrays, strict arrays and typed objects.
    pub max_depth: usize,
    /// Maximum number of values (at any depth) in one decode call.
    pub max_values: usize,
}

impl Default for Amf0Limits {
    fn default() -> Self {
        Self {
            max_depth: DEFAULT_MAX_DEPTH,
            max_values: DEFAULT_MAX_VALUES,
        }
    }
}

/// Ordered name/value pairs of an object or ECMA array (order is kept: it is visible on the
/// wire and some peers care).
pub type Properties = Vec<(String, Value)>;

/// One AMF0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Boolean(bool),
    /// A string. Encoded with the short form when it fits in 65,535 bytes, else as a long string.
    String(String),
    Object(Properties),
    Null,
    Undefined,
    /// A reference to an earlier complex value by index (kept, not resolved).
    Reference(u16),
    /// An associative array; the count on the wire is only a hint and is not kept.
    EcmaArray(Properties),
    StrictArray(Vec<Value>),
    /// Milliseconds since the Unix epoch; the time zone field is reserved (should be 0).
    Date {
        millis: f64,
        timezone_minutes: i16,
    },
    /// A string that was sent with the 32-bit length form.
    LongString(String),
    /// The "unsupported" marker (0x0D).
    Unsupported,
    XmlDocument(String),
    TypedObject {
        class_name: String,
        properties: Properties,
    },
}

impl Value {
    /// Builds an object from borrowed names (for replies built by the server).
    pub fn object<I, K>(properties: I) -> Value
    where
        I: IntoIterator<Item = (K, Value)>,
        K: Into<String>,
    {
        Value::Object(properties.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A string value.
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// The text of a `String`, `LongString` or `XmlDocument`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) | Value::LongString(s) | Value::XmlDocument(s) => Some(s),
            _ => None,
        }
    }

    /// The number of a `Number`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The boolean of a `Boolean`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The properties of an `Object`, `EcmaArray` or `TypedObject` (peers use them
    /// interchangeably; the E-RTMP spec asks readers to accept either).
    pub fn properties(&self) -> Option<&Properties> {
        match self {
            Value::Object(p) | Value::EcmaArray(p) => Some(p),
            Value::TypedObject { properties, .. } => Some(properties),
            _ => None,
        }
    }

    /// The first property named `name`, if this value has properties.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.properties()?
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// Why a payload is not valid AMF0 (or exceeds [`Amf0Limits`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Amf0Error {
    #[error("AMF0 input ends in the middle of a value at byte {offset}")]
    Truncated { offset: usize },
    #[error("AMF0 {what} declares {declared} bytes/items but only {remaining} bytes remain")]
    LengthExceedsInput {
        what: &'static str,
        declared: u64,
        remaining: usize,
    },
    #[error("AMF0 nesting deeper than the limit of {limit}")]
    TooDeep { limit: usize },
    #[error("AMF0 payload has more than {limit} values")]
    TooManyValues { limit: usize },
    #[error("AMF0 type marker {marker:#04x} at byte {offset} is unknown or reserved")]
    UnknownMarker { marker: u8, offset: usize },
    #[error("AMF0 object-end marker outside an object at byte {offset}")]
    UnexpectedObjectEnd { offset: usize },
    #[error("AMF3 values (AMF0 marker 0x11) are not supported")]
    Amf3NotSupported,
}

/// Decodes every value in `bytes`.
pub fn decode_all(bytes: &[u8], limits: &Amf0Limits) -> Result<Vec<Value>, Amf0Error> {
    let mut decoder = Decoder::new(bytes, *limits);
    let mut values = Vec::new();
    while let Some(value) = decoder.decode_next()? {
        values.push(value);
    }
    Ok(values)
}

/// A container being filled by the iterative decoder.
enum Frame {
    /// Object, ECMA array or typed object: reads `key, value` pairs until the end marker.
    Properties {
        kind: PropertiesKind,
        properties: Properties,
        /// Key read, value not yet complete.
        pending_key: Option<String>,
    },
    StrictArray {
        items: Vec<Value>,
        remaining: u32,
    },
}

enum PropertiesKind {
    Object,
    EcmaArray,
    Typed { class_name: String },
}

/// Result of reading one marker: a finished value, or the start of a container.
enum Step {
    Value(Value),
    Open(Frame),
}

/// Reads AMF0 values one at a time, tracking the byte position (so callers can slice the
/// undecoded remainder without re-encoding, e.g. `@setDataFrame` → `onMetaData`).
pub struct Decoder<'a> {
    input: &'a [u8],
    position: usize,
    limits: Amf0Limits,
    values_decoded: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(input: &'a [u8], limits: Amf0Limits) -> Self {
        Self {
            input,
            position: 0,
            limits,
            values_decoded: 0,
        }
    }

    /// Byte offset of the next undecoded value.
    pub fn position(&self) -> usize {
        self.position
    }

    /// True when every byte has been decoded.
    pub fn is_empty(&self) -> bool {
        self.position >= self.input.len()
    }

    /// Decodes the next top-level value; `Ok(None)` at the end of the input.
    /// On error the position is unspecified and the decoder should be dropped.
    pub fn decode_next(&mut self) -> Result<Option<Value>, Amf0Error> {
        if self.is_empty() {
            return Ok(None);
        }
        let mut stack: Vec<Frame> = Vec::new();
        loop {
            // Inside an object: read the next key, or the end marker.
            if let Some(Frame::Properties { pending_key, .. }) = stack.last_mut() {
                if pending_key.is_none() {
                    if self.remaining() == 0 {
                        // Tolerated: some encoders omit the final object-end marker at the very
                        // end of a message. Close the container as if it were there.
                        let finished = close_frame(stack.pop());
                        if let Some(value) = self.attach(&mut stack, finished) {
                            return Ok(Some(value));
                        }
                        continue;
                    }
                    let key = self.read_short_string()?;
                    if key.is_empty() && self.peek_u8() == Some(marker::OBJECT_END) {
                        self.position = self.position.saturating_add(1);
                        let finished = close_frame(stack.pop());
                        if let Some(value) = self.attach(&mut stack, finished) {
                            return Ok(Some(value));
                        }
                        continue;
                    }
                    if let Some(Frame::Properties { pending_key, .. }) = stack.last_mut() {
                        *pending_key = Some(key);
                    }
                }
            }
            // Inside a strict array that is complete: close it.
            if let Some(Frame::StrictArray { remaining: 0, .. }) = stack.last() {
                let finished = close_frame(stack.pop());
                if let Some(value) = self.attach(&mut stack, finished) {
                    return Ok(Some(value));
                }
                continue;
            }

            match self.read_step()? {
                Step::Value(value) => {
                    if let Some(value) = self.attach(&mut stack, Some(value)) {
                        return Ok(Some(value));
                    }
                }
                Step::Open(frame) => {
                    if stack.len() >= self.limits.max_depth {
                        return Err(Amf0Error::TooDeep {
                            limit: self.limits.max_depth,
                        });
                    }
                    stack.push(frame);
                }
            }
        }
    }

    /// Puts a finished value into the innermost open container, or returns it if there is none.
    fn attach(&mut self, stack: &mut [Frame], value: Option<Value>) -> Option<Value> {
        let value = value?;
        match stack.last_mut() {
            None => Some(value),
            Some(Frame::Properties {
                properties,
                pending_key,
                ..
            }) => {
                let key = pending_key.take().unwrap_or_default();
                properties.push((key, value));
                None
            }
            Some(Frame::StrictArray { items, remaining }) => {
                items.push(value);
                *remaining = remaining.saturating_sub(1);
                None
            }
        }
    }

    fn remaining(&self) -> usize {
        self.input.len().saturating_sub(self.position)
    }

    fn peek_u8(&self) -> Option<u8> {
        self.input.get(self.position).copied()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Amf0Error> {
        let end = self.position.checked_add(n).ok_or(Amf0Error::Truncated {
            offset: self.position,
        })?;
        let bytes = self
            .input
            .get(self.position..end)
            .ok_or(Amf0Error::Truncated {
                offset: self.position,
            })?;
        self.position = end;
        Ok(bytes)
    }

    fn read_u8(&mut self) -> Result<u8, Amf0Error> {
        let b = self.take(1)?;
        Ok(b.first().copied().unwrap_or(0))
    }

    fn read_array<const N: usize>(&mut self) -> Result<[u8; N], Amf0Error> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn read_u16(&mut self) -> Result<u16, Amf0Error> {
        Ok(u16::from_be_bytes(self.read_array()?))
    }

    fn read_u32(&mut self) -> Result<u32, Amf0Error> {
        Ok(u32::from_be_bytes(self.read_array()?))
    }

    fn read_f64(&mut self) -> Result<f64, Amf0Error> {
        Ok(f64::from_be_bytes(self.read_array()?))
    }

    fn read_text(&mut self, len: usize, what: &'static str) -> Result<String, Amf0Error> {
        if len > self.remaining() {
            return Err(Amf0Error::LengthExceedsInput {
                what,
                declared: len as u64,
                remaining: self.remaining(),
            });
        }
        let bytes = self.take(len)?;
        // Lossy: a stray Latin-1 byte in an encoder name must not cost the connection.
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn read_short_string(&mut self) -> Result<String, Amf0Error> {
        let len = usize::from(self.read_u16()?);
        self.read_text(len, "string")
    }

    fn read_long_string(&mut self, what: &'static str) -> Result<String, Amf0Error> {
        let declared = self.read_u32()?;
        let len = usize::try_from(declared).map_err(|_| Amf0Error::LengthExceedsInput {
            what,
            declared: u64::from(declared),
            remaining: self.remaining(),
        })?;
        self.read_text(len, what)
    }

    fn count_value(&mut self) -> Result<(), Amf0Error> {
        self.values_decoded = self.values_decoded.saturating_add(1);
        if self.values_decoded > self.limits.max_values {
            return Err(Amf0Error::TooManyValues {
                limit: self.limits.max_values,
            });
        }
        Ok(())
    }

    /// Reads one marker and either a complete scalar or the header of a container.
    fn read_step(&mut self) -> Result<Step, Amf0Error> {
        let offset = self.position;
        let marker = self.read_u8()?;
        self.count_value()?;
        let value = match marker {
            marker::NUMBER => Value::Number(self.read_f64()?),
            marker::BOOLEAN => Value::Boolean(self.read_u8()? != 0),
            marker::STRING => Value::String(self.read_short_string()?),
            marker::OBJECT => {
                return Ok(Step::Open(Frame::Properties {
                    kind: PropertiesKind::Object,
                    properties: Vec::new(),
                    pending_key: None,
                }))
            }
            marker::NULL => Value::Null,
            marker::UNDEFINED => Value::Undefined,
            marker::REFERENCE => Value::Reference(self.read_u16()?),
            marker::ECMA_ARRAY => {
                // The count is a hint only (encoders get it wrong); the end marker decides.
                let _count_hint = self.read_u32()?;
                return Ok(Step::Open(Frame::Properties {
                    kind: PropertiesKind::EcmaArray,
                    properties: Vec::new(),
                    pending_key: None,
                }));
            }
            marker::OBJECT_END => return Err(Amf0Error::UnexpectedObjectEnd { offset }),
            marker::STRICT_ARRAY => {
                let count = self.read_u32()?;
                // Every element takes at least one byte: a count beyond the remaining input is
                // a lie, rejected before allocating anything.
                if u64::from(count) > self.remaining() as u64 {
                    return Err(Amf0Error::LengthExceedsInput {
                        what: "strict array",
                        declared: u64::from(count),
                        remaining: self.remaining(),
                    });
                }
                // Capacity is also capped so a long array of one-byte elements grows gradually.
                let capacity = usize::try_from(count).unwrap_or(0).min(1024);
                return Ok(Step::Open(Frame::StrictArray {
                    items: Vec::with_capacity(capacity),
                    remaining: count,
                }));
            }
            marker::DATE => {
                let millis = self.read_f64()?;
                let timezone_minutes = i16::from_be_bytes(self.read_array()?);
                Value::Date {
                    millis,
                    timezone_minutes,
                }
            }
            marker::LONG_STRING => Value::LongString(self.read_long_string("long string")?),
            marker::UNSUPPORTED => Value::Unsupported,
            marker::XML_DOCUMENT => Value::XmlDocument(self.read_long_string("XML document")?),
            marker::TYPED_OBJECT => {
                let class_name = self.read_short_string()?;
                return Ok(Step::Open(Frame::Properties {
                    kind: PropertiesKind::Typed { class_name },
                    properties: Vec::new(),
                    pending_key: None,
                }));
            }
            marker::AVMPLUS => return Err(Amf0Error::Amf3NotSupported),
            marker::MOVIE_CLIP | marker::RECORD_SET => {
                return Err(Amf0Error::UnknownMarker { marker, offset })
            }
            _ => return Err(Amf0Error::UnknownMarker { marker, offset }),
        };
        Ok(Step::Value(value))
    }
}

/// Turns a finished container frame into its value.
fn close_frame(frame: Option<Frame>) -> Option<Value> {
    Some(match frame? {
        Frame::Properties {
            kind, properties, ..
        } => match kind {
            PropertiesKind::Object => Value::Object(properties),
            PropertiesKind::EcmaArray => Value::EcmaArray(properties),
            PropertiesKind::Typed { class_name } => Value::TypedObject {
                class_name,
                properties,
            },
        },
        Frame::StrictArray { items, .. } => Value::StrictArray(items),
    })
}

/// Work items of the iterative encoder.
enum Work<'v> {
    Value(&'v Value),
    Key(&'v str),
    ObjectEnd,
}

/// Appends the encoding of `value` to `out`. Never fails and never recurses.
///
/// Two cases AMF0 cannot represent are mapped rather than rejected: a `String` longer than
/// 65,535 bytes is written as a long string, and a property name longer than 65,535 bytes is
/// cut at the last character boundary that fits (server-built replies never have such names).
pub fn encode(value: &Value, out: &mut BytesMut) {
    let mut work = vec![Work::Value(value)];
    while let Some(item) = work.pop() {
        match item {
            Work::Key(key) => put_key(out, key),
            Work::ObjectEnd => out.put_slice(&[0, 0, marker::OBJECT_END]),
            Work::Value(value) => match value {
                Value::Number(n) => {
                    out.put_u8(marker::NUMBER);
                    out.put_f64(*n);
                }
                Value::Boolean(b) => {
                    out.put_u8(marker::BOOLEAN);
                    out.put_u8(u8::from(*b));
                }
                Value::String(s) => put_string_value(out, s),
                Value::LongString(s) => put_long(out, marker::LONG_STRING, s),
                Value::XmlDocument(s) => put_long(out, marker::XML_DOCUMENT, s),
                Value::Null => out.put_u8(marker::NULL),
                Value::Undefined => out.put_u8(marker::UNDEFINED),
                Value::Unsupported => out.put_u8(marker::UNSUPPORTED),
                Value::Reference(index) => {
                    out.put_u8(marker::REFERENCE);
                    out.put_u16(*index);
                }
                Value::Date {
                    millis,
                    timezone_minutes,
                } => {
                    out.put_u8(marker::DATE);
                    out.put_f64(*millis);
                    out.put_i16(*timezone_minutes);
                }
                Value::Object(properties) => {
                    out.put_u8(marker::OBJECT);
                    push_properties(&mut work, properties);
                }
                Value::EcmaArray(properties) => {
                    out.put_u8(marker::ECMA_ARRAY);
                    out.put_u32(u32::try_from(properties.len()).unwrap_or(u32::MAX));
                    push_properties(&mut work, properties);
                }
                Value::TypedObject {
                    class_name,
                    properties,
                } => {
                    out.put_u8(marker::TYPED_OBJECT);
                    put_key(out, class_name);
                    push_properties(&mut work, properties);
                }
                Value::StrictArray(items) => {
                    out.put_u8(marker::STRICT_ARRAY);
                    // A Vec longer than u32::MAX cannot exist in memory we could send.
                    out.put_u32(u32::try_from(items.len()).unwrap_or(u32::MAX));
                    work.extend(items.iter().rev().map(Work::Value));
                }
            },
        }
    }
}

/// Appends the encodings of `values`, one after another (a command or data payload).
pub fn encode_all<'v>(values: impl IntoIterator<Item = &'v Value>, out: &mut BytesMut) {
    for value in values {
        encode(value, out);
    }
}

/// Encodes `values` into a fresh buffer.
pub fn to_bytes(values: &[Value]) -> bytes::Bytes {
    let mut out = BytesMut::new();
    encode_all(values, &mut out);
    out.freeze()
}

fn push_properties<'v>(work: &mut Vec<Work<'v>>, properties: &'v Properties) {
    work.push(Work::ObjectEnd);
    for (key, value) in properties.iter().rev() {
        work.push(Work::Value(value));
        work.push(Work::Key(key));
    }
}

/// A property name or class name: 16-bit length, no marker.
fn put_key(out: &mut BytesMut, key: &str) {
    let key = truncate_to_boundary(key, MAX_SHORT_STRING_LEN);
    out.put_u16(u16::try_from(key.len()).unwrap_or(u16::MAX));
    out.put_slice(key.as_bytes());
}

fn put_string_value(out: &mut BytesMut, s: &str) {
    match u16::try_from(s.len()) {
        Ok(len) => {
            out.put_u8(marker::STRING);
            out.put_u16(len);
            out.put_slice(s.as_bytes());
        }
        Err(_) => put_long(out, marker::LONG_STRING, s),
    }
}

fn put_long(out: &mut BytesMut, marker: u8, s: &str) {
    let s = truncate_to_boundary(s, u32::MAX as usize);
    out.put_u8(marker);
    out.put_u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
    out.put_slice(s.as_bytes());
}

fn truncate_to_boundary(s: &str, max_len: usize) -> &str {
    if s.len() <= max_len {
        return s;
    }
    let mut end = max_len;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(value: &Value) -> Value {
        let mut out = BytesMut::new();
        encode(value, &mut out);
        let decoded = decode_all(&out, &Amf0Limits::default()).expect("decodes");
        assert_eq!(decoded.len(), 1);
        decoded.into_iter().next().expect("one value")
    }

    #[test]
    fn every_type_round_trips() {
        let values = vec![
            Value::Number(1.5),
            Value::Number(-0.0),
            Value::Boolean(true),
            Value::Boolean(false),
            Value::string(""),
            Value::string("héllo"),
            Value::object([("a", Value::Number(1.0)), ("b", Value::Null)]),
            Value::Object(vec![]),
            Value::Null,
            Value::Undefined,
            Value::Reference(7),
            Value::EcmaArray(vec![("duration".into(), Value::Number(0.0))]),
            Value::StrictArray(vec![Value::string("avc1"), Value::Number(2.0)]),
            Value::StrictArray(vec![]),
            Value::Date {
                millis: 1.7e12,
                timezone_minutes: 0,
            },
            Value::LongString("x".repeat(70_000)),
            Value::LongString("short".into()),
            Value::Unsupported,
            Value::XmlDocument("<a/>".into()),
            Value::TypedObject {
                class_name: "Cls".into(),
                properties: vec![("k".into(), Value::Boolean(true))],
            },
        ];
        for value in &values {
            assert_eq!(&round_trip(value), value, "{value:?}");
        }
        // All in one payload too.
        let bytes = to_bytes(&values);
        assert_eq!(decode_all(&bytes, &Amf0Limits::default()).unwrap(), values);
    }

    #[test]
    fn long_plain_string_is_encoded_as_long_string() {
        let s = "y".repeat(65_536);
        assert_eq!(round_trip(&Value::String(s.clone())), Value::LongString(s));
        let s = "y".repeat(65_535);
        assert_eq!(round_trip(&Value::String(s.clone())), Value::String(s));
    }

    #[test]
    fn known_bytes_decode() {
        // "connect", 1.0, {app: "live"}
        let mut bytes = vec![0x02, 0x00, 0x07];
        bytes.extend_from_slice(b"connect");
        bytes.push(0x00);
        bytes.extend_from_slice(&1.0f64.to_be_bytes());
        bytes.extend_from_slice(&[0x03, 0x00, 0x03]);
        bytes.extend_from_slice(b"app");
        bytes.extend_from_slice(&[0x02, 0x00, 0x04]);
        bytes.extend_from_slice(b"live");
        bytes.extend_from_slice(&[0x00, 0x00, 0x09]);
        let values = decode_all(&bytes, &Amf0Limits::default()).unwrap();
        assert_eq!(
            values,
            vec![
                Value::string("connect"),
                Value::Number(1.0),
                Value::object([("app", Value::string("live"))]),
            ]
        );
        assert_eq!(values[2].get("app").and_then(Value::as_str), Some("live"));
    }

    #[test]
    fn nesting_100_000_deep_is_an_error_not_a_stack_overflow() {
        for opener in [
            vec![marker::OBJECT, 0x00, 0x01, b'a'],
            vec![marker::STRICT_ARRAY, 0, 0, 0, 1],
            vec![marker::ECMA_ARRAY, 0, 0, 0, 1, 0x00, 0x01, b'a'],
        ] {
            let mut bytes = Vec::new();
            for _ in 0..100_000 {
                bytes.extend_from_slice(&opener);
            }
            bytes.push(marker::NULL);
            let err = decode_all(&bytes, &Amf0Limits::default()).unwrap_err();
            assert_eq!(
                err,
                Amf0Error::TooDeep {
                    limit: DEFAULT_MAX_DEPTH
                }
            );
        }
    }

    #[test]
    fn depth_limit_is_exact() {
        let limits = Amf0Limits {
            max_depth: 3,
            max_values: 100,
        };
        let nested = |depth: usize| {
            let mut v = Value::Null;
            for _ in 0..depth {
                v = Value::StrictArray(vec![v]);
            }
            to_bytes(&[v])
        };
        assert!(decode_all(&nested(3), &limits).is_ok());
        assert_eq!(
            decode_all(&nested(4), &limits),
            Err(Amf0Error::TooDeep { limit: 3 })
        );
    }

    #[test]
    fn huge_declared_lengths_are_rejected_before_allocating() {
        // Long string declaring 4 GB.
        let bytes = [marker::LONG_STRING, 0xFF, 0xFF, 0xFF, 0xFF, b'a'];
        assert!(matches!(
            decode_all(&bytes, &Amf0Limits::default()),
            Err(Amf0Error::LengthExceedsInput {
                declared: 0xFFFF_FFFF,
                ..
            })
        ));
        // XML document likewise.
        let bytes = [marker::XML_DOCUMENT, 0xFF, 0xFF, 0xFF, 0xFE];
        assert!(matches!(
            decode_all(&bytes, &Amf0Limits::default()),
            Err(Amf0Error::LengthExceedsInput { .. })
        ));
        // Short string declaring more than present.
        let bytes = [marker::STRING, 0x00, 0x10, b'a'];
        assert!(matches!(
            decode_all(&bytes, &Amf0Limits::default()),
            Err(Amf0Error::LengthExceedsInput { declared: 16, .. })
        ));
        // Strict array declaring 4 billion elements.
        let bytes = [marker::STRICT_ARRAY, 0xFF, 0xFF, 0xFF, 0xFF, marker::NULL];
        assert!(matches!(
            decode_all(&bytes, &Amf0Limits::default()),
            Err(Amf0Error::LengthExceedsInput { .. })
        ));
    }

    #[test]
    fn value_count_is_bounded() {
        let limits = Amf0Limits {
            max_depth: 8,
            max_values: 10,
        };
        let bytes = vec![marker::NULL; 11];
        assert_eq!(
            decode_all(&bytes, &limits),
            Err(Amf0Error::TooManyValues { limit: 10 })
        );
        assert_eq!(decode_all(&bytes[..10], &limits).unwrap().len(), 10);
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let limits = Amf0Limits::default();
        assert_eq!(
            decode_all(&[marker::AVMPLUS, 0x01], &limits),
            Err(Amf0Error::Amf3NotSupported)
        );
        assert!(matches!(
            decode_all(&[marker::OBJECT_END], &limits),
            Err(Amf0Error::UnexpectedObjectEnd { offset: 0 })
        ));
        assert!(matches!(
            decode_all(&[0x42], &limits),
            Err(Amf0Error::UnknownMarker { marker: 0x42, .. })
        ));
        assert!(matches!(
            decode_all(&[marker::MOVIE_CLIP], &limits),
            Err(Amf0Error::UnknownMarker { .. })
        ));
        assert!(matches!(
            decode_all(&[marker::NUMBER, 0, 0], &limits),
            Err(Amf0Error::Truncated { .. })
        ));
        // Object whose key is cut off.
        assert!(decode_all(&[marker::OBJECT, 0x00, 0x05, b'a'], &limits).is_err());
        // Object with a key but no value.
        assert!(decode_all(&[marker::OBJECT, 0x00, 0x01, b'a'], &limits).is_err());
        // Strict array with fewer elements than declared.
        assert!(decode_all(&[marker::STRICT_ARRAY, 0, 0, 0, 2, marker::NULL], &limits).is_err());
        assert_eq!(decode_all(&[], &limits), Ok(vec![]));
    }

    #[test]
    fn missing_final_object_end_is_tolerated_at_end_of_input() {
        let bytes = [
            marker::ECMA_ARRAY,
            0,
            0,
            0,
            1,
            0x00,
            0x01,
            b'w',
            marker::NUMBER,
            0x40,
            0x59,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        assert_eq!(
            decode_all(&bytes, &Amf0Limits::default()).unwrap(),
            vec![Value::EcmaArray(vec![("w".into(), Value::Number(100.0))])]
        );
    }

    #[test]
    fn decoder_reports_positions() {
        let bytes = to_bytes(&[
            Value::string("@setDataFrame"),
            Value::string("onMetaData"),
            Value::Null,
        ]);
        let mut decoder = Decoder::new(&bytes, Amf0Limits::default());
        assert_eq!(decoder.position(), 0);
        decoder.decode_next().unwrap();
        assert_eq!(decoder.position(), 3 + "@setDataFrame".len());
        decoder.decode_next().unwrap();
        decoder.decode_next().unwrap();
        assert!(decoder.is_empty());
        assert_eq!(decoder.decode_next(), Ok(None));
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily() {
        let bytes = [marker::STRING, 0x00, 0x02, 0xC3, 0x28];
        let values = decode_all(&bytes, &Amf0Limits::default()).unwrap();
        assert!(matches!(&values[0], Value::String(s) if s.contains('\u{FFFD}')));
    }

    #[test]
    fn very_long_key_is_truncated_on_encode() {
        let key = "k".repeat(70_000);
        let value = Value::Object(vec![(key, Value::Null)]);
        let decoded = round_trip(&value);
        let props = decoded.properties().unwrap();
        assert_eq!(props[0].0.len(), MAX_SHORT_STRING_LEN);
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<f64>()
                .prop_filter("NaN != NaN", |n| !n.is_nan())
                .prop_map(Value::Number),
            any::<bool>().prop_map(Value::Boolean),
            ".{0,20}".prop_map(Value::String),
            Just(Value::Null),
            Just(Value::Undefined),
            Just(Value::Unsupported),
            any::<u16>().prop_map(Value::Reference),
            ".{0,20}".prop_map(Value::LongString),
            ".{0,20}".prop_map(Value::XmlDocument),
            (any::<i64>(), any::<i16>()).prop_map(|(m, tz)| Value::Date {
                millis: m as f64,
                timezone_minutes: tz
            }),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            let props = prop::collection::vec((".{0,10}", inner.clone()), 0..8);
            prop_oneof![
                props.clone().prop_map(Value::Object),
                props.clone().prop_map(Value::EcmaArray),
                prop::collection::vec(inner, 0..8).prop_map(Value::StrictArray),
                (".{0,10}", props).prop_map(|(class_name, properties)| Value::TypedObject {
                    class_name,
                    properties
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(values in prop::collection::vec(arb_value(), 0..4)) {
            let bytes = to_bytes(&values);
            prop_assert_eq!(decode_all(&bytes, &Amf0Limits::default()).unwrap(), values);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let limits = Amf0Limits { max_depth: 4, max_values: 64 };
            if let Ok(values) = decode_all(&bytes, &limits) {
                prop_assert!(values.len() <= 64);
            }
        }

        #[test]
        fn structured_garbage_never_panics(
            bytes in prop::collection::vec(
                prop_oneof![0u8..=0x11, Just(0u8), any::<u8>()], 0..512)
        ) {
            let _ = decode_all(&bytes, &Amf0Limits::default());
        }
    }
}
