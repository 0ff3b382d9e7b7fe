//! Distinguished names compared attribute by attribute, never as text.
//!
//! A configured `authorizationAttributes` subject is parsed with the RFC 4514 parser of
//! the config crate ([`gatehouse_config::dn`]); a certificate's subject is read from its
//! DER (x509-parser's RDN iterator: attribute type OID and value). Both become a [`Dn`]:
//! a set of RDNs, each a set of (OID, value). Two names are equal when they hold the same
//! RDNs, whatever the order (`CN = a, O = b` equals `O=b,CN=a`); attribute names are
//! case-insensitive (they become OIDs) and values are compared exactly (case-sensitive).
//! A comma, plus or equals sign inside a certificate's value stays inside that value, so
//! a leaf whose CN is `Some CA, O=Other` never equals `CN = Some CA, O = Other`.

use std::fmt;

use gatehouse_config::dn::{self as parser, DnError, ParsedValue};
use x509_parser::asn1_rs::{Any, FromDer, Tag, ToDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::x509::X509Name;

/// An attribute value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    /// A directory string (UTF8String, PrintableString, IA5String, BMPString, ...),
    /// decoded: the string type it was encoded with does not matter.
    Text(String),
    /// Anything else, as its DER encoding (matched by a configured `#hex` value).
    Der(Vec<u8>),
}

/// One RDN: its attributes as (dotted OID, value), sorted.
type Rdn = Vec<(String, Value)>;

/// A distinguished name. Compared by its RDNs sorted (order-insensitive); printed in the
/// order written (configuration) or encoded (certificate).
#[derive(Debug, Clone)]
pub struct Dn {
    sorted: Vec<Rdn>,
    ordered: Vec<Rdn>,
}

impl PartialEq for Dn {
    fn eq(&self, other: &Dn) -> bool {
        self.sorted == other.sorted
    }
}

impl Eq for Dn {}

impl std::hash::Hash for Dn {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.sorted.hash(state);
    }
}

/// Why a certificate's subject could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid X.509 certificate: {0}")]
pub struct CertNameError(String);

impl Dn {
    /// Parse a configured subject (RFC 4514, see [`gatehouse_config::dn`]).
    pub fn parse(text: &str) -> Result<Dn, DnError> {
        let rdns = parser::parse(text)?
            .into_iter()
            .map(|rdn| {
                rdn.into_iter()
                    .map(|a| {
                        let value = match a.value {
                            ParsedValue::Text(text) => Value::Text(text),
                            ParsedValue::Encoded(der) => decode_encoded(der),
                        };
                        (a.oid, value)
                    })
                    .collect()
            })
            .collect();
        Ok(Dn::sorted(rdns))
    }

    /// The name as the certificate encodes it: OIDs and values from the DER, no text
    /// rendering in between.
    pub fn from_x509_name(name: &X509Name<'_>) -> Dn {
        let rdns = name
            .iter_rdn()
            .map(|rdn| {
                rdn.iter()
                    .map(|a| (a.attr_type().to_id_string(), value_of(a.attr_value())))
                    .collect()
            })
            .collect();
        Dn::sorted(rdns)
    }

    /// The subject of the DER certificate `der`.
    pub fn subject_of(der: &[u8]) -> Result<Dn, CertNameError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertNameError(e.to_string()))?;
        Ok(Dn::from_x509_name(cert.subject()))
    }

    fn sorted(ordered: Vec<Rdn>) -> Dn {
        let mut sorted = ordered.clone();
        for rdn in &mut sorted {
            rdn.sort();
        }
        sorted.sort();
        Dn { sorted, ordered }
    }
}

/// A configured `#hex` value: a directory string is compared as its text (whatever string
/// type the certificate uses); anything else as the exact encoding.
fn decode_encoded(der: Vec<u8>) -> Value {
    match Any::from_der(&der) {
        Ok(([], any)) => match text_of(&any) {
            Some(text) => Value::Text(text),
            None => Value::Der(der),
        },
        _ => Value::Der(der),
    }
}

/// A certificate attribute value: text for directory strings, else the DER encoding.
fn value_of(any: &Any<'_>) -> Value {
    match text_of(any) {
        Some(text) => Value::Text(text),
        None => Value::Der(any.to_der_vec().unwrap_or_else(|_| any.as_bytes().to_vec())),
    }
}

