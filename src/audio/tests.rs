//! Tests for the audio module: round trips through real encoders and
//! decoders, refusals with the right error, an independent decoder
//! (opus-tools) reading our output, and a property test that no input
//! panics. All audio is generated here.

use std::process::Command;

use ebur128::{EbuR128, Mode};
use proptest::prelude::*;

use super::ogg_opus;
use super::*;

// The skip registry the integration tests use too (see its module docs).
#[path = "../../tests/support/skips.rs"]
mod skips;

// ---------------------------------------------------------------- helpers

/// Deterministic pseudo-random numbers (xorshift), so tests need no seed file.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// Something with speech's shape: a voiced source with a gliding pitch and
/// harmonics, syllables at about 4 Hz with short pauses, and a little
/// breath noise; `level` scales the whole.
pub(crate) fn speech_like(rate: u32, seconds: f32, level: f32) -> Vec<f32> {
    speech_like_n(
        rate,
        (f64::from(rate) * f64::from(seconds)).round() as usize,
        level,
    )
}

/// [`speech_like`] with an exact number of samples.
pub(crate) fn speech_like_n(rate: u32, n: usize, level: f32) -> Vec<f32> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut phase = 0f32;
    (0..n)
        .map(|i| {
            let t = i as f32 / rate as f32;
            let pitch = 140.0 + 40.0 * (t * 1.3).sin() + 20.0 * (t * 3.1).sin();
            phase += pitch / rate as f32;
            phase -= phase.floor();
            let mut voiced = 0f32;
            for h in 1..=12 {
                let f = pitch * h as f32;
                if f < rate as f32 / 2.0 - 200.0 {
                    voiced += (std::f32::consts::TAU * phase * h as f32).sin() / h as f32;
                }
            }
            let syllable = (std::f32::consts::PI * t * 4.0).sin().abs();
            let envelope = if (t * 0.7).fract() > 0.85 {
                0.0
            } else {
                syllable * syllable
            };
            level * (0.6 * voiced * envelope + 0.02 * rng.next())
        })
        .collect()
}

fn to_i16(s: f32) -> i16 {
    (s * 32767.0).round().clamp(-32768.0, 32767.0) as i16
}

/// A WAV header for `data_len` bytes, written by hand so any field can lie.
fn wav_header(format: u16, channels: u16, rate: u32, bits: u16, data_len: u32) -> Vec<u8> {
    let block = channels * bits.div_ceil(8);
    let mut h = Vec::new();
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36 + data_len).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&format.to_le_bytes());
    h.extend_from_slice(&channels.to_le_bytes());
    h.extend_from_slice(&rate.to_le_bytes());
    h.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    h.extend_from_slice(&block.to_le_bytes());
    h.extend_from_slice(&bits.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}

/// 16-bit PCM WAV of `channels` channels, each carrying `mono` (the right
/// channel slightly quieter so a downmix is exercised).
fn wav16(rate: u32, channels: u16, mono: &[f32]) -> Vec<u8> {
    let data_len = (mono.len() * 2 * usize::from(channels)) as u32;
    let mut w = wav_header(1, channels, rate, 16, data_len);
    for &s in mono {
        w.extend_from_slice(&to_i16(s).to_le_bytes());
        if channels == 2 {
            w.extend_from_slice(&to_i16(s * 0.8).to_le_bytes());
        }
    }
    w
}

/// The same audio as [`wav16`] in a WAVE_FORMAT_EXTENSIBLE header with the
/// PCM sub-format GUID.
fn wav16_extensible(rate: u32, channels: u16, mono: &[f32]) -> Vec<u8> {
    let plain = wav16(rate, channels, mono);
    let data = &plain[44..];
    let block = 2 * channels;
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(4 + 8 + 40 + 8 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&40u32.to_le_bytes());
    w.extend_from_slice(&0xfffeu16.to_le_bytes());
    w.extend_from_slice(&channels.to_le_bytes());
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    w.extend_from_slice(&block.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes()); // container bits
    w.extend_from_slice(&22u16.to_le_bytes()); // cbSize
    w.extend_from_slice(&16u16.to_le_bytes()); // valid bits
    let mask: u32 = if channels == 2 { 0x3 } else { 0x4 };
    w.extend_from_slice(&mask.to_le_bytes());
    // KSDATAFORMAT_SUBTYPE_PCM 00000001-0000-0010-8000-00aa00389b71
    w.extend_from_slice(&[
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b,
        0x71,
    ]);
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(data);
    w
}

fn loudness(pcm: &Pcm) -> f64 {
    let mut m = EbuR128::new(1, pcm.sample_rate, Mode::I).expect("meter");
    m.add_frames_f32(&pcm.samples).expect("frames");
    m.loudness_global().expect("loudness")
}

