//! Which folders a session looks in, and the small encodings IMAP commands need: folder names in
//! modified UTF-7 (RFC 3501 §5.1.3), `SEARCH SINCE` dates and UID sets.
//!
//! Folder names in the config are plain UTF-8 (`Спам`); on the wire they are modified UTF-7
//! (`&BCEEPwQwBDw-`). Messages and [`super::super::MessageRef::folder`] use the UTF-8 form.

use std::time::{Duration, SystemTime};

/// Spam folder names tried (case-insensitively) when the server marks none `\Junk`.
const SPAM_CANDIDATES: &[&str] = &["Junk", "Spam", "Junk E-mail", "[Gmail]/Spam"];

/// A folder a session searches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Folder {
    /// UTF-8 name, as configured or decoded from the server's listing.
    pub name: String,
    /// The name as sent in commands (modified UTF-7).
    pub wire: String,
    /// A spam folder: a token found here fails the run with "delivered to spam".
    pub spam: bool,
    /// Named in the config, so it must exist; a folder found by guessing may vanish.
    pub required: bool,
}

/// One line of the server's `LIST "" *`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Listed {
    /// The name as the server sent it (modified UTF-7).
    pub wire: String,
    /// Marked `\Junk` (RFC 6154 special use).
    pub junk: bool,
    /// Marked `\Noselect`: a level of the hierarchy, not a folder with messages.
    pub noselect: bool,
}

fn is_inbox(name: &str) -> bool {
    name.eq_ignore_ascii_case("INBOX")
}

/// The watched folders, then the spam folders, checked against the server's listing.
/// `Err(name)` names a configured folder that does not exist.
pub(super) fn resolve(
    listed: &[Listed],
    folders: &[String],
    spam_folders: Option<&[String]>,
) -> Result<Vec<Folder>, String> {
    let exists = |wire: &str| {
        // INBOX always exists and is case-insensitive; other names are compared as sent.
        is_inbox(wire) || listed.iter().any(|l| !l.noselect && l.wire == wire)
    };
    let configured = |name: &String, spam: bool| {
        let wire = if is_inbox(name) {
            "INBOX".to_string()
        } else {
            encode_utf7(name)
        };
        if exists(&wire) {
            Ok(Folder {
                name: name.clone(),
                wire,
                spam,
                required: true,
            })
        } else {
            Err(name.clone())
        }
    };
    let mut out = folders
        .iter()
        .map(|f| configured(f, false))
        .collect::<Result<Vec<_>, _>>()?;
    match spam_folders {
        Some(list) => {
            for f in list {
                out.push(configured(f, true)?);
            }
        }
        None => {
            let selectable = || listed.iter().filter(|l| !l.noselect);
            let mut found: Vec<&Listed> = selectable().filter(|l| l.junk).collect();
            if found.is_empty() {
                found = selectable()
                    .filter(|l| {
                        let name = decode_utf7(&l.wire);
                        SPAM_CANDIDATES
                            .iter()
                            .any(|c| c.eq_ignore_ascii_case(&name))
                    })
                    .collect();
            }
            for l in found {
                // A folder both watched and special-use Junk is searched once, as configured.
                if out.iter().any(|f| f.wire == l.wire) {
                    continue;
                }
                out.push(Folder {
                    name: decode_utf7(&l.wire),
                    wire: l.wire.clone(),
                    spam: true,
                    required: false,
                });
            }
        }
    }
    Ok(out)
}

/// The `SEARCH SINCE` argument for mail that arrived at or after `since`: SINCE compares dates
/// in the server's time zone, so a day earlier (in UTC) cannot miss anything; exact times are
/// compared afterwards with INTERNALDATE.
pub(super) fn search_since(since: SystemTime) -> String {
    let day_before = since
        .checked_sub(Duration::from_secs(86_400))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let date = time::OffsetDateTime::from(day_before).date();
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS[usize::from(u8::from(date.month())) - 1];
    format!("{}-{month}-{}", date.day(), date.year())
}

/// A UID set with runs collapsed (`1:3,7,9:10`); `uids` must be sorted.
pub(super) fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// Modified base64 of RFC 3501 §5.1.3: `,` instead of `/`, no padding.
const MB64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// A folder name in modified UTF-7.
pub(super) fn encode_utf7(name: &str) -> String {
    let mut out = String::new();
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if run.is_empty() {
            return;
        }
        let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        let mut bits = 0u32;
        let mut nbits = 0;
        for b in bytes {
            bits = (bits << 8) | u32::from(b);
            nbits += 8;
            while nbits >= 6 {
                nbits -= 6;
                out.push(char::from(MB64[(bits >> nbits) as usize & 63]));
            }
        }
        if nbits > 0 {
            out.push(char::from(MB64[(bits << (6 - nbits)) as usize & 63]));
        }
        out.push('-');
        run.clear();
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut run, &mut out);
    out
}

