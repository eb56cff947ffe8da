//! RTMP protocol cost model (being built).
