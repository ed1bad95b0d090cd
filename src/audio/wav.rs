//! WAV in and out: 16-bit PCM RIFF WAVE, mono or stereo, 8 to 48 kHz.
//!
//! `hound` parses and checks the header (plain `WAVE_FORMAT_PCM` and
//! `WAVE_FORMAT_EXTENSIBLE` with the PCM sub-format); the sample data is
//! then read straight from the body slice, which is several times faster
//! than hound's per-sample reader and needs no intermediate buffer.

use std::io::Cursor;

use super::{AudioError, Pcm, duration_ms, too_long};

/// Lowest and highest sample rates accepted, in Hz.
const MIN_RATE: u32 = 8_000;
const MAX_RATE: u32 = 48_000;

const SEND: &str = "send 16-bit PCM WAV, mono or stereo, 8 to 48 kHz";

/// Parses and validates a WAV body and returns its audio downmixed to mono.
pub(crate) fn decode_wav(body: &[u8]) -> Result<Pcm, AudioError> {
    if body.starts_with(b"OggS") {
        return Err(AudioError::invalid(
            "the body is an Ogg file but was declared as WAV; send it with Content-Type audio/ogg",
        ));
    }
    if !(body.len() >= 12 && &body[..4] == b"RIFF" && &body[8..12] == b"WAVE") {
        return Err(AudioError::invalid(format!(
            "the body is not a WAV file (it does not start with a RIFF/WAVE header); {SEND}"
        )));
    }
    let mut cursor = Cursor::new(body);
    let (spec, values) = {
        let reader = hound::WavReader::new(&mut cursor).map_err(|e| hound_error(e, body))?;
        (reader.spec(), u64::from(reader.len()))
    };
    let data_start = usize::try_from(cursor.position()).unwrap_or(usize::MAX);

    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, 16) => {}
        (hound::SampleFormat::Int, bits) => {
            return Err(AudioError::invalid(format!(
                "the WAV uses {bits}-bit samples; send 16-bit PCM"
            )));
        }
        (hound::SampleFormat::Float, bits) => {
            return Err(AudioError::invalid(format!(
                "the WAV uses {bits}-bit floating-point samples; send 16-bit PCM"
            )));
        }
    }
    let channels = spec.channels;
    if !(1..=2).contains(&channels) {
        return Err(AudioError::invalid(format!(
            "the WAV has {channels} channels; send mono or stereo"
        )));
    }
    // 16 valid bits in a wider container is possible with EXTENSIBLE.
    let block_align = fmt_block_align(body).unwrap_or(0);
    if usize::from(block_align) != 2 * usize::from(channels) {
        return Err(AudioError::invalid(format!(
            "the WAV stores its 16-bit samples in {}-byte containers; {SEND}",
            usize::from(block_align) / usize::from(channels.max(1))
        )));
    }
    let rate = spec.sample_rate;
    if !(MIN_RATE..=MAX_RATE).contains(&rate) {
        return Err(AudioError::invalid(format!(
            "the WAV is sampled at {rate} Hz; send 8000 to 48000 Hz"
        )));
    }

    let frames = values / u64::from(channels);
    // The header is checked before any sample is touched, so an enormous
    // claim costs nothing.
    if too_long(frames, rate) {
        return Err(AudioError::TooLong {
            duration_ms: duration_ms(frames, rate),
        });
    }
    let data_len = values * 2;
    let present = (body.len() - data_start.min(body.len())) as u64;
    if data_len > present {
        return Err(AudioError::invalid(format!(
            "the WAV is truncated: its header announces {data_len} bytes of audio but only {present} follow; send the complete file"
        )));
    }
    if frames == 0 {
        return Err(AudioError::invalid(
            "the WAV contains no audio (zero samples); send a recording with sound in it",
        ));
    }
    // Both bounds were checked above, so this slice is in range.
    let data = body
        .get(data_start..data_start + data_len as usize)
        .unwrap_or(&[]);

    const SCALE: f32 = 1.0 / 32768.0;
    let samples: Vec<f32> = if channels == 1 {
        data.chunks_exact(2)
            .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) * SCALE)
            .collect()
    } else {
        data.chunks_exact(4)
            .map(|b| {
                let l = i32::from(i16::from_le_bytes([b[0], b[1]]));
                let r = i32::from(i16::from_le_bytes([b[2], b[3]]));
                (l + r) as f32 * (0.5 * SCALE)
            })
            .collect()
    };
    Ok(Pcm {
        sample_rate: rate,
        samples,
    })
}

/// The `nBlockAlign` of the first `fmt ` chunk, found by walking the RIFF
/// chunks (hound does not expose it).
fn fmt_block_align(body: &[u8]) -> Option<u16> {
    let fmt = find_chunk(body, b"fmt ")?;
    Some(u16::from_le_bytes([*fmt.get(12)?, *fmt.get(13)?]))
}

/// The body of the first RIFF chunk named `id` (possibly cut short).
fn find_chunk<'a>(body: &'a [u8], id: &[u8; 4]) -> Option<&'a [u8]> {
    let mut pos = 12usize;
    while let Some(header) = body.get(pos..pos + 8) {
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let start = pos + 8;
        if &header[..4] == id {
            let end = start.saturating_add(len).min(body.len());
            return body.get(start..end);
        }
        pos = start.checked_add(len)?.checked_add(len & 1)?;
    }
    None
}

/// Turns hound's terse errors into sentences a person can act on.
fn hound_error(e: hound::Error, body: &[u8]) -> AudioError {
    match e {
        hound::Error::Unsupported => {
            let tag = find_chunk(body, b"fmt ")
                .and_then(|f| Some(u16::from_le_bytes([*f.first()?, *f.get(1)?])));
            let what = match tag {
                Some(0x0002) => "Microsoft ADPCM compression".to_string(),
                Some(0x0006) => "A-law compression".to_string(),
                Some(0x0007) => "µ-law compression".to_string(),
                Some(0x0011) => "IMA ADPCM compression".to_string(),
                Some(0x0055) => "MP3 compression".to_string(),
                Some(0xfffe) => "an extensible format whose sub-format is not PCM".to_string(),
                Some(t) => format!("the unsupported format tag 0x{t:04x}"),
                None => "an unsupported format".to_string(),
            };
            AudioError::invalid(format!("the WAV uses {what}; {SEND}"))
        }
        hound::Error::IoError(_) => AudioError::invalid(format!(
            "the WAV header is cut off or has no data chunk; {SEND}"
        )),
        hound::Error::FormatError("bits per sample is not 32") => AudioError::invalid(
            "the WAV uses 64-bit floating-point samples; send 16-bit PCM".to_string(),
        ),
        hound::Error::FormatError(msg) => {
            AudioError::invalid(format!("the WAV header is malformed ({msg}); {SEND}"))
        }
        other => AudioError::invalid(format!("the WAV could not be read ({other}); {SEND}")),
    }
}

/// Mono PCM -> 16-bit WAV bytes (used by tests and the reference toy).
pub fn encode_wav(pcm: &Pcm) -> Vec<u8> {
    let data_len = pcm.samples.len().saturating_mul(2);
    let data_len32 = u32::try_from(data_len).unwrap_or(u32::MAX - 36);
    let mut out = Vec::with_capacity(44 + data_len);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&data_len32.saturating_add(36).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&pcm.sample_rate.to_le_bytes());
    out.extend_from_slice(&pcm.sample_rate.saturating_mul(2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len32.to_le_bytes());
    for &s in pcm.samples.iter().take(data_len32 as usize / 2) {
        // `as` saturates, and NaN becomes 0.
        let v = (s * 32767.0).round() as i16;
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}
