//! SCAN continuation tokens that reveal nothing.
//!
//! A page of SCAN ends after [`SCAN_BUDGET`](super::store::SCAN_BUDGET) keys were
//! *examined*, readable or not, and the next page starts after the last one examined. Sent
//! as it is, that key would name a key the client may not read, and a client choosing its
//! own tokens could walk every key name of the store. So the token the client sees is the
//! key sealed with AES-256-GCM under a key drawn when the broker starts, bound to the
//! client id (associated data), and hex-encoded (the SDKs hand tokens back as strings). A
//! token from another client, another broker run, or made up is refused.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};

/// Seals and opens SCAN tokens for one broker run.
pub struct ScanTokens {
    key: Option<LessSafeKey>,
}

impl std::fmt::Debug for ScanTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanTokens").finish_non_exhaustive()
    }
}

impl Default for ScanTokens {
    fn default() -> Self {
        ScanTokens::new()
    }
}

impl ScanTokens {
    /// A fresh random key. Without one (the system's random source failed, which does not
    /// happen on a working host) every SCAN stops after its first page rather than leak.
    pub fn new() -> Self {
        let mut bytes = [0u8; 32];
        let key = aws_lc_rs::rand::fill(&mut bytes)
            .ok()
            .and_then(|()| UnboundKey::new(&AES_256_GCM, &bytes).ok())
            .map(LessSafeKey::new);
        if key.is_none() {
            tracing::error!(target: "statestore", "no random source: SCAN returns first pages only");
        }
        ScanTokens { key }
    }

    /// The token a client sees for `last_key`.
    pub fn seal(&self, client_id: &str, last_key: &[u8]) -> Option<Vec<u8>> {
        let key = self.key.as_ref()?;
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let mut sealed = last_key.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(client_id.as_bytes()),
            &mut sealed,
        )
        .ok()?;
        let mut out = Vec::with_capacity(2 * (NONCE_LEN + sealed.len()));
        for b in nonce.iter().chain(&sealed) {
            out.extend_from_slice(format!("{b:02X}").as_bytes());
        }
        Some(out)
    }

    /// The key a token sealed for `client_id` names; `None` for anything else.
    pub fn open(&self, client_id: &str, token: &[u8]) -> Option<Vec<u8>> {
        let key = self.key.as_ref()?;
        let raw = unhex(token)?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut sealed = sealed.to_vec();
        let opened = key
            .open_in_place(nonce, Aad::from(client_id.as_bytes()), &mut sealed)
            .ok()?;
        Some(opened.to_vec())
    }
}

fn unhex(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_for_their_client_only() {
        let tokens = ScanTokens::new();
        let sealed = tokens.seal("dev-1", b"secret/0799").expect("sealed");
        assert!(sealed.iter().all(|b| b.is_ascii_hexdigit()));
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            tokens.open("dev-1", &sealed).as_deref(),
            Some(&b"secret/0799"[..])
        );
        assert_eq!(tokens.open("dev-2", &sealed), None);
        assert_eq!(ScanTokens::new().open("dev-1", &sealed), None);
        assert_eq!(tokens.open("dev-1", b"secret/0799"), None);
        assert_eq!(tokens.open("dev-1", b""), None);
        let mut flipped = sealed.clone();
        flipped[30] = if flipped[30] == b'0' { b'1' } else { b'0' };
        assert_eq!(tokens.open("dev-1", &flipped), None);
    }
}
