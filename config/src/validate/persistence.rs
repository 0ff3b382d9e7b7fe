//! `persistence:`: sizes, the dynamic user property, and each policy's settings.
//!
//! - `maxSize` above 0; `dynamicSettings.userPropertyKey` non-empty.
//! - Per policy (`retain`, `stateStore`, `subscriberQueue`): `Custom` needs its settings, and
//!   settings that persist something (a resource, or `dynamic.mode: Enabled`); settings
//!   under `None` / `All` are ignored (a warning, since AIO only reads them with `Custom`).
//! - `stateStoreResources[].keys` as in authorization rules (`Pattern` globs, `Binary`
//!   base64) except that `{principal.*}` tokens are errors: there is no client to fill them.
//! - `topics`: MQTT topic filters; `subscriberClientIds`: globs.

use super::authz::{check_glob_with, check_keys, Tokens};
use super::Report;
use crate::model::*;

pub(super) fn check_persistence(persistence: &Persistence, base: &str, report: &mut Report) {
    if persistence.max_size == 0 {
        report.error(
            format!("{base}.maxSize"),
            "must be larger than 0, e.g. 1GiB",
        );
    }
    if persistence.dynamic_settings.user_property_key.is_empty() {
        report.error(
            format!("{base}.dynamicSettings.userPropertyKey"),
            "empty user property key (default aio-persistence)",
        );
    }
    check_retain(&persistence.retain, &format!("{base}.retain"), report);
    check_state_store(
        &persistence.state_store,
        &format!("{base}.stateStore"),
        report,
    );
    check_subscriber_queue(
        &persistence.subscriber_queue,
        &format!("{base}.subscriberQueue"),
        report,
    );
}

/// Which settings apply: `Some(settings)` with `Custom`; reports missing settings (Custom)
/// and ignored ones (None, All).
fn applicable<'a, S>(
    mode: PersistenceMode,
    settings: Option<&'a S>,
    path: &str,
    report: &mut Report,
) -> Option<&'a S> {
    let field = path.rsplit('.').next().unwrap_or(path);
    match (mode, settings) {
        (PersistenceMode::Custom, None) => {
            report.error(path, format!("required with mode Custom: write `{field}`"));
            None
        }
        (PersistenceMode::Custom, Some(settings)) => Some(settings),
        (mode, Some(_)) => {
            report.warn(
                path,
                format!("ignored: it applies only with mode Custom (mode is {mode})"),
            );
            None
        }
        (_, None) => None,
    }
}

/// A `Custom` policy that lists nothing and lets no client ask persists nothing.
fn check_not_empty(listed: bool, dynamic: Dynamic, path: &str, what: &str, report: &mut Report) {
    if !listed && dynamic.mode == DynamicMode::Disabled {
        report.error(
            path,
            format!(
                "persists nothing: list {what}, or leave dynamic.mode Enabled so clients can \
                 ask (or use mode None)"
            ),
        );
    }
}

fn check_topics(topics: &[String], base: &str, report: &mut Report) {
    for (i, topic) in topics.iter().enumerate() {
        if let Err(err) = gatehouse_protocol::topic::validate_topic_filter(topic) {
            report.error(
                format!("{base}.topics[{i}]"),
                format!("`{topic}` is not a valid MQTT topic filter: {err}"),
            );
        }
    }
}

fn check_retain(retain: &RetainPolicy, base: &str, report: &mut Report) {
    let path = format!("{base}.retainSettings");
    if let Some(settings) = applicable(retain.mode, retain.retain_settings.as_ref(), &path, report)
    {
        check_topics(&settings.topics, &path, report);
        check_not_empty(
            !settings.topics.is_empty(),
            settings.dynamic,
            &path,
            "topics",
            report,
        );
    }
}

fn check_state_store(state_store: &StateStorePolicy, base: &str, report: &mut Report) {
    let path = format!("{base}.stateStoreSettings");
    let settings = state_store.state_store_settings.as_ref();
    if let Some(settings) = applicable(state_store.mode, settings, &path, report) {
        for (i, resource) in settings.state_store_resources.iter().enumerate() {
            check_keys(
                resource.key_type,
                &resource.keys,
                &format!("{path}.stateStoreResources[{i}]"),
                Tokens::Reserved,
                report,
            );
        }
        check_not_empty(
            !settings.state_store_resources.is_empty(),
            settings.dynamic,
            &path,
            "stateStoreResources",
            report,
        );
    }
}

fn check_subscriber_queue(queue: &SubscriberQueuePolicy, base: &str, report: &mut Report) {
    let path = format!("{base}.subscriberQueueSettings");
    let settings = queue.subscriber_queue_settings.as_ref();
    if let Some(settings) = applicable(queue.mode, settings, &path, report) {
        for (i, pattern) in settings.subscriber_client_ids.iter().enumerate() {
            let at = format!("{path}.subscriberClientIds[{i}]");
            if pattern.is_empty() {
                report.error(at, "empty client id pattern");
            } else {
                check_glob_with(pattern, &at, "client id pattern", Tokens::Reserved, report);
            }
        }
        check_topics(&settings.topics, &path, report);
        check_not_empty(
            !settings.subscriber_client_ids.is_empty() || !settings.topics.is_empty(),
            settings.dynamic,
            &path,
            "subscriberClientIds or topics",
            report,
        );
    }
}
