//! Signal processing between decoding and encoding: resampling to a rate
//! libopus accepts, loudness normalisation with a gain cap, a look-ahead
//! peak limiter, and the waveform summary.

use std::collections::VecDeque;

use ebur128::{EbuR128, Mode};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, FixedAsync, Resampler, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

use super::{AudioError, LIMITER_CEILING_DBFS, MAX_GAIN_DB, PEAK_BUCKETS, Pcm, TARGET_LUFS};

/// Sample rates libopus encodes natively; anything else is resampled to 48 kHz.
pub(crate) const OPUS_RATES: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];

/// Look-ahead (and attack) of the limiter, in milliseconds.
const LIMITER_LOOKAHEAD_MS: u32 = 5;
/// Release time constant of the limiter, in milliseconds.
const LIMITER_RELEASE_MS: f32 = 50.0;
/// How many times at most the limiter is run to make up lost loudness.
const LIMITER_PASSES: usize = 3;

/// Returns `pcm` at a rate libopus encodes natively. Rates libopus accepts
/// (8, 12, 16, 24, 48 kHz) are kept as they are, which spares the
/// resampler for the common 16 and 48 kHz inputs; others (44.1 kHz from
/// browsers, 22.05, 32 kHz...) are resampled to 48 kHz.
pub(crate) fn to_opus_rate(pcm: Pcm) -> Result<Pcm, AudioError> {
    if OPUS_RATES.contains(&pcm.sample_rate) {
        return Ok(pcm);
    }
    let from = pcm.sample_rate;
    resample_sinc(&pcm, 48_000).map_err(|e| {
        AudioError::invalid(format!(
            "the audio at {from} Hz could not be resampled ({e}); send 16 or 48 kHz audio"
        ))
    })
}

/// Returns `pcm` resampled to `rate` (as it is when already there).
pub(crate) fn resample(pcm: Pcm, rate: u32) -> Result<Pcm, AudioError> {
    if pcm.sample_rate == rate {
        return Ok(pcm);
    }
    let from = pcm.sample_rate;
    resample_sinc(&pcm, rate).map_err(|e| {
        AudioError::invalid(format!(
            "the audio at {from} Hz could not be resampled to {rate} Hz ({e})"
        ))
    })
}

/// Length of the resampler's windowed-sinc filter, in taps at the input
/// rate.
///
/// The resampler is rubato's sinc resampler rather than its FFT one, which
/// would bring rustfft and realfft into the hub (0.5 to 0.8 MiB of code,
/// BENCHMARKS.md (i) and (j)) for a path that runs only when a parent
/// uploads a WAV at an odd rate (44.1 kHz from most browsers) and for the
/// relay's 16 kHz WAV copies.
///
/// 128 taps: with the window below, rubato's automatic cutoff is 0.89 of
/// the lower Nyquist frequency, so a 44.1 kHz upload keeps everything up
/// to about 19.7 kHz, far above what speech needs and what Opus keeps at
/// 24 kb/s, with the window's full stopband attenuation beyond 22.05
/// kHz. 256 taps would move the edge only to 20.9 kHz for twice the work
/// per sample on a Pi. The filter delays the signal by half its length;
/// rubato takes that out in whole output samples, which leaves a
/// constant shift below one sample (under 21 us at 48 kHz), inaudible and
/// the same for the whole clip.
const SINC_LEN: usize = 128;

/// Window of the sinc filter: Blackman-Harris squared, whose sidelobes are
/// far below the 16-bit noise floor, so what lies above the new Nyquist
/// frequency (a 20 kHz whistle going to 16 kHz) is suppressed rather than
/// folded back into the speech band.
const SINC_WINDOW: WindowFunction = WindowFunction::BlackmanHarris2;

/// Most filter phases precomputed for an exact rational ratio (a table of
/// `phases * SINC_LEN` floats, 512 KiB at most). 44.1 -> 48 kHz needs 160,
/// 22.05 -> 48 kHz 320, 11.025 -> 48 kHz 640, 48 -> 16 kHz one.
const MAX_EXACT_PHASES: u64 = 1024;

