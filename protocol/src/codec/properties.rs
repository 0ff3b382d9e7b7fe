//! MQTT 5 properties (§2.2.2): identifiers, which packet may carry which, and decoding
//! straight into the model's property structs.
//!
//! Decoding never builds an intermediate list: one pass over the property block checks
//! each identifier against the packet's allow-list and a 64-bit "seen" mask (every
//! identifier is below 64), then stores the value in its field. Encoding lives in
//! [`super::props_encode`].

use bytes::Bytes;

use super::reader::Reader;
use super::DecodeError;
use crate::packet::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, QoS, UserProperty, WillProperties,
};
use crate::reason::ReasonCode;

/// Property identifiers (MQTT 5 §2.2.2.2).
pub(crate) mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

use id::*;

const fn mask(ids: &[u8]) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < ids.len() {
        m |= 1u64 << ids[i];
        i += 1;
    }
    m
}

/// Where a property block sits, i.e. which identifiers it may hold.
pub(crate) struct Ctx {
    /// Identifiers that may appear (anything else known → 0x81, per §2.2.2.2).
    allowed: u64,
    /// Identifiers that may appear more than once (anything else twice → 0x82).
    repeatable: u64,
    /// Identifiers whose mere presence is a protocol error (0x82) rather than malformed.
    forbidden: u64,
}

const KNOWN: u64 = mask(&[
    PAYLOAD_FORMAT_INDICATOR,
    MESSAGE_EXPIRY_INTERVAL,
    CONTENT_TYPE,
    RESPONSE_TOPIC,
    CORRELATION_DATA,
    SUBSCRIPTION_IDENTIFIER,
    SESSION_EXPIRY_INTERVAL,
    ASSIGNED_CLIENT_IDENTIFIER,
    SERVER_KEEP_ALIVE,
    AUTHENTICATION_METHOD,
    AUTHENTICATION_DATA,
    REQUEST_PROBLEM_INFORMATION,
    WILL_DELAY_INTERVAL,
    REQUEST_RESPONSE_INFORMATION,
    RESPONSE_INFORMATION,
    SERVER_REFERENCE,
    REASON_STRING,
    RECEIVE_MAXIMUM,
    TOPIC_ALIAS_MAXIMUM,
    TOPIC_ALIAS,
    MAXIMUM_QOS,
    RETAIN_AVAILABLE,
    USER_PROPERTY,
    MAXIMUM_PACKET_SIZE,
    WILDCARD_SUBSCRIPTION_AVAILABLE,
    SUBSCRIPTION_IDENTIFIER_AVAILABLE,
    SHARED_SUBSCRIPTION_AVAILABLE,
]);

const USER_ONLY: u64 = mask(&[USER_PROPERTY]);

pub(crate) const CONNECT: Ctx = Ctx {
    allowed: mask(&[
        SESSION_EXPIRY_INTERVAL,
        RECEIVE_MAXIMUM,
        MAXIMUM_PACKET_SIZE,
        TOPIC_ALIAS_MAXIMUM,
        REQUEST_RESPONSE_INFORMATION,
        REQUEST_PROBLEM_INFORMATION,
        USER_PROPERTY,
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
    ]),
    repeatable: USER_ONLY,
    forbidden: 0,
};

pub(crate) const WILL: Ctx = Ctx {
    allowed: mask(&[
        WILL_DELAY_INTERVAL,
        PAYLOAD_FORMAT_INDICATOR,
        MESSAGE_EXPIRY_INTERVAL,
        CONTENT_TYPE,
        RESPONSE_TOPIC,
        CORRELATION_DATA,
        USER_PROPERTY,
    ]),
    repeatable: USER_ONLY,
    forbidden: 0,
};

pub(crate) const CONNACK: Ctx = Ctx {
    allowed: mask(&[
        SESSION_EXPIRY_INTERVAL,
        RECEIVE_MAXIMUM,
        MAXIMUM_QOS,
        RETAIN_AVAILABLE,
        MAXIMUM_PACKET_SIZE,
        ASSIGNED_CLIENT_IDENTIFIER,
        TOPIC_ALIAS_MAXIMUM,
        REASON_STRING,
        USER_PROPERTY,
        WILDCARD_SUBSCRIPTION_AVAILABLE,
        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        SHARED_SUBSCRIPTION_AVAILABLE,
        SERVER_KEEP_ALIVE,
        RESPONSE_INFORMATION,
        SERVER_REFERENCE,
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
    ]),
    repeatable: USER_ONLY,
    forbidden: 0,
};

