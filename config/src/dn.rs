//! Distinguished names as `authorizationAttributes` subjects are written (RFC 4514 string
//! syntax), parsed into attribute type OIDs and values.
//!
//! The broker compares these parsed names with the names it reads from a certificate's
//! DER (never with a certificate name rendered to text and split again): a CN whose value
//! is `Some CA, O=Other` stays one CN attribute on both sides. Validation uses the same
//! parser, so a subject that does not parse is a configuration error with its YAML path.
//!
//! Syntax (RFC 4514 §3, with the leniency existing configurations rely on):
//! - RDNs are separated by `,`; the attributes of a multi-valued RDN by `+`.
//! - Each attribute is `type = value`. The type is a name (case-insensitive: `CN`, `O`,
//!   `OU`, `C`, `L`, `ST`, `STREET`, `DC`, `UID`, `SERIALNUMBER`, `emailAddress`/`E`, ...,
//!   see [`ATTRIBUTE_TYPES`]), a dotted OID (`2.5.4.3`) or `OID.` + a dotted OID.
//! - In a value, `\` escapes one of `, + " \ < > ; = #` or a space, or starts two hex
//!   digits giving one byte of the UTF-8 value (`\2C` is `,`). A value starting with `#`
//!   is the hex of the value's BER encoding (`CN=#0C03666F6F`).
//! - Unescaped whitespace around types, values, `=`, `,` and `+` is ignored (write `\ ` for
//!   a significant leading or trailing space).
//! - An unescaped `"` or `;` is refused: RFC 2253 used them for quoting and as an RDN
//!   separator, and silently reading them as characters would hide the mistake. `<`, `>`,
//!   `=` and a `#` not at the start are accepted as themselves.

use std::fmt;

/// What a subject string holds: RDNs in the order written, each with its attributes in the
/// order written.
pub type ParsedDn = Vec<Vec<ParsedAttribute>>;

/// One `type = value` of a subject string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParsedAttribute {
    /// Dotted OID, e.g. `2.5.4.3` for CN.
    pub oid: String,
    pub value: ParsedValue,
}

/// An attribute value as written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ParsedValue {
    /// A string value, escapes resolved.
    Text(String),
    /// `#hex`: the BER encoding of the value (the broker decodes string types to text).
    Encoded(Vec<u8>),
}

/// Why a subject string is not a distinguished name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnError {
    #[error("empty distinguished name")]
    Empty,
    #[error("RDN {rdn} is empty (two `,` or `+` in a row, or one at an end)")]
    EmptyRdn { rdn: usize },
    #[error("`{part}` has no `=` (write `TYPE = value`; escape a literal `,` or `+` in a value as `\\,` or `\\+`)")]
    NoEquals { part: String },
    #[error("unknown attribute type `{name}`: use a known name (CN, O, OU, C, L, ST, DC, UID, SERIALNUMBER, emailAddress, ...) or a dotted OID like 2.5.4.3")]
    UnknownType { name: String },
    #[error("`{name}` is not a valid attribute type")]
    BadType { name: String },
    #[error("a `\\` at the end of the value of {name}")]
    DanglingEscape { name: String },
    #[error("`\\{escaped}` in the value of {name} escapes nothing: escape one of , + \" \\ < > ; = # or a space, or write a byte as two hex digits")]
    BadEscape { name: String, escaped: String },
    #[error("the value of {name} is not UTF-8 once its `\\XX` escapes are decoded")]
    NotUtf8 { name: String },
    #[error("unescaped `{found}` in the value of {name}: write `\\{found}` for the character")]
    Unescaped { name: String, found: char },
    #[error("the `#` value of {name} is not an even number of hex digits")]
    BadHex { name: String },
}

