//! Encoding of MQTT 5 property blocks.
//!
//! Each property set implements [`Props::visit`], which emits its properties into any
//! [`Sink`]. [`block`] runs it once into a [`Counter`] for the length prefix and once
//! into the real sink, so no `Vec` of properties is ever built. Absent (`None`/empty)
//! properties are omitted.

use super::properties::id::*;
use super::sink::{Counter, Sink};
use super::EncodeError;
use crate::packet::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, QoS, UserProperty, WillProperties,
};

pub(crate) trait Props {
    fn visit<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError>;
}

/// Property length (variable byte integer) followed by the properties.
#[inline]
pub(crate) fn block<S: Sink, P: Props>(s: &mut S, p: &P) -> Result<(), EncodeError> {
    let n = len(p)?;
    s.varint(n)?;
    p.visit(s)
}

/// Encoded size of the properties alone (without the length prefix).
#[inline]
pub(crate) fn len<P: Props>(p: &P) -> Result<usize, EncodeError> {
    let mut c = Counter::default();
    p.visit(&mut c)?;
    Ok(c.0)
}

#[inline]
fn byte<S: Sink>(s: &mut S, id: u8, v: Option<u8>) {
    if let Some(v) = v {
        s.u8(id);
        s.u8(v);
    }
}

#[inline]
fn flag<S: Sink>(s: &mut S, id: u8, v: Option<bool>) {
    byte(s, id, v.map(u8::from));
}

#[inline]
fn two<S: Sink>(s: &mut S, id: u8, v: Option<u16>) {
    if let Some(v) = v {
        s.u8(id);
        s.u16(v);
    }
}

#[inline]
fn four<S: Sink>(s: &mut S, id: u8, v: Option<u32>) {
    if let Some(v) = v {
        s.u8(id);
        s.u32(v);
    }
}

#[inline]
fn string<S: Sink>(s: &mut S, id: u8, v: Option<&str>) -> Result<(), EncodeError> {
    if let Some(v) = v {
        s.u8(id);
        s.string(v)?;
    }
    Ok(())
}

#[inline]
fn binary<S: Sink>(s: &mut S, id: u8, v: Option<&[u8]>) -> Result<(), EncodeError> {
    if let Some(v) = v {
        s.u8(id);
        s.binary(v)?;
    }
    Ok(())
}

#[inline]
fn users<S: Sink>(s: &mut S, users: &[UserProperty]) -> Result<(), EncodeError> {
    for (k, v) in users {
        s.u8(USER_PROPERTY);
        s.string(k)?;
        s.string(v)?;
    }
    Ok(())
}

