//! What the line sounds like: RTP packets (RFC 3550) decoded from G.711 (μ-law and A-law,
//! ITU-T G.711, by formula rather than a crate or lookup table) and the level of what was heard
//! as the RMS of all samples in dBFS.
//!
//! dBFS here is `20·log10(rms / 32768)` over 16-bit linear samples, so a full-scale sine reads
//! about −3 dBFS and a greeting at normal loudness −30 to −15. Digital silence (μ-law 0xFF,
//! every sample 0) has no logarithm; it reads [`FLOOR_DBFS`], as does a call that sent nothing.

use super::sdp::Codec;

/// The level reported for digital silence or no audio at all: below anything G.711 can carry
/// (its smallest step is about −72 dBFS).
pub const FLOOR_DBFS: f64 = -100.0;

/// One 16-bit linear sample of a μ-law byte.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    // The magnitude is at most 32124, so it fits either sign.
    let magnitude = magnitude as i16;
    if u & 0x80 != 0 { -magnitude } else { magnitude }
}

/// The μ-law byte of a 16-bit linear sample (the inverse of [`ulaw_to_linear`], to within the
/// codec's step), for the demo's PBX that plays a tone.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let sign: u8 = if sample < 0 { 0x80 } else { 0 };
    let magnitude = i32::from(sample).abs().min(CLIP) + BIAS;
    // The segment is the position of the highest set bit above bit 7 (0..=7).
    let exponent = (0..8u8)
        .rev()
        .find(|e| magnitude & (0x80 << e) != 0)
        .unwrap_or(0);
    let mantissa = ((magnitude >> (exponent + 3)) & 0x0F) as u8;
    !(sign | (exponent << 4) | mantissa)
}

/// One 16-bit linear sample of an A-law byte.
pub fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let exponent = (a >> 4) & 0x07;
    let mantissa = i32::from(a & 0x0F);
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    // At most 32256.
    let magnitude = magnitude as i16;
    if a & 0x80 != 0 { magnitude } else { -magnitude }
}

/// The payload type and payload of an RTP packet, or `None` for anything else (a STUN probe,
/// RTCP, a truncated packet).
pub fn rtp_payload(packet: &[u8]) -> Option<(u8, &[u8])> {
    let first = *packet.first()?;
    if first >> 6 != 2 {
        return None;
    }
    let csrc = usize::from(first & 0x0F);
    let mut start = 12 + 4 * csrc;
    if first & 0x10 != 0 {
        // Header extension: 16-bit profile, 16-bit length in 32-bit words.
        let words = packet.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    let mut end = packet.len();
    if first & 0x20 != 0 {
        let padding = usize::from(*packet.last()?);
        end = end.checked_sub(padding)?;
    }
    let payload_type = packet.get(1)? & 0x7F;
    // RTCP shares the port on some PBXs (rtcp-mux); its types 200–204 read as 72–76 here.
    if (72..=76).contains(&payload_type) {
        return None;
    }
    Some((payload_type, packet.get(start..end)?))
}

/// Accumulates decoded audio into one level.
#[derive(Debug, Default, Clone)]
pub struct LevelMeter {
    /// RTP packets received whose payload we decoded.
    pub packets: u64,
    /// RTP packets of other payload types (comfort noise, DTMF events, other codecs).
    pub other_packets: u64,
    /// Samples decoded.
    pub samples: u64,
    sum_squares: f64,
}

impl LevelMeter {
    /// Adds one received datagram.
    pub fn add_packet(&mut self, packet: &[u8]) {
        let Some((payload_type, payload)) = rtp_payload(packet) else {
            return;
        };
        let decode = match Codec::from_payload_type(payload_type) {
            Some(Codec::Pcmu) => ulaw_to_linear,
            Some(Codec::Pcma) => alaw_to_linear,
            None => {
                self.other_packets += 1;
                return;
            }
        };
        self.packets += 1;
        for &byte in payload {
            let sample = f64::from(decode(byte));
            self.sum_squares += sample * sample;
        }
        self.samples += payload.len() as u64;
    }

    /// The RMS level of everything added, in dBFS; [`FLOOR_DBFS`] for silence or nothing.
    pub fn dbfs(&self) -> f64 {
        if self.samples == 0 || self.sum_squares == 0.0 {
            return FLOOR_DBFS;
        }
        let rms = (self.sum_squares / self.samples as f64).sqrt();
        (20.0 * (rms / 32768.0).log10()).max(FLOOR_DBFS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_encoding_round_trips_within_a_step() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        for sample in (-32768..=32767i32).step_by(7) {
            let sample = sample as i16;
            let back = i32::from(ulaw_to_linear(linear_to_ulaw(sample)));
            let step = (i32::from(sample).abs() / 16).max(16);
            assert!(
                (back - i32::from(sample).clamp(-32635, 32635)).abs() <= step,
                "{sample} -> {back}"
            );
        }
    }

    #[test]
    fn g711_decodes_to_the_standard_values() {
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        // Monotonic over each half of the μ-law code space.
        for b in 0x81..=0xFFu8 {
            assert!(ulaw_to_linear(b) < ulaw_to_linear(b - 1), "{b:#x}");
        }
    }

    fn packet(payload_type: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, payload_type, 0, 1, 0, 0, 0, 160, 0, 0, 0, 42];
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn a_loud_square_wave_a_silent_line_and_noise_read_as_they_should() {
        let mut loud = LevelMeter::default();
        // ±32124 alternating: RMS 32124, about −0.17 dBFS.
        loud.add_packet(&packet(0, &[0x80, 0x00].repeat(80)));
        assert!((loud.dbfs() + 0.17).abs() < 0.05, "{}", loud.dbfs());
        let mut silent = LevelMeter::default();
        silent.add_packet(&packet(0, &[0xFF; 160]));
        silent.add_packet(&packet(8, &[0xD5; 160]));
        assert!(silent.dbfs() < -70.0, "{}", silent.dbfs());
        assert_eq!(silent.packets, 2);
        let mut nothing = LevelMeter::default();
        nothing.add_packet(b"\x00\x01 not rtp");
        nothing.add_packet(&packet(101, &[1, 2, 3, 4]));
        nothing.add_packet(&[0x80]);
        nothing.add_packet(&[0xBF, 0]);
        nothing.add_packet(&[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]);
        assert_eq!(nothing.dbfs(), FLOOR_DBFS);
        assert_eq!((nothing.packets, nothing.other_packets), (0, 1));
    }
}