fn true_peak_dbtp(pcm: &Pcm) -> f64 {
    let mut m = EbuR128::new(1, pcm.sample_rate, Mode::TRUE_PEAK).expect("meter");
    m.add_frames_f32(&pcm.samples).expect("frames");
    20.0 * m.true_peak(0).expect("peak").log10()
}

fn expected_48k(n: usize, rate: u32) -> usize {
    ((n as u64 * 48_000 + u64::from(rate) / 2) / u64::from(rate)) as usize
}

fn assert_invalid(r: Result<Clip, AudioError>, contains: &str) {
    match r {
        Err(AudioError::Invalid(msg)) => assert!(
            msg.contains(contains),
            "message {msg:?} should mention {contains:?}"
        ),
        Err(other) => panic!("expected Invalid mentioning {contains:?}, got {other:?}"),
        Ok(_) => panic!("expected Invalid mentioning {contains:?}, got a clip"),
    }
}

fn tool(name: &str) -> bool {
    Command::new(name).arg("--version").output().is_ok()
}

/// Checks the OpusHead we wrote: version 1, mono, the encoder's pre-skip.
fn check_head(ogg: &[u8], input_rate: u32) {
    let at = ogg
        .windows(8)
        .position(|w| w == b"OpusHead")
        .expect("OpusHead");
    let h = &ogg[at..at + 19];
    assert_eq!(h[8], 1, "version");
    assert_eq!(h[9], 1, "channels");
    assert_eq!(u16::from_le_bytes([h[10], h[11]]), 312, "pre-skip");
    assert_eq!(u32::from_le_bytes([h[12], h[13], h[14], h[15]]), input_rate);
    assert_eq!(h[18], 0, "mapping family");
    // The last page carries the end-of-stream flag.
    let last = ogg.windows(4).rposition(|w| w == b"OggS").expect("page");
    assert_eq!(ogg[last + 5] & 0x04, 0x04, "EOS flag on the last page");
}

// ---------------------------------------------------------------- content types

#[test]
fn content_types() {
    use AudioKind::*;
    for ct in [
        "audio/wav",
        "AUDIO/X-WAV",
        "audio/wave",
        "audio/vnd.wave; rate=48000",
    ] {
        assert_eq!(AudioKind::from_content_type(ct), Some(Wav), "{ct}");
    }
    for ct in [
        "audio/ogg",
        "audio/ogg; codecs=opus",
        "Audio/Opus",
        " application/ogg ",
    ] {
        assert_eq!(AudioKind::from_content_type(ct), Some(OggOpus), "{ct}");
    }
    for ct in [
        "",
        "audio/mpeg",
        "audio/webm",
        "text/plain",
        "audio/wavx",
        "audio",
    ] {
        assert_eq!(AudioKind::from_content_type(ct), None, "{ct}");
    }
}

// ---------------------------------------------------------------- round trips

fn round_trip(body: &[u8], kind: AudioKind, frames: usize, rate: u32) -> Pcm {
    let clip = ingest(kind, body).expect("ingest");
    assert_eq!(clip.duration_ms, duration_ms(frames as u64, rate));
    assert_eq!(clip.peaks.len(), PEAK_BUCKETS);
    assert_eq!(clip.peaks.iter().max(), Some(&255));
    check_head(&clip.ogg, rate);
    let pcm = decode_ogg_opus(&clip.ogg).expect("decode our own output");
    assert_eq!(pcm.sample_rate, 48_000);
    assert_eq!(
        pcm.samples.len(),
        expected_48k(frames, rate),
        "exact length"
    );
    let l = loudness(&pcm);
    assert!(
        (l - TARGET_LUFS).abs() <= 1.0,
        "loudness {l:.2} LUFS should be within 1 LU of {TARGET_LUFS}"
    );
    assert!(true_peak_dbtp(&pcm) <= TRUE_PEAK_CAP_DBTP);
    pcm
}

#[test]
fn wav_round_trips_at_every_common_rate_mono_and_stereo() {
    for rate in [8_000, 16_000, 44_100, 48_000] {
        for channels in [1, 2] {
            let mono = speech_like(rate, 3.0, 0.1);
            let wav = wav16(rate, channels, &mono);
            round_trip(&wav, AudioKind::Wav, mono.len(), rate);
        }
    }
}

#[test]
fn odd_lengths_keep_their_exact_duration() {
    for (rate, n) in [
        (44_100, 44_101),
        (48_000, 48_007),
        (16_000, 16_001),
        (22_050, 30_001),
    ] {
        let mono = speech_like_n(rate, n, 0.1);
        assert_eq!(mono.len(), n);
        round_trip(&wav16(rate, 1, &mono), AudioKind::Wav, n, rate);
    }
}