impl Props for ConnectProperties {
    fn visit<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        four(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        two(s, RECEIVE_MAXIMUM, self.receive_maximum);
        four(s, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        two(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        flag(
            s,
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        flag(
            s,
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        users(s, &self.user_properties)?;
        string(
            s,
            AUTHENTICATION_METHOD,
            self.authentication_method.as_deref(),
        )?;
        binary(s, AUTHENTICATION_DATA, self.authentication_data.as_deref())
    }
}

impl Props for WillProperties {
    fn visit<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        four(s, WILL_DELAY_INTERVAL, self.will_delay_interval);
        byte(s, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        four(s, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        string(s, CONTENT_TYPE, self.content_type.as_deref())?;
        string(s, RESPONSE_TOPIC, self.response_topic.as_deref())?;
        binary(s, CORRELATION_DATA, self.correlation_data.as_deref())?;
        users(s, &self.user_properties)
    }
}

impl Props for ConnAckProperties {
    fn visit<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        four(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        two(s, RECEIVE_MAXIMUM, self.receive_maximum);
        // Only 0 and 1 may be sent; absence means QoS 2 is supported (§3.2.2.3.4), so
        // `Some(ExactlyOnce)` is encoded as absence rather than as a protocol error.
        match self.maximum_qos {
            Some(QoS::AtMostOnce) => byte(s, MAXIMUM_QOS, Some(0)),
            Some(QoS::AtLeastOnce) => byte(s, MAXIMUM_QOS, Some(1)),
            Some(QoS::ExactlyOnce) | None => {}
        }
        flag(s, RETAIN_AVAILABLE, self.retain_available);
        four(s, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        string(
            s,
            ASSIGNED_CLIENT_IDENTIFIER,
            self.assigned_client_identifier.as_deref(),
        )?;
        two(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        string(s, REASON_STRING, self.reason_string.as_deref())?;
        users(s, &self.user_properties)?;
        flag(
            s,
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        flag(
            s,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifiers_available,
        );
        flag(
            s,
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
        two(s, SERVER_KEEP_ALIVE, self.server_keep_alive);
        string(
            s,
            RESPONSE_INFORMATION,
            self.response_information.as_deref(),
        )?;
        string(s, SERVER_REFERENCE, self.server_reference.as_deref())?;
        string(
            s,
            AUTHENTICATION_METHOD,
            self.authentication_method.as_deref(),
        )?;
        binary(s, AUTHENTICATION_DATA, self.authentication_data.as_deref())
    }
}

/// PUBLISH properties as sent: the message's own properties, with the per-delivery
/// fields (alias, remaining expiry, subscription identifiers) supplied separately so the
/// fan-out path never clones a [`PublishProperties`].
pub(crate) struct PublishProps<'a> {
    pub base: &'a PublishProperties,
    pub topic_alias: Option<u16>,
    pub message_expiry_interval: Option<u32>,
    pub subscription_identifiers: &'a [u32],
}

impl Props for PublishProps<'_> {
    #[inline]
    fn visit<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        let b = self.base;
        byte(s, PAYLOAD_FORMAT_INDICATOR, b.payload_format_indicator);
        four(s, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        two(s, TOPIC_ALIAS, self.topic_alias);
        string(s, RESPONSE_TOPIC, b.response_topic.as_deref())?;
        binary(s, CORRELATION_DATA, b.correlation_data.as_deref())?;
        users(s, &b.user_properties)?;
        for &id in self.subscription_identifiers {
            s.u8(SUBSCRIPTION_IDENTIFIER);
            s.varint(id as usize)?;
        }
        string(s, CONTENT_TYPE, b.content_type.as_deref())
    }
}

impl Props for AckProperties {
    fn visit<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        string(s, REASON_STRING, self.reason_string.as_deref())?;
        users(s, &self.user_properties)
    }
}

/// SUBSCRIBE's properties live directly on [`crate::Subscribe`].
pub(crate) struct SubscribeProps<'a> {
    pub subscription_identifier: Option<u32>,
    pub user_properties: &'a [UserProperty],
}

impl Props for SubscribeProps<'_> {
    fn visit<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        if let Some(id) = self.subscription_identifier {
            s.u8(SUBSCRIPTION_IDENTIFIER);
            s.varint(id as usize)?;
        }
        users(s, self.user_properties)
    }
}

/// UNSUBSCRIBE carries only user properties.
pub(crate) struct UserProps<'a>(pub &'a [UserProperty]);

impl Props for UserProps<'_> {
    fn visit<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        users(s, self.0)
    }
}

impl Props for DisconnectProperties {
    fn visit<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        four(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        string(s, REASON_STRING, self.reason_string.as_deref())?;
        users(s, &self.user_properties)?;
        string(s, SERVER_REFERENCE, self.server_reference.as_deref())
    }
}

impl Props for AuthProperties {
    fn visit<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        string(
            s,
            AUTHENTICATION_METHOD,
            self.authentication_method.as_deref(),
        )?;
        binary(s, AUTHENTICATION_DATA, self.authentication_data.as_deref())?;
        string(s, REASON_STRING, self.reason_string.as_deref())?;
        users(s, &self.user_properties)
    }
}

/// Whether an ack's properties are all absent (enables the short forms).
pub(crate) fn ack_is_empty(p: &AckProperties) -> bool {
    p.reason_string.is_none() && p.user_properties.is_empty()
}

pub(crate) fn disconnect_is_empty(p: &DisconnectProperties) -> bool {
    p.session_expiry_interval.is_none()
        && p.reason_string.is_none()
        && p.user_properties.is_empty()
        && p.server_reference.is_none()
}

pub(crate) fn auth_is_empty(p: &AuthProperties) -> bool {
    p.authentication_method.is_none()
        && p.authentication_data.is_none()
        && p.reason_string.is_none()
        && p.user_properties.is_empty()
}
