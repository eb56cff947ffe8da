//! RTMP commands and data messages: parsing what clients send (`connect`, `createStream`,
//! `publish`, `play`, `@setDataFrame`/`onMetaData` …) and building the server's replies as
//! AMF0 payloads.
//!
//! A command is `name, transaction id, command object, args…` (AMF0). Clients in the wild send
//! short commands, so missing trailing values take defaults (transaction id 0, command object
//! Null, no args); only an empty payload or a name that is not a string is an error.
//!
//! Replies are returned as [`Bytes`] holding the AMF0 payload; send them as type-20 command
//! messages (e.g. [`super::writer::ChunkWriter::write_command`]) or, for
//! [`rtmp_sample_access`], as a type-18 data message.

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use super::amf0::{self, Amf0Error, Amf0Limits, Decoder, Properties, Value};
use super::flv::FourCc;

/// `fmsVer` reported in the connect reply (what FMS 3 reported; clients only display it).
pub const FMS_VERSION: &str = "FMS/3,0,1,123";
/// `capabilities` reported in the connect reply (the value FMS and most servers send).
pub const FMS_CAPABILITIES: f64 = 31.0;

/// FourCCs the relay forwards, announced to E-RTMP clients that do not send their own
/// `fourCcList` (the relay never decodes media, so it can forward any of them).
pub const SERVER_FOURCC_LIST: [&str; 10] = [
    "av01", "vp09", "vp08", "hvc1", "avc1", "Opus", "fLaC", "ac-3", "ec-3", "mp4a",
];

/// E-RTMP `FourCcInfoMask.CanForward`.
pub const FOURCC_INFO_CAN_FORWARD: f64 = 4.0;
/// E-RTMP `CapsExMask.Multitrack`: the relay forwards multitrack media untouched.
pub const CAPS_EX_MULTITRACK: f64 = 2.0;

/// Status codes the server sends.
pub mod status_code {
    pub const CONNECT_SUCCESS: &str = "NetConnection.Connect.Success";
    pub const CONNECT_REJECTED: &str = "NetConnection.Connect.Rejected";
    pub const CALL_FAILED: &str = "NetConnection.Call.Failed";
    pub const PUBLISH_START: &str = "NetStream.Publish.Start";
    pub const PUBLISH_BAD_NAME: &str = "NetStream.Publish.BadName";
    pub const PUBLISH_UNAUTHORIZED: &str = "NetStream.Publish.Unauthorized";
    pub const UNPUBLISH_SUCCESS: &str = "NetStream.Unpublish.Success";
    pub const PLAY_RESET: &str = "NetStream.Play.Reset";
    pub const PLAY_START: &str = "NetStream.Play.Start";
    pub const PLAY_STOP: &str = "NetStream.Play.Stop";
    pub const PLAY_STREAM_NOT_FOUND: &str = "NetStream.Play.StreamNotFound";
    pub const PLAY_PUBLISH_NOTIFY: &str = "NetStream.Play.PublishNotify";
    pub const PLAY_UNPUBLISH_NOTIFY: &str = "NetStream.Play.UnpublishNotify";
}

/// Why a command or data message cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    #[error("invalid AMF0: {0}")]
    Amf0(#[from] Amf0Error),
    #[error("empty command message")]
    Empty,
    #[error("command name is not a string")]
    NameNotString,
    #[error("command {name}: transaction id is not a number")]
    TransactionIdNotNumber { name: String },
    #[error("command {command}: argument {index} ({what}) is missing or not a {expected}")]
    BadArgument {
        command: String,
        index: usize,
        what: &'static str,
        expected: &'static str,
    },
    #[error("data message: handler name is missing or not a string")]
    DataHandlerNotString,
    #[error("@setDataFrame without the data it should set")]
    EmptySetDataFrame,
}

/// A parsed command message.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: String,
    pub transaction_id: f64,
    /// Null when absent.
    pub command_object: Value,
    pub args: Vec<Value>,
}

impl Command {
    /// Optional argument `index` (after the command object).
    pub fn arg(&self, index: usize) -> Option<&Value> {
        self.args.get(index)
    }

    pub fn arg_str(&self, index: usize) -> Option<&str> {
        self.arg(index).and_then(Value::as_str)
    }

    pub fn arg_f64(&self, index: usize) -> Option<f64> {
        self.arg(index).and_then(Value::as_f64)
    }