/// Attribute type names and their OIDs. Names compare case-insensitively; the first name
/// of an OID is the one used to print it. Covers RFC 4514's table, the X.520 names
/// x509-parser printed (so subjects written against the old printed form still parse),
/// and the common aliases of OpenSSL and Windows (`E`, `S`, `SN`, `GN`, `T`).
pub const ATTRIBUTE_TYPES: &[(&str, &str)] = &[
    ("CN", "2.5.4.3"),
    ("commonName", "2.5.4.3"),
    ("SN", "2.5.4.4"),
    ("surname", "2.5.4.4"),
    ("SERIALNUMBER", "2.5.4.5"),
    ("C", "2.5.4.6"),
    ("countryName", "2.5.4.6"),
    ("L", "2.5.4.7"),
    ("localityName", "2.5.4.7"),
    ("ST", "2.5.4.8"),
    ("S", "2.5.4.8"),
    ("stateOrProvinceName", "2.5.4.8"),
    ("STREET", "2.5.4.9"),
    ("streetAddress", "2.5.4.9"),
    ("O", "2.5.4.10"),
    ("organizationName", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("organizationalUnit", "2.5.4.11"),
    ("organizationalUnitName", "2.5.4.11"),
    ("title", "2.5.4.12"),
    ("T", "2.5.4.12"),
    ("description", "2.5.4.13"),
    ("businessCategory", "2.5.4.15"),
    ("postalCode", "2.5.4.17"),
    ("name", "2.5.4.41"),
    ("GN", "2.5.4.42"),
    ("givenName", "2.5.4.42"),
    ("initials", "2.5.4.43"),
    ("generationQualifier", "2.5.4.44"),
    ("uniqueIdentifier", "2.5.4.45"),
    ("dnQualifier", "2.5.4.46"),
    ("pseudonym", "2.5.4.65"),
    ("organizationIdentifier", "2.5.4.97"),
    ("DC", "0.9.2342.19200300.100.1.25"),
    ("domainComponent", "0.9.2342.19200300.100.1.25"),
    ("UID", "0.9.2342.19200300.100.1.1"),
    ("userId", "0.9.2342.19200300.100.1.1"),
    ("emailAddress", "1.2.840.113549.1.9.1"),
    ("E", "1.2.840.113549.1.9.1"),
    ("Email", "1.2.840.113549.1.9.1"),
];

/// The OID an attribute type name stands for (case-insensitive).
pub fn attribute_oid(name: &str) -> Option<&'static str> {
    ATTRIBUTE_TYPES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, oid)| *oid)
}

/// The name an OID is printed with, when it has one.
pub fn attribute_name(oid: &str) -> Option<&'static str> {
    ATTRIBUTE_TYPES
        .iter()
        .find(|(_, o)| *o == oid)
        .map(|(name, _)| *name)
}

/// Parse an RFC 4514 distinguished name (see the module documentation for the syntax).
pub fn parse(text: &str) -> Result<ParsedDn, DnError> {
    if text.trim().is_empty() {
        return Err(DnError::Empty);
    }
    let mut rdns: ParsedDn = Vec::new();
    let mut rdn: Vec<ParsedAttribute> = Vec::new();
    let mut rest = text;
    loop {
        let (attribute, separator, after) = attribute(rest, rdns.len() + 1)?;
        rdn.push(attribute);
        rest = after;
        match separator {
            Some('+') => {}
            Some(_) => rdns.push(std::mem::take(&mut rdn)),
            None => {
                rdns.push(rdn);
                return Ok(rdns);
            }
        }
    }
}

/// One `type = value` at the start of `text`: the attribute, the separator that ended it
/// (`,` or `+`, `None` at the end) and what follows the separator.
fn attribute(text: &str, rdn: usize) -> Result<(ParsedAttribute, Option<char>, &str), DnError> {
    let Some(eq) = text.find('=') else {
        let part = text.trim();
        return Err(if part.is_empty() {
            DnError::EmptyRdn { rdn }
        } else {
            DnError::NoEquals {
                part: part.to_owned(),
            }
        });
    };
    let name = text[..eq].trim();
    if name.is_empty() {
        return Err(DnError::EmptyRdn { rdn });
    }
    if let Some(sep) = name.find([',', '+']) {
        let part = name[..sep].trim();
        return Err(if part.is_empty() {
            DnError::EmptyRdn { rdn }
        } else {
            DnError::NoEquals {
                part: part.to_owned(),
            }
        });
    }
    let oid = attribute_type(name)?;
    let (value, separator, rest) = value(&text[eq + 1..], name)?;
    if separator.is_some() && rest.trim().is_empty() {
        return Err(DnError::EmptyRdn { rdn: rdn + 1 });
    }
    Ok((ParsedAttribute { oid, value }, separator, rest))
}

/// A type name, a dotted OID or `OID.` + a dotted OID, as a dotted OID.
fn attribute_type(name: &str) -> Result<String, DnError> {
    let dotted = name
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("OID."))
        .map_or(name, |_| &name[4..]);
    if dotted.starts_with(|c: char| c.is_ascii_digit()) {
        let valid = dotted.split('.').count() >= 2
            && dotted.split('.').all(|arc| {
                !arc.is_empty()
                    && arc.bytes().all(|b| b.is_ascii_digit())
                    && (arc == "0" || !arc.starts_with('0'))
            });
        return if valid {
            Ok(dotted.to_owned())
        } else {
            Err(DnError::BadType {
                name: name.to_owned(),
            })
        };
    }
    let descr = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !descr {
        return Err(DnError::BadType {
            name: name.to_owned(),
        });
    }
    attribute_oid(name)
        .map(str::to_owned)
        .ok_or_else(|| DnError::UnknownType {
            name: name.to_owned(),
        })
}

