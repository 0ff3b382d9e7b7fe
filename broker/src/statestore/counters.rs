//! State store requests by command and result, counted by the service as it answers and
//! rendered by `metrics`.

use crate::counters::Counter;

use super::service::{Answer, AnswerKind};
use super::{ErrorReply, Request};

/// A state store command, for the `command` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateStoreCommand {
    Get,
    Set,
    Del,
    VDel,
    KeyNotify,
    Scan,
}

impl StateStoreCommand {
    pub fn of(request: &Request) -> StateStoreCommand {
        match request {
            Request::Get { .. } => StateStoreCommand::Get,
            Request::Set { .. } => StateStoreCommand::Set,
            Request::Del { .. } => StateStoreCommand::Del,
            Request::VDel { .. } => StateStoreCommand::VDel,
            Request::KeyNotify { .. } => StateStoreCommand::KeyNotify,
            Request::Scan { .. } => StateStoreCommand::Scan,
        }
    }
}

/// State store commands, as `command` label values, indexed like [`StateStoreCommand`];
/// `unknown` last, for payloads that did not parse (or requests refused before parsing,
/// for their protocol version).
pub const STATE_STORE_COMMANDS: [&str; 7] =
    ["get", "set", "del", "vdel", "keynotify", "scan", "unknown"];

/// State store results, as `result` label values: `ok` (any non-error RESP3 reply, a
/// failed SET NX condition included), `denied` (key authorization), `error` (any other
/// `-ERR` reply) and `unsupported_version` (`__stat` 505).
pub const STATE_STORE_RESULTS: [&str; 4] = ["ok", "denied", "error", "unsupported_version"];

/// State store requests by command and result.
#[derive(Debug, Default)]
pub struct StateStoreCounters([[Counter; 4]; 7]);

impl StateStoreCounters {
    /// Count one answered request; `command` is `None` when the request never parsed.
    pub fn record(&self, command: Option<StateStoreCommand>, answer: &Answer) {
        let result = match answer.kind {
            AnswerKind::Reply => 0,
            AnswerKind::Error(ErrorReply::NotAuthorized) => 1,
            AnswerKind::Error(_) | AnswerKind::Unavailable => 2,
            AnswerKind::UnsupportedVersion => 3,
        };
        let command = command.map_or(STATE_STORE_COMMANDS.len() - 1, |c| c as usize);
        self.0[command][result].inc();
    }

    /// The count for `STATE_STORE_COMMANDS[command]` and `STATE_STORE_RESULTS[result]`.
    pub fn get(&self, command: usize, result: usize) -> u64 {
        self.0[command][result].get()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::statestore::service::Invocation;
    use crate::statestore::StateStore;

    fn run(store: &StateStore, payload: &'static [u8], props: &[(&str, &str)], allow: bool) {
        let user_properties: Vec<_> = props
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        store.invoke(
            Invocation {
                client_id: "c",
                payload: &Bytes::from_static(payload),
                user_properties: &user_properties,
            },
            |_| allow,
            |_, _| {},
        );
    }

    fn count(store: &StateStore, command: &str, result: &str) -> u64 {
        let c = STATE_STORE_COMMANDS.iter().position(|x| *x == command);
        let r = STATE_STORE_RESULTS.iter().position(|x| *x == result);
        store.requests.get(c.expect("command"), r.expect("result"))
    }

    #[test]
    fn state_store_requests_are_counted_by_command_and_result() {
        let store = StateStore::new(Default::default());
        let ts = format!("{}:0:c", store.now_ms());
        let set = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
        run(&store, set, &[("__ts", &ts)], true);
        run(&store, set, &[("__ts", &ts)], false);
        run(&store, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", &[], true);
        run(&store, set, &[("__ts", "not a timestamp")], true);
        run(&store, b"*1\r\n$4\r\nNOPE\r\n", &[], true);
        run(&store, set, &[("__protVer", "2.0")], true);
        assert_eq!(count(&store, "set", "ok"), 1);
        assert_eq!(count(&store, "set", "denied"), 1);
        assert_eq!(count(&store, "get", "ok"), 1);
        // A malformed `__ts` is refused by the stamp checks: an -ERR reply.
        assert_eq!(count(&store, "set", "error"), 1);
        assert_eq!(count(&store, "unknown", "error"), 1);
        assert_eq!(count(&store, "unknown", "unsupported_version"), 1);
    }
}