    fn required_str(&self, index: usize, what: &'static str) -> Result<&str, CommandError> {
        self.arg_str(index)
            .ok_or_else(|| CommandError::BadArgument {
                command: self.name.clone(),
                index,
                what,
                expected: "string",
            })
    }
}

/// Parses an AMF0 command payload (type 20, or type 17 after its format byte).
pub fn parse_command(payload: &[u8], limits: &Amf0Limits) -> Result<Command, CommandError> {
    let mut values = amf0::decode_all(payload, limits)?.into_iter();
    let name = match values.next() {
        None => return Err(CommandError::Empty),
        Some(Value::String(s)) | Some(Value::LongString(s)) => s,
        Some(_) => return Err(CommandError::NameNotString),
    };
    let transaction_id = match values.next() {
        None => 0.0,
        Some(Value::Number(n)) => n,
        Some(_) => return Err(CommandError::TransactionIdNotNumber { name }),
    };
    let command_object = values.next().unwrap_or(Value::Null);
    Ok(Command {
        name,
        transaction_id,
        command_object,
        args: values.collect(),
    })
}

/// What a client said in `connect`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectRequest {
    pub app: Option<String>,
    pub tc_url: Option<String>,
    pub flash_ver: Option<String>,
    /// 0 (AMF0, the default) or 3 (AMF3 allowed); echoed in the reply.
    pub object_encoding: f64,
    /// E-RTMP: codecs the client supports.
    pub fourcc_list: Option<Vec<String>>,
    /// E-RTMP: per-codec capability flags.
    pub video_fourcc_info_map: Option<Properties>,
    pub audio_fourcc_info_map: Option<Properties>,
    /// E-RTMP: extended capability flags.
    pub caps_ex: Option<f64>,
}

impl ConnectRequest {
    /// Reads the command object of a `connect` command. Missing fields stay `None`.
    pub fn from_command(command: &Command) -> Self {
        let object = &command.command_object;
        let text = |key| object.get(key).and_then(Value::as_str).map(str::to_owned);
        let fourcc_list = match object.get("fourCcList") {
            Some(Value::StrictArray(items)) => Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            ),
            _ => None,
        };
        Self {
            app: text("app"),
            tc_url: text("tcUrl"),
            flash_ver: text("flashVer"),
            object_encoding: object
                .get("objectEncoding")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            fourcc_list,
            video_fourcc_info_map: object
                .get("videoFourCcInfoMap")
                .and_then(Value::properties)
                .cloned(),
            audio_fourcc_info_map: object
                .get("audioFourCcInfoMap")
                .and_then(Value::properties)
                .cloned(),
            caps_ex: object.get("capsEx").and_then(Value::as_f64),
        }
    }

    /// The client announced Enhanced RTMP support.
    pub fn is_enhanced(&self) -> bool {
        self.fourcc_list.is_some()
            || self.video_fourcc_info_map.is_some()
            || self.audio_fourcc_info_map.is_some()
            || self.caps_ex.is_some()
    }
}

/// `publish(name, type)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    /// Stream key as sent (may carry a `?query`; the server decides what it means).
    pub stream_name: String,
    /// "live" (default), "record" or "append".
    pub publish_type: String,
}

impl PublishRequest {
    pub fn from_command(command: &Command) -> Result<Self, CommandError> {
        Ok(Self {
            stream_name: command.required_str(0, "stream name")?.to_owned(),
            publish_type: command.arg_str(1).unwrap_or("live").to_owned(),
        })
    }
}

/// `play(name, start, duration, reset)`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayRequest {
    pub stream_name: String,
    /// -2 (live or recorded, the default), -1 (live only), or a position in seconds.
    pub start: f64,
    /// -1 (until the end, the default) or seconds.
    pub duration: f64,
    pub reset: bool,
}

impl PlayRequest {
    pub fn from_command(command: &Command) -> Result<Self, CommandError> {
        Ok(Self {
            stream_name: command.required_str(0, "stream name")?.to_owned(),
            start: command.arg_f64(1).unwrap_or(-2.0),
            duration: command.arg_f64(2).unwrap_or(-1.0),
            reset: command.arg(3).and_then(Value::as_bool).unwrap_or(true),
        })
    }
}

/// Level of an `onStatus` / `_error` information object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusLevel {
    Status,
    Warning,
    Error,
}

impl StatusLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