/// The value at the start of `text` (just after `=`), up to an unescaped `,` or `+`.
fn value<'t>(text: &'t str, name: &str) -> Result<(ParsedValue, Option<char>, &'t str), DnError> {
    let trimmed = text.trim_start();
    if let Some(hex) = trimmed.strip_prefix('#') {
        let end = hex.find([',', '+']).unwrap_or(hex.len());
        let separator = hex[end..].chars().next();
        let rest = separator.map_or("", |c| &hex[end + c.len_utf8()..]);
        let digits = hex[..end].trim_end();
        let bytes = decode_hex(digits).ok_or_else(|| DnError::BadHex {
            name: name.to_owned(),
        })?;
        return Ok((ParsedValue::Encoded(bytes), separator, rest));
    }
    let mut bytes: Vec<u8> = Vec::new();
    // Length of `bytes` up to the last character that is not unescaped whitespace.
    let mut significant = 0;
    let mut chars = trimmed.char_indices();
    let mut separator = None;
    let mut rest = "";
    while let Some((i, c)) = chars.next() {
        match c {
            ',' | '+' => {
                separator = Some(c);
                rest = &trimmed[i + 1..];
                break;
            }
            '\\' => {
                let Some((_, e)) = chars.next() else {
                    return Err(DnError::DanglingEscape {
                        name: name.to_owned(),
                    });
                };
                if ",+\"\\<>;=# ".contains(e) {
                    let mut buf = [0u8; 4];
                    bytes.extend_from_slice(e.encode_utf8(&mut buf).as_bytes());
                } else if let Some(high) = e.to_digit(16) {
                    let low = chars
                        .next()
                        .and_then(|(_, l)| l.to_digit(16))
                        .ok_or_else(|| DnError::BadEscape {
                            name: name.to_owned(),
                            escaped: trimmed[i + 1..].chars().take(2).collect(),
                        })?;
                    // Both digits are below 16, so this fits in a byte.
                    bytes.push((high * 16 + low) as u8);
                } else {
                    return Err(DnError::BadEscape {
                        name: name.to_owned(),
                        escaped: e.to_string(),
                    });
                }
                significant = bytes.len();
            }
            '"' | ';' => {
                return Err(DnError::Unescaped {
                    name: name.to_owned(),
                    found: c,
                })
            }
            c => {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                if !c.is_whitespace() {
                    significant = bytes.len();
                }
            }
        }
    }
    bytes.truncate(significant);
    let text = String::from_utf8(bytes).map_err(|_| DnError::NotUtf8 {
        name: name.to_owned(),
    })?;
    Ok((ParsedValue::Text(text), separator, rest))
}

fn decode_hex(digits: &str) -> Option<Vec<u8>> {
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            let high = (pair[0] as char).to_digit(16)?;
            let low = (pair[1] as char).to_digit(16)?;
            u8::try_from(high * 16 + low).ok()
        })
        .collect()
}

