//! Decoding of the packets only a server sends (CONNACK, SUBACK, UNSUBACK), for
//! [`super::decode_from_server`]: the broker never needs these, but test clients and
//! tools do, and round-trip tests use them to check the encoder.

use super::properties;
use super::reader::Reader;
use super::DecodeError;
use crate::packet::{ConnAck, SubAck, UnsubAck};
use crate::reason::ReasonCode;

/// CONNACK (§3.2), client side. v3.1.1 return codes are mapped to their v5 equivalents
/// (the inverse of [`ReasonCode::to_v3_connack`]); reserved ones are malformed.
pub(crate) fn connack(r: &mut Reader<'_>, v5: bool) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    if flags & 0xFE != 0 {
        return Err(DecodeError::malformed("reserved CONNACK flags set"));
    }
    let code = r.u8()?;
    let (reason_code, properties) = if v5 {
        (ReasonCode(code), properties::connack(r)?)
    } else {
        let rc = match code {
            0 => ReasonCode::SUCCESS,
            1 => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            2 => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            3 => ReasonCode::SERVER_UNAVAILABLE,
            4 => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            5 => ReasonCode::NOT_AUTHORIZED,
            _ => return Err(DecodeError::malformed("reserved CONNACK return code")),
        };
        (rc, Default::default())
    };
    r.expect_end("bytes after the CONNACK properties")?;
    Ok(ConnAck {
        session_present: flags & 0x01 != 0,
        reason_code,
        properties,
    })
}

/// The reason-code list that ends SUBACK and v5 UNSUBACK.
fn reason_codes(r: &mut Reader<'_>) -> Result<Vec<ReasonCode>, DecodeError> {
    let mut out = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        out.push(ReasonCode(r.u8()?));
    }
    Ok(out)
}

/// SUBACK (§3.9), client side.
pub(crate) fn suback(r: &mut Reader<'_>, v5: bool) -> Result<SubAck, DecodeError> {
    let packet_id = r.packet_id()?;
    let properties = if v5 {
        properties::ack(r)?
    } else {
        Default::default()
    };
    let reason_codes = reason_codes(r)?;
    if !v5
        && reason_codes
            .iter()
            .any(|rc| !matches!(rc.0, 0x00 | 0x01 | 0x02 | 0x80))
    {
        return Err(DecodeError::malformed("reserved SUBACK return code"));
    }
    Ok(SubAck {
        packet_id,
        properties,
        reason_codes,
    })
}

/// UNSUBACK (§3.11), client side. v3.1.1 UNSUBACK is just the packet identifier.
pub(crate) fn unsuback(r: &mut Reader<'_>, v5: bool) -> Result<UnsubAck, DecodeError> {
    let packet_id = r.packet_id()?;
    let (properties, reason_codes) = if v5 {
        (properties::ack(r)?, reason_codes(r)?)
    } else {
        r.expect_end("bytes after the UNSUBACK packet identifier")?;
        (Default::default(), Vec::new())
    };
    Ok(UnsubAck {
        packet_id,
        properties,
        reason_codes,
    })
}
