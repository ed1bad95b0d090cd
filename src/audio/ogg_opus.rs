//! Ogg Opus (RFC 7845) in and out.
//!
//! Reading demuxes with the `ogg` crate (which checks every page CRC),
//! checks the OpusHead and OpusTags headers, decodes every audio packet
//! with libopus (a packet libopus refuses makes the whole upload invalid),
//! and applies pre-skip, output gain and end trimming from the final
//! granule position. Writing produces a mono stream with 20 ms packets,
//! the encoder's look-ahead as pre-skip and an end-trimmed final granule,
//! so decoders output exactly the samples that went in.

use std::io::Cursor;

use ogg::reading::{OggReadError, PacketReader};
use ogg::writing::{PacketWriteEndInfo, PacketWriter};
use opus::{Application, Bitrate, Channels, Decoder, Encoder};

use super::{AudioError, MAX_DURATION_MS, Pcm, duration_ms};

/// Target bitrate of stored clips, in bits per second (VBR).
pub const OPUS_BITRATE: i32 = 24_000;
/// libopus encoder complexity (0..=10). 10 is libopus' and opusenc's default.
pub const OPUS_COMPLEXITY: i32 = 10;
/// Packets per Ogg page: one page per second of audio, like opusenc.
const PACKETS_PER_PAGE: u64 = 50;
/// Largest number of 48 kHz samples one Opus packet can hold (120 ms).
const MAX_PACKET_SAMPLES: usize = 5_760;
/// Most 48 kHz samples accepted, pre-skip excluded.
const MAX_SAMPLES_48K: u64 = MAX_DURATION_MS * 48;

const SEND: &str = "send a mono or stereo Ogg Opus file (RFC 7845)";

/// What the OpusHead header says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    pub channels: u8,
    pub pre_skip: u16,
    pub input_sample_rate: u32,
    pub output_gain: i16,
}

/// Decode a stored (or any) Ogg Opus stream to mono PCM at 48 kHz, validating every packet.
pub fn decode_ogg_opus(ogg: &[u8]) -> Result<Pcm, AudioError> {
    decode(ogg).map(|(pcm, _)| pcm)
}

fn ogg_error(e: OggReadError) -> AudioError {
    match e {
        OggReadError::HashMismatch(..) => AudioError::invalid(format!(
            "the Ogg file is damaged (a page checksum does not match); {SEND}"
        )),
        OggReadError::ReadError(_) => AudioError::invalid(
            "the Ogg file is truncated (it ends in the middle of a page); send the complete file",
        ),
        OggReadError::NoCapturePatternFound => AudioError::invalid(format!(
            "the Ogg file is damaged (a page does not start with \"OggS\"); {SEND}"
        )),
        OggReadError::InvalidStreamStructVer(v) => AudioError::invalid(format!(
            "the Ogg file uses page version {v}, which does not exist; {SEND}"
        )),
        OggReadError::InvalidData => {
            AudioError::invalid(format!("the Ogg file's page structure is invalid; {SEND}"))
        }
    }
}

/// Decodes and validates an Ogg Opus body; returns mono 48 kHz PCM and the header.
pub(crate) fn decode(body: &[u8]) -> Result<(Pcm, Head), AudioError> {
    decode_at(body, 48_000).map(|(pcm, head, _)| (pcm, head))
}