/// The information object of `onStatus`.
#[derive(Debug, Clone, PartialEq)]
pub struct Status<'a> {
    pub level: StatusLevel,
    pub code: &'a str,
    pub description: &'a str,
    /// Usually the stream name.
    pub details: Option<&'a str>,
}

fn encode(values: &[Value]) -> Bytes {
    let mut out = BytesMut::new();
    amf0::encode_all(values, &mut out);
    out.freeze()
}

/// Any `_result` reply.
pub fn result(transaction_id: f64, command_object: Value, args: Vec<Value>) -> Bytes {
    let mut values = vec![
        Value::string("_result"),
        Value::Number(transaction_id),
        command_object,
    ];
    values.extend(args);
    encode(&values)
}

/// `_result` for `connect`, echoing the client's object encoding and, for E-RTMP clients, its
/// `fourCcList` (or [`SERVER_FOURCC_LIST`] if it sent none) plus forward-anything
/// `videoFourCcInfoMap`/`audioFourCcInfoMap` and `capsEx` = multitrack.
pub fn connect_result(transaction_id: f64, request: &ConnectRequest) -> Bytes {
    let mut properties: Properties = vec![
        ("fmsVer".into(), Value::string(FMS_VERSION)),
        ("capabilities".into(), Value::Number(FMS_CAPABILITIES)),
    ];
    if request.is_enhanced() {
        let list: Vec<Value> = match &request.fourcc_list {
            Some(list) => list.iter().map(|s| Value::string(s.as_str())).collect(),
            None => SERVER_FOURCC_LIST
                .iter()
                .map(|s| Value::string(*s))
                .collect(),
        };
        let forward_all = || Value::object([("*", Value::Number(FOURCC_INFO_CAN_FORWARD))]);
        properties.push(("fourCcList".into(), Value::StrictArray(list)));
        properties.push(("videoFourCcInfoMap".into(), forward_all()));
        properties.push(("audioFourCcInfoMap".into(), forward_all()));
        properties.push(("capsEx".into(), Value::Number(CAPS_EX_MULTITRACK)));
    }
    let information = Value::object([
        ("level", Value::string(StatusLevel::Status.as_str())),
        ("code", Value::string(status_code::CONNECT_SUCCESS)),
        ("description", Value::string("Connection succeeded.")),
        ("objectEncoding", Value::Number(request.object_encoding)),
    ]);
    result(transaction_id, Value::Object(properties), vec![information])
}

/// `_result` for `createStream`: the new message stream id.
pub fn create_stream_result(transaction_id: f64, stream_id: u32) -> Bytes {
    result(
        transaction_id,
        Value::Null,
        vec![Value::Number(f64::from(stream_id))],
    )
}

/// `_error` reply (unknown command, refused connect …).
pub fn error_result(transaction_id: f64, code: &str, description: &str) -> Bytes {
    encode(&[
        Value::string("_error"),
        Value::Number(transaction_id),
        Value::Null,
        Value::object([
            ("level", Value::string(StatusLevel::Error.as_str())),
            ("code", Value::string(code)),
            ("description", Value::string(description)),
        ]),
    ])
}

/// `onStatus` (transaction id 0, null command object). Send on the message stream it is about.
pub fn on_status(status: &Status<'_>) -> Bytes {
    let mut info: Properties = vec![
        ("level".into(), Value::string(status.level.as_str())),
        ("code".into(), Value::string(status.code)),
        ("description".into(), Value::string(status.description)),
    ];
    if let Some(details) = status.details {
        info.push(("details".into(), Value::string(details)));
    }
    encode(&[
        Value::string("onStatus"),
        Value::Number(0.0),
        Value::Null,
        Value::Object(info),
    ])
}

fn fc_reply(name: &str, code: &str, description: &str) -> Bytes {
    encode(&[
        Value::string(name),
        Value::Number(0.0),
        Value::Null,
        Value::object([
            ("code", Value::string(code)),
            ("description", Value::string(description)),
        ]),
    ])
}

/// `onFCPublish` (answer to `FCPublish`, expected by some encoders).
pub fn on_fc_publish(code: &str, description: &str) -> Bytes {
    fc_reply("onFCPublish", code, description)
}

/// `onFCUnpublish` (answer to `FCUnpublish`).
pub fn on_fc_unpublish(code: &str, description: &str) -> Bytes {
    fc_reply("onFCUnpublish", code, description)
}

