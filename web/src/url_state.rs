//! The scenario in the page's URL: `#s=<base64url of the scenario's compact JSON>`, so a link
//! reproduces a view. Pure (no DOM), so it is tested natively and in the browser alike.
//!
//! The JSON is `serde_json::to_string` of [`Scenario`]: the same fields `rtmp-lab simulate
//! --scenario x.json` reads, so a decoded fragment can be pasted into a file as is.

use sim_core::scenario::{Scenario, ScenarioError};

/// The key of the fragment parameter that holds the scenario.
pub const FRAGMENT_KEY: &str = "s";

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url without padding (RFC 4648 §5): safe in a URL fragment without escaping.
pub fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        let chars = chunk.len() + 1; // 1 byte → 2 chars, 2 → 3, 3 → 4
        for i in 0..chars {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Decodes base64url with or without padding; also accepts the standard alphabet's `+` and `/`
/// (a link that went through a tool that "fixed" it). `None` on any other character.
pub fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        } as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A single leftover character (6 bits) cannot come from any byte string.
    if bits >= 6 {
        return None;
    }
    Some(out)
}

/// The fragment (without `#`) that encodes `s`.
pub fn encode_fragment(s: &Scenario) -> String {
    let json = serde_json::to_string(s).unwrap_or_default();
    format!("{FRAGMENT_KEY}={}", base64url_encode(json.as_bytes()))
}

/// Why a fragment did not give a scenario.
#[derive(Debug)]
pub enum FragmentError {
    /// The fragment has no `s=` parameter (not an error for the page: use the default).
    Missing,
    /// `s=` is not base64url or not UTF-8.
    Encoding,
    /// The JSON does not parse or does not validate.
    Scenario(ScenarioError),
}

impl core::fmt::Display for FragmentError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FragmentError::Missing => write!(f, "the link holds no scenario"),
            FragmentError::Encoding => {
                write!(
                    f,
                    "the scenario in the link is damaged (not base64url text)"
                )
            }
            FragmentError::Scenario(e) => write!(f, "the scenario in the link: {e}"),
        }
    }
}

/// Parses a fragment such as `#s=eyJ...` or `s=eyJ...&x=1` (the leading `#` is optional).
pub fn decode_fragment(fragment: &str) -> Result<Scenario, FragmentError> {
    let fragment = fragment.strip_prefix('#').unwrap_or(fragment);
    let value = fragment
        .split('&')
        .find_map(|kv| kv.strip_prefix(FRAGMENT_KEY)?.strip_prefix('='))
        .ok_or(FragmentError::Missing)?;
    let bytes = base64url_decode(value).ok_or(FragmentError::Encoding)?;
    let json = String::from_utf8(bytes).map_err(|_| FragmentError::Encoding)?;
    Scenario::from_json(&json).map_err(FragmentError::Scenario)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        // RFC 4648 §10, without padding.
        let cases = [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, enc) in cases {
            assert_eq!(base64url_encode(plain.as_bytes()), enc);
            assert_eq!(base64url_decode(enc).unwrap(), plain.as_bytes());
        }
        assert_eq!(base64url_encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url_decode("-_8=").unwrap(), vec![0xfb, 0xff]);
        assert!(base64url_decode("a").is_none());
        assert!(base64url_decode("ab$d").is_none());
    }
}
