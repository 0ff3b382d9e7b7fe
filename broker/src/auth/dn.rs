//! Distinguished names compared the way `authorizationAttributes` subjects are written:
//! `CN = Contoso Root CA Cert, OU = Engineering, C = US` equals `C=US,CN=Contoso Root CA
//! Cert,OU=Engineering` (attribute by attribute, order-insensitive, whitespace around `=`
//! and `,` ignored, attribute names case-insensitive).

/// A normalised DN: sorted `(NAME, value)` pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dn(Vec<(String, String)>);

impl Dn {
    /// Parse `A = v, B = w`. `None` when a part has no `=`.
    pub fn parse(text: &str) -> Option<Dn> {
        let mut parts = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (name, value) = part.split_once('=')?;
            parts.push((name.trim().to_ascii_uppercase(), value.trim().to_owned()));
        }
        if parts.is_empty() {
            return None;
        }
        parts.sort();
        Some(Dn(parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_spacing_and_name_case_do_not_matter() {
        let a = Dn::parse("CN = Contoso Root CA Cert, OU = Engineering, C = US");
        let b = Dn::parse("C=US,cn=Contoso Root CA Cert,OU=Engineering");
        assert!(a.is_some());
        assert_eq!(a, b);
    }

    #[test]
    fn values_and_missing_attributes_do_matter() {
        let a = Dn::parse("CN = smart-fan, OU = Engineering");
        assert_ne!(a, Dn::parse("CN = smart-fan, OU = engineering"));
        assert_ne!(a, Dn::parse("CN = smart-fan"));
        assert_eq!(Dn::parse("no equals sign"), None);
    }
}