/// `|RtmpSampleAccess(true, true)` data message (type 18) sent to players before media: lets
/// Flash-era players access the raw audio and video.
pub fn rtmp_sample_access() -> Bytes {
    encode(&[
        Value::string("|RtmpSampleAccess"),
        Value::Boolean(true),
        Value::Boolean(true),
    ])
}

/// A decoded AMF0 data message (type 18).
#[derive(Debug, Clone, PartialEq)]
pub struct DataMessage {
    /// The first value: `@setDataFrame`, `onMetaData`, `onTextData`, `onCuePoint` …
    pub handler: String,
    pub values: Vec<Value>,
}

/// Decodes a data message: a handler name then values.
pub fn parse_data_message(
    payload: &[u8],
    limits: &Amf0Limits,
) -> Result<DataMessage, CommandError> {
    let mut values = amf0::decode_all(payload, limits)?.into_iter();
    let handler = match values.next() {
        Some(Value::String(s)) | Some(Value::LongString(s)) => s,
        _ => return Err(CommandError::DataHandlerNotString),
    };
    Ok(DataMessage {
        handler,
        values: values.collect(),
    })
}

/// A codec id as written in `onMetaData` (`videocodecid`/`audiocodecid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataCodec {
    /// Legacy FLV codec id (7 = AVC, 10 = AAC, …).
    Legacy(u8),
    /// E-RTMP: a FourCC, sent as a number (`makeFourCc`) or a string.
    FourCc(FourCc),
    /// Any other string.
    Text(String),
}

impl MetadataCodec {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Number(n) => {
                if !(n.fract() == 0.0 && *n >= 0.0 && *n <= f64::from(u32::MAX)) {
                    return None;
                }
                // In range and integral, so the conversion is exact.
                let n = *n as u32;
                match u8::try_from(n) {
                    Ok(small) if small < 16 => Some(Self::Legacy(small)),
                    _ => Some(Self::FourCc(FourCc(n.to_be_bytes()))),
                }
            }
            Value::String(s) | Value::LongString(s) => match <[u8; 4]>::try_from(s.as_bytes()) {
                Ok(code) => Some(Self::FourCc(FourCc(code))),
                Err(_) => Some(Self::Text(s.clone())),
            },
            _ => None,
        }
    }
}

/// The `onMetaData` fields the API reports.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetadataFields {
    pub width: Option<f64>,
    pub height: Option<f64>,
    pub framerate: Option<f64>,
    /// kbit/s, as encoders write it.
    pub videodatarate: Option<f64>,
    /// kbit/s.
    pub audiodatarate: Option<f64>,
    pub audiosamplerate: Option<f64>,
    pub videocodecid: Option<MetadataCodec>,
    pub audiocodecid: Option<MetadataCodec>,
    pub encoder: Option<String>,
}

impl MetadataFields {
    pub fn from_properties(properties: &Properties) -> Self {
        let find = |name: &str| properties.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let number = |name: &str| find(name).and_then(Value::as_f64);
        Self {
            width: number("width"),
            height: number("height"),
            framerate: number("framerate").or_else(|| number("fps")),
            videodatarate: number("videodatarate"),
            audiodatarate: number("audiodatarate"),
            audiosamplerate: number("audiosamplerate"),
            videocodecid: find("videocodecid").and_then(MetadataCodec::from_value),
            audiocodecid: find("audiocodecid").and_then(MetadataCodec::from_value),
            encoder: find("encoder").and_then(Value::as_str).map(str::to_owned),
        }
    }
}

/// Stream metadata set by a publisher.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    /// Payload to send to players as a type-18 data message: `onMetaData, {…}` — the publisher's
    /// bytes with the `@setDataFrame` prefix sliced off (no re-encoding).
    pub forward_payload: Bytes,
    /// The handler players will see (normally `onMetaData`).
    pub handler: String,
    /// The metadata object's properties (empty if it sent none).
    pub properties: Properties,
    pub fields: MetadataFields,
}

