//! The two SDP bodies of a prober's call (RFC 4566, RFC 3264): our offer of G.711 (PCMU and
//! PCMA, payload types 0 and 8) on one RTP port, and the few facts of the answer we use — where
//! the far end sends from (connection address and audio port) and which codec it chose.
//!
//! Only what a G.711 call needs is read; anything else in the answer is ignored, and an answer
//! without an audio stream we can decode is reported, not guessed around.

use std::net::{IpAddr, SocketAddr};

/// A G.711 codec, by its static RTP payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// μ-law, payload type 0.
    Pcmu,
    /// A-law, payload type 8.
    Pcma,
}

impl Codec {
    /// The codec of static payload type `pt`, if it is one we decode.
    pub fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// Its name in SDP and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
}

/// Our offer: audio on `rtp` (the socket's address as the far end should see it).
pub fn offer(rtp: SocketAddr) -> String {
    let session = rand::random::<u32>();
    let (family, ip) = match rtp.ip() {
        IpAddr::V4(ip) => ("IP4", ip.to_string()),
        IpAddr::V6(ip) => ("IP6", ip.to_string()),
    };
    // recvonly: we listen to the greeting and send nothing, so a PBX never hears noise from us.
    format!(
        "v=0\r\no=supportwatch {session} {session} IN {family} {ip}\r\ns=supportwatch\r\n\
         c=IN {family} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 8\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=recvonly\r\n",
        port = rtp.port()
    )
}

/// What the answer says about the far end's audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Where the far end's media is (connection address, audio port); `None` for port 0 (the
    /// stream was declined) or no usable address.
    pub media: Option<SocketAddr>,
    /// The first payload type of the audio line that we decode.
    pub codec: Option<Codec>,
}

/// Reads an SDP answer; `Err` when there is no audio line at all.
pub fn parse_answer(body: &str) -> Result<Answer, String> {
    let mut session_ip: Option<IpAddr> = None;
    let mut media_ip: Option<IpAddr> = None;
    let mut audio: Option<(u16, Option<Codec>)> = None;
    let mut in_audio = false;
    for line in body.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("c=") {
            // `c=IN IP4 192.0.2.1` (a multicast TTL suffix `/127` is cut).
            let ip = rest
                .split_whitespace()
                .nth(2)
                .and_then(|a| a.split('/').next())
                .and_then(|a| a.parse::<IpAddr>().ok());
            match (audio.is_some(), in_audio) {
                (false, _) => session_ip = ip,
                (true, true) => media_ip = ip,
                (true, false) => {}
            }
        } else if let Some(rest) = line.strip_prefix("m=") {
            let mut parts = rest.split_whitespace();
            let kind = parts.next();
            in_audio = kind == Some("audio") && audio.is_none();
            if !in_audio {
                continue;
            }
            let port = parts
                .next()
                .and_then(|p| p.parse::<u16>().ok())
                .unwrap_or(0);
            let codec = parts
                .skip(1)
                .filter_map(|pt| pt.parse::<u8>().ok())
                .find_map(Codec::from_payload_type);
            audio = Some((port, codec));
        }
    }
    let (port, codec) = audio.ok_or("the answer's SDP has no audio stream")?;
    let media = media_ip
        .or(session_ip)
        .filter(|_| port != 0)
        .map(|ip| SocketAddr::new(ip, port));
    Ok(Answer { media, codec })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offer_names_both_codecs_and_our_port() {
        let sdp = offer("127.0.0.1:40000".parse().unwrap());
        assert!(sdp.contains("c=IN IP4 127.0.0.1\r\n"), "{sdp}");
        assert!(sdp.contains("m=audio 40000 RTP/AVP 0 8\r\n"), "{sdp}");
    }

    #[test]
    fn reads_the_answer_address_port_and_codec() {
        let answer = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                      m=video 5000 RTP/AVP 96\r\nm=audio 6000 RTP/AVP 101 8 0\r\n\
                      c=IN IP4 10.0.0.2\r\n";
        assert_eq!(
            parse_answer(answer),
            Ok(Answer {
                media: Some("10.0.0.2:6000".parse().unwrap()),
                codec: Some(Codec::Pcma)
            })
        );
        let declined = "c=IN IP4 10.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n";
        assert_eq!(parse_answer(declined).unwrap().media, None);
        let other = "c=IN IP4 10.0.0.1\r\nm=audio 6000 RTP/AVP 18\r\n";
        assert_eq!(parse_answer(other).unwrap().codec, None);
        assert!(parse_answer("").is_err());
        assert!(parse_answer("m=audio x y\r\nc=IN").is_ok());
    }
}
