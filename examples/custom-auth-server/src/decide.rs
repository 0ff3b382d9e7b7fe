//! The decision for one request: the whole authentication policy of this example, and the
//! place to change when using it as a template.
//!
//! - `connect` with a user name and password: the user must be in the users file and the
//!   password must match its hash. Pass → the user's attributes, and `expiry` = now + the
//!   user's `credentialLifetime` (none configured: no expiry). Unknown user or wrong
//!   password → 0x86 with the same message, and the same time spent (see
//!   [`password::burn`]), so neither tells which names exist.
//! - `connect` without a user name or without a password → 0x87: this server has nothing
//!   to judge (an X.509 or SAT client belongs to another method in the broker's chain).
//! - `connect` with MQTT v5 enhanced authentication → 0x8C Bad authentication method: the
//!   client asked for a method this server does not implement, and accepting the CONNECT
//!   would only fail its later re-authentication.
//! - `auth` (MQTT v5 re-authentication) → 0x87. Re-authentication continues the CONNECT's
//!   authentication method, and a username/password CONNECT has none (see above), so there
//!   is nothing to continue; the broker disconnects the client. A server that issues tokens
//!   would check `enhancedAuthentication.data` here and return a new expiry.
//! - A password that is not base64 is a broker bug, not a client's: 400.

use std::collections::BTreeMap;

use base64::prelude::{Engine, BASE64_STANDARD};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::api::{reason, ConnectRequest, FailBody, PassBody, Reply, Request};
use crate::password;
use crate::users::Users;

/// What to answer, before it is encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Pass {
        /// Absent: the credential does not expire.
        expiry: Option<OffsetDateTime>,
        attributes: BTreeMap<String, String>,
    },
    Fail {
        /// MQTT v5 CONNACK reason code.
        reason: u8,
        message: String,
    },
    /// The request cannot be judged (400).
    Malformed(String),
}

impl Decision {
    fn fail(reason: u8, message: impl Into<String>) -> Decision {
        Decision::Fail {
            reason,
            message: message.into(),
        }
    }
}

/// Decides `request` against `users` at time `now`. Blocking: a verification is an argon2
/// hash (tens of milliseconds, 19 MiB).
pub fn decide(users: &Users, request: &Request, now: OffsetDateTime) -> Decision {
    match request {
        Request::Connect(connect) => decide_connect(users, connect, now),
        Request::Auth(_) => Decision::fail(
            reason::NOT_AUTHORIZED,
            "re-authentication not supported by this example",
        ),
    }
}

fn decide_connect(users: &Users, connect: &ConnectRequest, now: OffsetDateTime) -> Decision {
    if let Some(enhanced) = &connect.enhanced_authentication {
        return Decision::fail(
            reason::BAD_AUTHENTICATION_METHOD,
            format!(
                "authentication method {:?} not supported: this server checks user names and passwords",
                enhanced.method
            ),
        );
    }
    let (Some(name), Some(password)) = (&connect.username, &connect.password) else {
        return Decision::fail(reason::NOT_AUTHORIZED, "username and password required");
    };
    let Ok(password) = BASE64_STANDARD.decode(password.expose()) else {
        return Decision::Malformed("password is not valid base64".into());
    };
    let bad = || Decision::fail(reason::BAD_USERNAME_OR_PASSWORD, "bad username or password");
    let Some(user) = users.get(name) else {
        password::burn(&password);
        return bad();
    };
    if !password::verify(&user.password_hash, &password) {
        return bad();
    }
    Decision::Pass {
        // Past the year 9999 (a lifetime of millennia) means never.
        expiry: user
            .lifetime
            .and_then(|lifetime| time::Duration::try_from(lifetime).ok())
            .and_then(|lifetime| now.checked_add(lifetime)),
        attributes: user.attributes.clone(),
    }
}

impl From<Decision> for Reply {
    fn from(decision: Decision) -> Reply {
        match decision {
            Decision::Pass { expiry, attributes } => {
                let expiry = match expiry.map(format_expiry).transpose() {
                    Ok(expiry) => expiry,
                    Err(_) => return Reply::Internal,
                };
                Reply::Pass(PassBody { expiry, attributes })
            }
            Decision::Fail { reason, message } => Reply::Fail(FailBody { reason, message }),
            Decision::Malformed(message) => Reply::BadRequest(message),
        }
    }
}

