//! Reads FLV files written by the real players (rtmpdump, GStreamer's filesink), tolerating a
//! last tag cut short by the player being stopped.

/// One FLV tag.
#[derive(Debug, Clone)]
pub struct Tag {
    /// 8 audio, 9 video, 18 script data.
    pub tag_type: u8,
    pub timestamp: u32,
    pub data: Vec<u8>,
}

impl Tag {
    /// Video: an AVC/legacy keyframe (frame type 1) that is a coded frame, or an Enhanced RTMP
    /// keyframe; sequence headers are not keyframes here.
    pub fn is_video_keyframe(&self) -> bool {
        let Some(&b0) = self.data.first() else {
            return false;
        };
        if self.tag_type != 9 {
            return false;
        }
        if b0 & 0x80 != 0 {
            // Enhanced RTMP: frame type in bits 4..6, packet type in the low nibble (1 or 3 =
            // coded frames).
            return (b0 >> 4) & 0x07 == 1 && matches!(b0 & 0x0F, 1 | 3);
        }
        b0 >> 4 == 1 && (b0 & 0x0F != 7 || self.data.get(1) == Some(&1))
    }

    /// Video or audio sequence header (AVC/AAC packet type 0).
    pub fn is_sequence_header(&self) -> bool {
        match (self.tag_type, self.data.first(), self.data.get(1)) {
            (9, Some(&b0), Some(&0)) if b0 & 0x80 == 0 && b0 & 0x0F == 7 => true,
            (9, Some(&b0), _) if b0 & 0x80 != 0 => b0 & 0x0F == 0,
            (8, Some(&b0), Some(&0)) if b0 >> 4 == 10 => true,
            _ => false,
        }
    }
}

/// A parsed FLV file.
#[derive(Debug, Default)]
pub struct FlvFile {
    pub header_has_audio: bool,
    pub header_has_video: bool,
    pub tags: Vec<Tag>,
    /// Bytes after the last complete tag (a cut-off tail).
    pub trailing_bytes: usize,
}

impl FlvFile {
    pub fn video(&self) -> impl Iterator<Item = &Tag> {
        self.tags.iter().filter(|t| t.tag_type == 9)
    }

    pub fn audio(&self) -> impl Iterator<Item = &Tag> {
        self.tags.iter().filter(|t| t.tag_type == 8)
    }

    /// Tags that repeat the previous tag of the same type exactly (same timestamp, same bytes):
    /// a message delivered twice. Returns (tag index, timestamp) of each repeat.
    pub fn repeated_tags(&self) -> Vec<(usize, u32)> {
        let mut last: [Option<&Tag>; 32] = [None; 32];
        let mut out = Vec::new();
        for (i, t) in self.tags.iter().enumerate() {
            let slot = &mut last[usize::from(t.tag_type & 0x1F)];
            if let Some(prev) = slot {
                if prev.timestamp == t.timestamp && prev.data == t.data {
                    out.push((i, t.timestamp));
                }
            }
            *slot = Some(t);
        }
        out
    }

    /// Video tags that are coded frames (not sequence headers).
    pub fn video_frames(&self) -> impl Iterator<Item = &Tag> {
        self.video().filter(|t| !t.is_sequence_header())
    }
}

/// Parses FLV bytes.
pub fn parse(bytes: &[u8]) -> Result<FlvFile, String> {
    if bytes.len() < 13 || &bytes[..3] != b"FLV" {
        return Err(format!(
            "not an FLV file ({} bytes, starts {:02x?})",
            bytes.len(),
            &bytes[..bytes.len().min(16)]
        ));
    }
    let header_len = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) as usize;
    let mut f = FlvFile {
        header_has_audio: bytes[4] & 0x04 != 0,
        header_has_video: bytes[4] & 0x01 != 0,
        ..Default::default()
    };
    // Header, then PreviousTagSize0.
    let mut pos = header_len + 4;
    while pos + 11 <= bytes.len() {
        let h = &bytes[pos..pos + 11];
        let size = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
        let ts = (u32::from(h[7]) << 24)
            | (u32::from(h[4]) << 16)
            | (u32::from(h[5]) << 8)
            | u32::from(h[6]);
        let end = pos + 11 + size;
        if end > bytes.len() {
            break;
        }
        f.tags.push(Tag {
            tag_type: h[0] & 0x1F,
            timestamp: ts,
            data: bytes[pos + 11..end].to_vec(),
        });
        pos = end + 4;
    }
    f.trailing_bytes = bytes.len().saturating_sub(pos);
    Ok(f)
}

/// Reads and parses an FLV file.
pub fn read(path: &std::path::Path) -> Result<FlvFile, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    parse(&bytes)
}
