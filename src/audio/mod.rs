//! Audio: WAV and Ogg Opus in, Ogg Opus out.
//!
//! Everything a recording goes through between the HTTP body and the
//! database lives here: validation of what was uploaded (every byte and
//! every Opus packet is checked, nothing is trusted from headers alone),
//! downmix to mono, resampling, loudness safety and encoding to an RFC 7845
//! Ogg Opus stream, plus the small waveform drawn on the parents' pages.
//!
//! **Architecture Invariant:** this module does no I/O (no files, no
//! network, no clock) and never panics on any input; every failure is an
//! [`AudioError`] whose text a person can act on. Callers run it off the
//! async threads because encoding is CPU-bound.
//!
//! Loudness policy (see [`process`]): integrated loudness is normalised to
//! [`TARGET_LUFS`] (-18 LUFS, EBU R128 / ITU-R BS.1770 measurement), the
//! gain applied is capped at [`MAX_GAIN_DB`] (+20 dB) so room noise or a
//! near-silent recording is never pumped up to full scale, and a look-ahead
//! limiter holds sample peaks at [`LIMITER_CEILING_DBFS`] (-3 dBFS), which
//! leaves 2 dB for inter-sample peaks and codec overshoot below the
//! [`TRUE_PEAK_CAP_DBTP`] (-1 dBTP) cap that the tests check on decoded
//! output.

mod ogg_opus;
mod process;
mod wav;

#[cfg(test)]
mod tests;

pub use ogg_opus::{OPUS_BITRATE, OPUS_COMPLEXITY, decode_ogg_opus};
pub use wav::encode_wav;

/// The longest recording accepted, in milliseconds.
pub const MAX_DURATION_MS: u64 = 120_000;

/// Integrated loudness every stored clip is normalised to, in LUFS.
pub const TARGET_LUFS: f64 = -18.0;

/// The most a clip is ever amplified, in dB: a whisper recorded at -38 LUFS
/// reaches the target, anything quieter (mostly noise floor) stays quieter.
pub const MAX_GAIN_DB: f64 = 20.0;

/// Sample-peak ceiling of the limiter, in dBFS.
pub const LIMITER_CEILING_DBFS: f64 = -3.0;

/// True-peak cap of the decoded output, in dBTP.
pub const TRUE_PEAK_CAP_DBTP: f64 = -1.0;

/// Number of values in [`Clip::peaks`].
pub const PEAK_BUCKETS: usize = 48;

/// The two kinds of upload the hub understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioKind {
    /// RIFF WAVE, 16-bit PCM.
    Wav,
    /// Ogg Opus (RFC 7845).
    OggOpus,
}

impl AudioKind {
    /// audio/wav, audio/x-wav, audio/wave, audio/vnd.wave -> Wav; audio/ogg, audio/opus, application/ogg -> OggOpus.
    /// Case-insensitive; parameters like "; codecs=opus" ignored; anything else None (the caller answers 415).
    pub fn from_content_type(ct: &str) -> Option<AudioKind> {
        let essence = ct.split(';').next().unwrap_or("").trim();
        const WAV: [&str; 4] = ["audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"];
        const OGG: [&str; 3] = ["audio/ogg", "audio/opus", "application/ogg"];
        if WAV.iter().any(|m| m.eq_ignore_ascii_case(essence)) {
            Some(AudioKind::Wav)
        } else if OGG.iter().any(|m| m.eq_ignore_ascii_case(essence)) {
            Some(AudioKind::OggOpus)
        } else {
            None
        }
    }
}

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// More than MAX_DURATION_MS of audio (caller answers 413).
    #[error(
        "the recording is {} s long; the limit is {} s, so send a shorter recording",
        fmt_seconds(*duration_ms),
        MAX_DURATION_MS / 1000
    )]
    TooLong {
        /// The duration found (or claimed by the header), in milliseconds.
        duration_ms: u64,
    },
    /// Not valid audio of the declared kind; the String says precisely what is wrong and what to send instead (caller answers 422).
    #[error("{0}")]
    Invalid(String),
}

fn fmt_seconds(ms: u64) -> String {
    format!("{}.{}", ms / 1000, (ms % 1000) / 100)
}

impl AudioError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        AudioError::Invalid(msg.into())
    }
}

/// Mono PCM, samples in -1.0..=1.0.
#[derive(Debug, Clone)]
pub struct Pcm {
    /// Samples per second.
    pub sample_rate: u32,
    /// The samples, one per tick.
    pub samples: Vec<f32>,
}

/// A stored clip.
#[derive(Debug, Clone)]
pub struct Clip {
    /// The Ogg Opus stream (RFC 7845, mono).
    pub ogg: Vec<u8>,
    /// Exact duration of the audio, rounded to the millisecond.
    pub duration_ms: u64,
    /// [`PEAK_BUCKETS`] values 0..=255 for drawing a waveform: the largest
    /// absolute amplitude per bucket, scaled so the loudest bucket is 255.
    pub peaks: Vec<u8>,
}

/// Decode + validate + downmix to mono + resample + loudness-normalize + encode to Ogg Opus.
pub fn ingest(kind: AudioKind, body: &[u8]) -> Result<Clip, AudioError> {
    if body.is_empty() {
        return Err(AudioError::invalid(
            "the body is empty; send a WAV (16-bit PCM) or Ogg Opus recording",
        ));
    }
    let (pcm, input_rate) = match kind {
        AudioKind::Wav => {
            let pcm = wav::decode_wav(body)?;
            let rate = pcm.sample_rate;
            (pcm, rate)
        }
        AudioKind::OggOpus => {
            let (pcm, head) = ogg_opus::decode(body)?;
            (pcm, head.input_sample_rate)
        }
    };
    ingest_pcm(pcm, input_rate)
}

