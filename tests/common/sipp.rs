//! The shop's phone line for integration tests: one SIPp user agent server on 127.0.0.1
//! running a scenario from `tests/fixtures/sipp/` for exactly one call (`-m 1`).
//!
//! Each [`Sipp`] runs in the foreground as a child process in its own temporary directory (where
//! the scenario's `audio.pcap` and SIPp's logs go) and is killed when dropped, so no SIPp
//! outlives its test. [`Sipp::finish`] waits, bounded, for the scenario to complete: SIPp exits 0
//! only when its one call went exactly as the scenario says (a CANCEL received, a BYE answered),
//! which is how a test proves what the far end saw.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running SIPp.
pub struct Sipp {
    /// The SIP port (UDP, or TCP for [`Sipp::start_tcp`]) on 127.0.0.1.
    pub port: u16,
    tcp: bool,
    child: Child,
    dir: tempfile::TempDir,
}

/// How a SIPp run ended.
#[derive(Debug)]
pub struct Finished {
    /// The exit code; `None` when it had to be killed.
    pub code: Option<i32>,
    /// Its output and error logs, for assertion messages.
    pub log: String,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sipp")
        .join(name)
}

/// A UDP port free on 127.0.0.1 (and the next one, for RTP).
pub fn free_udp_port() -> u16 {
    for _ in 0..50 {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = socket.local_addr().expect("addr").port();
        if port < 65_000 && UdpSocket::bind(("127.0.0.1", port + 2)).is_ok() {
            return port;
        }
    }
    panic!("no free UDP port on 127.0.0.1");
}

/// A port free for TCP on 127.0.0.1 whose port + 2 is free for UDP (RTP).
pub fn free_tcp_port() -> u16 {
    for _ in 0..50 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        if port < 65_000 && UdpSocket::bind(("127.0.0.1", port + 2)).is_ok() {
            return port;
        }
    }
    panic!("no free TCP port on 127.0.0.1");
}

impl Sipp {
    /// [`Sipp::start`] with SIP over TCP (`-t t1`): the line listens on TCP `port`.
    pub fn start_tcp(scenario: &str, port: u16, audio: Option<&[u8]>) -> Sipp {
        Sipp::start_on(scenario, port, audio, true)
    }

    /// Starts `scenario` (a file in `tests/fixtures/sipp/`) on `port`, with `audio` written to
    /// `audio.pcap` in its working directory. Panics if SIPp cannot start: a test that needs it
    /// fails, it never skips.
    pub fn start(scenario: &str, port: u16, audio: Option<&[u8]>) -> Sipp {
        Sipp::start_on(scenario, port, audio, false)
    }

    fn start_on(scenario: &str, port: u16, audio: Option<&[u8]>, tcp: bool) -> Sipp {
        let dir = tempfile::tempdir().expect("temporary directory");
        if let Some(audio) = audio {
            std::fs::write(dir.path().join("audio.pcap"), audio).expect("write pcap");
        }
        let out = std::fs::File::create(dir.path().join("sipp.out")).expect("log file");
        let child = Command::new("sipp")
            .arg("-sf")
            .arg(fixture(scenario))
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &port.to_string(), "-mp", &(port + 2).to_string()])
            .args(["-m", "1", "-nostdin", "-trace_err", "-timeout", "60s"])
            .args(if tcp { &["-t", "t1"][..] } else { &[] })
            .arg("-error_file")
            .arg(dir.path().join("errors.log"))
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(dir.path().join("messages.log"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("sipp is installed (scripts/test installs sip-tester)");
        let sipp = Sipp {
            port,
            tcp,
            child,
            dir,
        };
        sipp.wait_bound();
        sipp
    }

    /// Starts `scenario` as the shop's dialer: one call from `user` (digest password
    /// `password`) to `service` through the SIP server at 127.0.0.1:`server_port`.
    pub fn dial(
        scenario: &str,
        server_port: u16,
        service: &str,
        user: &str,
        password: &str,
    ) -> Sipp {
        let dir = tempfile::tempdir().expect("temporary directory");
        let out = std::fs::File::create(dir.path().join("sipp.out")).expect("log file");
        let port = free_udp_port();
        let child = Command::new("sipp")
            .arg(format!("127.0.0.1:{server_port}"))
            .arg("-sf")
            .arg(fixture(scenario))
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &port.to_string(), "-mp", &(port + 2).to_string()])
            .args(["-s", service, "-au", user, "-ap", password])
            .args(["-m", "1", "-nostdin", "-trace_err", "-timeout", "60s"])
            .arg("-error_file")
            .arg(dir.path().join("errors.log"))
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(dir.path().join("messages.log"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("sipp is installed (scripts/test installs sip-tester)");
        Sipp {
            port,
            tcp: false,
            child,
            dir,
        }
    }

    /// Waits until SIPp holds its port (binding it then fails), at most 10 s.
    fn wait_bound(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let taken = if self.tcp {
                std::net::TcpListener::bind(("127.0.0.1", self.port)).is_err()
            } else {
                UdpSocket::bind(("127.0.0.1", self.port)).is_err()
            };
            if taken {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("sipp did not bind 127.0.0.1:{}: {}", self.port, self.log());
    }

    /// SIPp's output and error log so far.
    pub fn log(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "{}\n{}\n{}",
            read("sipp.out"),
            read("errors.log"),
            read("messages.log")
        )
    }

    /// Waits up to `within` for SIPp to finish its one call; kills it if it does not.
    pub fn finish(mut self, within: Duration) -> Finished {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Finished {
                    code: status.code(),
                    log: self.log(),
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Finished {
            code: None,
            log: self.log(),
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One G.711 μ-law byte of a 16-bit linear sample (the encoder the decoder under test inverts).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// A pcap (Ethernet, IPv4, UDP, RTP payload type 0) of `seconds` of μ-law audio, 20 ms per
/// packet: a 1 kHz sine at `amplitude` (of full scale), or digital silence (0xFF) at 0.
pub fn ulaw_pcap(seconds: u32, amplitude: f64) -> Vec<u8> {
    let mut out = Vec::new();
    // Global header: magic, version 2.4, zone, accuracy, snap length, link type 1 (Ethernet).
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    let packets = seconds * 50;
    for n in 0..packets {
        let mut rtp = vec![0x80, 0x00];
        rtp.extend_from_slice(&(n as u16).to_be_bytes());
        rtp.extend_from_slice(&(n * 160).to_be_bytes());
        rtp.extend_from_slice(&0x5157_0001u32.to_be_bytes());
        for i in 0..160 {
            let t = f64::from(n * 160 + i) / 8000.0;
            let sample = amplitude * 32_767.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin();
            rtp.push(linear_to_ulaw(sample as i16));
        }
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        let checksum = ip_checksum(&ip);
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&6000u16.to_be_bytes());
        frame.extend_from_slice(&6000u16.to_be_bytes());
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(&rtp);
        let micros = u64::from(n) * 20_000;
        out.extend_from_slice(&((micros / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((micros % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    out
}

fn ip_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}