/// Decodes and validates an Ogg Opus body with libopus producing mono PCM
/// at `rate` (8, 12, 16, 24 or 48 kHz: libopus then skips its upsampling,
/// which makes a 16 kHz decode of a toy's speech far cheaper than a 48 kHz
/// one while every packet is still decoded and checked). Returns the PCM,
/// the header and the exact duration in 48 kHz samples (granule units).
pub(crate) fn decode_at(body: &[u8], rate: u32) -> Result<(Pcm, Head, u64), AudioError> {
    debug_assert!(48_000 % rate == 0, "a rate libopus decodes at");
    let per = (48_000 / rate) as usize;
    if body.is_empty() {
        return Err(AudioError::invalid(format!("the body is empty; {SEND}")));
    }
    if body.starts_with(b"RIFF") {
        return Err(AudioError::invalid(
            "the body is a WAV file but was declared as Ogg Opus; send it with Content-Type audio/wav",
        ));
    }
    if !body.starts_with(b"OggS") {
        return Err(AudioError::invalid(format!(
            "the body is not an Ogg file (it does not start with \"OggS\"); {SEND}"
        )));
    }
    let mut reader = PacketReader::new(Cursor::new(body));

    let first = reader
        .read_packet()
        .map_err(ogg_error)?
        .ok_or_else(|| AudioError::invalid(format!("the Ogg file contains no packets; {SEND}")))?;
    let head = parse_head(&first.data)?;
    if !first.last_in_page() {
        return Err(AudioError::invalid(format!(
            "the OpusHead packet does not have the first Ogg page to itself; {SEND}"
        )));
    }
    let serial = first.stream_serial();

    // Refuse an over-long stream from its last page before decoding anything.
    if let Some(gp) = last_granule(body, serial) {
        let samples = gp.saturating_sub(u64::from(head.pre_skip));
        if samples > MAX_SAMPLES_48K {
            return Err(AudioError::TooLong {
                duration_ms: duration_ms(samples, 48_000),
            });
        }
    }

    let tags = reader.read_packet().map_err(ogg_error)?.ok_or_else(|| {
        AudioError::invalid(
            "the Ogg file ends after OpusHead without an OpusTags packet; send the complete file",
        )
    })?;
    if tags.stream_serial() != serial {
        return Err(more_than_one_stream());
    }
    check_tags(&tags.data)?;
    if !tags.last_in_page() {
        return Err(AudioError::invalid(format!(
            "the OpusTags packet does not end its Ogg page; {SEND}"
        )));
    }

    let mut decoder = Decoder::new(rate, Channels::Mono).map_err(|e| {
        AudioError::invalid(format!("the Opus decoder could not start ({e}); {SEND}"))
    })?;
    let pre_skip = usize::from(head.pre_skip) / per;
    let limit = pre_skip + MAX_SAMPLES_48K as usize / per;
    let capacity = last_granule(body, serial).map_or(48_000, |gp| gp as usize) / per;
    let mut samples: Vec<f32> = Vec::with_capacity(capacity.min(limit + MAX_PACKET_SAMPLES));
    let mut buf = vec![0f32; MAX_PACKET_SAMPLES];
    let mut final_granule = None;
    let mut ended = false;
    let mut packet_number = 0u64;
    while let Some(packet) = reader.read_packet().map_err(ogg_error)? {
        packet_number += 1;
        if packet.stream_serial() != serial || ended {
            return Err(more_than_one_stream());
        }
        if packet.data.is_empty() {
            return Err(AudioError::invalid(format!(
                "Opus audio packet {packet_number} is empty; {SEND}"
            )));
        }
        let n = decoder
            .decode_float(&packet.data, &mut buf, false)
            .map_err(|e| {
                AudioError::invalid(format!(
                    "Opus audio packet {packet_number} is not valid Opus ({e}); {SEND}"
                ))
            })?;
        samples.extend_from_slice(&buf[..n.min(buf.len())]);
        if samples.len() > limit {
            return Err(AudioError::TooLong {
                duration_ms: duration_ms((samples.len() - pre_skip) as u64, rate),
            });
        }
        if packet.last_in_page() && packet.absgp_page() != u64::MAX {
            final_granule = Some(packet.absgp_page());
        }
        ended = packet.last_in_stream();
    }
    if !ended {
        return Err(AudioError::invalid(
            "the Ogg file is truncated (its last page is not marked end-of-stream); send the complete file",
        ));
    }
    if packet_number == 0 {
        return Err(AudioError::invalid(
            "the Ogg Opus file contains no audio packets; send a recording with sound in it",
        ));
    }
    let granule = final_granule.ok_or_else(|| {
        AudioError::invalid(format!(
            "the Ogg file has no granule position on any audio page; {SEND}"
        ))
    })?;
    let decoded = (samples.len() * per) as u64;
    if granule < u64::from(head.pre_skip) {
        return Err(AudioError::invalid(format!(
            "the final granule position ({granule}) is smaller than the pre-skip ({}); {SEND}",
            head.pre_skip
        )));
    }
    if granule > decoded {
        return Err(AudioError::invalid(format!(
            "the Ogg file is truncated: its final granule position announces {granule} samples but the packets hold only {decoded}; send the complete file"
        )));
    }
    // Both bounds were checked just above.
    samples.truncate(granule as usize / per);
    samples.drain(..pre_skip.min(samples.len()));
    if samples.is_empty() {
        return Err(AudioError::invalid(
            "the Ogg Opus file contains no audio (zero samples after pre-skip); send a recording with sound in it",
        ));
    }
    if head.output_gain != 0 {
        let gain = 10f32.powf(f32::from(head.output_gain) / (20.0 * 256.0));
        samples.iter_mut().for_each(|s| *s *= gain);
    }
    Ok((
        Pcm {
            sample_rate: rate,
            samples,
        },
        head,
        granule - u64::from(head.pre_skip),
    ))
}