/// RFC 3339 in UTC at whole seconds (`2030-05-08T20:04:16Z`), rounded down.
pub(crate) fn format_expiry(expiry: OffsetDateTime) -> Result<String, time::error::Format> {
    expiry
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond")
        .format(&Rfc3339)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::{AuthRequest, EnhancedAuthentication, Secret};
    use crate::users::{UserEntry, UsersFile};

    fn users() -> Users {
        let argon2 = password::cheap();
        let entry =
            |password: &[u8], attributes: &[(&str, &str)], lifetime: Option<&str>| UserEntry {
                password_hash: password::hash_with(&argon2, password).unwrap(),
                attributes: attributes
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                credential_lifetime: lifetime.map(Into::into),
            };
        UsersFile {
            users: BTreeMap::from([
                (
                    "client1".into(),
                    entry(b"password1", &[("floor", "floor1")], Some("1h")),
                ),
                ("forever".into(), entry(b"pw", &[], None)),
            ]),
        }
        .compile()
        .unwrap()
    }

    fn connect(username: Option<&str>, password: Option<&[u8]>) -> Request {
        Request::Connect(ConnectRequest {
            username: username.map(Into::into),
            password: password.map(|p| Secret::new(BASE64_STANDARD.encode(p))),
            ..ConnectRequest::default()
        })
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap() + Duration::from_millis(750)
    }

    #[test]
    fn passes_the_right_password_with_attributes_and_expiry() {
        let decision = decide(
            &users(),
            &connect(Some("client1"), Some(b"password1")),
            now(),
        );
        let Decision::Pass { expiry, attributes } = decision.clone() else {
            panic!("{decision:?}")
        };
        assert_eq!(expiry, Some(now() + Duration::from_secs(3600)));
        assert_eq!(attributes["floor"], "floor1");
        let Reply::Pass(body) = Reply::from(decision) else {
            panic!()
        };
        assert_eq!(body.expiry.as_deref(), Some("2030-03-17T18:46:40Z"));
    }

    #[test]
    fn a_user_without_lifetime_gets_no_expiry() {
        let decision = decide(&users(), &connect(Some("forever"), Some(b"pw")), now());
        assert_eq!(
            decision,
            Decision::Pass {
                expiry: None,
                attributes: BTreeMap::new()
            }
        );
    }

    #[test]
    fn wrong_password_and_unknown_user_get_the_same_0x86() {
        let expected = Decision::fail(0x86, "bad username or password");
        let users = users();
        for request in [
            connect(Some("client1"), Some(b"password2")),
            connect(Some("client1"), Some(b"")),
            connect(Some("nobody"), Some(b"password1")),
        ] {
            assert_eq!(decide(&users, &request, now()), expected);
        }
    }

    #[test]
    fn missing_credentials_get_0x87() {
        let users = users();
        for request in [
            connect(None, Some(b"password1")),
            connect(Some("client1"), None),
            connect(None, None),
        ] {
            assert!(matches!(
                decide(&users, &request, now()),
                Decision::Fail { reason: 0x87, .. }
            ));
        }
    }

    #[test]
    fn enhanced_authentication_gets_0x8c() {
        let request = Request::Connect(ConnectRequest {
            username: Some("client1".into()),
            password: Some(Secret::new(BASE64_STANDARD.encode("password1"))),
            enhanced_authentication: Some(EnhancedAuthentication {
                method: "K8S-SAT".into(),
                data: None,
            }),
            ..ConnectRequest::default()
        });
        assert!(matches!(
            decide(&users(), &request, now()),
            Decision::Fail { reason: 0x8C, .. }
        ));
    }

    #[test]
    fn reauthentication_is_refused_with_0x87() {
        let request = Request::Auth(AuthRequest::default());
        assert_eq!(
            decide(&users(), &request, now()),
            Decision::fail(0x87, "re-authentication not supported by this example")
        );
    }

    #[test]
    fn a_password_that_is_not_base64_is_malformed() {
        let request = Request::Connect(ConnectRequest {
            username: Some("client1".into()),
            password: Some(Secret::new("not base64!")),
            ..ConnectRequest::default()
        });
        assert!(matches!(
            decide(&users(), &request, now()),
            Decision::Malformed(_)
        ));
    }
}
