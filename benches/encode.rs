//! Benchmark (a): WAV -> Ogg Opus with `hearth::audio::ingest` against
//! `opusenc` from opus-tools on the same file, at the same bitrate and
//! complexity. Run with `cargo bench --bench encode`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::speech_like;

use hearth::audio::{self, AudioKind, OPUS_BITRATE, OPUS_COMPLEXITY, Pcm};

const RATE: u32 = 48_000;
const SECONDS: usize = 60;
const RUNS: usize = 7;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn stats(name: &str, v: &[Duration]) -> f64 {
    let min = v.iter().min().copied().unwrap_or_default();
    let med = median(v.to_vec());
    println!(
        "{name:<52} median {:>7.1} ms   min {:>7.1} ms",
        ms(med),
        ms(min)
    );
    ms(med)
}

fn timed<F: FnOnce()>(f: F) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn opusenc(input: &PathBuf, output: &PathBuf) -> bool {
    Command::new("opusenc")
        .args(["--quiet", "--bitrate"])
        .arg(format!("{}", OPUS_BITRATE / 1000))
        .args(["--comp", &OPUS_COMPLEXITY.to_string()])
        .arg(input)
        .arg(output)
        .status()
        .is_ok_and(|s| s.success())
}

fn main() {
    let pcm = Pcm {
        sample_rate: RATE,
        samples: speech_like(RATE, RATE as usize * SECONDS),
    };
    let wav = audio::encode_wav(&pcm);
    // The same audio at the level ingest encodes it (-18 LUFS; the limiter
    // does not engage on this signal), so opusenc can also be timed on
    // exactly what our encoder sees: libopus works harder on louder input.
    let mut meter = ebur128::EbuR128::new(1, RATE, ebur128::Mode::I).expect("meter");
    meter.add_frames_f32(&pcm.samples).expect("frames");
    let lufs = meter.loudness_global().expect("loudness");
    let gain = 10f64.powf((audio::TARGET_LUFS - lufs) / 20.0) as f32;
    let loud = Pcm {
        sample_rate: RATE,
        samples: pcm.samples.iter().map(|s| s * gain).collect(),
    };
    let dir: PathBuf = std::env::temp_dir().join(format!("hearth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let wav_path = dir.join("speech.wav");
    let loud_path = dir.join("speech-normalised.wav");
    let out_path = dir.join("speech.opus");
    std::fs::write(&wav_path, &wav).expect("write wav");
    std::fs::write(&loud_path, audio::encode_wav(&loud)).expect("write wav");
    let have_opusenc = opusenc(&wav_path, &out_path);

    println!(
        "input: {SECONDS} s speech-like, {RATE} Hz mono 16-bit WAV ({} bytes, {lufs:.1} LUFS)",
        wav.len()
    );
    println!(
        "settings: {} kb/s VBR, complexity {OPUS_COMPLEXITY}, 20 ms frames; {RUNS} interleaved runs after one warm-up",
        OPUS_BITRATE / 1000
    );
    let mut ours_bytes = 0;
    let _ = audio::ingest(AudioKind::Wav, &wav).expect("ingest");
    let (mut ingest_t, mut encode_t, mut enc_t, mut enc_loud_t) = (vec![], vec![], vec![], vec![]);
    for _ in 0..RUNS {
        ingest_t.push(timed(|| {
            ours_bytes = audio::ingest(AudioKind::Wav, &wav)
                .expect("ingest")
                .ogg
                .len();
        }));
        encode_t.push(timed(|| {
            audio::encode_only(&loud).expect("encode");
        }));
        if have_opusenc {
            enc_t.push(timed(|| {
                opusenc(&wav_path, &out_path);
            }));
            enc_loud_t.push(timed(|| {
                opusenc(&loud_path, &out_path);
            }));
        }
    }
    let ingest_ms = stats("hearth ingest (WAV parse+loudness+encode+Ogg)", &ingest_t);
    let encode_ms = stats("hearth encode only (normalised PCM -> Ogg)", &encode_t);
    println!("hearth output: {ours_bytes} bytes");
    if have_opusenc {
        let enc_ms = stats("opusenc on the input WAV", &enc_t);
        let size = std::fs::metadata(&out_path).map(|m| m.len()).unwrap_or(0);
        let enc_loud_ms = stats("opusenc on the normalised WAV", &enc_loud_t);
        println!("opusenc output (normalised): {size} bytes");
        println!(
            "ratio opusenc(input WAV) / hearth ingest:        {:.2}",
            enc_ms / ingest_ms
        );
        println!(
            "ratio opusenc(normalised WAV) / hearth ingest:   {:.2}",
            enc_loud_ms / ingest_ms
        );
        println!(
            "ratio opusenc(normalised WAV) / hearth encode:   {:.2}",
            enc_loud_ms / encode_ms
        );
    } else {
        println!("skipped opusenc: opus-tools not installed");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