/// Writes `value` with the RFC 4514 escapes it needs to parse back to itself.
pub fn escape_value(value: &str, out: &mut impl fmt::Write) -> fmt::Result {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let edge_space = c.is_whitespace() && (i == 0 || i == last);
        let leading_sharp = c == '#' && i == 0;
        if ",+\"\\<>;=".contains(c) || c == ' ' && edge_space || leading_sharp {
            out.write_char('\\')?;
            out.write_char(c)?;
        } else if c.is_control() || edge_space {
            // Edge whitespace other than a space would be trimmed: write its bytes.
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                write!(out, "\\{b:02X}")?;
            }
        } else {
            out.write_char(c)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(oid: &str, value: &str) -> ParsedAttribute {
        ParsedAttribute {
            oid: oid.into(),
            value: ParsedValue::Text(value.into()),
        }
    }

    const CN: &str = "2.5.4.3";
    const O: &str = "2.5.4.10";
    const OU: &str = "2.5.4.11";

    #[test]
    fn names_oids_and_whitespace() {
        assert_eq!(
            parse("CN = Contoso Root CA Cert, OU = Engineering, C = US"),
            Ok(vec![
                vec![text(CN, "Contoso Root CA Cert")],
                vec![text(OU, "Engineering")],
                vec![text("2.5.4.6", "US")],
            ])
        );
        assert_eq!(
            parse("cn=a,2.5.4.10=b, OID.2.5.4.11 = c ,emailaddress=x@y,E=z,dc=example,uid=7,serialNumber=9"),
            Ok(vec![
                vec![text(CN, "a")],
                vec![text(O, "b")],
                vec![text(OU, "c")],
                vec![text("1.2.840.113549.1.9.1", "x@y")],
                vec![text("1.2.840.113549.1.9.1", "z")],
                vec![text("0.9.2342.19200300.100.1.25", "example")],
                vec![text("0.9.2342.19200300.100.1.1", "7")],
                vec![text("2.5.4.5", "9")],
            ])
        );
    }

    #[test]
    fn escapes_keep_separators_inside_the_value() {
        assert_eq!(
            parse(r"CN = Some CA\, O=Other"),
            Ok(vec![vec![text(CN, "Some CA, O=Other")]])
        );
        assert_eq!(
            parse(r#"CN=a\+b\\c\"d\;e\<f\>g\=h\#i"#),
            Ok(vec![vec![text(CN, "a+b\\c\"d;e<f>g=h#i")]])
        );
        assert_eq!(
            parse(r"CN=Some CA\2C O\3dOther"),
            Ok(vec![vec![text(CN, "Some CA, O=Other")]])
        );
        // `\XX` bytes form UTF-8 together.
        assert_eq!(
            parse(r"CN=Lu\C4\8Di\C4\87"),
            Ok(vec![vec![text(CN, "Lučić")]])
        );
        // Unescaped `=`, `<`, `>` and an inner `#` are themselves.
        assert_eq!(parse("CN=a=b<c>#d"), Ok(vec![vec![text(CN, "a=b<c>#d")]]));
    }

    #[test]
    fn spaces_are_trimmed_unless_escaped() {
        assert_eq!(
            parse(r"CN =  \ two  words\  , O= x "),
            Ok(vec![vec![text(CN, " two  words ")], vec![text(O, "x")]])
        );
        assert_eq!(parse("CN="), Ok(vec![vec![text(CN, "")]]));
    }

    #[test]
    fn multi_valued_rdns() {
        assert_eq!(
            parse("CN = fan + OU = Devices, O = Contoso"),
            Ok(vec![
                vec![text(CN, "fan"), text(OU, "Devices")],
                vec![text(O, "Contoso")],
            ])
        );
    }

    #[test]
    fn hex_values_are_encodings() {
        assert_eq!(
            parse("CN=#0C03666F6F, O=x"),
            Ok(vec![
                vec![ParsedAttribute {
                    oid: CN.into(),
                    value: ParsedValue::Encoded(vec![0x0c, 3, b'f', b'o', b'o']),
                }],
                vec![text(O, "x")],
            ])
        );
        assert!(matches!(parse("CN=#0C0"), Err(DnError::BadHex { .. })));
        assert!(matches!(parse("CN=#zz"), Err(DnError::BadHex { .. })));
    }

    #[test]
    fn malformed_subjects_are_refused() {
        assert_eq!(parse("  "), Err(DnError::Empty));
        assert!(matches!(
            parse("no equals sign"),
            Err(DnError::NoEquals { .. })
        ));
        // The old splitter read `CN = a+b` as one value: `+` now separates attributes.
        assert!(matches!(parse("CN = a+b"), Err(DnError::NoEquals { .. })));
        assert!(matches!(parse("CN=a,,O=b"), Err(DnError::EmptyRdn { .. })));
        assert!(matches!(parse("CN=a,"), Err(DnError::EmptyRdn { .. })));
        assert!(matches!(parse("CN=a+"), Err(DnError::EmptyRdn { .. })));
        assert!(matches!(parse("=a"), Err(DnError::EmptyRdn { .. })));
        assert!(matches!(parse("XYZ=a"), Err(DnError::UnknownType { .. })));
        assert!(matches!(parse("C N=a"), Err(DnError::BadType { .. })));
        assert!(matches!(parse("2.5.=a"), Err(DnError::BadType { .. })));
        assert!(matches!(parse("2.05.4=a"), Err(DnError::BadType { .. })));
        assert!(matches!(
            parse(r"CN=a\"),
            Err(DnError::DanglingEscape { .. })
        ));
        assert!(matches!(parse(r"CN=a\q"), Err(DnError::BadEscape { .. })));
        assert!(matches!(parse(r"CN=a\4"), Err(DnError::BadEscape { .. })));
        assert!(matches!(parse(r"CN=\FF"), Err(DnError::NotUtf8 { .. })));
        assert!(matches!(
            parse(r#"CN="a, b""#),
            Err(DnError::Unescaped { found: '"', .. })
        ));
        assert!(matches!(
            parse("CN=a; O=b"),
            Err(DnError::Unescaped { found: ';', .. })
        ));
    }

    #[test]
    fn escaped_values_parse_back() {
        for value in [
            "Some CA, O=Other",
            " lead",
            "trail ",
            "#x",
            "a+b=c\\d\"e;<>",
            "\u{1}",
            "\u{a0}nbsp\u{a0}",
            "\ttab\t",
        ] {
            let mut written = String::from("CN=");
            escape_value(value, &mut written).expect("write");
            assert_eq!(
                parse(&written),
                Ok(vec![vec![text(CN, value)]]),
                "{written}"
            );
        }
    }
}
