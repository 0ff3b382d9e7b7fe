//! A request payload parsed into a typed [`Request`] (statestore.md §2.1, §2.2, §10).
//!
//! Verbs and option words match ASCII-case-insensitively: the SDKs send upper case, D1's
//! own examples lower case, so accepting both accepts everything the real broker does.
//! Errors come in the spec's order: framing → verb → arity → options → key length.

use std::num::NonZeroU64;

use bytes::Bytes;

use super::error::ErrorReply;
use super::resp3::{parse_array, parse_decimal};

/// The condition of a SET (§2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetCondition {
    /// No option: always set.
    #[default]
    Always,
    /// `NX`: only if the key does not exist.
    NotExists,
    /// `NEX`: only if the key does not exist or already holds this SET's value (lease renewal).
    NotExistsOrEqual,
}

/// One state store command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `GET key`.
    Get { key: Bytes },
    /// `SET key value [NX|NEX] [PX ms]`, options in any order.
    Set {
        key: Bytes,
        value: Bytes,
        condition: SetCondition,
        /// `PX`: a relative TTL in milliseconds; `None` removes any expiry (Redis semantics).
        expiry_ms: Option<NonZeroU64>,
    },
    /// `DEL key`.
    Del { key: Bytes },
    /// `VDEL key value`: delete only if the key holds `value`.
    VDel { key: Bytes, value: Bytes },
    /// `KEYNOTIFY key [STOP]`.
    KeyNotify { key: Bytes, stop: bool },
    /// `SCAN pattern [token]` (unreleased, §10): a glob over keys and an opaque continuation.
    Scan {
        pattern: Bytes,
        token: Option<Bytes>,
    },
}

impl Request {
    /// Parse a request payload; the error is the `-ERR` reply to send.
    pub fn parse(payload: &Bytes) -> Result<Request, ErrorReply> {
        let elements = parse_array(payload)?;
        let (verb, args) = elements.split_first().ok_or(ErrorReply::Syntax)?;
        let request = match Verb::from_bytes(verb).ok_or(ErrorReply::UnknownCommand)? {
            Verb::Get => Request::Get {
                key: exactly_one(args)?,
            },
            Verb::Del => Request::Del {
                key: exactly_one(args)?,
            },
            Verb::Set => parse_set(args)?,
            Verb::VDel => match args {
                [key, value] => Request::VDel {
                    key: key.clone(),
                    value: value.clone(),
                },
                _ => return Err(ErrorReply::WrongNumberOfArguments),
            },
            Verb::KeyNotify => match args {
                [key] => Request::KeyNotify {
                    key: key.clone(),
                    stop: false,
                },
                [key, option] if option.eq_ignore_ascii_case(b"STOP") => Request::KeyNotify {
                    key: key.clone(),
                    stop: true,
                },
                [_, _] => return Err(ErrorReply::Syntax),
                _ => return Err(ErrorReply::WrongNumberOfArguments),
            },
            Verb::Scan => match args {
                [pattern] => Request::Scan {
                    pattern: pattern.clone(),
                    token: None,
                },
                [pattern, token] => Request::Scan {
                    pattern: pattern.clone(),
                    token: Some(token.clone()),
                },
                _ => return Err(ErrorReply::WrongNumberOfArguments),
            },
        };
        if request.key().is_some_and(|key| key.is_empty()) {
            return Err(ErrorReply::KeyLengthZero);
        }
        Ok(request)
    }

    /// The key the command acts on (what authorization and fencing look at); `None` for SCAN,
    /// whose pattern is not a key.
    pub fn key(&self) -> Option<&Bytes> {
        match self {
            Request::Get { key }
            | Request::Set { key, .. }
            | Request::Del { key }
            | Request::VDel { key, .. }
            | Request::KeyNotify { key, .. } => Some(key),
            Request::Scan { .. } => None,
        }
    }
}

enum Verb {
    Get,
    Set,
    Del,
    VDel,
    KeyNotify,
    Scan,
}

impl Verb {
    fn from_bytes(verb: &[u8]) -> Option<Verb> {
        [
            (&b"GET"[..], Verb::Get),
            (b"SET", Verb::Set),
            (b"DEL", Verb::Del),
            (b"VDEL", Verb::VDel),
            (b"KEYNOTIFY", Verb::KeyNotify),
            (b"SCAN", Verb::Scan),
        ]
        .into_iter()
        .find_map(|(name, v)| verb.eq_ignore_ascii_case(name).then_some(v))
    }
}

fn exactly_one(args: &[Bytes]) -> Result<Bytes, ErrorReply> {
    match args {
        [key] => Ok(key.clone()),
        _ => Err(ErrorReply::WrongNumberOfArguments),
    }
}

