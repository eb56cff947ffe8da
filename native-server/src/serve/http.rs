//! The HTTP side of `rtmp-lab serve`: the JSON API, Prometheus metrics and the web lab's files.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/streams` | JSON array of [`StreamSummary`] |
//! | `GET /api/streams/{app}/{key}` | [`StreamDetail`] (summary, players, ingest record), or 404 `{"error": "no stream app/key"}` |
//! | `GET /metrics` | Prometheus text exposition format 0.0.4, names prefixed `rtmp_lab_` |
//! | `GET /healthz` | `ok` |
//! | anything else | a file under the web root (`index.html` for `/`); without a built web lab, `/` is a page saying so |
//!
//! Every `/api` answer, errors included, carries `Access-Control-Allow-Origin: *`, so the web lab
//! can be served from a development server on another port. Only simple GET requests are
//! offered, so browsers send no preflight.
//!
//! The router knows nothing of the relay: it asks an [`ApiSource`] (the server's stream table)
//! for snapshots. Its methods are called on the async runtime and must return quickly (take a
//! lock, copy, release). Binding the listener and shutting down belong to the caller:
//! `axum::serve(listener, router(source, web_root))`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::handler::HandlerWithoutStateExt;
use axum::http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::middleware;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde::Serialize;
use tower_http::services::ServeDir;

use super::api::{ServerMetrics, StreamDetail, StreamSummary};

/// The server state the HTTP API reports. Implemented by the relay's stream table.
pub trait ApiSource: Send + Sync + 'static {
    /// Every stream: published, or with players waiting for a publisher.
    fn streams(&self) -> Vec<StreamSummary>;
    /// One stream with its players and ingest record; `None` if there is no such stream.
    fn stream(&self, app: &str, key: &str) -> Option<StreamDetail>;
    /// Process-wide counters.
    fn metrics(&self) -> ServerMetrics;
}

/// `Content-Type` of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prefix of every metric name.
const METRIC_PREFIX: &str = "rtmp_lab_";

/// Shown at `/` until the web lab (issue #4) is built into the web root.
const NOT_BUILT_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>RTMP Lab</title></head>
<body>
<h1>RTMP Lab</h1>
<p>The browser lab is not built yet (issue #4). The API is live:
<a href="/api/streams">/api/streams</a>, <a href="/metrics">/metrics</a></p>
<p>Publish with <code>rtmp://127.0.0.1/live/&lt;key&gt;</code>; the stream then appears in
<a href="/api/streams">/api/streams</a>, and its ingest analysis at
<code>/api/streams/live/&lt;key&gt;</code>.</p>
</body>
</html>
"#;

/// The HTTP API over `source`; static files from `web_root` when given.
pub fn router(source: Arc<dyn ApiSource>, web_root: Option<PathBuf>) -> Router {
    let api = Router::new()
        .route("/api/streams", get(list_streams))
        .route("/api/streams/{app}/{key}", get(stream_detail))
        .route("/api/{*rest}", any(api_not_found))
        .layer(middleware::map_response(allow_any_origin));
    let router = Router::new()
        .merge(api)
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }));
    let router = match web_root {
        // ServeDir answers `/` with index.html; when that is missing it falls back to the page.
        Some(root) => router
            .fallback_service(ServeDir::new(root).fallback(not_built_or_not_found.into_service())),
        None => router.route("/", get(not_built_page)).fallback(not_found),
    };
    router.with_state(source)
}

async fn allow_any_origin(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

#[derive(Serialize)]
struct ApiError {
    error: String,
}

fn api_error(status: StatusCode, error: String) -> Response {
    (status, Json(ApiError { error })).into_response()
}

async fn list_streams(State(source): State<Arc<dyn ApiSource>>) -> Json<Vec<StreamSummary>> {
    Json(source.streams())
}

async fn stream_detail(
    State(source): State<Arc<dyn ApiSource>>,
    Path((app, key)): Path<(String, String)>,
) -> Response {
    match source.stream(&app, &key) {
        Some(detail) => Json(detail).into_response(),
        None => api_error(StatusCode::NOT_FOUND, format!("no stream {app}/{key}")),
    }
}

async fn api_not_found(uri: Uri) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        format!("no such endpoint {}", uri.path()),
    )
}

