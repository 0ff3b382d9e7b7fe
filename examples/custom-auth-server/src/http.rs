//! One HTTP request: check its head, read its body (at most [`MAX_BODY`]), decide on a
//! blocking thread, answer, and log one line per decision.
//!
//! Argon2 verifications are CPU- and memory-bound (19 MiB each), so at most one per CPU
//! runs at a time ([`App::verifications`]); further requests wait for a permit. The number
//! of waiting requests is bounded by the server's connection limit.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Request as HttpRequest, Response};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::api::{self, Reply, Request, MAX_BODY};
use crate::decide::{decide, format_expiry, Decision};
use crate::store::UserStore;

/// What every request handler shares.
#[derive(Debug)]
pub struct App {
    pub store: UserStore,
    /// Caps concurrent password verifications (one per CPU).
    pub verifications: Semaphore,
}

impl App {
    pub fn new(store: UserStore) -> App {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        App {
            store,
            verifications: Semaphore::new(cpus),
        }
    }
}

/// The hyper service function.
pub async fn handle(
    app: Arc<App>,
    request: HttpRequest<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = answer(&app, request).await;
    let (content_type, body) = reply.body();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = reply.status();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if reply == Reply::MethodNotAllowed {
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
    }
    Ok(response)
}

async fn answer(app: &Arc<App>, request: HttpRequest<Incoming>) -> Reply {
    let (head, body) = request.into_parts();
    let content_type = head.headers.get(CONTENT_TYPE).map(|v| v.as_bytes());
    if let Err(reply) = api::check_head(&head.method, head.uri.query(), content_type) {
        warn!(target: "http", method = %head.method, uri = %head.uri, status = %reply.status(),
            "request refused");
        return reply;
    }
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return refused(format!("request body larger than {MAX_BODY} bytes"))
        }
        Err(e) => return refused(format!("cannot read the request body: {e}")),
    };
    let request = match api::parse_body(&body) {
        Ok(request) => request,
        Err(Reply::BadRequest(message)) => return refused(message),
        Err(reply) => return reply,
    };

    let Ok(_permit) = app.verifications.acquire().await else {
        return Reply::Internal; // the semaphore is never closed
    };
    let now = OffsetDateTime::now_utc();
    let worker = Arc::clone(app);
    let decided = tokio::task::spawn_blocking(move || {
        let decision = decide(&worker.store.current(), &request, now);
        (request, decision)
    })
    .await;
    match decided {
        Ok((request, decision)) => {
            log(&request, &decision);
            Reply::from(decision)
        }
        Err(e) => {
            warn!(target: "http", "the decision failed: {e}");
            Reply::Internal
        }
    }
}

fn refused(message: String) -> Reply {
    warn!(target: "http", status = 400, "request refused: {message}");
    Reply::BadRequest(message)
}

/// One line per decision, at info. Never the password: only the user name, the client id
/// and the outcome.
fn log(request: &Request, decision: &Decision) {
    let (kind, user) = match request {
        Request::Connect(connect) => ("connect", connect.username.as_deref()),
        Request::Auth(_) => ("auth", None),
    };
    let user = user.unwrap_or("-");
    let client_id = request.client_id().unwrap_or("-");
    match decision {
        Decision::Pass { expiry, .. } => match expiry {
            Some(expiry) => {
                let expiry = format_expiry(*expiry).unwrap_or_else(|_| expiry.to_string());
                info!(target: "decision", kind, user, client_id, result = "pass", expiry,
                    "authenticated")
            }
            None => info!(target: "decision", kind, user, client_id, result = "pass",
                "authenticated"),
        },
        Decision::Fail { reason, message } => info!(target: "decision", kind, user, client_id,
            result = "fail", reason, "{message}"),
        Decision::Malformed(message) => warn!(target: "decision", kind, user, client_id,
            result = "bad request", "{message}"),
    }
}
