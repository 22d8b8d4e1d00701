//! How hpkvctl writes keys and values, and reads them back from the command line.
//!
//! | format | get | scan (a record) | when |
//! |---|---|---|---|
//! | escaped | `"value"` | `"key" "value"` | standard output is a terminal, or `--escaped` |
//! | raw | the value's bytes | `key:value` and a newline (the device's listing) | otherwise, or `--raw` |
//! | JSON | `{"key":"k","value":"v"}` | one such object a line (JSON Lines) | `--json` |
//! | NUL | the value, NUL | the key, NUL, the value, NUL | `-0` |
//!
//! - **Escaped**, as redis-cli shows strings: in double quotes, printable ASCII as it is, `\"`
//!   and `\\` for the quote and the backslash, `\n`, `\r`, `\t`, `\a`, `\b` for those
//!   controls, and `\xHH` for every other byte (controls, DEL, and every byte over 0x7F, so
//!   that nothing reaches the terminal that it could interpret). `-e` reads arguments written
//!   this way.
//! - **Raw**: the bytes as they are. Unambiguous for one value (`get`); the listing is the
//!   device's own format, ambiguous for keys holding `:` or newlines: use another format for
//!   such keys.
//! - **JSON**: a JSON string per key or value, each byte one character U+0000 to U+00FF
//!   (ISO 8859-1), written in ASCII only: printable ASCII as it is, `\"` and `\\`, `\n`, `\r`,
//!   `\t`, and `\u00HH` for every other byte. A decoder gets the bytes back by taking each
//!   character's code point as a byte (jq: `.key | explode`). Valid UTF-8 text therefore shows
//!   as one character per byte.
//! - **NUL**: each key and value followed by a NUL byte, for `xargs -0` and `read -d ''`. The
//!   bytes are as they are but for two escapes, so that a NUL always ends a field: a NUL in a
//!   key or value is written `\0` and a backslash `\\`.

use std::fmt;
use std::fmt::Write as _;

/// How to write keys and values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Quoted, with escapes: safe on a terminal.
    Escaped,
    /// The bytes as they are.
    Raw,
    /// JSON strings, one byte per character.
    Json,
    /// NUL-terminated fields, NUL and backslash escaped.
    Nul,
}

/// `bytes` as the escaped format writes them, in double quotes.
pub fn escaped(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x07 => out.push_str("\\a"),
            0x08 => out.push_str("\\b"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('"');
    out
}

/// `bytes` as a JSON string: one character per byte, in ASCII.
pub fn json_string(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
    }
    out.push('"');
    out
}

/// Appends `bytes` to `out` as one NUL-terminated field.
pub fn nul_field(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        match b {
            0 => out.extend_from_slice(b"\\0"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            _ => out.push(b),
        }
    }
    out.push(0);
}

/// A value as `get` writes it.
pub fn value(format: Format, key: &[u8], value: &[u8]) -> Vec<u8> {
    match format {
        Format::Escaped => format!("{}\n", escaped(value)).into_bytes(),
        Format::Raw => value.to_vec(),
        Format::Json => json_record(key, Some(value)).into_bytes(),
        Format::Nul => {
            let mut out = Vec::with_capacity(value.len() + 1);
            nul_field(value, &mut out);
            out
        }
    }
}

/// A record as `scan` writes it; without the value for `--keys-only`.
pub fn record(format: Format, key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    match (format, value) {
        (Format::Escaped, Some(v)) => format!("{} {}\n", escaped(key), escaped(v)).into_bytes(),
        (Format::Escaped, None) => format!("{}\n", escaped(key)).into_bytes(),
        (Format::Raw, Some(v)) => hpkv_abi::listing_line(key, v),
        (Format::Raw, None) => [key, b"\n"].concat(),
        (Format::Json, _) => json_record(key, value).into_bytes(),
        (Format::Nul, _) => {
            let mut out = Vec::with_capacity(key.len() + value.map_or(0, <[u8]>::len) + 2);
            nul_field(key, &mut out);
            if let Some(v) = value {
                nul_field(v, &mut out);
            }
            out
        }
    }
}

/// `{"key":…,"value":…}` and a newline.
fn json_record(key: &[u8], value: Option<&[u8]>) -> String {
    match value {
        Some(v) => format!(
            "{{\"key\":{},\"value\":{}}}\n",
            json_string(key),
            json_string(v)
        ),
        None => format!("{{\"key\":{}}}\n", json_string(key)),
    }
}

