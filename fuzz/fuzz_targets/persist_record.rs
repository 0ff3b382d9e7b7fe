//! Feeds arbitrary bytes to the decoder of persisted state store records
//! (`statestore::persist::codec`), as if read back from a damaged or foreign file.
//!
//! Invariants checked (any violation aborts the fuzzer):
//! - no panic in `decode` or `encode`;
//! - whatever decodes re-encodes, and the encoding decodes to an equal entry;
//! - the re-encoding is canonical (shortest varints): no longer than the record, and equal
//!   to it when as long;
//! - the decoded timestamps are valid HLCs: their text form parses back to them.

#![no_main]

use gatehouse::statestore::persist::codec::{decode, encode};
use gatehouse::statestore::Hlc;
use libfuzzer_sys::fuzz_target;

fn check_hlc(hlc: &Hlc) {
    assert!(!hlc.node_id.is_empty() && !hlc.node_id.contains(':'));
    assert_eq!(hlc.to_string().parse::<Hlc>().as_ref(), Ok(hlc));
}

fuzz_target!(|data: &[u8]| {
    let Ok(entry) = decode(data) else {
        return;
    };
    check_hlc(&entry.version);
    if let Some(token) = &entry.fencing_token {
        check_hlc(token);
    }
    let record = encode(&entry);
    assert!(record.len() <= data.len(), "canonical record is longer");
    if record.len() == data.len() {
        assert_eq!(&record[..], data, "same length, different record");
    }
    assert_eq!(decode(&record).as_ref(), Ok(&entry));
});
