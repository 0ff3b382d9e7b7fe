//! Feeds arbitrary patterns and texts to the glob matcher (`gatehouse_config::glob`), which
//! matches client-chosen SCAN patterns against stored keys.
//!
//! Input: pattern and text separated by the first 0xFF byte (both must be UTF-8).
//!
//! Invariants checked (any violation aborts the fuzzer):
//! - no panic;
//! - a match never spends more than (text characters + 1) × (pattern characters + 2) steps
//!   (the bound that keeps a hostile pattern polynomial, never exponential);
//! - with a smaller budget the matcher either gives the same answer or reports exhaustion.

#![no_main]

use gatehouse_config::glob::Glob;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (pattern, text) = match data.iter().position(|&b| b == 0xFF) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let (Ok(pattern), Ok(text)) = (std::str::from_utf8(pattern), std::str::from_utf8(text)) else {
        return;
    };
    let Ok(glob) = Glob::new(pattern) else {
        return;
    };
    let bound = (text.chars().count() as u64 + 1) * (pattern.chars().count() as u64 + 2);
    let mut budget = bound;
    let answer = glob
        .matches_within(text, &mut budget)
        .expect("the step bound is enough for any match");
    assert_eq!(answer, glob.is_match(text));
    let spent = bound - budget;
    let mut half = spent / 2;
    if let Ok(again) = glob.matches_within(text, &mut half) {
        assert_eq!(again, answer);
    }
});