const PUBLISH_ALLOWED: u64 = mask(&[
    PAYLOAD_FORMAT_INDICATOR,
    MESSAGE_EXPIRY_INTERVAL,
    TOPIC_ALIAS,
    RESPONSE_TOPIC,
    CORRELATION_DATA,
    USER_PROPERTY,
    CONTENT_TYPE,
]);

/// A PUBLISH from a client: Subscription Identifier is a protocol error there
/// ([MQTT-3.3.4-6]), so it is "forbidden" (0x82) rather than "not allowed" (0x81).
pub(crate) const PUBLISH_FROM_CLIENT: Ctx = Ctx {
    allowed: PUBLISH_ALLOWED,
    repeatable: USER_ONLY,
    forbidden: mask(&[SUBSCRIPTION_IDENTIFIER]),
};

/// A PUBLISH from the server carries one Subscription Identifier per matching
/// subscription.
pub(crate) const PUBLISH_FROM_SERVER: Ctx = Ctx {
    allowed: PUBLISH_ALLOWED | mask(&[SUBSCRIPTION_IDENTIFIER]),
    repeatable: mask(&[USER_PROPERTY, SUBSCRIPTION_IDENTIFIER]),
    forbidden: 0,
};

/// PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
pub(crate) const ACK: Ctx = Ctx {
    allowed: mask(&[REASON_STRING, USER_PROPERTY]),
    repeatable: USER_ONLY,
    forbidden: 0,
};

pub(crate) const SUBSCRIBE: Ctx = Ctx {
    allowed: mask(&[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY]),
    repeatable: USER_ONLY,
    forbidden: 0,
};

pub(crate) const UNSUBSCRIBE: Ctx = Ctx {
    allowed: USER_ONLY,
    repeatable: USER_ONLY,
    forbidden: 0,
};

pub(crate) const DISCONNECT: Ctx = Ctx {
    allowed: mask(&[
        SESSION_EXPIRY_INTERVAL,
        REASON_STRING,
        USER_PROPERTY,
        SERVER_REFERENCE,
    ]),
    repeatable: USER_ONLY,
    forbidden: 0,
};

pub(crate) const AUTH: Ctx = Ctx {
    allowed: mask(&[
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
        REASON_STRING,
        USER_PROPERTY,
    ]),
    repeatable: USER_ONLY,
    forbidden: 0,
};

/// One decoded property value. Byte-valued flags are already checked to be 0 or 1.
enum Prop {
    PayloadFormatIndicator(u8),
    MessageExpiryInterval(u32),
    ContentType(String),
    ResponseTopic(String),
    CorrelationData(Bytes),
    SubscriptionIdentifier(u32),
    SessionExpiryInterval(u32),
    AssignedClientIdentifier(String),
    ServerKeepAlive(u16),
    AuthenticationMethod(String),
    AuthenticationData(Bytes),
    RequestProblemInformation(bool),
    WillDelayInterval(u32),
    RequestResponseInformation(bool),
    ResponseInformation(String),
    ServerReference(String),
    ReasonString(String),
    ReceiveMaximum(u16),
    TopicAliasMaximum(u16),
    TopicAlias(u16),
    MaximumQos(QoS),
    RetainAvailable(bool),
    UserProperty(String, String),
    MaximumPacketSize(u32),
    WildcardSubscriptionAvailable(bool),
    SubscriptionIdentifierAvailable(bool),
    SharedSubscriptionAvailable(bool),
}

/// A byte property that may only be 0 or 1; anything else is a protocol error.
fn flag(r: &mut Reader<'_>, what: &'static str) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::protocol(what)),
    }
}