fn more_than_one_stream() -> AudioError {
    AudioError::invalid(format!(
        "the Ogg file contains more than one logical stream (chained or multiplexed); {SEND} with a single stream"
    ))
}

/// Checks the identification header (RFC 7845 section 5.1).
fn parse_head(p: &[u8]) -> Result<Head, AudioError> {
    if !p.starts_with(b"OpusHead") {
        let what = if p.starts_with(b"\x01vorbis") {
            "Ogg Vorbis"
        } else if p.starts_with(b"Speex") {
            "Ogg Speex"
        } else if p.starts_with(b"\x7fFLAC") {
            "Ogg FLAC"
        } else {
            "something other than Opus"
        };
        return Err(AudioError::invalid(format!(
            "the Ogg file contains {what}; {SEND}"
        )));
    }
    if p.len() < 19 {
        return Err(AudioError::invalid(format!(
            "the OpusHead header is cut short ({} bytes, at least 19 needed); {SEND}",
            p.len()
        )));
    }
    let version = p[8];
    if version & 0xf0 != 0 {
        return Err(AudioError::invalid(format!(
            "the OpusHead header has version {version}, which this hub does not understand; {SEND}"
        )));
    }
    let head = Head {
        channels: p[9],
        pre_skip: u16::from_le_bytes([p[10], p[11]]),
        input_sample_rate: u32::from_le_bytes([p[12], p[13], p[14], p[15]]),
        output_gain: i16::from_le_bytes([p[16], p[17]]),
    };
    let family = p[18];
    if family != 0 {
        return Err(AudioError::invalid(format!(
            "the Opus stream uses channel mapping family {family} (surround or ambisonics); {SEND}"
        )));
    }
    if !(1..=2).contains(&head.channels) {
        return Err(AudioError::invalid(format!(
            "the OpusHead header declares {} channels; {SEND}",
            head.channels
        )));
    }
    Ok(head)
}