/// The string a directory string type holds; `None` for other types or bad encodings.
fn text_of(any: &Any<'_>) -> Option<String> {
    let data = any.as_bytes();
    match any.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::NumericString
        | Tag::Ia5String
        | Tag::VisibleString
        | Tag::T61String => std::str::from_utf8(data).ok().map(str::to_owned),
        Tag::BmpString => {
            if !data.len().is_multiple_of(2) {
                return None;
            }
            let units = data.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        Tag::UniversalString => {
            if !data.len().is_multiple_of(4) {
                return None;
            }
            data.chunks(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => None,
    }
}

/// RFC 4514 text (attribute names where known, dotted OIDs otherwise), parseable back
/// into the same [`Dn`]; for logs and `gatehouse explain`.
impl fmt::Display for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rdn) in self.ordered.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            for (j, (oid, value)) in rdn.iter().enumerate() {
                if j > 0 {
                    f.write_str(" + ")?;
                }
                f.write_str(parser::attribute_name(oid).unwrap_or(oid))?;
                f.write_str("=")?;
                match value {
                    Value::Text(text) => parser::escape_value(text, f)?,
                    Value::Der(der) => {
                        f.write_str("#")?;
                        for b in der {
                            write!(f, "{b:02X}")?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dn(text: &str) -> Dn {
        Dn::parse(text).expect("dn")
    }

    #[test]
    fn order_spacing_and_name_case_do_not_matter() {
        let a = Dn::parse("CN = Contoso Root CA Cert, OU = Engineering, C = US");
        let b = Dn::parse("C=US,cn=Contoso Root CA Cert,OU=Engineering");
        assert!(a.is_ok());
        assert_eq!(a, b);
        assert_eq!(dn("CN=a"), dn("2.5.4.3 = a"));
        assert_eq!(dn("CN=a"), dn("commonName=a"));
        assert_eq!(dn("E=x@y"), dn("emailAddress = x@y"));
    }

    #[test]
    fn values_and_missing_attributes_do_matter() {
        let a = dn("CN = smart-fan, OU = Engineering");
        assert_ne!(a, dn("CN = smart-fan, OU = engineering"));
        assert_ne!(a, dn("CN = smart-fan"));
        assert!(Dn::parse("no equals sign").is_err());
    }

    #[test]
    fn an_escaped_comma_stays_in_its_value() {
        assert_ne!(dn(r"CN = Some CA\, O=Other"), dn("CN = Some CA, O = Other"));
        assert_ne!(dn(r"CN = a\+O=b"), dn("CN = a + O = b"));
        assert_eq!(
            dn(r"CN = Some CA\, O=Other"),
            dn(r"CN=Some CA\2C O\3DOther")
        );
    }

    #[test]
    fn multi_valued_rdns_are_not_separate_rdns() {
        assert_ne!(dn("CN = a + O = b"), dn("CN = a, O = b"));
        assert_eq!(dn("CN = a + O = b, C = US"), dn("C=US, O=b+CN=a"));
    }

    #[test]
    fn hex_values_compare_as_their_text() {
        // UTF8String "foo" and PrintableString "foo" both equal CN=foo.
        assert_eq!(dn("CN=#0C03666F6F"), dn("CN=foo"));
        assert_eq!(dn("CN=#1303666F6F"), dn("CN=foo"));
        // BMPString "fo".
        assert_eq!(dn("CN=#1E040066006F"), dn("CN=fo"));
        // An INTEGER is no string: only its encoding matches.
        assert_ne!(dn("CN=#020105"), dn("CN=5"));
        assert_eq!(dn("CN=#020105"), dn("CN=#020105"));
    }

    #[test]
    fn display_parses_back() {
        for text in [
            r"CN=Some CA\, O\=Other, O=Contoso",
            "CN=a + OU=b, C=US",
            r"CN=\ lead, 1.2.3.4=x, CN=#020105",
        ] {
            let a = dn(text);
            assert_eq!(Dn::parse(&a.to_string()), Ok(a.clone()), "{a}");
        }
    }

    proptest::proptest! {
        /// Any text: parsing never panics, and what parses prints back to an equal name.
        #[test]
        fn parse_never_panics_and_display_round_trips(text in "[ -~\\u{e9}]{0,40}") {
            if let Ok(a) = Dn::parse(&text) {
                proptest::prop_assert_eq!(Dn::parse(&a.to_string()), Ok(a));
            }
        }

        /// Names built from escaped values parse to exactly those attributes, and print
        /// back to equal names.
        #[test]
        fn built_names_parse_to_their_attributes(
            parts in proptest::collection::vec(
                (0usize..6, "[ -~\\u{e9}\\u{a0}\\t]{0,12}", proptest::bool::ANY),
                1..6,
            )
        ) {
            const NAMES: [(&str, &str); 6] = [
                ("CN", "2.5.4.3"), ("o", "2.5.4.10"), ("OU", "2.5.4.11"),
                ("emailAddress", "1.2.840.113549.1.9.1"), ("1.2.3.4", "1.2.3.4"),
                ("OID.2.5.4.6", "2.5.4.6"),
            ];
            let mut text = String::new();
            for (i, (name, value, multi)) in parts.iter().enumerate() {
                if i > 0 {
                    text.push_str(if *multi { " + " } else { " , " });
                }
                text.push_str(NAMES[*name].0);
                text.push_str(" = ");
                parser::escape_value(value, &mut text).expect("write");
            }
            let parsed = parser::parse(&text);
            proptest::prop_assert!(parsed.is_ok(), "{text}: {parsed:?}");
            let flat: Vec<(String, ParsedValue)> = parsed
                .unwrap_or_default()
                .into_iter()
                .flatten()
                .map(|a| (a.oid, a.value))
                .collect();
            let expected: Vec<(String, ParsedValue)> = parts
                .iter()
                .map(|(n, v, _)| (NAMES[*n].1.to_owned(), ParsedValue::Text(v.clone())))
                .collect();
            proptest::prop_assert_eq!(flat, expected);
            let dn = Dn::parse(&text).expect("parses");
            proptest::prop_assert_eq!(Dn::parse(&dn.to_string()), Ok(dn));
        }

        /// Any value, escaped, is one attribute with exactly that value.
        #[test]
        fn escaped_values_stay_one_attribute(value in "[ -~\\u{e9}\\u{1}\\u{a0}\\t]{0,30}") {
            let mut text = String::from("CN=");
            parser::escape_value(&value, &mut text).expect("write");
            text.push_str(", O=x");
            let rdns = parser::parse(&text).expect("parses");
            proptest::prop_assert_eq!(rdns.len(), 2);
            proptest::prop_assert_eq!(&rdns[0][0].value, &ParsedValue::Text(value));
        }
    }

    /// The certificate side: names built by rcgen, read back from the DER.
    #[test]
    fn certificate_subjects_are_read_attribute_by_attribute() {
        use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};
        let cert = |build: &dyn Fn(&mut DistinguishedName)| {
            let mut params = CertificateParams::default();
            let mut name = DistinguishedName::new();
            build(&mut name);
            params.distinguished_name = name;
            let key = KeyPair::generate().expect("key");
            let der = params.self_signed(&key).expect("cert").der().to_vec();
            Dn::subject_of(&der).expect("subject")
        };
        let injected = cert(&|n| n.push(DnType::CommonName, "Some CA, O=Other"));
        assert_ne!(injected, dn("CN = Some CA, O = Other"));
        assert_ne!(injected, dn("O = Other"));
        assert_eq!(injected, dn(r"CN = Some CA\, O\=Other"));
        let plus = cert(&|n| n.push(DnType::CommonName, "a+O=Other"));
        assert_ne!(plus, dn("CN = a + O = Other"));
        assert_eq!(plus, dn(r"CN = a\+O=Other"));
        let two = cert(&|n| {
            n.push(DnType::OrganizationName, "Contoso");
            n.push(DnType::CommonName, "smart-fan");
        });
        assert_eq!(two, dn("CN = smart-fan, O = Contoso"));
        let printable = cert(&|n| {
            n.push(
                DnType::CommonName,
                DnValue::PrintableString("fan".try_into().expect("printable")),
            )
        });
        assert_eq!(printable, dn("CN=fan"));
        let bmp = cert(&|n| {
            n.push(
                DnType::CommonName,
                DnValue::BmpString("fän".try_into().expect("bmp")),
            )
        });
        assert_eq!(bmp, dn("CN=fän"));
        let unknown = cert(&|n| n.push(DnType::CustomDnType(vec![1, 2, 3, 4]), "x"));
        assert_eq!(unknown, dn("1.2.3.4=x"));
    }
}