/// A folder name from modified UTF-7; malformed parts are kept as sent.
pub(super) fn decode_utf7(wire: &str) -> String {
    let mut out = String::new();
    let mut rest = wire;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let Some(end) = after.find('-') else {
            out.push_str(&rest[at..]);
            return out;
        };
        let encoded = &after[..end];
        if encoded.is_empty() {
            out.push('&');
        } else {
            match decode_mb64(encoded) {
                Some(text) => out.push_str(&text),
                None => out.push_str(&rest[at..at + end + 2]),
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn decode_mb64(encoded: &str) -> Option<String> {
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut bytes = Vec::new();
    for c in encoded.bytes() {
        let v = MB64.iter().position(|&m| m == c)? as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            bytes.push((bits >> nbits) as u8);
        }
    }
    if bytes.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]))
        .collect();
    String::from_utf16(&units).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(wire: &str, junk: bool) -> Listed {
        Listed {
            wire: wire.into(),
            junk,
            noselect: false,
        }
    }

    fn names(folders: &[Folder]) -> Vec<(&str, bool)> {
        folders.iter().map(|f| (f.name.as_str(), f.spam)).collect()
    }

    #[test]
    fn modified_utf7_round_trips() {
        let cases = [
            ("INBOX", "INBOX"),
            ("Спам", "&BCEEPwQwBDw-"),
            ("Входящие", "&BBIERQQ+BDQETwRJBDgENQ-"),
            ("R&D", "R&-D"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("Junk E-mail", "Junk E-mail"),
            ("😀", "&2D3eAA-"),
        ];
        for (name, wire) in cases {
            assert_eq!(encode_utf7(name), wire, "{name}");
            assert_eq!(decode_utf7(wire), name, "{wire}");
        }
        // Garbage is shown as sent rather than dropped.
        assert_eq!(decode_utf7("a&b"), "a&b");
        assert_eq!(decode_utf7("a&***-b"), "a&***-b");
    }

    #[test]
    fn spam_folder_is_the_junk_special_use_first() {
        let list = [
            listed("INBOX", false),
            listed("Spam", false),
            listed("&BCEEPwQwBDw-", true),
        ];
        let found = resolve(&list, &["INBOX".into()], None).unwrap();
        assert_eq!(names(&found), [("INBOX", false), ("Спам", true)]);
        assert!(found[0].required && !found[1].required);
    }

    #[test]
    fn spam_folders_by_name_when_none_is_marked() {
        let list = [
            listed("INBOX", false),
            listed("junk", false),
            listed("[Gmail]/Spam", false),
            listed("Spammers", false),
            Listed {
                wire: "Spam".into(),
                junk: false,
                noselect: true,
            },
        ];
        let found = resolve(&list, &["INBOX".into()], None).unwrap();
        assert_eq!(
            names(&found),
            [("INBOX", false), ("junk", true), ("[Gmail]/Spam", true)]
        );
        let none = resolve(&[listed("INBOX", false)], &["INBOX".into()], None).unwrap();
        assert_eq!(names(&none), [("INBOX", false)]);
    }

    #[test]
    fn configured_folders_must_exist() {
        let list = [listed("INBOX", false), listed("&BCEEPwQwBDw-", false)];
        let found = resolve(&list, &["inbox".into()], Some(&["Спам".into()])).unwrap();
        assert_eq!(found[0].wire, "INBOX");
        assert_eq!(found[1].wire, "&BCEEPwQwBDw-");
        assert!(found[1].required && found[1].spam);
        assert_eq!(
            resolve(&list, &["Support".into()], None).unwrap_err(),
            "Support"
        );
        assert_eq!(
            resolve(&list, &["INBOX".into()], Some(&["Junk".into()])).unwrap_err(),
            "Junk"
        );
        // A watched folder that is also the Junk folder is not searched twice.
        let list = [listed("INBOX", false), listed("Junk", true)];
        let found = resolve(&list, &["INBOX".into(), "Junk".into()], None).unwrap();
        assert_eq!(names(&found), [("INBOX", false), ("Junk", false)]);
    }

    #[test]
    fn search_dates_start_a_day_early() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_251_200); // 2024-03-01 00:00 UTC
        assert_eq!(search_since(t), "29-Feb-2024");
        assert_eq!(
            search_since(t + Duration::from_secs(86_400 * 10)),
            "10-Mar-2024"
        );
        assert_eq!(search_since(SystemTime::UNIX_EPOCH), "31-Dec-1969");
    }

    #[test]
    fn uid_sets_collapse_runs() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[5]), "5");
        assert_eq!(uid_set(&[]), "");
        assert_eq!(uid_set(&[u32::MAX - 1, u32::MAX]), "4294967294:4294967295");
    }
}