/// Why an escaped argument (`-e`) cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub enum UnescapeError {
    /// A backslash at the end.
    Dangling,
    /// A backslash before a character that starts no escape.
    Unknown(char),
    /// `\x` not followed by two hex digits.
    BadHex,
}

impl fmt::Display for UnescapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnescapeError::Dangling => f.write_str("a backslash ends the argument"),
            UnescapeError::Unknown(c) => write!(
                f,
                "unknown escape \\{c} (use \\\\ \\\" \\n \\r \\t \\a \\b \\0 or \\xHH)"
            ),
            UnescapeError::BadHex => f.write_str("\\x takes two hex digits"),
        }
    }
}

impl std::error::Error for UnescapeError {}

/// Reads an argument written in the escaped format: the escapes of [`escaped`], and `\0`;
/// surrounding double quotes, if both are there, are dropped (so that what `get` shows on a
/// terminal can be pasted back).
pub fn unescape(text: &[u8]) -> Result<Vec<u8>, UnescapeError> {
    let inner = match text {
        [b'"', inner @ .., b'"'] if !ends_escaped(inner) => inner,
        _ => text,
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter().copied();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let escape = bytes.next().ok_or(UnescapeError::Dangling)?;
        out.push(match escape {
            b'\\' => b'\\',
            b'"' => b'"',
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'a' => 0x07,
            b'b' => 0x08,
            b'0' => 0,
            b'x' => {
                let hex = [bytes.next(), bytes.next()];
                let [Some(hi), Some(lo)] = hex else {
                    return Err(UnescapeError::BadHex);
                };
                let digits = std::str::from_utf8(&[hi, lo])
                    .ok()
                    .and_then(|d| u8::from_str_radix(d, 16).ok());
                digits.ok_or(UnescapeError::BadHex)?
            }
            other => return Err(UnescapeError::Unknown(char::from(other))),
        });
    }
    Ok(out)
}

