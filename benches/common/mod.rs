//! Shared by the benchmarks: a deterministic speech-like test signal, so
//! every figure in BENCHMARKS.md is measured on the same kind of audio.

/// Deterministic speech-like signal: gliding pitch with harmonics,
/// syllables at about 4 Hz, pauses and a little noise.
pub fn speech_like(rate: u32, n: usize) -> Vec<f32> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut phase = 0f32;
    (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            let t = i as f32 / rate as f32;
            let pitch = 140.0 + 40.0 * (t * 1.3).sin() + 20.0 * (t * 3.1).sin();
            phase += pitch / rate as f32;
            phase -= phase.floor();
            let mut voiced = 0f32;
            for h in 1..=12 {
                voiced += (std::f32::consts::TAU * phase * h as f32).sin() / h as f32;
            }
            let syllable = (std::f32::consts::PI * t * 4.0).sin().abs();
            let envelope = if (t * 0.7).fract() > 0.85 {
                0.0
            } else {
                syllable * syllable
            };
            0.1 * (0.6 * voiced * envelope + 0.02 * noise)
        })
        .collect()
}