/// `pcm` resampled to `rate` by a windowed-sinc filter; the output keeps
/// the input's duration, rounded to the nearest sample at `rate`.
///
/// When the ratio is a fraction `up / down` with `up` at most
/// [`MAX_EXACT_PHASES`] (every common rate), the filter is computed at
/// exactly those `up` phases and each output sample is one dot product
/// with the right phase: an exact polyphase resampler. Other ratios (an
/// odd rate such as 44 101 Hz) take 128 phases with cubic interpolation
/// between them, rubato's default, four dot products per sample.
fn resample_sinc(pcm: &Pcm, rate: u32) -> Result<Pcm, String> {
    let from = pcm.sample_rate;
    if from == 0 || rate == 0 {
        return Err("a sample rate of 0 Hz".to_owned());
    }
    let up = u64::from(rate) / gcd(u64::from(from), u64::from(rate));
    let parameters = if up <= MAX_EXACT_PHASES {
        SincInterpolationParameters::new(SINC_LEN, SINC_WINDOW)
            .oversampling_factor(up as usize)
            .interpolation(SincInterpolationType::Nearest)
    } else {
        SincInterpolationParameters::new(SINC_LEN, SINC_WINDOW)
    };
    let n = pcm.samples.len();
    let out_len = u64::try_from(
        (u128::from(n as u64) * u128::from(rate) + u128::from(from) / 2) / u128::from(from),
    )
    .unwrap_or(0) as usize;
    let mut resampler = Async::<f32>::new_sinc(
        f64::from(rate) / f64::from(from),
        1.0,
        &parameters,
        4096,
        1,
        FixedAsync::Input,
    )
    .map_err(|e| e.to_string())?;
    let input = InterleavedSlice::new(&pcm.samples[..], 1, n).map_err(|e| e.to_string())?;
    let out = resampler
        .process_all(&input, n, None)
        .map_err(|e| e.to_string())?;
    let mut samples = out.take_data();
    samples.resize(out_len, 0.0);
    Ok(Pcm {
        sample_rate: rate,
        samples,
    })
}

/// Greatest common divisor (Euclid).
fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Normalises integrated loudness to [`TARGET_LUFS`] with at most
/// [`MAX_GAIN_DB`] of gain, then limits sample peaks to
/// [`LIMITER_CEILING_DBFS`].
pub(crate) fn normalize_loudness(pcm: &mut Pcm) -> Result<(), AudioError> {
    let loudness = integrated_loudness(pcm)?;
    // Below the -70 LUFS absolute gate the meter reports -inf: that is
    // silence or hiss, which is left exactly as it is.
    let mut gain_db = if loudness.is_finite() {
        (TARGET_LUFS - loudness).min(MAX_GAIN_DB)
    } else {
        0.0
    };
    let ceiling = 10f64.powf(LIMITER_CEILING_DBFS / 20.0) as f32;
    let peak = pcm.samples.iter().fold(0f32, |m, s| m.max(s.abs()));
    let gain = 10f64.powf(gain_db / 20.0) as f32;
    if peak * gain <= ceiling || !peak.is_finite() {
        // The common case: no sample would pass the ceiling, a plain gain.
        if gain != 1.0 {
            pcm.samples.iter_mut().for_each(|s| *s *= gain);
        }
        return Ok(());
    }
    // The limiter takes loudness away where it works hard (dense peaks),
    // so the gain is raised by what is missing and the limiter run again
    // from the original, a few times at most.
    let mut limited = Pcm {
        sample_rate: pcm.sample_rate,
        samples: Vec::with_capacity(pcm.samples.len()),
    };
    for _ in 0..LIMITER_PASSES {
        let gain = 10f64.powf(gain_db / 20.0) as f32;
        limited.samples.clear();
        limited.samples.extend_from_slice(&pcm.samples);
        limit(&mut limited.samples, gain, ceiling, pcm.sample_rate);
        let missing = TARGET_LUFS - integrated_loudness(&limited)?;
        if missing.is_nan() || missing <= 0.2 || gain_db >= MAX_GAIN_DB {
            break;
        }
        gain_db = (gain_db + missing).min(MAX_GAIN_DB);
    }
    std::mem::swap(&mut pcm.samples, &mut limited.samples);
    Ok(())
}

