//! Helpers: a test PKI, the server process, an HTTPS client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::prelude::{Engine, BASE64_STANDARD};
use bytes::Bytes;
use gatehouse_certs::{issue_self_signed, Authority, CertRequest, Issued, Key, Usage};
use gatehouse_config::PrivateKeyAlgorithm;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub const BIN: &str = env!("CARGO_BIN_EXE_custom-auth-server");

/// A CA and what it issued, written into a temporary folder.
pub struct Pki {
    pub dir: TempDir,
    pub ca: Authority,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

fn request(usage: Usage, name: &str) -> CertRequest {
    CertRequest {
        usage,
        common_name: Some(name.into()),
        organization: None,
        dns_names: if usage == Usage::Server {
            vec!["localhost".into()]
        } else {
            vec![]
        },
        ip_addresses: if usage == Usage::Server {
            vec!["127.0.0.1".parse().unwrap()]
        } else {
            vec![]
        },
        duration: Duration::from_secs(3600),
    }
}

fn key() -> Key {
    Key::generate(PrivateKeyAlgorithm::Ec256).unwrap()
}

/// A root CA that can issue.
pub fn authority(name: &str) -> Authority {
    let issued = issue_self_signed(&request(Usage::Ca, name), key(), SystemTime::now()).unwrap();
    Authority::from_issued(issued).unwrap()
}

/// A client certificate (for the broker's side of mTLS) issued by `ca`.
pub fn client_cert(ca: &Authority, name: &str) -> Issued {
    ca.issue(&request(Usage::Client, name), key(), SystemTime::now())
        .unwrap()
}

impl Pki {
    /// A root CA and a server certificate for `localhost` / `127.0.0.1` from it.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = authority("Test Root");
        let server = ca
            .issue(
                &request(Usage::Server, "localhost"),
                key(),
                SystemTime::now(),
            )
            .unwrap();
        let server_cert = write(dir.path(), "server.crt", server.chain_pem());
        let server_key = write(dir.path(), "server.key", server.key_pem());
        Pki {
            dir,
            ca,
            server_cert,
            server_key,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A client that trusts this PKI's root, presenting `identity` when given.
    pub fn client(&self, identity: Option<&Issued>) -> Client {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.root().clone()).unwrap();
        let builder = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some(issued) => builder
                .with_client_auth_cert(
                    issued.chain().to_vec(),
                    PrivateKeyDer::from_pem_slice(issued.key_pem().as_bytes()).unwrap(),
                )
                .unwrap(),
        };
        Client {
            connector: TlsConnector::from(Arc::new(config)),
        }
    }
}

pub fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `custom-auth-server add-user` with `password` on stdin.
pub fn add_user(users: &Path, name: &str, password: &str, extra: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(["add-user", "--users"])
        .arg(users)
        .args(["--name", name])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The command may refuse its arguments before reading stdin (a broken pipe here).
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes());
    child.wait_with_output().unwrap()
}

/// `add_user` that must succeed.
pub fn added(users: &Path, name: &str, password: &str, extra: &[&str]) {
    let output = add_user(users, name, password, extra);
    assert!(output.status.success(), "add-user failed: {output:?}");
}

/// A running server process, killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `serve` on `127.0.0.1:0` and waits for its `listening on` line.
    pub fn start(pki: &Pki, users: &Path, client_ca: Option<&Path>) -> Server {
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--users"])
            .arg(users)
            .arg("--cert")
            .arg(&pki.server_cert)
            .arg("--key")
            .arg(&pki.server_key)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(ca) = client_ca {
            command.arg("--client-ca").arg(ca);
        }
        let mut child = command.spawn().unwrap();

        let logs = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });

        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.wait();
            panic!("server did not start: {line:?}\n{}", logs.lock().unwrap());
        };
        Server {
            addr: addr.parse().unwrap(),
            child,
            logs,
        }
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Waits until the server logged `text` (log lines are written after the response).
    pub async fn wait_for_log(&self, text: &str) -> String {
        for _ in 0..200 {
            let logs = self.logs();
            if logs.contains(text) {
                return logs;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never logged {text:?}:\n{}", self.logs());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes HTTPS connections to a server.
pub struct Client {
    connector: TlsConnector,
}

impl Client {
    /// One HTTP/1.1 connection (reused for every request sent on it).
    pub async fn connect(&self, addr: SocketAddr) -> std::io::Result<Connection> {
        let tcp = TcpStream::connect(addr).await?;
        let tls = self
            .connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        Ok(Connection { sender })
    }

    /// POSTs `body` to `/?api-version=0.5.0` on a new connection.
    pub async fn post(&self, addr: SocketAddr, body: &Value) -> (StatusCode, Value) {
        let mut connection = self.connect(addr).await.unwrap();
        connection.post(body).await.unwrap()
    }
}

pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    /// Sends one request; the answer's status and body (JSON, or a JSON string for text).
    pub async fn send(
        &mut self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: String,
    ) -> Result<(StatusCode, Value), hyper::Error> {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header("host", "localhost");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = self
            .sender
            .send_request(request.body(Full::new(Bytes::from(body))).unwrap())
            .await?;
        let status = response.status();
        let is_json = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v == "application/json");
        let bytes = response.into_body().collect().await?.to_bytes();
        let value = if is_json {
            serde_json::from_slice(&bytes).unwrap()
        } else {
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        };
        Ok((status, value))
    }

    /// POSTs `body` as JSON to `/?api-version=0.5.0`.
    pub async fn post(&mut self, body: &Value) -> Result<(StatusCode, Value), hyper::Error> {
        self.send(
            Method::POST,
            "/?api-version=0.5.0",
            Some("application/json"),
            body.to_string(),
        )
        .await
    }
}

/// A `connect` request as the broker sends it.
pub fn connect(username: &str, password: &str) -> Value {
    serde_json::json!({
        "type": "connect",
        "username": username,
        "password": BASE64_STANDARD.encode(password),
        "clientId": "dev-1",
    })
}