async fn metrics(State(source): State<Arc<dyn ApiSource>>) -> Response {
    let text = render_metrics(&source.metrics(), &source.streams());
    ([(CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response()
}

async fn not_built_page() -> Html<&'static str> {
    Html(NOT_BUILT_PAGE)
}

async fn not_found(uri: Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("not found: {}\n", uri.path()),
    )
        .into_response()
}

async fn not_built_or_not_found(uri: Uri) -> Response {
    if uri.path() == "/" {
        not_built_page().await.into_response()
    } else {
        not_found(uri).await
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus text format
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum MetricType {
    Counter,
    Gauge,
}

/// Writes one metric family: `# HELP`, `# TYPE`, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn begin(out: &'a mut String, name: &str, kind: MetricType, help: &str) -> Self {
        let kind = match kind {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
        };
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {METRIC_PREFIX}{name} {}", escape_help(help));
        let _ = writeln!(out, "# TYPE {METRIC_PREFIX}{name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.out, "{METRIC_PREFIX}{name}");
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label_value(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_value(value));
    }
}

/// A label value per the text format: backslash, double quote and line feed escaped.
fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// HELP text per the text format: backslash and line feed escaped.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value as Go's `ParseFloat` reads it (`+Inf`, `-Inf`, `NaN` spelled its way).
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        value.to_string()
    }
}

/// One per-stream gauge: its name, help, and how to read it from a summary (`None`: no
/// sample for that stream, e.g. fps before any video).
type StreamGauge = (
    &'static str,
    &'static str,
    fn(&StreamSummary) -> Option<f64>,
);

const STREAM_GAUGES: &[StreamGauge] = &[
    (
        "stream_publisher_connected",
        "1 while a publisher is connected to the stream, else 0.",
        |s| Some(if s.publisher.is_some() { 1.0 } else { 0.0 }),
    ),
    (
        "stream_publish_uptime_seconds",
        "Seconds since the current publish started.",
        |s| s.publisher.as_ref().map(|p| p.uptime_s),
    ),
    (
        "stream_players",
        "Players subscribed to the stream, including those waiting for a publisher.",
        |s| Some(s.players as f64),
    ),
    (
        "stream_video_bitrate_bits_per_second",
        "Incoming video bitrate over the last 5 s of stream time.",
        |s| Some(s.ingest.video_kbps * 1000.0),
    ),
    (
        "stream_audio_bitrate_bits_per_second",
        "Incoming audio bitrate over the last 5 s of stream time.",
        |s| Some(s.ingest.audio_kbps * 1000.0),
    ),
    (
        "stream_video_fps",
        "Incoming video frames per second of stream time over the last 5 s.",
        |s| s.ingest.fps,
    ),
    (
        "stream_keyframe_interval_seconds",
        "Stream time between the last two keyframes.",
        |s| s.ingest.last_keyframe_interval_s,
    ),
    (
        "stream_vbv_fullness_ratio",
        "Fullness of the ingest VBV (1 s of the stream's video bitrate) after the last frame, 0 to 1.",
        |s| {
            s.ingest
                .vbv
                .filter(|v| v.buffer_kbit > 0.0)
                .map(|v| v.fullness_kbit / v.buffer_kbit)
        },
    ),
    (
        "stream_vbv_underflows",
        "Frames that underflowed the ingest VBV during this publish.",
        |s| s.ingest.vbv.map(|v| v.underflows as f64),
    ),
    (
        "stream_arrival_jitter_p95_seconds",
        "95th percentile of arrival jitter (lateness against the best-so-far path) over the ingest record.",
        |s| s.ingest.arrival_jitter_ms.map(|j| j.p95 / 1000.0),
    ),
];

