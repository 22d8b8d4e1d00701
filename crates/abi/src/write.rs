//! `write()` and `read()` on the device: the `key:value` grammar both ways.

use nix::errno::Errno;

use crate::{RequestError, STR_KEY_MAX, WRITE_MAX, WRITE_VALUE_MAX};

/// A parsed `write(fd, "key:value", n)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteRequest<'a> {
    /// `key:value`: stores `value` under `key`.
    Put {
        /// The bytes before the first colon.
        key: &'a [u8],
        /// The bytes after it.
        value: &'a [u8],
    },
    /// `key:+suffix`: appends `suffix` to the value of `key`.
    Append {
        /// The bytes before the first colon.
        key: &'a [u8],
        /// The bytes after the `+`.
        suffix: &'a [u8],
    },
}

/// Parses a `write()` buffer (the daemon's side): split at the first colon, binary safe.
///
/// # Errors
/// The errno the ABI names: EINVAL for no colon, an empty key or an empty value; EMSGSIZE
/// for a key over [`STR_KEY_MAX`], a value part over [`WRITE_VALUE_MAX`] or a buffer over
/// [`WRITE_MAX`].
pub fn parse_write(buf: &[u8]) -> Result<WriteRequest<'_>, Errno> {
    if buf.len() > WRITE_MAX {
        return Err(Errno::EMSGSIZE);
    }
    let colon = buf.iter().position(|&b| b == b':').ok_or(Errno::EINVAL)?;
    let (key, rest) = (&buf[..colon], &buf[colon + 1..]);
    if key.is_empty() {
        return Err(Errno::EINVAL);
    }
    if key.len() > STR_KEY_MAX || rest.len() > WRITE_VALUE_MAX {
        return Err(Errno::EMSGSIZE);
    }
    match rest {
        [] | [b'+'] => Err(Errno::EINVAL),
        [b'+', suffix @ ..] => Ok(WriteRequest::Append { key, suffix }),
        value => Ok(WriteRequest::Put { key, value }),
    }
}

/// The `write()` buffer for `request` (the client's side), refused when the device would
/// read it differently: a key with a colon, a put whose value begins with `+`, lengths out of
/// bounds.
///
/// ```
/// use hpkv_abi::{encode_write, parse_write, WriteRequest};
/// let put = WriteRequest::Put { key: b"k", value: b"a:b\n" };
/// let buf = encode_write(put)?;
/// assert_eq!(buf, b"k:a:b\n");
/// assert_eq!(parse_write(&buf), Ok(put));
/// # Ok::<(), hpkv_abi::RequestError>(())
/// ```
///
/// # Errors
/// [`RequestError`] for what the grammar cannot carry.
pub fn encode_write(request: WriteRequest<'_>) -> Result<Vec<u8>, RequestError> {
    let (key, plus, value) = match request {
        WriteRequest::Put { key, value } => {
            if value.first() == Some(&b'+') {
                return Err(RequestError::PlusInWriteValue);
            }
            (key, &b""[..], value)
        }
        WriteRequest::Append { key, suffix } => (key, &b"+"[..], suffix),
    };
    if !(1..=STR_KEY_MAX).contains(&key.len()) {
        return Err(RequestError::KeyLength {
            len: key.len(),
            max: STR_KEY_MAX,
        });
    }
    if key.contains(&b':') {
        return Err(RequestError::ColonInKey);
    }
    if value.is_empty() || plus.len() + value.len() > WRITE_VALUE_MAX {
        return Err(RequestError::ValueLength {
            len: value.len(),
            max: WRITE_VALUE_MAX - plus.len(),
        });
    }
    Ok([key, b":", plus, value].concat())
}

/// One `key ':' value '\n'` line of the listing (`read()`).
pub fn listing_line(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(key.len() + value.len() + 2);
    line.extend_from_slice(key);
    line.push(b':');
    line.extend_from_slice(value);
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_grammar_and_errnos() {
        let put = |key, value| Ok(WriteRequest::Put { key, value });
        assert_eq!(parse_write(b"k:v"), put(b"k", b"v"));
        assert_eq!(parse_write(b"k:a:b\0\n"), put(b"k", b"a:b\0\n"));
        let append = |key, suffix| Ok(WriteRequest::Append { key, suffix });
        assert_eq!(parse_write(b"k:+more"), append(b"k", b"more"));
        assert_eq!(parse_write(b"k:++"), append(b"k", b"+"));
        assert_eq!(parse_write(b"novalue"), Err(Errno::EINVAL));
        assert_eq!(parse_write(b":v"), Err(Errno::EINVAL));
        assert_eq!(parse_write(b"k:"), Err(Errno::EINVAL));
        assert_eq!(parse_write(b"k:+"), Err(Errno::EINVAL));
        let long_key = [b"k".repeat(512), b":v".to_vec()].concat();
        assert_eq!(parse_write(&long_key), Err(Errno::EMSGSIZE));
        let ok_key = [b"k".repeat(511), b":v".to_vec()].concat();
        assert!(parse_write(&ok_key).is_ok());
        let big_value = [b"k:".to_vec(), vec![b'x'; WRITE_VALUE_MAX + 1]].concat();
        assert_eq!(parse_write(&big_value), Err(Errno::EMSGSIZE));
        let max_value = [b"k:".to_vec(), vec![b'x'; WRITE_VALUE_MAX]].concat();
        assert!(parse_write(&max_value).is_ok());
        assert_eq!(
            parse_write(&vec![b'k'; WRITE_MAX + 1]),
            Err(Errno::EMSGSIZE)
        );
    }

    #[test]
    fn encode_write_round_trips_or_refuses() {
        let value_max = vec![b'v'; WRITE_VALUE_MAX];
        let suffix_max = &value_max[1..];
        let key_max = vec![b'k'; STR_KEY_MAX];
        for request in [
            WriteRequest::Put {
                key: b"k",
                value: b"\0:\n+",
            },
            WriteRequest::Put {
                key: &key_max,
                value: &value_max,
            },
            WriteRequest::Append {
                key: b"k",
                suffix: b"+x",
            },
            WriteRequest::Append {
                key: b"k\0\n",
                suffix: suffix_max,
            },
        ] {
            let buf = encode_write(request).unwrap();
            assert_eq!(parse_write(&buf), Ok(request));
        }
        let refused = [
            (
                WriteRequest::Put {
                    key: b"",
                    value: b"v",
                },
                "the key is 0 bytes long",
            ),
            (
                WriteRequest::Put {
                    key: &[b'k'; 512],
                    value: b"v",
                },
                "keys are 1 to 511",
            ),
            (
                WriteRequest::Put {
                    key: b"a:b",
                    value: b"v",
                },
                "colon",
            ),
            (
                WriteRequest::Put {
                    key: b"k",
                    value: b"+v",
                },
                "append",
            ),
            (
                WriteRequest::Put {
                    key: b"k",
                    value: b"",
                },
                "values are 1 to 102399",
            ),
            (
                WriteRequest::Append {
                    key: b"k",
                    suffix: &value_max,
                },
                "values are 1 to 102398",
            ),
        ];
        for (request, why) in refused {
            let e = encode_write(request).unwrap_err();
            assert!(e.to_string().contains(why), "{request:?}: {e}");
        }
    }

    #[test]
    fn listing_lines() {
        assert_eq!(listing_line(b"k", b"v:\n"), b"k:v:\n\n");
    }
}