fn read_value(r: &mut Reader<'_>, id: u8) -> Result<Prop, DecodeError> {
    Ok(match id {
        PAYLOAD_FORMAT_INDICATOR => Prop::PayloadFormatIndicator(u8::from(flag(
            r,
            "payload format indicator must be 0 or 1",
        )?)),
        MESSAGE_EXPIRY_INTERVAL => Prop::MessageExpiryInterval(r.u32()?),
        CONTENT_TYPE => Prop::ContentType(r.string()?),
        RESPONSE_TOPIC => Prop::ResponseTopic(r.string()?),
        CORRELATION_DATA => Prop::CorrelationData(r.binary()?),
        SUBSCRIPTION_IDENTIFIER => match r.varint()? {
            0 => return Err(DecodeError::protocol("subscription identifier 0")),
            v => Prop::SubscriptionIdentifier(v),
        },
        SESSION_EXPIRY_INTERVAL => Prop::SessionExpiryInterval(r.u32()?),
        ASSIGNED_CLIENT_IDENTIFIER => Prop::AssignedClientIdentifier(r.string()?),
        SERVER_KEEP_ALIVE => Prop::ServerKeepAlive(r.u16()?),
        AUTHENTICATION_METHOD => Prop::AuthenticationMethod(r.string()?),
        AUTHENTICATION_DATA => Prop::AuthenticationData(r.binary()?),
        REQUEST_PROBLEM_INFORMATION => {
            Prop::RequestProblemInformation(flag(r, "request problem information must be 0 or 1")?)
        }
        WILL_DELAY_INTERVAL => Prop::WillDelayInterval(r.u32()?),
        REQUEST_RESPONSE_INFORMATION => Prop::RequestResponseInformation(flag(
            r,
            "request response information must be 0 or 1",
        )?),
        RESPONSE_INFORMATION => Prop::ResponseInformation(r.string()?),
        SERVER_REFERENCE => Prop::ServerReference(r.string()?),
        REASON_STRING => Prop::ReasonString(r.string()?),
        RECEIVE_MAXIMUM => match r.u16()? {
            0 => return Err(DecodeError::protocol("receive maximum 0")),
            v => Prop::ReceiveMaximum(v),
        },
        TOPIC_ALIAS_MAXIMUM => Prop::TopicAliasMaximum(r.u16()?),
        // [MQTT-3.3.2-8]: alias 0 is never valid. The spec answers an invalid alias with
        // DISCONNECT 0x94, so that is the reason used here too (the session checks the
        // upper bound against its negotiated maximum and uses the same code).
        TOPIC_ALIAS => match r.u16()? {
            0 => {
                return Err(DecodeError::new(
                    ReasonCode::TOPIC_ALIAS_INVALID,
                    "topic alias 0",
                ))
            }
            v => Prop::TopicAlias(v),
        },
        MAXIMUM_QOS => Prop::MaximumQos(if flag(r, "maximum QoS must be 0 or 1")? {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        }),
        RETAIN_AVAILABLE => Prop::RetainAvailable(flag(r, "retain available must be 0 or 1")?),
        USER_PROPERTY => {
            let k = r.string()?;
            let v = r.string()?;
            Prop::UserProperty(k, v)
        }
        MAXIMUM_PACKET_SIZE => match r.u32()? {
            0 => return Err(DecodeError::protocol("maximum packet size 0")),
            v => Prop::MaximumPacketSize(v),
        },
        WILDCARD_SUBSCRIPTION_AVAILABLE => Prop::WildcardSubscriptionAvailable(flag(
            r,
            "wildcard subscription available must be 0 or 1",
        )?),
        SUBSCRIPTION_IDENTIFIER_AVAILABLE => Prop::SubscriptionIdentifierAvailable(flag(
            r,
            "subscription identifier available must be 0 or 1",
        )?),
        SHARED_SUBSCRIPTION_AVAILABLE => Prop::SharedSubscriptionAvailable(flag(
            r,
            "shared subscription available must be 0 or 1",
        )?),
        _ => return Err(DecodeError::malformed("unknown property identifier")),
    })
}