/// `SET key value` then options in any order. `NX` with `NEX`, a repeated `PX`, a `PX`
/// without a positive integer (fractions, `0`, negatives) and any other word (`KEEPTTL`,
/// `EX`, `GET`, ...) are syntax errors (§2.2). Repeating the same condition is harmless.
fn parse_set(args: &[Bytes]) -> Result<Request, ErrorReply> {
    let [key, value, options @ ..] = args else {
        return Err(ErrorReply::WrongNumberOfArguments);
    };
    let mut condition = SetCondition::Always;
    let mut expiry_ms = None;
    let mut options = options.iter();
    while let Some(option) = options.next() {
        let wanted = if option.eq_ignore_ascii_case(b"NX") {
            SetCondition::NotExists
        } else if option.eq_ignore_ascii_case(b"NEX") {
            SetCondition::NotExistsOrEqual
        } else if option.eq_ignore_ascii_case(b"PX") && expiry_ms.is_none() {
            let ms = options.next().ok_or(ErrorReply::Syntax)?;
            let ms = parse_decimal(ms).and_then(NonZeroU64::new);
            expiry_ms = Some(ms.ok_or(ErrorReply::Syntax)?);
            continue;
        } else {
            return Err(ErrorReply::Syntax);
        };
        if condition != SetCondition::Always && condition != wanted {
            return Err(ErrorReply::Syntax);
        }
        condition = wanted;
    }
    Ok(Request::Set {
        key: key.clone(),
        value: value.clone(),
        condition,
        expiry_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Result<Request, ErrorReply> {
        Request::parse(&Bytes::copy_from_slice(input))
    }

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    fn set(key: &'static [u8], value: &'static [u8], condition: SetCondition, px: u64) -> Request {
        Request::Set {
            key: b(key),
            value: b(value),
            condition,
            expiry_ms: NonZeroU64::new(px),
        }
    }

    /// §2.2: the exact bytes each SDK emits.
    #[test]
    fn sdk_request_bytes() {
        use SetCondition::*;
        let cases: [(&[u8], Request); 11] = [
            (b"*2\r\n$3\r\nGET\r\n$7\r\ntestkey\r\n", Request::Get { key: b(b"testkey") }),
            (b"*3\r\n$3\r\nSET\r\n$7\r\ntestkey\r\n$9\r\ntestvalue\r\n", set(b"testkey", b"testvalue", Always, 0)),
            (b"*4\r\n$3\r\nSET\r\n$7\r\ntestkey\r\n$9\r\ntestvalue\r\n$2\r\nNX\r\n", set(b"testkey", b"testvalue", NotExists, 0)),
            (b"*4\r\n$3\r\nSET\r\n$7\r\ntestkey\r\n$9\r\ntestvalue\r\n$3\r\nNEX\r\n", set(b"testkey", b"testvalue", NotExistsOrEqual, 0)),
            (b"*5\r\n$3\r\nSET\r\n$7\r\ntestkey\r\n$9\r\ntestvalue\r\n$2\r\nPX\r\n$2\r\n10\r\n", set(b"testkey", b"testvalue", Always, 10)),
            (b"*6\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n$2\r\nNX\r\n$2\r\nPX\r\n$4\r\n1000\r\n", set(b"key", b"value", NotExists, 1000)),
            (b"*3\r\n$3\r\nSET\r\n$7\r\ntestkey\r\n$0\r\n\r\n", set(b"testkey", b"", Always, 0)),
            (b"*2\r\n$3\r\nDEL\r\n$7\r\ntestkey\r\n", Request::Del { key: b(b"testkey") }),
            (b"*3\r\n$4\r\nVDEL\r\n$7\r\ntestkey\r\n$9\r\ntestvalue\r\n", Request::VDel { key: b(b"testkey"), value: b(b"testvalue") }),
            (b"*2\r\n$9\r\nKEYNOTIFY\r\n$7\r\nSOMEKEY\r\n", Request::KeyNotify { key: b(b"SOMEKEY"), stop: false }),
            (b"*3\r\n$9\r\nKEYNOTIFY\r\n$7\r\nSOMEKEY\r\n$4\r\nSTOP\r\n", Request::KeyNotify { key: b(b"SOMEKEY"), stop: true }),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input), Ok(expected), "{input:?}");
        }
    }

    /// §1.4: the worked example `SET lock client1 NEX PX 10000`.
    #[test]
    fn worked_example_set_nex_px() {
        let payload = b"*6\r\n$3\r\nSET\r\n$4\r\nlock\r\n$7\r\nclient1\r\n$3\r\nNEX\r\n$2\r\nPX\r\n$5\r\n10000\r\n";
        assert_eq!(payload.len(), 64);
        assert_eq!(
            parse(payload),
            Ok(set(
                b"lock",
                b"client1",
                SetCondition::NotExistsOrEqual,
                10000
            ))
        );
    }

    #[test]
    fn verbs_and_options_are_case_insensitive_keys_are_not() {
        assert_eq!(
            parse(b"*5\r\n$3\r\nset\r\n$1\r\nK\r\n$1\r\nv\r\n$2\r\npx\r\n$1\r\n5\r\n"),
            Ok(set(b"K", b"v", SetCondition::Always, 5))
        );
        assert_eq!(
            parse(b"*3\r\n$9\r\nKeyNotify\r\n$1\r\nk\r\n$4\r\nstop\r\n"),
            Ok(Request::KeyNotify {
                key: b(b"k"),
                stop: true
            })
        );
        assert_eq!(
            parse(b"*3\r\n$4\r\nvdel\r\n$1\r\nk\r\n$1\r\nv\r\n"),
            Ok(Request::VDel {
                key: b(b"k"),
                value: b(b"v")
            })
        );
    }

    #[test]
    fn set_options_in_any_order() {
        assert_eq!(
            parse(b"*6\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$1\r\n7\r\n$3\r\nNEX\r\n"),
            Ok(set(b"k", b"v", SetCondition::NotExistsOrEqual, 7))
        );
    }

    #[test]
    fn bad_set_options_are_syntax_errors() {
        for input in [
            &b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nNX\r\n$3\r\nNEX\r\n"[..],
            b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n",
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$1\r\n0\r\n",
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$2\r\n-5\r\n",
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$6\r\n1500.5\r\n",
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$20\r\n99999999999999999999\r\n",
            b"*7\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$1\r\n1\r\n$2\r\nPX\r\n$1\r\n2\r\n",
            b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$7\r\nKEEPTTL\r\n",
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nEX\r\n$1\r\n1\r\n",
            b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$3\r\nGET\r\n",
            b"*3\r\n$9\r\nKEYNOTIFY\r\n$1\r\nk\r\n$4\r\nSTAP\r\n",
        ] {
            assert_eq!(parse(input), Err(ErrorReply::Syntax), "{input:?}");
        }
        // The same condition twice is harmless.
        assert_eq!(
            parse(b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nNX\r\n$2\r\nnx\r\n"),
            Ok(set(b"k", b"v", SetCondition::NotExists, 0))
        );
    }

    #[test]
    fn bad_arity_is_wrong_number_of_arguments() {
        for input in [
            &b"*1\r\n$3\r\nGET\r\n"[..],
            b"*3\r\n$3\r\nGET\r\n$1\r\nk\r\n$1\r\nx\r\n",
            b"*1\r\n$3\r\nDEL\r\n",
            b"*3\r\n$3\r\nDEL\r\n$1\r\nk\r\n$1\r\nx\r\n",
            b"*2\r\n$3\r\nSET\r\n$1\r\nk\r\n",
            b"*1\r\n$3\r\nSET\r\n",
            b"*2\r\n$4\r\nVDEL\r\n$1\r\nk\r\n",
            b"*4\r\n$4\r\nVDEL\r\n$1\r\nk\r\n$1\r\nv\r\n$1\r\nx\r\n",
            b"*1\r\n$9\r\nKEYNOTIFY\r\n",
            b"*4\r\n$9\r\nKEYNOTIFY\r\n$1\r\nk\r\n$4\r\nSTOP\r\n$1\r\nx\r\n",
            b"*1\r\n$4\r\nSCAN\r\n",
            b"*4\r\n$4\r\nSCAN\r\n$1\r\n*\r\n$1\r\nt\r\n$1\r\nx\r\n",
        ] {
            assert_eq!(
                parse(input),
                Err(ErrorReply::WrongNumberOfArguments),
                "{input:?}"
            );
        }
    }

    #[test]
    fn empty_array_is_a_syntax_error() {
        assert_eq!(parse(b"*0\r\n"), Err(ErrorReply::Syntax));
    }

    #[test]
    fn zero_length_key_for_any_command() {
        for input in [
            &b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$1\r\nv\r\n"[..],
            b"*2\r\n$3\r\nDEL\r\n$0\r\n\r\n",
            b"*3\r\n$4\r\nVDEL\r\n$0\r\n\r\n$1\r\nv\r\n",
            b"*2\r\n$9\r\nKEYNOTIFY\r\n$0\r\n\r\n",
        ] {
            assert_eq!(parse(input), Err(ErrorReply::KeyLengthZero), "{input:?}");
        }
    }

    #[test]
    fn binary_keys_and_values_survive() {
        assert_eq!(
            parse(b"*3\r\n$3\r\nSET\r\n$3\r\n\0\r\n\r\n$2\r\n\r\n\r\n"),
            Ok(set(b"\0\r\n", b"\r\n", SetCondition::Always, 0))
        );
    }

    #[test]
    fn scan_with_and_without_token() {
        assert_eq!(
            parse(b"*2\r\n$4\r\nSCAN\r\n$3\r\nk/*\r\n"),
            Ok(Request::Scan {
                pattern: b(b"k/*"),
                token: None
            })
        );
        assert_eq!(
            parse(b"*3\r\n$4\r\nscan\r\n$1\r\n*\r\n$2\r\n\xff\x00\r\n"),
            Ok(Request::Scan {
                pattern: b(b"*"),
                token: Some(b(b"\xff\x00"))
            })
        );
    }

    /// §8 vector 1: `SET k v`, `GET k` parse.
    #[test]
    fn vector_01_set_then_get_parse() {
        assert_eq!(
            parse(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"),
            Ok(set(b"k", b"v", SetCondition::Always, 0))
        );
        assert_eq!(
            parse(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
            Ok(Request::Get { key: b(b"k") })
        );
    }

    /// §8 vector 4: `SET k v NX`.
    #[test]
    fn vector_04_set_nx_parse() {
        assert_eq!(
            parse(b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nNX\r\n"),
            Ok(set(b"k", b"v", SetCondition::NotExists, 0))
        );
    }

    /// §8 vector 5: `SET k v2 NEX` and `SET k v1 NEX PX 1000`.
    #[test]
    fn vector_05_set_nex_parse() {
        assert_eq!(
            parse(b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv2\r\n$3\r\nNEX\r\n"),
            Ok(set(b"k", b"v2", SetCondition::NotExistsOrEqual, 0))
        );
        assert_eq!(
            parse(b"*6\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n$3\r\nNEX\r\n$2\r\nPX\r\n$4\r\n1000\r\n"),
            Ok(set(b"k", b"v1", SetCondition::NotExistsOrEqual, 1000))
        );
    }

    /// §8 vector 6: `VDEL k wrong`, `VDEL k v1`.
    #[test]
    fn vector_06_vdel_parse() {
        assert_eq!(
            parse(b"*3\r\n$4\r\nVDEL\r\n$1\r\nk\r\n$5\r\nwrong\r\n"),
            Ok(Request::VDel {
                key: b(b"k"),
                value: b(b"wrong")
            })
        );
    }

    /// §8 vector 7: `DEL missing`, `GET missing`.
    #[test]
    fn vector_07_del_get_missing_parse() {
        assert_eq!(
            parse(b"*2\r\n$3\r\nDEL\r\n$7\r\nmissing\r\n"),
            Ok(Request::Del { key: b(b"missing") })
        );
        assert_eq!(
            parse(b"*2\r\n$3\r\nGET\r\n$7\r\nmissing\r\n"),
            Ok(Request::Get { key: b(b"missing") })
        );
    }

    /// §8 vector 10: `GET ""` → the key length is zero.
    #[test]
    fn vector_10_get_empty_key() {
        assert_eq!(
            parse(b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n"),
            Err(ErrorReply::KeyLengthZero)
        );
        assert_eq!(
            Request::parse(&b(b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n"))
                .map_err(|e| crate::statestore::Reply::Error(e).to_bytes()),
            Err(b(b"-ERR the key length is zero\r\n"))
        );
    }

    /// §8 vector 11: unknown verb, missing key, inline command.
    #[test]
    fn vector_11_unknown_arity_syntax() {
        assert_eq!(
            parse(b"*2\r\n$3\r\nFOO\r\n$1\r\nk\r\n"),
            Err(ErrorReply::UnknownCommand)
        );
        assert_eq!(
            parse(b"*1\r\n$3\r\nGET\r\n"),
            Err(ErrorReply::WrongNumberOfArguments)
        );
        assert_eq!(parse(b"hello"), Err(ErrorReply::Syntax));
    }

    /// §8 vector 12: `KEYNOTIFY SOMEKEY` and `KEYNOTIFY SOMEKEY STOP`.
    #[test]
    fn vector_12_keynotify_parse() {
        assert_eq!(
            parse(b"*2\r\n$9\r\nKEYNOTIFY\r\n$7\r\nSOMEKEY\r\n"),
            Ok(Request::KeyNotify {
                key: b(b"SOMEKEY"),
                stop: false
            })
        );
        assert_eq!(
            parse(b"*3\r\n$9\r\nKEYNOTIFY\r\n$7\r\nSOMEKEY\r\n$4\r\nSTOP\r\n"),
            Ok(Request::KeyNotify {
                key: b(b"SOMEKEY"),
                stop: true
            })
        );
    }
}