/// Reads stream metadata from a data message payload: `@setDataFrame, onMetaData, {…}` (what
/// OBS and FFmpeg send) or `onMetaData, {…}` directly. `Ok(None)` if the message is some other
/// data message (forward it as it is, or ignore it). `@setDataFrame` with nothing after it is
/// [`CommandError::EmptySetDataFrame`].
pub fn parse_metadata(
    payload: &Bytes,
    limits: &Amf0Limits,
) -> Result<Option<Metadata>, CommandError> {
    let mut decoder = Decoder::new(payload, *limits);
    let first = match decoder.decode_next()? {
        Some(Value::String(s)) | Some(Value::LongString(s)) => s,
        _ => return Err(CommandError::DataHandlerNotString),
    };
    let (handler, forward_payload) = if first == "@setDataFrame" {
        let start = decoder.position();
        match decoder.decode_next()? {
            None => return Err(CommandError::EmptySetDataFrame),
            Some(Value::String(s)) | Some(Value::LongString(s)) => {
                (s, payload.slice(start.min(payload.len())..))
            }
            Some(_) => return Err(CommandError::DataHandlerNotString),
        }
    } else if first == "onMetaData" {
        (first, payload.clone())
    } else {
        return Ok(None);
    };
    let properties = match decoder.decode_next()? {
        Some(Value::Object(p)) | Some(Value::EcmaArray(p)) => p,
        Some(Value::TypedObject { properties, .. }) => properties,
        _ => Vec::new(),
    };
    let fields = MetadataFields::from_properties(&properties);
    Ok(Some(Metadata {
        forward_payload,
        handler,
        properties,
        fields,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::amf0::decode_all;

    fn limits() -> Amf0Limits {
        Amf0Limits::default()
    }

    fn bytes(values: &[Value]) -> Bytes {
        amf0::to_bytes(values)
    }

    #[test]
    fn commands_with_0_1_2_values() {
        assert_eq!(parse_command(&[], &limits()), Err(CommandError::Empty));
        let c = parse_command(&bytes(&[Value::string("closeStream")]), &limits()).unwrap();
        assert_eq!(c.name, "closeStream");
        assert_eq!(c.transaction_id, 0.0);
        assert_eq!(c.command_object, Value::Null);
        assert!(c.args.is_empty());
        let c = parse_command(
            &bytes(&[Value::string("deleteStream"), Value::Number(7.0)]),
            &limits(),
        )
        .unwrap();
        assert_eq!(c.transaction_id, 7.0);
        assert_eq!(c.command_object, Value::Null);
        assert_eq!(c.arg(0), None);
        assert_eq!(
            parse_command(&bytes(&[Value::Number(1.0)]), &limits()),
            Err(CommandError::NameNotString)
        );
        assert!(matches!(
            parse_command(&bytes(&[Value::string("x"), Value::Null]), &limits()),
            Err(CommandError::TransactionIdNotNumber { .. })
        ));
        // Truncated AMF0.
        assert!(matches!(
            parse_command(&[0x02, 0x00, 0x05, b'a'], &limits()),
            Err(CommandError::Amf0(_))
        ));
    }

    #[test]
    fn connect_request_and_reply() {
        let payload = bytes(&[
            Value::string("connect"),
            Value::Number(1.0),
            Value::object([
                ("app", Value::string("live")),
                ("tcUrl", Value::string("rtmp://127.0.0.1/live")),
                ("objectEncoding", Value::Number(3.0)),
                (
                    "fourCcList",
                    Value::StrictArray(vec![Value::string("hvc1"), Value::string("av01")]),
                ),
            ]),
        ]);
        let command = parse_command(&payload, &limits()).unwrap();
        let request = ConnectRequest::from_command(&command);
        assert_eq!(request.app.as_deref(), Some("live"));
        assert_eq!(request.object_encoding, 3.0);
        assert!(request.is_enhanced());

        let reply =
            decode_all(&connect_result(command.transaction_id, &request), &limits()).unwrap();
        assert_eq!(reply[0], Value::string("_result"));
        assert_eq!(reply[1], Value::Number(1.0));
        assert_eq!(reply[2].get("fmsVer"), Some(&Value::string(FMS_VERSION)));
        assert_eq!(reply[2].get("capabilities"), Some(&Value::Number(31.0)));
        assert_eq!(
            reply[2].get("fourCcList"),
            Some(&Value::StrictArray(vec![
                Value::string("hvc1"),
                Value::string("av01")
            ]))
        );
        assert_eq!(
            reply[2].get("videoFourCcInfoMap").and_then(|m| m.get("*")),
            Some(&Value::Number(4.0))
        );
        assert_eq!(
            reply[3].get("code"),
            Some(&Value::string(status_code::CONNECT_SUCCESS))
        );
        assert_eq!(reply[3].get("level"), Some(&Value::string("status")));
        assert_eq!(reply[3].get("objectEncoding"), Some(&Value::Number(3.0)));

        // A legacy client gets no E-RTMP properties and objectEncoding 0.
        let legacy = ConnectRequest::default();
        let reply = decode_all(&connect_result(1.0, &legacy), &limits()).unwrap();
        assert_eq!(reply[2].get("fourCcList"), None);
        assert_eq!(reply[3].get("objectEncoding"), Some(&Value::Number(0.0)));

        // An E-RTMP client with only capsEx gets the server's list.
        let caps_only = ConnectRequest {
            caps_ex: Some(2.0),
            ..ConnectRequest::default()
        };
        let reply = decode_all(&connect_result(1.0, &caps_only), &limits()).unwrap();
        let Some(Value::StrictArray(list)) = reply[2].get("fourCcList") else {
            panic!("no fourCcList");
        };
        assert_eq!(list.len(), SERVER_FOURCC_LIST.len());
    }

    #[test]
    fn other_replies() {
        let v = decode_all(&create_stream_result(4.0, 1), &limits()).unwrap();
        assert_eq!(
            v,
            vec![
                Value::string("_result"),
                Value::Number(4.0),
                Value::Null,
                Value::Number(1.0)
            ]
        );
        let v = decode_all(
            &on_status(&Status {
                level: StatusLevel::Status,
                code: status_code::PUBLISH_START,
                description: "Publishing live/key.",
                details: Some("key"),
            }),
            &limits(),
        )
        .unwrap();
        assert_eq!(v[0], Value::string("onStatus"));
        assert_eq!(
            v[3].get("code"),
            Some(&Value::string("NetStream.Publish.Start"))
        );
        assert_eq!(v[3].get("details"), Some(&Value::string("key")));
        let v = decode_all(
            &error_result(5.0, status_code::CALL_FAILED, "Unknown command"),
            &limits(),
        )
        .unwrap();
        assert_eq!(v[0], Value::string("_error"));
        assert_eq!(v[3].get("level"), Some(&Value::string("error")));
        let v = decode_all(&on_fc_publish(status_code::PUBLISH_START, "key"), &limits()).unwrap();
        assert_eq!(v[0], Value::string("onFCPublish"));
        let v = decode_all(
            &on_fc_unpublish(status_code::UNPUBLISH_SUCCESS, "key"),
            &limits(),
        )
        .unwrap();
        assert_eq!(v[0], Value::string("onFCUnpublish"));
        let v = decode_all(&rtmp_sample_access(), &limits()).unwrap();
        assert_eq!(
            v,
            vec![
                Value::string("|RtmpSampleAccess"),
                Value::Boolean(true),
                Value::Boolean(true)
            ]
        );
    }

    #[test]
    fn publish_and_play_requests() {
        let c = parse_command(
            &bytes(&[
                Value::string("publish"),
                Value::Number(5.0),
                Value::Null,
                Value::string("key"),
            ]),
            &limits(),
        )
        .unwrap();
        let p = PublishRequest::from_command(&c).unwrap();
        assert_eq!(p.stream_name, "key");
        assert_eq!(p.publish_type, "live");
        let c = parse_command(
            &bytes(&[Value::string("publish"), Value::Number(5.0)]),
            &limits(),
        )
        .unwrap();
        assert!(matches!(
            PublishRequest::from_command(&c),
            Err(CommandError::BadArgument { index: 0, .. })
        ));
        let c = parse_command(
            &bytes(&[
                Value::string("play"),
                Value::Number(4.0),
                Value::Null,
                Value::string("key"),
                Value::Number(-1.0),
            ]),
            &limits(),
        )
        .unwrap();
        let p = PlayRequest::from_command(&c).unwrap();
        assert_eq!(p.start, -1.0);
        assert_eq!(p.duration, -1.0);
        assert!(p.reset);
    }

    fn metadata_object() -> Value {
        Value::EcmaArray(vec![
            ("width".into(), Value::Number(1920.0)),
            ("height".into(), Value::Number(1080.0)),
            ("framerate".into(), Value::Number(30.0)),
            ("videodatarate".into(), Value::Number(6000.0)),
            ("audiodatarate".into(), Value::Number(160.0)),
            (
                "videocodecid".into(),
                Value::Number(f64::from(u32::from_be_bytes(*b"hvc1"))),
            ),
            ("audiocodecid".into(), Value::Number(10.0)),
            (
                "encoder".into(),
                Value::string("obs-output module (libobs version 30.0.0)"),
            ),
        ])
    }

    #[test]
    fn set_data_frame_is_sliced_not_reencoded() {
        let payload = bytes(&[
            Value::string("@setDataFrame"),
            Value::string("onMetaData"),
            metadata_object(),
        ]);
        let metadata = parse_metadata(&payload, &limits()).unwrap().unwrap();
        assert_eq!(metadata.handler, "onMetaData");
        assert_eq!(
            metadata.forward_payload,
            bytes(&[Value::string("onMetaData"), metadata_object()])
        );
        // Same allocation: a slice.
        assert_eq!(
            metadata.forward_payload.as_ptr(),
            payload[3 + "@setDataFrame".len()..].as_ptr()
        );
        let f = &metadata.fields;
        assert_eq!(f.width, Some(1920.0));
        assert_eq!(f.height, Some(1080.0));
        assert_eq!(f.framerate, Some(30.0));
        assert_eq!(f.videodatarate, Some(6000.0));
        assert_eq!(f.audiodatarate, Some(160.0));
        assert_eq!(
            f.videocodecid,
            Some(MetadataCodec::FourCc(FourCc(*b"hvc1")))
        );
        assert_eq!(f.audiocodecid, Some(MetadataCodec::Legacy(10)));
        assert!(f.encoder.as_deref().unwrap().starts_with("obs"));
    }

    #[test]
    fn metadata_variants() {
        // onMetaData directly: forwarded whole.
        let payload = bytes(&[Value::string("onMetaData"), metadata_object()]);
        let m = parse_metadata(&payload, &limits()).unwrap().unwrap();
        assert_eq!(m.forward_payload, payload);
        // @setDataFrame alone.
        let payload = bytes(&[Value::string("@setDataFrame")]);
        assert_eq!(
            parse_metadata(&payload, &limits()),
            Err(CommandError::EmptySetDataFrame)
        );
        // @setDataFrame + non-string.
        let payload = bytes(&[Value::string("@setDataFrame"), Value::Number(1.0)]);
        assert_eq!(
            parse_metadata(&payload, &limits()),
            Err(CommandError::DataHandlerNotString)
        );
        // @setDataFrame onMetaData with no object: accepted, empty fields.
        let payload = bytes(&[Value::string("@setDataFrame"), Value::string("onMetaData")]);
        let m = parse_metadata(&payload, &limits()).unwrap().unwrap();
        assert!(m.properties.is_empty());
        assert_eq!(m.fields, MetadataFields::default());
        // Other data messages.
        let payload = bytes(&[Value::string("onTextData"), Value::Null]);
        assert_eq!(parse_metadata(&payload, &limits()), Ok(None));
        // Empty and garbage.
        assert!(parse_metadata(&Bytes::new(), &limits()).is_err());
        assert!(parse_metadata(&Bytes::from_static(&[0x11]), &limits()).is_err());
        // Generic data parse.
        let d = parse_data_message(
            &bytes(&[Value::string("onCuePoint"), Value::Null]),
            &limits(),
        )
        .unwrap();
        assert_eq!(d.handler, "onCuePoint");
        assert_eq!(d.values, vec![Value::Null]);
        assert!(parse_data_message(&[], &limits()).is_err());
    }

    #[test]
    fn metadata_codec_forms() {
        assert_eq!(
            MetadataCodec::from_value(&Value::Number(7.0)),
            Some(MetadataCodec::Legacy(7))
        );
        assert_eq!(
            MetadataCodec::from_value(&Value::string("av01")),
            Some(MetadataCodec::FourCc(FourCc(*b"av01")))
        );
        assert_eq!(
            MetadataCodec::from_value(&Value::string("H264Avc")),
            Some(MetadataCodec::Text("H264Avc".into()))
        );
        assert_eq!(MetadataCodec::from_value(&Value::Number(-1.0)), None);
        assert_eq!(MetadataCodec::from_value(&Value::Number(1.5)), None);
        assert_eq!(MetadataCodec::from_value(&Value::Number(f64::NAN)), None);
        assert_eq!(MetadataCodec::from_value(&Value::Number(1e300)), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_payloads_never_panic(payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let b = Bytes::from(payload);
            if let Ok(c) = parse_command(&b, &limits()) {
                let _ = ConnectRequest::from_command(&c);
                let _ = PublishRequest::from_command(&c);
                let _ = PlayRequest::from_command(&c);
            }
            let _ = parse_metadata(&b, &limits());
            let _ = parse_data_message(&b, &limits());
        }
    }
}
