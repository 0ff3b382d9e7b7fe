//! Feeds arbitrary text to the RFC 4514 parser of `authorizationAttributes` subjects
//! (`gatehouse_config::dn`), which decides which certificate subjects get attributes.
//!
//! Invariants checked (any violation aborts the fuzzer):
//! - no panic;
//! - a parsed name prints back (every value escaped with `escape_value`, types as OIDs) to a
//!   text that parses to the same name: what the operator wrote and what is compared are
//!   the same attributes, and escaping never merges or splits values.

#![no_main]

use gatehouse_config::dn::{escape_value, parse, ParsedValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = parse(text) else {
        return;
    };
    let mut printed = String::new();
    for (i, rdn) in parsed.iter().enumerate() {
        if i > 0 {
            printed.push(',');
        }
        for (j, attribute) in rdn.iter().enumerate() {
            if j > 0 {
                printed.push('+');
            }
            printed.push_str(&attribute.oid);
            printed.push('=');
            match &attribute.value {
                ParsedValue::Text(value) => {
                    escape_value(value, &mut printed).expect("writing to a String");
                }
                ParsedValue::Encoded(ber) => {
                    printed.push('#');
                    for b in ber {
                        printed.push_str(&format!("{b:02x}"));
                    }
                }
            }
        }
    }
    let again = parse(&printed).unwrap_or_else(|e| panic!("{printed:?} does not parse: {e}"));
    assert_eq!(again, parsed, "{text:?} printed as {printed:?}");
});