/// For children's recordings from toys: a mono Ogg Opus upload that
/// decodes cleanly is kept as sent (no re-encoding, which costs a Pi about
/// 150 ms of CPU per 10 s clip and a generation of quality); its loudness is
/// brought towards [`TARGET_LUFS`] through the OpusHead output gain, which
/// every decoder applies, limited so the loudest sample stays at or below
/// [`TRUE_PEAK_CAP_DBTP`] and the boost at [`MAX_GAIN_DB`]. WAV and stereo
/// Ogg go through [`ingest`].
pub fn ingest_recording(kind: AudioKind, body: &[u8]) -> Result<Clip, AudioError> {
    if kind == AudioKind::Wav || body.is_empty() {
        return ingest(kind, body);
    }
    // Every packet is decoded. When every packet codes at most wideband
    // (audio up to 8 kHz, as a toy's speech usually is), at 16 kHz: the
    // same audio for a third of the work of a 48 kHz decode for libopus,
    // the loudness meter and the peak scan (BENCHMARKS.md (d)). Anything
    // wider is measured at 48 kHz, so no band escapes the peak cap.
    let rate = ogg_opus::measure_rate(body);
    let (pcm, head, frames_48k) = ogg_opus::decode_at(body, rate)?;
    if head.channels != 1 {
        let (pcm, head) = ogg_opus::decode(body)?;
        return ingest_pcm(pcm, head.input_sample_rate);
    }
    let duration_ms = duration_ms(frames_48k, 48_000);
    if too_long(frames_48k, 48_000) {
        return Err(AudioError::TooLong { duration_ms });
    }
    let loudness = process::integrated_loudness(&pcm)?;
    let peak = pcm.samples.iter().fold(0f32, |m, s| m.max(s.abs()));
    let mut gain_db = if loudness.is_finite() && loudness > -70.0 {
        (TARGET_LUFS - loudness).min(MAX_GAIN_DB)
    } else {
        0.0
    };
    if peak > 0.0 {
        gain_db = gain_db.min(TRUE_PEAK_CAP_DBTP - 20.0 * f64::from(peak).log10());
    }
    let total = f64::from(head.output_gain) + gain_db * 256.0;
    let gain_q78 = total
        .round()
        .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16;
    let ogg = ogg_opus::remux_with_gain(body, gain_q78)?;
    Ok(Clip {
        ogg,
        duration_ms,
        peaks: process::peaks(&pcm.samples),
    })
}

/// Everything after decoding: duration, resampling, loudness, peaks and
/// encoding. `input_rate` only goes into the OpusHead, for information.
pub(crate) fn ingest_pcm(pcm: Pcm, input_rate: u32) -> Result<Clip, AudioError> {
    let duration_ms = duration_ms(pcm.samples.len() as u64, pcm.sample_rate);
    if pcm.samples.is_empty() {
        return Err(AudioError::invalid(
            "the recording contains no audio (zero samples); send a recording with sound in it",
        ));
    }
    if too_long(pcm.samples.len() as u64, pcm.sample_rate) {
        return Err(AudioError::TooLong { duration_ms });
    }
    let mut pcm = process::to_opus_rate(pcm)?;
    process::normalize_loudness(&mut pcm)?;
    let peaks = process::peaks(&pcm.samples);
    let ogg = ogg_opus::encode(&pcm, input_rate)?;
    Ok(Clip {
        ogg,
        duration_ms,
        peaks,
    })
}

/// Encoding alone (resampling if needed, no loudness processing), for the
/// benchmark that compares our encoder with `opusenc`. Not part of the API.
#[doc(hidden)]
pub fn encode_only(pcm: &Pcm) -> Result<Vec<u8>, AudioError> {
    if process::OPUS_RATES.contains(&pcm.sample_rate) {
        ogg_opus::encode(pcm, pcm.sample_rate)
    } else {
        ogg_opus::encode(&process::to_opus_rate(pcm.clone())?, pcm.sample_rate)
    }
}

/// Stored Ogg Opus -> 16-bit PCM mono WAV bytes (for browsers that cannot play Ogg).
pub fn ogg_to_wav(ogg: &[u8]) -> Result<Vec<u8>, AudioError> {
    let pcm = decode_ogg_opus(ogg)?;
    Ok(encode_wav(&pcm))
}

/// Stored Ogg Opus -> 16-bit PCM mono WAV at 16 kHz: the relay's WAV copy
/// (RELAY.md section 1), a third of the size of a 48 kHz one.
pub fn ogg_to_wav_16k(ogg: &[u8]) -> Result<Vec<u8>, AudioError> {
    let pcm = process::resample(decode_ogg_opus(ogg)?, 16_000)?;
    Ok(encode_wav(&pcm))
}

/// `frames` at `rate`, in milliseconds, rounded to nearest.
fn duration_ms(frames: u64, rate: u32) -> u64 {
    if rate == 0 {
        return 0;
    }
    let rate = u128::from(rate);
    let ms = (u128::from(frames) * 1000 + rate / 2) / rate;
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// Whether `frames` at `rate` is more than [`MAX_DURATION_MS`].
fn too_long(frames: u64, rate: u32) -> bool {
    u128::from(frames) * 1000 > u128::from(MAX_DURATION_MS) * u128::from(rate)
}
