//! Digest authentication for SIP (RFC 3261 22.4, RFC 8760): MD5 and SHA-256, their `-sess`
//! variants, `qop=auth` and `auth-int` (our requests have no body).
//!
//! A server may offer several challenges; the strongest algorithm we know wins, as RFC 8760
//! asks of a client. An unknown algorithm is not guessed at: the caller reports it.

use md5::Md5;
use sha2::{Digest, Sha256};
use std::fmt::Write;

/// A hash algorithm of digest authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Algorithm {
    /// `MD5` (the default when a challenge names none).
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256`.
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
}

impl Algorithm {
    fn parse(name: &str) -> Option<Algorithm> {
        [
            ("MD5", Algorithm::Md5),
            ("MD5-sess", Algorithm::Md5Sess),
            ("SHA-256", Algorithm::Sha256),
            ("SHA-256-sess", Algorithm::Sha256Sess),
        ]
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, a)| a)
    }

    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    fn hash(self, data: &str) -> String {
        let bytes: Vec<u8> = match self {
            Algorithm::Md5 | Algorithm::Md5Sess => Md5::digest(data.as_bytes()).to_vec(),
            Algorithm::Sha256 | Algorithm::Sha256Sess => Sha256::digest(data.as_bytes()).to_vec(),
        };
        bytes.iter().fold(String::new(), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
    }

    fn is_sess(self) -> bool {
        match self {
            Algorithm::Md5Sess | Algorithm::Sha256Sess => true,
            Algorithm::Md5 | Algorithm::Sha256 => false,
        }
    }
}

/// Quality of protection chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qop {
    /// `auth`.
    Auth,
    /// `auth-int` (integrity of the body, which is empty for us).
    AuthInt,
}

/// One parsed `WWW-Authenticate` / `Proxy-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The realm the credentials are for.
    pub realm: String,
    /// The server's nonce.
    pub nonce: String,
    /// Echoed back unchanged.
    pub opaque: Option<String>,
    /// The hash algorithm.
    pub algorithm: Algorithm,
    /// The protection chosen from what the server offered, `None` for RFC 2069 style.
    pub qop: Option<Qop>,
    /// The previous credentials were right, only the nonce was old.
    pub stale: bool,
}