/// Checks the comment header (RFC 7845 section 5.2): every length must fit.
fn check_tags(p: &[u8]) -> Result<(), AudioError> {
    let bad = |why: &str| AudioError::invalid(format!("the OpusTags header {why}; {SEND}"));
    if !p.starts_with(b"OpusTags") {
        return Err(bad("is missing (the second packet is something else)"));
    }
    let read_u32 = |at: usize| -> Option<usize> {
        let b = p.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let cut = || bad("is cut short or its lengths are wrong");
    let vendor_len = read_u32(8).ok_or_else(cut)?;
    let mut at = 12usize.checked_add(vendor_len).ok_or_else(cut)?;
    let count = read_u32(at).ok_or_else(cut)?;
    at += 4;
    for _ in 0..count {
        let len = read_u32(at).ok_or_else(cut)?;
        at = at.checked_add(4 + len).ok_or_else(cut)?;
        if at > p.len() {
            return Err(cut());
        }
    }
    Ok(())
}

/// The lowest rate that holds every audio packet's coded band: 16 kHz when
/// every packet's TOC byte (RFC 6716 section 3.1) says narrowband,
/// medium-band or wideband (audio up to 8 kHz), 48 kHz when any packet is
/// super-wideband or fullband, or when the stream cannot be read (the
/// decode then says what is wrong). Reading the TOC bytes costs a pass over
/// the pages, a small fraction of a decode.
pub(crate) fn measure_rate(body: &[u8]) -> u32 {
    let mut reader = PacketReader::new(Cursor::new(body));
    let mut index = 0u64;
    loop {
        match reader.read_packet() {
            Ok(Some(p)) => {
                index += 1;
                // Packets 1 and 2 are OpusHead and OpusTags.
                let wide = index > 2
                    && p.data
                        .first()
                        .is_some_and(|toc| coded_band_hz(*toc) > 8_000);
                if wide {
                    return 48_000;
                }
            }
            Ok(None) => return 16_000,
            Err(_) => return 48_000,
        }
    }
}

/// The audio bandwidth a packet's TOC byte announces (RFC 6716 table 2).
fn coded_band_hz(toc: u8) -> u32 {
    match toc >> 3 {
        0..=3 | 16..=19 => 4_000,
        4..=7 => 6_000,
        8..=11 | 20..=23 => 8_000,
        12..=13 | 24..=27 => 12_000,
        _ => 20_000,
    }
}

/// The granule position of the last page of stream `serial`, read from the
/// tail of the body without parsing the rest.
fn last_granule(body: &[u8], serial: u32) -> Option<u64> {
    // A page is at most 27 + 255 + 255 * 255 bytes long.
    let window_start = body.len().saturating_sub(27 + 255 + 255 * 255);
    let tail = &body[window_start..];
    let mut end = tail.len();
    while let Some(pos) = tail[..end].windows(4).rposition(|w| w == b"OggS") {
        if let Some(h) = tail.get(pos..pos + 27) {
            let gp = u64::from_le_bytes([h[6], h[7], h[8], h[9], h[10], h[11], h[12], h[13]]);
            let page_serial = u32::from_le_bytes([h[14], h[15], h[16], h[17]]);
            if h[4] == 0 && page_serial == serial && gp != u64::MAX {
                return Some(gp);
            }
        }
        end = pos + 3;
        if end < 4 {
            break;
        }
    }
    None
}

/// Writes a validated Ogg Opus stream again with its packets, pages and
/// granule positions unchanged, but a new stream serial and the OpusHead
/// output gain set to `gain_q78` (dB in Q7.8, RFC 7845 section 5.1).
/// Decoders apply that gain, so loudness changes without re-encoding.
pub(crate) fn remux_with_gain(body: &[u8], gain_q78: i16) -> Result<Vec<u8>, AudioError> {
    let io_fail =
        |e: std::io::Error| AudioError::invalid(format!("the Ogg stream could not be built ({e})"));
    let mut reader = PacketReader::new(Cursor::new(body));
    let serial: u32 = rand::random();
    let mut writer = PacketWriter::new(Vec::with_capacity(body.len() + 64));
    let mut index = 0u64;
    while let Some(mut packet) = reader.read_packet().map_err(ogg_error)? {
        let mut data = std::mem::take(&mut packet.data);
        if index == 0 {
            if data.len() < 19 {
                return Err(AudioError::invalid(format!(
                    "the OpusHead packet is too short; {SEND}"
                )));
            }
            data[16..18].copy_from_slice(&gain_q78.to_le_bytes());
        }
        let info = if packet.last_in_stream() {
            PacketWriteEndInfo::EndStream
        } else if packet.last_in_page() {
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        // Header pages carry granule 0; a page's granule is that of the
        // last packet ending on it, which the reader reports for every
        // packet of the page.
        let granule = if index < 2 { 0 } else { packet.absgp_page() };
        writer
            .write_packet(data, serial, info, granule)
            .map_err(io_fail)?;
        index += 1;
    }
    Ok(writer.into_inner())
}

/// Encodes mono PCM at a libopus rate (8, 12, 16, 24 or 48 kHz) as an Ogg
/// Opus stream. `input_rate` is recorded in the OpusHead for information.
pub(crate) fn encode(pcm: &Pcm, input_rate: u32) -> Result<Vec<u8>, AudioError> {
    let fail = |e: opus::Error| {
        AudioError::invalid(format!(
            "the audio could not be encoded ({e}); send 16-bit PCM WAV at 16 or 48 kHz"
        ))
    };
    let rate = pcm.sample_rate;
    let mut encoder = Encoder::new(rate, Channels::Mono, Application::Voip).map_err(fail)?;
    encoder
        .set_bitrate(Bitrate::Bits(OPUS_BITRATE))
        .map_err(fail)?;
    encoder.set_vbr(true).map_err(fail)?;
    encoder.set_vbr_constraint(false).map_err(fail)?;
    encoder.set_complexity(OPUS_COMPLEXITY).map_err(fail)?;
    let lookahead = usize::try_from(encoder.get_lookahead().map_err(fail)?).unwrap_or(0);

    let factor = (48_000 / rate.max(1)) as usize;
    let frame = rate as usize / 50;
    let n = pcm.samples.len();
    let pre_skip = lookahead * factor;
    let end_granule = (pre_skip + n * factor) as u64;
    // The encoder delays its output by `lookahead` samples, so that many
    // extra (silent) samples are fed to get the whole input out.
    let packets = (n + lookahead).div_ceil(frame.max(1));

    let serial: u32 = rand::random();
    let mut writer = PacketWriter::new(Vec::with_capacity(
        64 + packets * (OPUS_BITRATE as usize / 8 / 50 + 8),
    ));
    let io_fail =
        |e: std::io::Error| AudioError::invalid(format!("the Ogg stream could not be built ({e})"));

    let mut head = Vec::with_capacity(19);
    head.extend_from_slice(b"OpusHead");
    head.push(1); // version
    head.push(1); // channels
    head.extend_from_slice(&u16::try_from(pre_skip).unwrap_or(u16::MAX).to_le_bytes());
    head.extend_from_slice(&input_rate.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // channel mapping family
    writer
        .write_packet(head, serial, PacketWriteEndInfo::EndPage, 0)
        .map_err(io_fail)?;

    let vendor = format!("Hearth {} ({})", env!("CARGO_PKG_VERSION"), opus::version());
    let mut tags = Vec::with_capacity(16 + vendor.len());
    tags.extend_from_slice(b"OpusTags");
    tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    tags.extend_from_slice(vendor.as_bytes());
    tags.extend_from_slice(&0u32.to_le_bytes()); // no user comments
    writer
        .write_packet(tags, serial, PacketWriteEndInfo::EndPage, 0)
        .map_err(io_fail)?;

    let mut out = vec![0u8; 4_000];
    let mut padded = vec![0f32; frame];
    for k in 0..packets {
        let start = k * frame;
        let input: &[f32] = if start + frame <= n {
            &pcm.samples[start..start + frame]
        } else {
            padded.fill(0.0);
            if start < n {
                padded[..n - start].copy_from_slice(&pcm.samples[start..]);
            }
            &padded
        };
        let len = encoder.encode_float(input, &mut out).map_err(fail)?;
        let granule = (((k + 1) * frame * factor) as u64).min(end_granule);
        let info = if k + 1 == packets {
            PacketWriteEndInfo::EndStream
        } else if (k as u64 + 1) % PACKETS_PER_PAGE == 0 {
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        writer
            .write_packet(out[..len].to_vec(), serial, info, granule)
            .map_err(io_fail)?;
    }
    Ok(writer.into_inner())
}
