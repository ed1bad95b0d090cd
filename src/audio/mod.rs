//! Placeholder until the audio branch lands.

/// Longest clip.
pub const MAX_DURATION_MS: u64 = 120_000;

/// Input kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioKind {
    /// WAV.
    Wav,
    /// Ogg Opus.
    OggOpus,
}

impl AudioKind {
    /// From a content type.
    pub fn from_content_type(ct: &str) -> Option<AudioKind> {
        let base = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match base.as_str() {
            "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => Some(Self::Wav),
            "audio/ogg" | "audio/opus" | "application/ogg" => Some(Self::OggOpus),
            _ => None,
        }
    }
}

/// Error.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// Too long.
    #[error("too long: {duration_ms} ms")]
    TooLong {
        /// Length.
        duration_ms: u64,
    },
    /// Invalid.
    #[error("{0}")]
    Invalid(String),
}

/// Pcm.
#[derive(Debug, Clone)]
pub struct Pcm {
    /// Rate.
    pub sample_rate: u32,
    /// Samples.
    pub samples: Vec<f32>,
}

/// Clip.
#[derive(Debug, Clone)]
pub struct Clip {
    /// Ogg.
    pub ogg: Vec<u8>,
    /// Length.
    pub duration_ms: u64,
    /// Peaks.
    pub peaks: Vec<u8>,
}

/// Ingest.
pub fn ingest(_kind: AudioKind, body: &[u8]) -> Result<Clip, AudioError> {
    if body.len() < 44 {
        return Err(AudioError::Invalid("too short".into()));
    }
    Ok(Clip {
        ogg: body.to_vec(),
        duration_ms: 1000,
        peaks: vec![0; 48],
    })
}

/// Decode.
pub fn decode_ogg_opus(_ogg: &[u8]) -> Result<Pcm, AudioError> {
    Err(AudioError::Invalid("stub".into()))
}

/// To WAV.
pub fn ogg_to_wav(ogg: &[u8]) -> Result<Vec<u8>, AudioError> {
    Ok(ogg.to_vec())
}

/// Encode WAV.
pub fn encode_wav(_pcm: &Pcm) -> Vec<u8> {
    Vec::new()
}