/// `/metrics`: the server counters and one set of gauges per stream, labelled `app` and `key`.
pub fn render_metrics(metrics: &ServerMetrics, streams: &[StreamSummary]) -> String {
    use MetricType::{Counter, Gauge};
    let server: [(&str, MetricType, &str, u64); 12] = [
        (
            "connections_open",
            Gauge,
            "RTMP connections open now.",
            metrics.connections_open,
        ),
        (
            "connections_total",
            Counter,
            "RTMP connections accepted.",
            metrics.connections_total,
        ),
        (
            "connections_rejected_total",
            Counter,
            "RTMP connections refused (connection limit).",
            metrics.connections_rejected,
        ),
        (
            "handshake_failures_total",
            Counter,
            "RTMP handshakes that failed or timed out.",
            metrics.handshake_failures,
        ),
        (
            "protocol_errors_total",
            Counter,
            "Connections closed for a protocol error.",
            metrics.protocol_errors,
        ),
        ("streams", Gauge, "Streams known now.", metrics.streams),
        (
            "publishers",
            Gauge,
            "Publishers connected now.",
            metrics.publishers,
        ),
        ("players", Gauge, "Players connected now.", metrics.players),
        (
            "received_bytes_total",
            Counter,
            "Bytes received on RTMP connections.",
            metrics.bytes_in,
        ),
        (
            "sent_bytes_total",
            Counter,
            "Bytes sent on RTMP connections.",
            metrics.bytes_out,
        ),
        (
            "dropped_messages_total",
            Counter,
            "Media messages dropped from slow players' queues.",
            metrics.messages_dropped,
        ),
        (
            "slow_players_disconnected_total",
            Counter,
            "Players disconnected for staying too far behind.",
            metrics.players_disconnected_slow,
        ),
    ];

    let mut out = String::new();
    for (name, kind, help, value) in server {
        Family::begin(&mut out, name, kind, help).sample(name, &[], value as f64);
    }
    for &(name, help, read) in STREAM_GAUGES {
        let mut family = Family::begin(&mut out, name, Gauge, help);
        for stream in streams {
            if let Some(value) = read(stream) {
                let labels = [("app", stream.app.as_str()), ("key", stream.key.as_str())];
                family.sample(name, &labels, value);
            }
        }
    }
    let mut family = Family::begin(
        &mut out,
        "stream_ingest_bytes_total",
        Counter,
        "Media bytes received from the stream's publisher during this publish.",
    );
    for stream in streams {
        let labels = [("app", stream.app.as_str()), ("key", stream.key.as_str())];
        family.sample(
            "stream_ingest_bytes_total",
            &labels,
            stream.ingest.bytes as f64,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::api::{
        FrameClass, FrameInfo, FrameKind, IngestStats, JitterStats, PlayerInfo, PublisherInfo,
        VbvRateSource, VbvStats,
    };
    use axum::body::{to_bytes, Body};
    use axum::http::{HeaderMap, Request};
    use std::collections::{BTreeMap, HashSet};
    use tower::ServiceExt;

    struct FakeSource {
        streams: Vec<StreamDetail>,
        metrics: ServerMetrics,
    }

    impl ApiSource for FakeSource {
        fn streams(&self) -> Vec<StreamSummary> {
            self.streams.iter().map(|d| d.summary.clone()).collect()
        }
        fn stream(&self, app: &str, key: &str) -> Option<StreamDetail> {
            self.streams
                .iter()
                .find(|d| d.summary.app == app && d.summary.key == key)
                .cloned()
        }
        fn metrics(&self) -> ServerMetrics {
            self.metrics.clone()
        }
    }

    fn live_stream() -> StreamDetail {
        StreamDetail {
            summary: StreamSummary {
                app: "live".into(),
                key: "obs".into(),
                publisher: Some(PublisherInfo {
                    peer: "127.0.0.1:50000".into(),
                    uptime_s: 12.5,
                    encoder: Some("obs-output module (libobs version 30.1.2)".into()),
                }),
                players: 2,
                ingest: IngestStats {
                    video_codec: Some("avc1".into()),
                    audio_codec: Some("mp4a".into()),
                    width: Some(1280),
                    height: Some(720),
                    declared_fps: Some(30.0),
                    declared_video_kbps: Some(2500.0),
                    fps: Some(30.0),
                    video_kbps: 2480.5,
                    audio_kbps: 160.0,
                    keyframe_interval_s: Some(2.0),
                    last_keyframe_interval_s: Some(2.0),
                    arrival_jitter_ms: Some(JitterStats {
                        p50: 0.5,
                        p95: 4.0,
                        max: 12.0,
                        samples: 100,
                    }),
                    vbv: Some(VbvStats {
                        buffer_kbit: 2500.0,
                        max_rate_kbps: 2500.0,
                        fullness_kbit: 2000.0,
                        min_fullness_kbit: 900.0,
                        underflows: 0,
                        rate_source: VbvRateSource::Declared,
                    }),
                    bytes: 4_000_000,
                    ..IngestStats::default()
                },
            },
            player_list: vec![PlayerInfo {
                peer: "127.0.0.1:50001".into(),
                connected_s: 3.0,
                queued_bytes: 10,
                delivered_messages: 300,
                dropped_messages: 1,
            }],
            frames: vec![FrameInfo {
                kind: FrameKind::Video,
                frame_type: FrameClass::Key,
                size_bytes: 50_000,
                timestamp_ms: 12_000,
                composition_ms: 66,
                arrival_us: 12_007_000,
                vbv_fullness_bits: Some(2_000_000.0),
                arrival_jitter_ms: 0.25,
            }],
        }
    }

    /// A waiting stream whose key needs escaping in a label.
    fn odd_stream() -> StreamDetail {
        StreamDetail {
            summary: StreamSummary {
                app: "te st".into(),
                key: "we\"ird\\key\nx".into(),
                players: 1,
                ..StreamSummary::default()
            },
            ..StreamDetail::default()
        }
    }

    fn source() -> Arc<dyn ApiSource> {
        Arc::new(FakeSource {
            streams: vec![live_stream(), odd_stream()],
            metrics: ServerMetrics {
                connections_open: 3,
                connections_total: 17,
                bytes_in: 1 << 40,
                ..ServerMetrics::default()
            },
        })
    }

    async fn get(router: &Router, path: &str) -> (StatusCode, HeaderMap, String) {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    fn cors(headers: &HeaderMap) -> Option<&str> {
        headers
            .get(ACCESS_CONTROL_ALLOW_ORIGIN)
            .and_then(|v| v.to_str().ok())
    }

    #[tokio::test]
    async fn streams_list_and_detail() {
        let app = router(source(), None);
        let (status, headers, body) = get(&app, "/api/streams").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(cors(&headers), Some("*"));
        assert!(headers[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let list: Vec<StreamSummary> = serde_json::from_str(&body).unwrap();
        assert_eq!(list, vec![live_stream().summary, odd_stream().summary]);

        let (status, headers, body) = get(&app, "/api/streams/live/obs").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(cors(&headers), Some("*"));
        let detail: StreamDetail = serde_json::from_str(&body).unwrap();
        assert_eq!(detail, live_stream());
        // The summary is flattened into the detail object.
        let raw: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(raw["app"], "live");
        assert_eq!(raw["ingest"]["video_codec"], "avc1");
        assert_eq!(raw["frames"][0]["frame_type"], "key");
        assert_eq!(raw["ingest"]["vbv"]["rate_source"], "declared");

        // Percent-encoded path segments reach the source decoded.
        let (status, _, _) = get(&app, "/api/streams/te%20st/we%22ird%5Ckey%0Ax").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn missing_stream_and_unknown_endpoints_are_json_404s() {
        let app = router(source(), None);
        let (status, headers, body) = get(&app, "/api/streams/live/abc").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(cors(&headers), Some("*"));
        let error: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error, serde_json::json!({"error": "no stream live/abc"}));

        for path in ["/api/nothing", "/api/streams/a/b/c"] {
            let (status, headers, body) = get(&app, path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(cors(&headers), Some("*"));
            let error: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(error["error"], format!("no such endpoint {path}"));
        }
        let (status, headers, _) = get(&app, "/nothing/here").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(cors(&headers), None, "CORS is for /api only");
    }

    #[tokio::test]
    async fn healthz_and_not_built_page() {
        let app = router(source(), None);
        let (status, _, body) = get(&app, "/healthz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
        let (status, headers, body) = get(&app, "/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(body.contains("The browser lab is not built yet (issue #4)"));
        assert!(body.contains(r#"<a href="/api/streams">"#));
        assert!(body.contains(r#"<a href="/metrics">"#));
    }

    #[tokio::test]
    async fn static_files_from_the_web_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<h1>lab</h1>").unwrap();
        std::fs::write(dir.path().join("app.js"), "let x = 1;").unwrap();
        let app = router(source(), Some(dir.path().to_path_buf()));
        let (status, headers, body) = get(&app, "/").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "<h1>lab</h1>"));
        assert!(headers[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let (status, _, body) = get(&app, "/app.js").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "let x = 1;"));
        let (status, _, _) = get(&app, "/missing.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = get(&app, "/../Cargo.toml").await;
        assert_ne!(status, StatusCode::OK);
        // The API still wins over the files.
        let (status, _, _) = get(&app, "/api/streams").await;
        assert_eq!(status, StatusCode::OK);

        // A web root without index.html: the page that says so.
        let empty = tempfile::tempdir().unwrap();
        let app = router(source(), Some(empty.path().to_path_buf()));
        let (status, _, body) = get(&app, "/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("not built yet"));
        let (status, _, _) = get(&app, "/other").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    /// One sample line parsed per the text format: name, labels, value.
    fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
        let name_end = line.find(['{', ' ']).expect("a value after the name");
        let name = &line[..name_end];
        assert!(!name.is_empty());
        assert!(name
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_alphabetic()
                || c == '_'
                || c == ':'
                || (i > 0 && c.is_ascii_digit())));
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices();
            let mut label = String::new();
            loop {
                let (i, c) = chars.next().expect("labels end with }");
                match c {
                    '}' => {
                        rest = &inner[i + 1..];
                        break;
                    }
                    ',' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|(_, c)| c), Some('"'));
                        let mut value = String::new();
                        loop {
                            match chars.next().expect("closing quote").1 {
                                '"' => break,
                                '\\' => match chars.next().expect("escape").1 {
                                    '\\' => value.push('\\'),
                                    '"' => value.push('"'),
                                    'n' => value.push('\n'),
                                    other => panic!("bad escape \\{other}"),
                                },
                                '\n' => panic!("raw line feed in a label value"),
                                c => value.push(c),
                            }
                        }
                        labels.insert(std::mem::take(&mut label), value);
                    }
                    c if c.is_ascii_alphanumeric() || c == '_' => label.push(c),
                    other => panic!("bad character {other:?} in labels of {line}"),
                }
            }
        }
        let value = rest.strip_prefix(' ').expect("one space before the value");
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value {v:?}")),
        };
        (name.to_string(), labels, value)
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text() {
        let app = router(source(), None);
        let (status, headers, body) = get(&app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[CONTENT_TYPE], METRICS_CONTENT_TYPE);

        let mut families = HashSet::new();
        let mut current: Option<(String, String)> = None; // (name, type)
        let mut samples = Vec::new();
        for line in body.lines() {
            if let Some(help) = line.strip_prefix("# HELP ") {
                let name = help.split(' ').next().unwrap().to_string();
                assert!(families.insert(name.clone()), "{name} repeated");
                current = Some((name, String::new()));
            } else if let Some(kind) = line.strip_prefix("# TYPE ") {
                let (name, kind) = kind.split_once(' ').unwrap();
                let family = current.as_mut().expect("TYPE after HELP");
                assert_eq!(family.0, name);
                assert!(kind == "counter" || kind == "gauge");
                family.1 = kind.to_string();
            } else {
                assert!(!line.is_empty() && !line.starts_with('#'), "{line:?}");
                let (name, labels, value) = parse_sample(line);
                let (family, kind) = current.as_ref().expect("a sample inside a family");
                assert_eq!(&name, family);
                assert!(name.starts_with("rtmp_lab_"));
                assert_eq!(kind == "counter", name.ends_with("_total"), "{name}");
                samples.push((name, labels, value));
            }
        }
        let find = |name: &str, key: Option<&str>| {
            samples
                .iter()
                .find(|(n, l, _)| n == name && l.get("key").map(String::as_str) == key)
                .map(|(_, _, v)| *v)
        };
        assert_eq!(find("rtmp_lab_connections_open", None), Some(3.0));
        assert_eq!(find("rtmp_lab_connections_total", None), Some(17.0));
        assert_eq!(
            find("rtmp_lab_received_bytes_total", None),
            Some((1u64 << 40) as f64)
        );
        assert_eq!(find("rtmp_lab_stream_players", Some("obs")), Some(2.0));
        assert_eq!(
            find("rtmp_lab_stream_video_bitrate_bits_per_second", Some("obs")),
            Some(2_480_500.0)
        );
        assert_eq!(find("rtmp_lab_stream_video_fps", Some("obs")), Some(30.0));
        assert_eq!(
            find("rtmp_lab_stream_keyframe_interval_seconds", Some("obs")),
            Some(2.0)
        );
        assert_eq!(
            find("rtmp_lab_stream_vbv_fullness_ratio", Some("obs")),
            Some(0.8)
        );
        assert_eq!(
            find("rtmp_lab_stream_arrival_jitter_p95_seconds", Some("obs")),
            Some(0.004)
        );
        // The waiting stream: escaped labels parse back to its app and key; no fps sample.
        let odd = odd_stream().summary;
        let (_, labels, value) = samples
            .iter()
            .find(|(n, l, _)| n == "rtmp_lab_stream_players" && l["app"] == odd.app)
            .unwrap();
        assert_eq!(labels["key"], odd.key);
        assert_eq!(*value, 1.0);
        assert!(body.contains(r#"key="we\"ird\\key\nx""#));
        assert_eq!(
            find("rtmp_lab_stream_video_fps", Some(odd.key.as_str())),
            None
        );
        assert_eq!(
            find(
                "rtmp_lab_stream_publisher_connected",
                Some(odd.key.as_str())
            ),
            Some(0.0)
        );
    }

    #[test]
    fn value_and_escape_forms() {
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(0.004), "0.004");
        assert_eq!(format_value(1e300).parse::<f64>().unwrap(), 1e300);
        assert_eq!(escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_help("x\\y\nz"), "x\\\\y\\nz");
        // No streams: every family still declared, only server samples.
        let text = render_metrics(&ServerMetrics::default(), &[]);
        assert!(text.contains("# TYPE rtmp_lab_stream_players gauge\n"));
        assert!(!text.contains("app="));
    }
}