impl Challenge {
    /// Parses `Digest realm="…", nonce="…", …`. `Err` says why it cannot be answered.
    pub fn parse(header: &str) -> Result<Challenge, String> {
        let header = header.trim();
        let rest = header
            .get(..6)
            .filter(|s| s.eq_ignore_ascii_case("digest"))
            .map(|_| &header[6..])
            .ok_or_else(|| "not a Digest challenge".to_string())?;
        let params = params(rest)?;
        let get = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let algorithm = match get("algorithm") {
            None => Algorithm::Md5,
            Some(name) => Algorithm::parse(&name).ok_or_else(|| {
                format!(
                    "digest algorithm `{}` is not supported (MD5 and SHA-256 are)",
                    super::message::printable(&name, 30)
                )
            })?,
        };
        let qop = match get("qop") {
            None => None,
            Some(list) => {
                let offered: Vec<&str> = list.split(',').map(str::trim).collect();
                if offered.iter().any(|q| q.eq_ignore_ascii_case("auth")) {
                    Some(Qop::Auth)
                } else if offered.iter().any(|q| q.eq_ignore_ascii_case("auth-int")) {
                    Some(Qop::AuthInt)
                } else {
                    return Err("the challenge offers no qop we know (auth, auth-int)".into());
                }
            }
        };
        Ok(Challenge {
            realm: get("realm").ok_or("the challenge has no realm")?,
            nonce: get("nonce").ok_or("the challenge has no nonce")?,
            opaque: get("opaque"),
            algorithm,
            qop,
            stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// The strongest challenge we can answer among `headers`, or why none can be.
    pub fn best<'a>(headers: impl IntoIterator<Item = &'a str>) -> Result<Challenge, String> {
        let mut best: Option<Challenge> = None;
        let mut last_error = "the server asked for credentials without a challenge".to_string();
        for header in headers {
            match Challenge::parse(header) {
                Ok(c) if best.as_ref().is_none_or(|b| c.algorithm > b.algorithm) => best = Some(c),
                Ok(_) => {}
                Err(e) => last_error = e,
            }
        }
        best.ok_or(last_error)
    }

    /// The `Authorization` / `Proxy-Authorization` value for a request.
    pub fn answer(
        &self,
        credentials: &Credentials<'_>,
        method: &str,
        uri: &str,
        cnonce: &str,
    ) -> String {
        let nc = "00000001";
        let alg = self.algorithm;
        let mut ha1 = alg.hash(&format!(
            "{}:{}:{}",
            credentials.user, self.realm, credentials.password
        ));
        if alg.is_sess() {
            ha1 = alg.hash(&format!("{ha1}:{}:{cnonce}", self.nonce));
        }
        let ha2 = match self.qop {
            Some(Qop::AuthInt) => alg.hash(&format!("{method}:{uri}:{}", alg.hash(""))),
            Some(Qop::Auth) | None => alg.hash(&format!("{method}:{uri}")),
        };
        let response = match self.qop {
            Some(qop) => {
                let qop = qop_name(qop);
                alg.hash(&format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", self.nonce))
            }
            None => alg.hash(&format!("{ha1}:{}:{ha2}", self.nonce)),
        };
        let mut out = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm={}",
            quote(credentials.user),
            quote(&self.realm),
            quote(&self.nonce),
            alg.name()
        );
        if let Some(qop) = self.qop {
            let _ = write!(out, ", qop={}, nc={nc}, cnonce=\"{cnonce}\"", qop_name(qop));
        }
        if let Some(opaque) = &self.opaque {
            let _ = write!(out, ", opaque=\"{}\"", quote(opaque));
        }
        out
    }
}

/// The server side, for the demo's PBX: whether `authorization` (an `Authorization` header)
/// answers `challenge` for `method` with `credentials`. The expected answer is computed by
/// [`Challenge::answer`] from the client's own `uri` and `cnonce`, so both sides share one
/// implementation of the hashing. Only the first use of a nonce (`nc=00000001`) is accepted.
pub fn verify(
    challenge: &Challenge,
    authorization: &str,
    credentials: &Credentials<'_>,
    method: &str,
) -> bool {
    let Some(rest) = authorization
        .trim()
        .get(..6)
        .filter(|s| s.eq_ignore_ascii_case("digest"))
        .and_then(|_| authorization.trim().get(6..))
    else {
        return false;
    };
    let Ok(given) = params(rest) else {
        return false;
    };
    let get = |list: &[(String, String)], name: &str| {
        list.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let (Some(uri), Some(response)) = (get(&given, "uri"), get(&given, "response")) else {
        return false;
    };
    if get(&given, "username").as_deref() != Some(credentials.user)
        || get(&given, "nonce").as_deref() != Some(challenge.nonce.as_str())
    {
        return false;
    }
    let cnonce = get(&given, "cnonce").unwrap_or_default();
    let expected = challenge.answer(credentials, method, &uri, &cnonce);
    let expected = expected
        .get(6..)
        .and_then(|p| params(p).ok())
        .and_then(|p| get(&p, "response"));
    expected.is_some_and(|e| e.eq_ignore_ascii_case(&response))
}

/// Who answers a challenge.
pub struct Credentials<'a> {
    /// The authentication user name.
    pub user: &'a str,
    /// The password; never printed.
    pub password: &'a str,
}

fn qop_name(qop: Qop) -> &'static str {
    match qop {
        Qop::Auth => "auth",
        Qop::AuthInt => "auth-int",
    }
}

fn quote(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `name=value, name="quoted, value"` into pairs; quoted values unescaped.
fn params(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            name.push(c);
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(format!(
                "a challenge parameter without a value: `{}`",
                super::message::printable(&name, 30)
            ));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => return Err("an unterminated quoted string in a challenge".into()),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((name.trim().to_string(), value.trim().to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_verifies_the_answer_to_its_own_challenge() {
        let c =
            Challenge::parse("Digest realm=\"demo\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"")
                .unwrap();
        let right = Credentials {
            user: "100",
            password: "secret",
        };
        let wrong = Credentials {
            user: "100",
            password: "guess",
        };
        let answer = c.answer(&right, "REGISTER", "sip:demo", "abc");
        assert!(verify(&c, &answer, &right, "REGISTER"));
        assert!(!verify(
            &c,
            &c.answer(&wrong, "REGISTER", "sip:demo", "abc"),
            &right,
            "REGISTER"
        ));
        assert!(!verify(&c, &answer, &right, "INVITE"));
        assert!(!verify(&c, "Basic abc", &right, "REGISTER"));
        assert!(!verify(&c, "Digest", &right, "REGISTER"));
    }

    /// RFC 2617 3.5: MD5 with qop=auth.
    #[test]
    fn rfc2617_md5_vector() {
        let c = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        assert_eq!((c.algorithm, c.qop), (Algorithm::Md5, Some(Qop::Auth)));
        let creds = Credentials {
            user: "Mufasa",
            password: "Circle Of Life",
        };
        let answer = c.answer(&creds, "GET", "/dir/index.html", "0a4f113b");
        assert!(
            answer.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{answer}"
        );
        assert!(answer.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
    }

    /// RFC 7616 3.9.1 (the digest RFC 8760 brings to SIP): SHA-256 with qop=auth.
    #[test]
    fn rfc7616_sha256_vector() {
        let c = Challenge::parse(
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=SHA-256, \
             nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
        )
        .unwrap();
        let creds = Credentials {
            user: "Mufasa",
            password: "Circle of Life",
        };
        let answer = c.answer(
            &creds,
            "GET",
            "/dir/index.html",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        );
        assert!(
            answer.contains(
                "response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\""
            ),
            "{answer}"
        );
        assert!(answer.contains("algorithm=SHA-256") && answer.contains("nc=00000001"));
    }

    /// RFC 2069 style (no qop), as many PBXs still send: response = H(HA1:nonce:HA2).
    #[test]
    fn without_qop() {
        let c = Challenge::parse("Digest realm=\"r\", nonce=\"n\"").unwrap();
        let creds = Credentials {
            user: "u",
            password: "p",
        };
        let ha1 = Algorithm::Md5.hash("u:r:p");
        let ha2 = Algorithm::Md5.hash("OPTIONS:sip:x");
        let expected = Algorithm::Md5.hash(&format!("{ha1}:n:{ha2}"));
        let answer = c.answer(&creds, "OPTIONS", "sip:x", "c");
        assert!(answer.contains(&format!("response=\"{expected}\"")) && !answer.contains("qop"));
    }

    #[test]
    fn picks_the_strongest_and_refuses_the_unknown() {
        let best = Challenge::best([
            "Digest realm=\"r\", nonce=\"1\", algorithm=MD5",
            "Digest realm=\"r\", nonce=\"2\", algorithm=SHA-256",
            "Digest realm=\"r\", nonce=\"3\", algorithm=SHA-512-256",
        ])
        .unwrap();
        assert_eq!(
            (best.algorithm, best.nonce.as_str()),
            (Algorithm::Sha256, "2")
        );
        let e = Challenge::best(["Digest realm=\"r\", nonce=\"1\", algorithm=SHA-512-256"]);
        assert!(e.unwrap_err().contains("SHA-512-256"));
        for bad in [
            "Basic realm=\"r\"",
            "Digest nonce=\"n\"",
            "Digest realm=\"r",
            "Digest realm",
        ] {
            assert!(Challenge::parse(bad).is_err(), "{bad}");
        }
        assert!(Challenge::best(std::iter::empty()).is_err());
    }
}