/// Integrated loudness (ITU-R BS.1770 / EBU R128) of mono PCM, in LUFS.
pub(crate) fn integrated_loudness(pcm: &Pcm) -> Result<f64, AudioError> {
    let fail = |e: ebur128::Error| {
        AudioError::invalid(format!(
            "the loudness of the {} Hz audio could not be measured ({e}); send 8 to 48 kHz audio",
            pcm.sample_rate
        ))
    };
    let mut meter = EbuR128::new(1, pcm.sample_rate, Mode::I).map_err(fail)?;
    meter.add_frames_f32(&pcm.samples).map_err(fail)?;
    meter.loudness_global().map_err(fail)
}

/// Applies `gain`, and where that would push a sample past `ceiling`,
/// turns the gain down smoothly around it.
///
/// The gain curve is the sliding minimum of the required gain over the
/// look-ahead window, smoothed by a moving average of the same length:
/// every value averaged for sample `n` comes from a window containing `n`,
/// so the average never exceeds the gain `n` needs and no sample passes the
/// ceiling, while the gain ramps down over the look-ahead instead of
/// jumping. A one-pole release then lets the gain recover gently.
fn limit(samples: &mut [f32], gain: f32, ceiling: f32, rate: u32) {
    let n = samples.len();
    let la = ((rate / 1000) * LIMITER_LOOKAHEAD_MS).max(1) as usize;
    let required = |i: usize| -> f32 {
        match samples.get(i) {
            Some(s) => {
                let y = s.abs() * gain;
                if y > ceiling { ceiling / y } else { 1.0 }
            }
            None => 1.0,
        }
    };
    // window_min[n] = min(required[n .. n + la]).
    let mut window_min = Vec::with_capacity(n);
    let mut deque: VecDeque<(usize, f32)> = VecDeque::with_capacity(la + 1);
    for j in 0..n + la - 1 {
        let r = required(j);
        while deque.back().is_some_and(|&(_, v)| v >= r) {
            deque.pop_back();
        }
        deque.push_back((j, r));
        if j + 1 >= la {
            let start = j + 1 - la;
            while deque.front().is_some_and(|&(i, _)| i < start) {
                deque.pop_front();
            }
            window_min.push(deque.front().map_or(1.0, |&(_, v)| v));
        }
    }
    let release = 1.0 - (-1.0 / (LIMITER_RELEASE_MS * 0.001 * rate as f32)).exp();
    let mut sum = la as f64; // the average starts over a window of ones
    let mut g = 1f32;
    for i in 0..n {
        sum += f64::from(window_min[i]);
        sum -= if i >= la {
            f64::from(window_min[i - la])
        } else {
            1.0
        };
        let average = (sum / la as f64) as f32;
        g = average.min(g + (1.0 - g) * release);
        samples[i] *= gain * g;
    }
}

/// [`PEAK_BUCKETS`] values 0..=255: the largest absolute amplitude in each
/// bucket, scaled so the loudest bucket is 255; all zeros for silence.
pub(crate) fn peaks(samples: &[f32]) -> Vec<u8> {
    let n = samples.len();
    let mut maxima = [0f32; PEAK_BUCKETS];
    for (b, m) in maxima.iter_mut().enumerate() {
        let start = b * n / PEAK_BUCKETS;
        let end = (b + 1) * n / PEAK_BUCKETS;
        *m = samples[start..end]
            .iter()
            .fold(0f32, |acc, s| acc.max(s.abs()));
    }
    let loudest = maxima.iter().fold(0f32, |a, &b| a.max(b));
    maxima
        .iter()
        .map(|&m| {
            if loudest > 0.0 && loudest.is_finite() {
                (m / loudest * 255.0).round().clamp(0.0, 255.0) as u8
            } else {
                0
            }
        })
        .collect()
}
