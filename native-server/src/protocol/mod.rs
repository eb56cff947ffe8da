//! RTMP protocol codec (being built).