#[test]
fn wave_format_extensible_is_accepted() {
    let mono = speech_like(16_000, 2.0, 0.05);
    let wav = wav16_extensible(16_000, 2, &mono);
    round_trip(&wav, AudioKind::Wav, mono.len(), 16_000);
}

#[test]
fn our_ogg_output_is_accepted_as_input() {
    let mono = speech_like(48_000, 2.5, 0.1);
    let clip = ingest(AudioKind::Wav, &wav16(48_000, 1, &mono)).expect("ingest");
    let again = round_trip(&clip.ogg, AudioKind::OggOpus, mono.len(), 48_000);
    assert_eq!(again.samples.len(), mono.len());
    let wav = ogg_to_wav(&clip.ogg).expect("to wav");
    let reader = hound::WavReader::new(std::io::Cursor::new(&wav)).expect("hound reads it");
    assert_eq!(reader.spec().channels, 1);
    assert_eq!(reader.spec().sample_rate, 48_000);
    assert_eq!(reader.duration() as usize, mono.len());
}

#[test]
fn shouted_input_is_turned_down_and_peak_capped() {
    // A clipped square wave at full scale, the worst a toy could be sent.
    let rate = 48_000;
    let square: Vec<f32> = (0..rate * 3)
        .map(|i| if (i / 120) % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    let pcm = round_trip(&wav16(rate, 2, &square), AudioKind::Wav, square.len(), rate);
    let tp = true_peak_dbtp(&pcm);
    assert!(tp <= TRUE_PEAK_CAP_DBTP, "true peak {tp:.2} dBTP");
}

#[test]
fn peaky_speech_is_limited_without_losing_loudness() {
    // Quiet speech with loud clicks: normalising it needs the limiter.
    let rate = 48_000;
    let mut mono = speech_like(rate, 4.0, 0.1);
    for i in (1000..mono.len()).step_by(9_000) {
        mono[i] = 0.9;
        mono[i + 1] = -0.9;
    }
    let pcm = round_trip(&wav16(rate, 1, &mono), AudioKind::Wav, mono.len(), rate);
    let tp = true_peak_dbtp(&pcm);
    assert!(tp <= TRUE_PEAK_CAP_DBTP, "true peak {tp:.2} dBTP");
}

#[test]
fn quiet_input_gain_is_capped_and_silence_stays_silent() {
    let rate = 16_000;
    // About -60 LUFS: the cap allows +20 dB, so about -40 LUFS comes out.
    let quiet = speech_like(rate, 3.0, 0.0015);
    let before = loudness(&Pcm {
        sample_rate: rate,
        samples: quiet.clone(),
    });
    let clip = ingest(AudioKind::Wav, &wav16(rate, 1, &quiet)).expect("ingest");
    let after = loudness(&decode_ogg_opus(&clip.ogg).expect("decode"));
    assert!(
        (after - before - MAX_GAIN_DB).abs() < 1.5,
        "before {before:.1}, after {after:.1}"
    );

    let silence = vec![0.0; rate as usize];
    let clip = ingest(AudioKind::Wav, &wav16(rate, 1, &silence)).expect("silence is audio");
    assert_eq!(clip.duration_ms, 1000);
    assert!(clip.peaks.iter().all(|&p| p == 0));
    let pcm = decode_ogg_opus(&clip.ogg).expect("decode");
    assert!(pcm.samples.iter().all(|s| s.abs() < 1e-3));
}

#[test]
fn tiny_clips_work() {
    for n in [1usize, 7, 320, 961] {
        let mono = speech_like_n(48_000, n, 0.1);
        let clip = ingest(AudioKind::Wav, &wav16(48_000, 1, &mono)).expect("ingest");
        let pcm = decode_ogg_opus(&clip.ogg).expect("decode");
        assert_eq!(pcm.samples.len(), n);
        assert_eq!(clip.peaks.len(), PEAK_BUCKETS);
    }
}

// ---------------------------------------------------------------- refusals

#[test]
fn refusals() {
    let mono = speech_like(16_000, 1.0, 0.1);
    let wav = wav16(16_000, 1, &mono);
    let ogg = ingest(AudioKind::Wav, &wav).expect("ingest").ogg;

    assert_invalid(ingest(AudioKind::Wav, &wav[..wav.len() - 100]), "truncated");
    assert_invalid(ingest(AudioKind::Wav, &wav[..30]), "cut off");
    assert_invalid(
        ingest(AudioKind::OggOpus, &ogg[..ogg.len() / 2]),
        "truncated",
    );
    // Cut exactly at a page boundary: only the missing EOS flag shows it.
    let last_page = ogg.windows(4).rposition(|w| w == b"OggS").expect("page");
    assert_invalid(ingest(AudioKind::OggOpus, &ogg[..last_page]), "truncated");
    assert_invalid(ingest(AudioKind::Wav, b""), "empty");
    assert_invalid(ingest(AudioKind::OggOpus, b""), "empty");

    let mut rng = Rng(42);
    let garbage: Vec<u8> = (0..5000)
        .map(|_| (rng.next() * 127.0) as i8 as u8)
        .collect();
    assert_invalid(ingest(AudioKind::Wav, &garbage), "not a WAV");
    assert_invalid(ingest(AudioKind::OggOpus, &garbage), "not an Ogg");
    assert_invalid(ingest(AudioKind::OggOpus, &wav), "audio/wav");
    assert_invalid(ingest(AudioKind::Wav, &ogg), "audio/ogg");

    // A corrupted byte inside an audio page fails its CRC.
    let mut bad = ogg.clone();
    let len = bad.len();
    bad[len - 10] ^= 0x55;
    assert_invalid(ingest(AudioKind::OggOpus, &bad), "checksum");

    let data = vec![0u8; 16_000];
    let mut w8 = wav_header(1, 1, 16_000, 8, 16_000);
    w8.extend_from_slice(&data);
    assert_invalid(ingest(AudioKind::Wav, &w8), "8-bit");
    let mut w24 = wav_header(1, 1, 16_000, 24, 15_999);
    w24.extend_from_slice(&data[..15_999]);
    assert_invalid(ingest(AudioKind::Wav, &w24), "24-bit");
    let mut wf = wav_header(3, 1, 16_000, 32, 16_000);
    wf.extend_from_slice(&data);
    assert_invalid(ingest(AudioKind::Wav, &wf), "floating-point");
    let mut w96 = wav_header(1, 1, 96_000, 16, 16_000);
    w96.extend_from_slice(&data);
    assert_invalid(ingest(AudioKind::Wav, &w96), "96000 Hz");
    let mut w3 = wav_header(1, 3, 16_000, 16, 15_996);
    w3.extend_from_slice(&data[..15_996]);
    assert_invalid(ingest(AudioKind::Wav, &w3), "3 channels");
    let mut alaw = wav_header(6, 1, 8_000, 8, 8_000);
    alaw.extend_from_slice(&data[..8_000]);
    assert_invalid(ingest(AudioKind::Wav, &alaw), "A-law");
    let empty = wav_header(1, 1, 16_000, 16, 0);
    assert_invalid(ingest(AudioKind::Wav, &empty), "zero samples");
}

#[test]
fn over_two_minutes_is_too_long() {
    // 121 s of real audio.
    let long = vec![0.01f32; 8_000 * 121];
    let wav = wav16(8_000, 1, &long);
    assert!(matches!(
        ingest(AudioKind::Wav, &wav),
        Err(AudioError::TooLong {
            duration_ms: 121_000
        })
    ));
    // A header claiming an hour is refused before reading anything.
    let mut liar = wav_header(1, 2, 48_000, 16, 48_000 * 4 * 3600);
    liar.extend_from_slice(&[0; 1000]);
    assert!(matches!(
        ingest(AudioKind::Wav, &liar),
        Err(AudioError::TooLong { .. })
    ));
    // The same for Ogg Opus, built with our own encoder.
    let ogg = ogg_opus::encode(
        &Pcm {
            sample_rate: 8_000,
            samples: long,
        },
        8_000,
    )
    .expect("encode");
    let err = ingest(AudioKind::OggOpus, &ogg).expect_err("too long");
    assert!(matches!(
        err,
        AudioError::TooLong {
            duration_ms: 121_000
        }
    ));
    assert_eq!(
        err.to_string(),
        "the recording is 121.0 s long; the limit is 120 s, so send a shorter recording"
    );
    // Exactly 120 s is fine.
    let ok = vec![0.01f32; 8_000 * 120];
    assert_eq!(
        ingest(AudioKind::Wav, &wav16(8_000, 1, &ok))
            .expect("120 s")
            .duration_ms,
        120_000
    );
}

// ---------------------------------------------------------------- resampler

/// `seconds` of a sine at `freq` Hz and amplitude `level`, sampled at `rate`.
fn tone(rate: u32, freq: f64, level: f64, seconds: f64) -> Pcm {
    let n = (f64::from(rate) * seconds).round() as usize;
    Pcm {
        sample_rate: rate,
        samples: (0..n)
            .map(|i| {
                (level * (std::f64::consts::TAU * freq * i as f64 / f64::from(rate)).sin()) as f32
            })
            .collect(),
    }
}

/// What a resampled tone is made of, over its middle (the first and last
/// 0.1 s, where the filter meets the clip's edges, left out): the
/// amplitude of its component at `freq`, the power of everything else
/// relative to the whole in dB, its sign changes per second and its RMS.
struct ToneAnalysis {
    amplitude: f64,
    residual_db: f64,
    crossings_per_second: f64,
    rms: f64,
}

fn analyse_tone(pcm: &Pcm, freq: f64) -> ToneAnalysis {
    let rate = f64::from(pcm.sample_rate);
    let edge = pcm.sample_rate as usize / 10;
    // A whole number of periods of `freq`, so sine and cosine are orthogonal.
    let period = rate / freq;
    let periods = ((pcm.samples.len() - 2 * edge) as f64 / period).floor();
    let n = (periods * period).round() as usize;
    let y: Vec<f64> = pcm.samples[edge..edge + n]
        .iter()
        .map(|&s| f64::from(s))
        .collect();
    let w = std::f64::consts::TAU * freq / rate;
    let (mut a, mut b) = (0.0, 0.0);
    for (i, v) in y.iter().enumerate() {
        let t = (edge + i) as f64 * w;
        a += v * t.sin();
        b += v * t.cos();
    }
    a *= 2.0 / n as f64;
    b *= 2.0 / n as f64;
    let (mut total, mut rest) = (0.0, 0.0);
    for (i, v) in y.iter().enumerate() {
        let t = (edge + i) as f64 * w;
        total += v * v;
        rest += (v - a * t.sin() - b * t.cos()).powi(2);
    }
    let crossings = y
        .windows(2)
        .filter(|p| (p[0] < 0.0) != (p[1] < 0.0))
        .count();
    ToneAnalysis {
        amplitude: a.hypot(b),
        residual_db: 10.0 * (rest / total).log10(),
        crossings_per_second: crossings as f64 * rate / n as f64,
        rms: (total / n as f64).sqrt(),
    }
}

#[test]
fn resampling_keeps_a_tones_frequency_and_level_and_adds_nothing() {
    // A browser's 44.1 kHz upload going to 48 kHz (an exact 160/147
    // polyphase filter), and an odd rate that takes the interpolated path.
    for from in [44_100u32, 22_050, 44_101] {
        let input = tone(from, 1000.0, 0.5, 2.0);
        let n = input.samples.len();
        let out = process::to_opus_rate(input).expect("resamples");
        assert_eq!(out.sample_rate, 48_000);
        assert_eq!(out.samples.len(), expected_48k(n, from), "{from} Hz");
        let t = analyse_tone(&out, 1000.0);
        // Frequency: 1 kHz has 2000 sign changes a second.
        assert!(
            (t.crossings_per_second - 2000.0).abs() <= 2.0,
            "{from} Hz: {} sign changes a second",
            t.crossings_per_second
        );
        // Level: amplitude 0.5, RMS 0.5 / sqrt 2, within 0.01 dB.
        let amplitude_db = 20.0 * (t.amplitude / 0.5).log10();
        let rms_db = 20.0 * (t.rms / (0.5 / 2f64.sqrt())).log10();
        assert!(
            amplitude_db.abs() < 0.01 && rms_db.abs() < 0.01,
            "{from} Hz: amplitude {amplitude_db:.3} dB, RMS {rms_db:.3} dB"
        );
        // Purity: everything that is not the 1 kHz tone is at least 90 dB
        // below it (the sinc filter: about -135 dB, the float precision).
        // Picking the nearest input sample instead leaves -28 dB of
        // jitter, straight lines between samples -62 dB from 44.1 kHz and
        // -50 dB from 22.05 kHz.
        assert!(
            t.residual_db < -90.0,
            "{from} Hz: {:.1} dB of distortion",
            t.residual_db
        );
    }
}

#[test]
fn resampling_down_does_not_fold_a_high_tone_into_the_band() {
    // The relay's 16 kHz copy of a 48 kHz clip: a 20 kHz whistle lies
    // above the new 8 kHz Nyquist frequency and must be filtered out;
    // keeping every third sample would fold it to 4 kHz at full level.
    let whistle = tone(48_000, 20_000.0, 0.5, 2.0);
    let out = process::resample(whistle, 16_000).expect("resamples");
    assert_eq!(out.sample_rate, 16_000);
    assert_eq!(out.samples.len(), 32_000);
    let edge = 1_600;
    let middle = &out.samples[edge..out.samples.len() - edge];
    let rms =
        (middle.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / middle.len() as f64).sqrt();
    let below_db = 20.0 * (rms / (0.5 / 2f64.sqrt())).log10();
    // About -140 dB through the filter.
    assert!(
        below_db < -90.0,
        "the whistle comes out at {below_db:.1} dB"
    );
    // While speech's band goes through as it was.
    let voice = tone(48_000, 1000.0, 0.5, 2.0);
    let t = analyse_tone(
        &process::resample(voice, 16_000).expect("resamples"),
        1000.0,
    );
    assert!(
        (t.crossings_per_second - 2000.0).abs() <= 2.0
            && (20.0 * (t.amplitude / 0.5).log10()).abs() < 0.01
            && t.residual_db < -90.0,
        "1 kHz at 16 kHz: {} sign changes a second, amplitude {:.4}, residual {:.1} dB",
        t.crossings_per_second,
        t.amplitude,
        t.residual_db
    );
}

// ---------------------------------------------------------------- independent tools

#[test]
fn opus_tools_accept_our_output() {
    if !tool("opusinfo") || !tool("opusdec") {
        skips::skip(
            "opusinfo and opusdec are not installed",
            "sudo apt install opus-tools",
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for (rate, seconds) in [(44_100u32, 3.5f32), (16_000, 2.0)] {
        let mono = speech_like(rate, seconds, 0.1);
        let clip = ingest(AudioKind::Wav, &wav16(rate, 2, &mono)).expect("ingest");
        let path = dir.path().join(format!("clip{rate}.opus"));
        std::fs::write(&path, &clip.ogg).expect("write");

        let info = Command::new("opusinfo")
            .arg(&path)
            .output()
            .expect("opusinfo");
        let text = String::from_utf8_lossy(&info.stdout).to_string()
            + &String::from_utf8_lossy(&info.stderr);
        assert!(info.status.success(), "{text}");
        assert!(
            !text.contains("WARNING") && !text.contains("ERROR"),
            "{text}"
        );
        let expected = format!("Playback length: 0m:{:06.3}s", seconds);
        assert!(text.contains(&expected), "want {expected:?} in {text}");
        assert!(text.contains("Channels: 1"), "{text}");
        assert!(text.contains("Pre-skip: 312"), "{text}");

        // opusdec honours pre-skip and end trimming: exactly the input length.
        let wav_out = dir.path().join(format!("clip{rate}.wav"));
        let dec = Command::new("opusdec")
            .args(["--quiet", "--rate", "48000"])
            .arg(&path)
            .arg(&wav_out)
            .output()
            .expect("opusdec");
        assert!(
            dec.status.success(),
            "{}",
            String::from_utf8_lossy(&dec.stderr)
        );
        let reader = hound::WavReader::open(&wav_out).expect("opusdec wav");
        assert_eq!(reader.duration() as usize, expected_48k(mono.len(), rate));
    }
}

#[test]
fn opusenc_output_is_accepted() {
    if !tool("opusenc") {
        skips::skip("opusenc is not installed", "sudo apt install opus-tools");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for channels in [1u16, 2] {
        let mono = speech_like(48_000, 2.0, 0.1);
        let wav_path = dir.path().join("in.wav");
        let ogg_path = dir.path().join("in.opus");
        std::fs::write(&wav_path, wav16(48_000, channels, &mono)).expect("write");
        let st = Command::new("opusenc")
            .args(["--quiet", "--bitrate", "32"])
            .arg(&wav_path)
            .arg(&ogg_path)
            .status()
            .expect("opusenc");
        assert!(st.success());
        let ogg = std::fs::read(&ogg_path).expect("read");
        round_trip(&ogg, AudioKind::OggOpus, mono.len(), 48_000);
    }
}

// ---------------------------------------------------------------- never panics

fn small_valid_inputs() -> (Vec<u8>, Vec<u8>) {
    let mono = speech_like(8_000, 0.15, 0.1);
    let wav = wav16(8_000, 2, &mono);
    let ogg = ingest(AudioKind::Wav, &wav).expect("ingest").ogg;
    (wav, ogg)
}

fn mutate(base: &[u8], edits: &[(usize, u8, u8)], cut: Option<usize>) -> Vec<u8> {
    let mut v = base.to_vec();
    for &(pos, val, op) in edits {
        if v.is_empty() {
            break;
        }
        let p = pos % v.len();
        match op % 4 {
            0 => v[p] = val,
            1 => v[p] ^= 1 << (val % 8),
            2 => v.insert(p, val),
            _ => {
                v.remove(p);
            }
        }
    }
    if let Some(c) = cut {
        let c = c % (v.len() + 1);
        v.truncate(c);
    }
    v
}

/// Recomputes every Ogg page checksum, so mutations reach the Opus
/// packets instead of stopping at the CRC check.
fn fix_ogg_crcs(v: &mut [u8]) {
    fn crc(data: &[u8]) -> u32 {
        let mut c = 0u32;
        for &b in data {
            c ^= u32::from(b) << 24;
            for _ in 0..8 {
                c = if c & 0x8000_0000 != 0 {
                    (c << 1) ^ 0x04c1_1db7
                } else {
                    c << 1
                };
            }
        }
        c
    }
    let mut pos = 0;
    while pos + 27 <= v.len() {
        if &v[pos..pos + 4] != b"OggS" {
            pos += 1;
            continue;
        }
        let segs = usize::from(v[pos + 26]);
        if pos + 27 + segs > v.len() {
            return;
        }
        let body: usize = v[pos + 27..pos + 27 + segs]
            .iter()
            .map(|&s| usize::from(s))
            .sum();
        let end = pos + 27 + segs + body;
        if end > v.len() {
            return;
        }
        v[pos + 22..pos + 26].fill(0);
        let c = crc(&v[pos..end]);
        v[pos + 22..pos + 26].copy_from_slice(&c.to_le_bytes());
        pos = end;
    }
}

#[test]
fn crc_fixer_is_right() {
    let (_, mut ogg) = small_valid_inputs();
    let original = ogg.clone();
    fix_ogg_crcs(&mut ogg);
    assert_eq!(ogg, original);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600), prefix in 0u8..3) {
        let mut b = match prefix {
            0 => Vec::new(),
            1 => b"RIFF\x00\x10\x00\x00WAVE".to_vec(),
            _ => b"OggS".to_vec(),
        };
        b.extend_from_slice(&body);
        let _ = ingest(AudioKind::Wav, &b);
        let _ = ingest(AudioKind::OggOpus, &b);
        let _ = decode_ogg_opus(&b);
    }

    #[test]
    fn mutated_wav_never_panics(edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
                                cut in proptest::option::of(any::<usize>())) {
        let (wav, _) = small_valid_inputs();
        let b = mutate(&wav, &edits, cut);
        let _ = ingest(AudioKind::Wav, &b);
        let _ = ingest(AudioKind::OggOpus, &b);
    }

    #[test]
    fn mutated_ogg_never_panics(edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
                                cut in proptest::option::of(any::<usize>())) {
        let (_, ogg) = small_valid_inputs();
        let mut b = mutate(&ogg, &edits, cut);
        let _ = ingest(AudioKind::OggOpus, &b);
        fix_ogg_crcs(&mut b);
        let _ = ingest(AudioKind::OggOpus, &b);
        let _ = ingest(AudioKind::Wav, &b);
        let _ = ogg_to_wav(&b);
    }
}

/// The audio packets (after OpusHead and OpusTags) of an Ogg Opus stream.
fn audio_packets(ogg: &[u8]) -> Vec<Vec<u8>> {
    let mut r = ogg::PacketReader::new(std::io::Cursor::new(ogg));
    let mut v = Vec::new();
    while let Some(p) = r.read_packet().expect("readable") {
        v.push(p.data);
    }
    v.split_off(2)
}

fn peak_dbfs(pcm: &Pcm) -> f64 {
    let peak = pcm.samples.iter().fold(0f32, |m, s| m.max(s.abs()));
    20.0 * f64::from(peak).log10()
}

#[test]
fn recordings_keep_their_opus_packets_and_gain_sets_loudness() {
    let quiet = speech_like(48_000, 3.0, 0.05);
    let ogg = ogg_opus::encode(
        &Pcm {
            sample_rate: 48_000,
            samples: quiet.clone(),
        },
        48_000,
    )
    .expect("encode");
    let before = loudness(&decode_ogg_opus(&ogg).expect("decodes"));
    let clip = ingest_recording(AudioKind::OggOpus, &ogg).expect("a valid recording");
    assert_eq!(
        audio_packets(&clip.ogg),
        audio_packets(&ogg),
        "no re-encoding"
    );
    assert_eq!(clip.duration_ms, 3000);
    let out = decode_ogg_opus(&clip.ogg).expect("decodes");
    assert_eq!(
        out.samples.len(),
        quiet.len(),
        "duration exact to the sample"
    );
    let after = loudness(&out);
    assert!(
        after > before + 3.0,
        "a quiet recording is turned up: {before:.1} -> {after:.1} LUFS"
    );
    let peak = peak_dbfs(&out);
    assert!(
        (after - TARGET_LUFS).abs() <= 1.0
            || (peak - TRUE_PEAK_CAP_DBTP).abs() <= 0.2
            || (after - before - MAX_GAIN_DB).abs() <= 0.5,
        "at the target loudness, or held by the peak cap or the gain cap: {before:.1} -> {after:.1} LUFS, peak {peak:.2} dBFS"
    );
    assert!(peak <= TRUE_PEAK_CAP_DBTP + 0.1, "peak {peak:.2} dBFS");
    if tool("opusinfo") {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rec.opus");
        std::fs::write(&path, &clip.ogg).expect("write");
        let info = Command::new("opusinfo")
            .arg(&path)
            .output()
            .expect("opusinfo");
        let text = String::from_utf8_lossy(&info.stdout).to_string()
            + &String::from_utf8_lossy(&info.stderr);
        assert!(
            info.status.success() && !text.contains("WARNING") && !text.contains("ERROR"),
            "{text}"
        );
    } else {
        skips::skip(
            "the opusinfo check needs opusinfo",
            "sudo apt install opus-tools",
        );
    }
}

#[test]
fn loud_recordings_are_turned_down_without_re_encoding() {
    let loud = speech_like(48_000, 2.0, 0.9);
    let ogg = ogg_opus::encode(
        &Pcm {
            sample_rate: 48_000,
            samples: loud,
        },
        48_000,
    )
    .expect("encode");
    let clip = ingest_recording(AudioKind::OggOpus, &ogg).expect("a valid recording");
    assert_eq!(audio_packets(&clip.ogg), audio_packets(&ogg));
    let out = decode_ogg_opus(&clip.ogg).expect("decodes");
    assert!(peak_dbfs(&out) <= TRUE_PEAK_CAP_DBTP + 0.1);
    assert!(loudness(&out) <= TARGET_LUFS + 1.0);
    // Broken input is still refused, and a WAV still goes the full way.
    assert!(matches!(
        ingest_recording(AudioKind::OggOpus, &ogg[..ogg.len() / 2]),
        Err(AudioError::Invalid(_))
    ));
    let wav = wav16(16_000, 1, &speech_like(16_000, 1.0, 0.1));
    assert_eq!(
        ingest_recording(AudioKind::Wav, &wav)
            .expect("wav")
            .duration_ms,
        1000
    );
}

/// The TOC configurations (RFC 6716 table 2) of a stream's audio packets,
/// read with the `ogg` crate here rather than through the hub's reader.
fn toc_configs(ogg: &[u8]) -> Vec<u8> {
    let mut r = ::ogg::reading::PacketReader::new(std::io::Cursor::new(ogg));
    let mut out = Vec::new();
    while let Some(p) = r.read_packet().expect("ogg") {
        if !p.data.starts_with(b"Opus") {
            out.push(p.data[0] >> 3);
        }
    }
    out
}

#[test]
fn wideband_recordings_are_measured_at_16_khz_with_the_same_result() {
    // A toy's speech encoded at 16 kHz: every packet codes at most
    // wideband (configs 8-11 SILK, 20-23 CELT, or narrower).
    let speech = speech_like(16_000, 4.0, 0.05);
    let ogg = ogg_opus::encode(
        &Pcm {
            sample_rate: 16_000,
            samples: speech,
        },
        16_000,
    )
    .expect("encode");
    let configs = toc_configs(&ogg);
    assert!(
        configs.iter().all(|c| matches!(c, 0..=11 | 16..=23)),
        "{configs:?}"
    );
    assert_eq!(ogg_opus::measure_rate(&ogg), 16_000);
    let clip = ingest_recording(AudioKind::OggOpus, &ogg).expect("a valid recording");
    assert_eq!(clip.duration_ms, 4000, "duration from the 48 kHz granules");
    let out = decode_ogg_opus(&clip.ogg).expect("decodes");
    assert_eq!(out.samples.len(), 4 * 48_000);
    let after = loudness(&out);
    let peak = peak_dbfs(&out);
    assert!(
        (after - TARGET_LUFS).abs() <= 1.0 || (peak - TRUE_PEAK_CAP_DBTP).abs() <= 0.3,
        "measured at 16 kHz, right at 48 kHz: {after:.2} LUFS, peak {peak:.2} dBFS"
    );
    assert!(peak <= TRUE_PEAK_CAP_DBTP + 0.1, "peak {peak:.2} dBFS");
}

#[test]
fn a_band_above_8_khz_is_measured_at_48_khz_and_stays_under_the_peak_cap() {
    // Quiet speech with a loud 12 kHz whistle: measured at 16 kHz the
    // whistle would vanish, the clip would be turned up by 20 dB and the
    // whistle would clip. Fullband packets make the hub measure at 48 kHz.
    let rate = 48_000;
    let speech = speech_like(rate, 3.0, 0.02);
    let samples: Vec<f32> = speech
        .iter()
        .enumerate()
        .map(|(i, s)| s + 0.5 * (std::f32::consts::TAU * 12_000.0 * i as f32 / rate as f32).sin())
        .collect();
    let ogg = ogg_opus::encode(
        &Pcm {
            sample_rate: rate,
            samples,
        },
        rate,
    )
    .expect("encode");
    assert!(
        toc_configs(&ogg)
            .iter()
            .any(|c| matches!(c, 12..=15 | 24..=31)),
        "the encoder codes the whistle's band"
    );
    assert_eq!(ogg_opus::measure_rate(&ogg), 48_000);
    let clip = ingest_recording(AudioKind::OggOpus, &ogg).expect("a valid recording");
    let out = decode_ogg_opus(&clip.ogg).expect("decodes");
    let peak = peak_dbfs(&out);
    assert!(peak <= TRUE_PEAK_CAP_DBTP + 0.1, "peak {peak:.2} dBFS");
}
