//! Entry points for the fuzz targets in `fuzz/` and for the regression
//! test that replays their corpora and findings under `cargo test`: each
//! takes arbitrary bytes, runs one parser the way the hub runs it on
//! outside input, and must never panic (errors are expected).

use crate::audio::{self, AudioKind};
use crate::auth::password;
use crate::domain::{DisplayName, Hex32, PairingCode, ToyId, Username};

/// The WAV path of an upload.
pub fn wav(data: &[u8]) {
    let _ = audio::ingest_recording(AudioKind::Wav, data);
}

/// The Ogg Opus paths: a recording kept as sent, and the decoder alone.
pub fn ogg_opus(data: &[u8]) {
    let _ = audio::ingest_recording(AudioKind::OggOpus, data);
    let _ = audio::decode_ogg_opus(data);
}

/// The CSR check, on the bytes as PEM text and as DER in a PEM wrapper.
pub fn csr(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::pki::check_csr(text);
    }
    let b64 = base64_encode(data);
    let pem =
        format!("-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n");
    let _ = crate::pki::check_csr(&pem);
}

/// The TXT parsers, on `data` read as TXT rdata: length-prefixed strings.
pub fn mdns_txt(data: &[u8]) {
    let mut entries = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        entries.push(tail[..n].to_vec());
        rest = &tail[n..];
    }
    let _ = crate::discovery::parse_toy_txt(&entries);
    let _ = crate::discovery::parse_hub_txt(&entries);
}

/// The public JSON bodies: a pairing request checked in full, and the
/// string fields of sign-in, setup and reveal bodies through their parsers.
pub fn json_bodies(data: &[u8]) {
    // What `POST /toy/v1/pair` does before it looks at the registry.
    if let Ok(request) = serde_json::from_slice::<crate::toys::PairingRequest>(data) {
        let _ = crate::toys::check_pairing_request(request);
    }
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(data)
    else {
        return;
    };
    let field = |k: &str| map.get(k).and_then(|v| v.as_str()).unwrap_or("");
    let _ = Username::parse(field("username"));
    let _ = DisplayName::parse(field("household"));
    let _ = ToyId::parse(field("toy_id"));
    let _ = Hex32::parse("toy_nonce", field("toy_nonce"));
    let _ = PairingCode::parse(field("code"));
    let _ = password::check_rule(field("password"), field("username"), field("household"));
}

fn base64_encode(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