/// Whether `inner` ends in an odd number of backslashes (its last quote is escaped).
fn ends_escaped(inner: &[u8]) -> bool {
    inner.iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value, in keys and values that also hold the separators of each format.
    fn awkward() -> Vec<(Vec<u8>, Vec<u8>)> {
        let all: Vec<u8> = (0..=255).collect();
        vec![
            (all.clone(), all.iter().rev().copied().collect()),
            (b"a:b\nc\0d".to_vec(), b"\0\0:\n\\".to_vec()),
            (b"\"quoted\" \\0".to_vec(), b"\x1b[31mred\x1b[0m".to_vec()),
            (b"\xff\xfe\xc3\x28".to_vec(), b"\\".to_vec()),
            (b"k".to_vec(), b"\\x41".to_vec()),
        ]
    }

    /// Reads back what [`escaped`] wrote for a record: `"key" "value"`.
    fn parse_escaped_line(line: &str) -> (Vec<u8>, Vec<u8>) {
        // The key's closing quote is the first quote not escaped.
        let bytes = line.as_bytes();
        let mut at = 1;
        while bytes[at] != b'"' {
            at += if bytes[at] == b'\\' { 2 } else { 1 };
        }
        let key = unescape(&bytes[..=at]).unwrap();
        assert_eq!(bytes[at + 1], b' ');
        let value = unescape(&bytes[at + 2..]).unwrap();
        (key, value)
    }

    #[test]
    fn escaped_round_trips_and_is_plain_ascii() {
        for (key, value) in awkward() {
            let line = String::from_utf8(record(Format::Escaped, &key, Some(&value))).unwrap();
            let line = line.strip_suffix('\n').expect("one line");
            assert!(!line.contains('\n'));
            assert!(line.bytes().all(|b| (0x20..0x7f).contains(&b)), "{line}");
            assert_eq!(parse_escaped_line(line), (key.clone(), value.clone()));
            let shown = value_text(Format::Escaped, &key, &value);
            assert_eq!(unescape(shown.trim_end().as_bytes()).unwrap(), value);
        }
        assert_eq!(escaped(b"a\"b\\c\x1b\n\xff"), r#""a\"b\\c\x1b\n\xff""#);
    }

    fn value_text(format: Format, key: &[u8], v: &[u8]) -> String {
        String::from_utf8(value(format, key, v)).unwrap()
    }

    #[test]
    fn json_round_trips_through_a_json_parser() {
        for (key, v) in awkward() {
            for text in [
                String::from_utf8(record(Format::Json, &key, Some(&v))).unwrap(),
                value_text(Format::Json, &key, &v),
            ] {
                assert!(text.is_ascii() && text.ends_with('\n'));
                assert_eq!(text.matches('\n').count(), 1, "one line");
                let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
                let bytes = |field: &str| -> Vec<u8> {
                    parsed[field]
                        .as_str()
                        .unwrap()
                        .chars()
                        .map(|c| u8::try_from(u32::from(c)).expect("U+0000 to U+00FF"))
                        .collect()
                };
                assert_eq!((bytes("key"), bytes("value")), (key.clone(), v.clone()));
            }
        }
        let keys_only = String::from_utf8(record(Format::Json, b"k\0", None)).unwrap();
        assert_eq!(keys_only, "{\"key\":\"k\\u0000\"}\n");
    }

    /// Splits NUL-format output into its fields, undoing the two escapes.
    fn nul_fields(out: &[u8]) -> Vec<Vec<u8>> {
        let fields: Vec<&[u8]> = out.split(|&b| b == 0).collect();
        assert_eq!(
            fields.last(),
            Some(&&b""[..]),
            "every field ends with a NUL"
        );
        let undo = |field: &[u8]| {
            let mut bytes = field.iter();
            let mut out = vec![];
            while let Some(&b) = bytes.next() {
                if b != b'\\' {
                    out.push(b);
                    continue;
                }
                out.push(match bytes.next() {
                    Some(b'0') => 0,
                    Some(b'\\') => b'\\',
                    other => panic!("a backslash, then {other:?}"),
                });
            }
            out
        };
        fields[..fields.len() - 1].iter().map(|f| undo(f)).collect()
    }

    #[test]
    fn nul_fields_round_trip() {
        let mut out = vec![];
        for (key, v) in awkward() {
            out.extend(record(Format::Nul, &key, Some(&v)));
        }
        let want: Vec<Vec<u8>> = awkward().into_iter().flat_map(|(k, v)| [k, v]).collect();
        assert_eq!(nul_fields(&out), want);
        assert_eq!(value(Format::Nul, b"k", b"a\0b\\"), b"a\\0b\\\\\0");
        // Plain keys and values are written as they are.
        assert_eq!(record(Format::Nul, b"k:1\n", Some(b"v v")), b"k:1\n\0v v\0");
    }

    #[test]
    fn raw_is_the_bytes_and_the_listing() {
        assert_eq!(value(Format::Raw, b"k", b"\0\xff\n"), b"\0\xff\n");
        assert_eq!(record(Format::Raw, b"k", Some(b"v:1")), b"k:v:1\n");
        assert_eq!(record(Format::Raw, b"k", None), b"k\n");
    }

    proptest::proptest! {
        /// Any key and value come back from every format but the raw listing.
        #[test]
        fn arbitrary_bytes_round_trip(
            key in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..64),
            v in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..64),
        ) {
            let line = String::from_utf8(record(Format::Escaped, &key, Some(&v))).unwrap();
            proptest::prop_assert_eq!(
                parse_escaped_line(line.trim_end_matches('\n')),
                (key.clone(), v.clone())
            );
            let json: serde_json::Value =
                serde_json::from_slice(&record(Format::Json, &key, Some(&v))).unwrap();
            let bytes = |f: &str| -> Vec<u8> {
                json[f].as_str().unwrap().chars().map(|c| u8::try_from(u32::from(c)).unwrap()).collect()
            };
            proptest::prop_assert_eq!((bytes("key"), bytes("value")), (key.clone(), v.clone()));
            proptest::prop_assert_eq!(
                nul_fields(&record(Format::Nul, &key, Some(&v))),
                vec![key.clone(), v.clone()]
            );
            proptest::prop_assert_eq!(value(Format::Raw, &key, &v), v);
        }
    }

    #[test]
    fn unescape_reads_every_escape_and_refuses_the_rest() {
        assert_eq!(
            unescape(br#"a\x00\n\\\"\0\t\r\a\b"#).unwrap(),
            b"a\0\n\\\"\0\t\r\x07\x08"
        );
        assert_eq!(unescape(br#""quoted""#).unwrap(), b"quoted");
        assert_eq!(
            unescape(br#""ends\""#).unwrap(),
            b"\"ends\"",
            "an escaped quote stays"
        );
        assert_eq!(unescape(b"no escapes").unwrap(), b"no escapes");
        assert_eq!(unescape(b"a\\"), Err(UnescapeError::Dangling));
        assert_eq!(unescape(b"\\q"), Err(UnescapeError::Unknown('q')));
        assert_eq!(unescape(b"\\x4"), Err(UnescapeError::BadHex));
        assert_eq!(unescape(b"\\xzz"), Err(UnescapeError::BadHex));
    }
}