/// Read a property block (variable byte integer length, then properties) and hand each
/// property to `apply`. Checks, in order: block fits the packet (0x81), identifier known
/// (0x81), identifier forbidden here (0x82), allowed here (0x81), not a duplicate (0x82),
/// value fits the block (0x81), value in range (0x82, or 0x94 for topic alias 0).
#[inline]
fn read_block<F>(r: &mut Reader<'_>, ctx: &Ctx, mut apply: F) -> Result<(), DecodeError>
where
    F: FnMut(Prop),
{
    let len = r.varint()? as usize;
    if len == 0 {
        return Ok(());
    }
    let mut block = r.sub(len)?;
    let mut seen = 0u64;
    while !block.is_empty() {
        // Identifiers are variable byte integers, but all defined ones are single bytes:
        // a first byte >= 0x80 can only start an unknown identifier.
        let id = block.u8()?;
        let bit = if id < 64 { 1u64 << id } else { 0 };
        if KNOWN & bit == 0 {
            return Err(DecodeError::malformed("unknown property identifier"));
        }
        if ctx.forbidden & bit != 0 {
            return Err(DecodeError::protocol(
                "subscription identifier in a PUBLISH from a client",
            ));
        }
        if ctx.allowed & bit == 0 {
            return Err(DecodeError::malformed(
                "property not allowed in this packet",
            ));
        }
        if seen & bit != 0 && ctx.repeatable & bit == 0 {
            return Err(DecodeError::protocol("property included more than once"));
        }
        seen |= bit;
        apply(read_value(&mut block, id)?);
    }
    Ok(())
}

pub(crate) fn connect(r: &mut Reader<'_>) -> Result<ConnectProperties, DecodeError> {
    let mut p = ConnectProperties::default();
    read_block(r, &CONNECT, |prop| match prop {
        Prop::SessionExpiryInterval(v) => p.session_expiry_interval = Some(v),
        Prop::ReceiveMaximum(v) => p.receive_maximum = Some(v),
        Prop::MaximumPacketSize(v) => p.maximum_packet_size = Some(v),
        Prop::TopicAliasMaximum(v) => p.topic_alias_maximum = Some(v),
        Prop::RequestResponseInformation(v) => p.request_response_information = Some(v),
        Prop::RequestProblemInformation(v) => p.request_problem_information = Some(v),
        Prop::UserProperty(k, v) => p.user_properties.push((k, v)),
        Prop::AuthenticationMethod(v) => p.authentication_method = Some(v),
        Prop::AuthenticationData(v) => p.authentication_data = Some(v),
        _ => {} // excluded by the CONNECT allow-list
    })?;
    // §3.1.2.11.10: Authentication Data without Authentication Method is a protocol error.
    if p.authentication_data.is_some() && p.authentication_method.is_none() {
        return Err(DecodeError::protocol(
            "authentication data without authentication method",
        ));
    }
    Ok(p)
}

pub(crate) fn will(r: &mut Reader<'_>) -> Result<WillProperties, DecodeError> {
    let mut p = WillProperties::default();
    read_block(r, &WILL, |prop| match prop {
        Prop::WillDelayInterval(v) => p.will_delay_interval = Some(v),
        Prop::PayloadFormatIndicator(v) => p.payload_format_indicator = Some(v),
        Prop::MessageExpiryInterval(v) => p.message_expiry_interval = Some(v),
        Prop::ContentType(v) => p.content_type = Some(v),
        Prop::ResponseTopic(v) => p.response_topic = Some(v),
        Prop::CorrelationData(v) => p.correlation_data = Some(v),
        Prop::UserProperty(k, v) => p.user_properties.push((k, v)),
        _ => {}
    })?;
    Ok(p)
}

pub(crate) fn connack(r: &mut Reader<'_>) -> Result<ConnAckProperties, DecodeError> {
    let mut p = ConnAckProperties::default();
    read_block(r, &CONNACK, |prop| match prop {
        Prop::SessionExpiryInterval(v) => p.session_expiry_interval = Some(v),
        Prop::ReceiveMaximum(v) => p.receive_maximum = Some(v),
        Prop::MaximumQos(v) => p.maximum_qos = Some(v),
        Prop::RetainAvailable(v) => p.retain_available = Some(v),
        Prop::MaximumPacketSize(v) => p.maximum_packet_size = Some(v),
        Prop::AssignedClientIdentifier(v) => p.assigned_client_identifier = Some(v),
        Prop::TopicAliasMaximum(v) => p.topic_alias_maximum = Some(v),
        Prop::ReasonString(v) => p.reason_string = Some(v),
        Prop::UserProperty(k, v) => p.user_properties.push((k, v)),
        Prop::WildcardSubscriptionAvailable(v) => p.wildcard_subscription_available = Some(v),
        Prop::SubscriptionIdentifierAvailable(v) => p.subscription_identifiers_available = Some(v),
        Prop::SharedSubscriptionAvailable(v) => p.shared_subscription_available = Some(v),
        Prop::ServerKeepAlive(v) => p.server_keep_alive = Some(v),
        Prop::ResponseInformation(v) => p.response_information = Some(v),
        Prop::ServerReference(v) => p.server_reference = Some(v),
        Prop::AuthenticationMethod(v) => p.authentication_method = Some(v),
        Prop::AuthenticationData(v) => p.authentication_data = Some(v),
        _ => {}
    })?;
    Ok(p)
}

pub(crate) fn publish(r: &mut Reader<'_>, ctx: &Ctx) -> Result<PublishProperties, DecodeError> {
    let mut p = PublishProperties::default();
    read_block(r, ctx, |prop| match prop {
        Prop::PayloadFormatIndicator(v) => p.payload_format_indicator = Some(v),
        Prop::MessageExpiryInterval(v) => p.message_expiry_interval = Some(v),
        Prop::TopicAlias(v) => p.topic_alias = Some(v),
        Prop::ResponseTopic(v) => p.response_topic = Some(v),
        Prop::CorrelationData(v) => p.correlation_data = Some(v),
        Prop::UserProperty(k, v) => p.user_properties.push((k, v)),
        Prop::SubscriptionIdentifier(v) => p.subscription_identifiers.push(v),
        Prop::ContentType(v) => p.content_type = Some(v),
        _ => {}
    })?;
    Ok(p)
}

/// PUBACK/PUBREC/PUBREL/PUBCOMP/SUBACK/UNSUBACK.
pub(crate) fn ack(r: &mut Reader<'_>) -> Result<AckProperties, DecodeError> {
    let mut p = AckProperties::default();
    read_block(r, &ACK, |prop| match prop {
        Prop::ReasonString(v) => p.reason_string = Some(v),
        Prop::UserProperty(k, v) => p.user_properties.push((k, v)),
        _ => {}
    })?;
    Ok(p)
}

/// SUBSCRIBE: (subscription identifier, user properties).
pub(crate) fn subscribe(
    r: &mut Reader<'_>,
) -> Result<(Option<u32>, Vec<UserProperty>), DecodeError> {
    let mut id = None;
    let mut users = Vec::new();
    read_block(r, &SUBSCRIBE, |prop| match prop {
        Prop::SubscriptionIdentifier(v) => id = Some(v),
        Prop::UserProperty(k, v) => users.push((k, v)),
        _ => {}
    })?;
    Ok((id, users))
}

pub(crate) fn unsubscribe(r: &mut Reader<'_>) -> Result<Vec<UserProperty>, DecodeError> {
    let mut users = Vec::new();
    read_block(r, &UNSUBSCRIBE, |prop| {
        if let Prop::UserProperty(k, v) = prop {
            users.push((k, v));
        }
    })?;
    Ok(users)
}

pub(crate) fn disconnect(r: &mut Reader<'_>) -> Result<DisconnectProperties, DecodeError> {
    let mut p = DisconnectProperties::default();
    read_block(r, &DISCONNECT, |prop| match prop {
        Prop::SessionExpiryInterval(v) => p.session_expiry_interval = Some(v),
        Prop::ReasonString(v) => p.reason_string = Some(v),
        Prop::UserProperty(k, v) => p.user_properties.push((k, v)),
        Prop::ServerReference(v) => p.server_reference = Some(v),
        _ => {}
    })?;
    Ok(p)
}

pub(crate) fn auth(r: &mut Reader<'_>) -> Result<AuthProperties, DecodeError> {
    let mut p = AuthProperties::default();
    read_block(r, &AUTH, |prop| match prop {
        Prop::AuthenticationMethod(v) => p.authentication_method = Some(v),
        Prop::AuthenticationData(v) => p.authentication_data = Some(v),
        Prop::ReasonString(v) => p.reason_string = Some(v),
        Prop::UserProperty(k, v) => p.user_properties.push((k, v)),
        _ => {}
    })?;
    Ok(p)
}
