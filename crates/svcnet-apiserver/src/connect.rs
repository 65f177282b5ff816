//! Relay of pods/log, exec, attach and portforward to the pod's node agent, upgrade-aware, as kube-apiserver proxies to the kubelet.
//!
//! The agent is reached over plain TCP with a shared bearer token. Upgrade
//! requests (WebSocket, SPDY/3.1) are forwarded as HTTP/1.1; after the agent's
//! `101` both connections are joined byte for byte. Other requests (logs) go as
//! HTTP/1.0 so that the agent delimits the body by closing, which lets us stream
//! it on without a chunked decoder.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::status::{ApiError, ApiResult};
use super::{Api, Connector, resources, storage};

/// Default kubelet port when a Node does not advertise one.
const DEFAULT_AGENT_PORT: u64 = 10250;
/// Largest response head we read from an agent.
const MAX_HEAD: usize = 64 * 1024;
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Request headers that are ours to set, never the client's.
const DROP_ALWAYS: &[&str] = &[
    "host",
    "authorization",
    "content-length",
    "transfer-encoding",
    "expect",
];
/// Hop-by-hop headers that only make sense for an upgrade.
const UPGRADE_ONLY: &[&str] = &["connection", "upgrade", "keep-alive", "te"];

/// Connects streaming subresources to node agents.
#[derive(Debug, Clone)]
pub struct AgentConnector {
    token: String,
}

impl AgentConnector {
    /// `token` is the bearer token every agent was started with.
    pub fn new(token: impl Into<String>) -> Self {
        AgentConnector {
            token: token.into(),
        }
    }
}

impl Connector for AgentConnector {
    fn connect(
        &self,
        api: Arc<Api>,
        namespace: String,
        pod: String,
        sub: String,
        req: Request<Body>,
    ) -> futures::future::BoxFuture<'static, ApiResult<Response>> {
        let token = self.token.clone();
        Box::pin(async move { relay(&api, &token, &namespace, &pod, &sub, req).await })
    }
}

async fn read_object(api: &Api, plural: &str, ns: Option<&str>, name: &str) -> ApiResult<Value> {
    let res = resources::find("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("resource {plural} is not served")))?;
    let kv = api
        .store
        .get(&storage::key(res, ns, name))
        .await
        .map_err(|e| ApiError::from_store(e, res, name))?
        .ok_or_else(|| ApiError::not_found(res, name))?;
    storage::decode(&kv)
        .ok_or_else(|| ApiError::internal(format!("stored object {name} is not valid JSON")))
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v)
    })
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The container a request is for, resolved as upstream's pod strategy does.
pub fn resolve_container(pod: &Value, requested: Option<&str>) -> ApiResult<String> {
    let name = storage::name_of(pod);
    let containers = names(&pod["spec"]["containers"]);
    let init = names(&pod["spec"]["initContainers"]);
    let ephemeral = names(&pod["spec"]["ephemeralContainers"]);
    match requested.filter(|c| !c.is_empty()) {
        Some(c) => {
            if containers
                .iter()
                .chain(&init)
                .chain(&ephemeral)
                .any(|n| n == c)
            {
                Ok(c.to_string())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )))
            }
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut m = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                m.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(m))
        }
    }
}

/// The agent address of a Node: its InternalIP (else ExternalIP, else Hostname) and kubelet port.
pub fn agent_address(node: &Value) -> ApiResult<String> {
    let addrs = node["status"]["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let pick = |t: &str| {
        addrs
            .iter()
            .find(|a| a["type"] == t)
            .and_then(|a| a["address"].as_str())
            .map(str::to_string)
    };
    let host = pick("InternalIP")
        .or_else(|| pick("ExternalIP"))
        .or_else(|| pick("Hostname"))
        .ok_or_else(|| {
            ApiError::new(
                500,
                "InternalError",
                format!(
                    "node {} has no address to reach its agent",
                    storage::name_of(node)
                ),
            )
        })?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .filter(|p| *p > 0 && *p < 65536);
    let port = port.unwrap_or(DEFAULT_AGENT_PORT);
    Ok(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// The agent path for a subresource of a pod.
pub fn agent_path(sub: &str, ns: &str, pod: &str, container: &str) -> Option<String> {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let (ns, pod, c) = (enc(ns), enc(pod), enc(container));
    Some(match sub {
        "log" => format!("/containerLogs/{ns}/{pod}/{c}"),
        "exec" => format!("/exec/{ns}/{pod}/{c}"),
        "attach" => format!("/attach/{ns}/{pod}/{c}"),
        "portforward" => format!("/portForward/{ns}/{pod}"),
        _ => return None,
    })
}

fn is_upgrade(req: &Request<Body>) -> bool {
    req.headers().get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    }) && req.headers().contains_key(header::UPGRADE)
}

/// The request head sent to the agent.
pub fn request_head(
    method: &str,
    target: &str,
    host: &str,
    token: &str,
    headers: &axum::http::HeaderMap,
    upgrade: bool,
) -> Vec<u8> {
    let mut h = if upgrade {
        format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n")
    } else {
        format!("{method} {target} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n")
    };
    h.push_str(&format!("Authorization: Bearer {token}\r\n"));
    for (k, v) in headers {
        let n = k.as_str();
        if DROP_ALWAYS.contains(&n) || (!upgrade && UPGRADE_ONLY.contains(&n)) {
            continue;
        }
        if let Ok(v) = v.to_str() {
            h.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// A parsed response head.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

/// Parses `HTTP/1.x NNN reason` and header lines (without the final empty line).
pub fn parse_head(text: &str) -> Option<Head> {
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Head { status, headers })
}

fn dial_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(500, "InternalError", format!("error dialing backend: {e}"))
}

async fn relay(
    api: &Api,
    token: &str,
    ns: &str,
    pod_name: &str,
    sub: &str,
    mut req: Request<Body>,
) -> ApiResult<Response> {
    let pod = read_object(api, "pods", Some(ns), pod_name).await?;
    let query = req.uri().query().unwrap_or("").to_string();
    let container = if sub == "portforward" {
        String::new()
    } else {
        let wanted = query_param(&query, "container").map(|c| {
            percent_encoding::percent_decode_str(c)
                .decode_utf8_lossy()
                .into_owned()
        });
        resolve_container(&pod, wanted.as_deref())?
    };
    if matches!(sub, "exec" | "attach") {
        let phase = pod["status"]["phase"].as_str().unwrap_or("");
        if matches!(phase, "Succeeded" | "Failed") {
            let verb = if sub == "exec" {
                "exec into"
            } else {
                "attach to"
            };
            return Err(ApiError::bad_request(format!(
                "cannot {verb} a container in a completed pod; current phase is {phase}"
            )));
        }
    }
    let node_name = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty());
    let Some(node_name) = node_name else {
        return Err(ApiError::bad_request(format!(
            "pod {pod_name} does not have a host assigned"
        )));
    };
    let node = read_object(api, "nodes", None, node_name).await?;
    let addr = agent_address(&node)?;
    let path = agent_path(sub, ns, pod_name, &container).ok_or_else(ApiError::not_found_path)?;
    let target = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    let upgrade = is_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

    let mut agent = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| dial_error(format!("dial tcp {addr}: i/o timeout")))?
        .map_err(|e| dial_error(format!("dial tcp {addr}: {e}")))?;
    let _ = agent.set_nodelay(true);
    let head = request_head(
        req.method().as_str(),
        &target,
        &addr,
        token,
        req.headers(),
        upgrade,
    );
    agent.write_all(&head).await.map_err(dial_error)?;

    // Read the response head; whatever follows it is already body or stream bytes.
    let mut buf = Vec::with_capacity(4096);
    let end = tokio::time::timeout(HEAD_TIMEOUT, async {
        loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(i);
            }
            if buf.len() > MAX_HEAD {
                return Err("response head too large".to_string());
            }
            let mut chunk = [0u8; 4096];
            match agent.read(&mut chunk).await {
                Ok(0) => return Err("connection closed before the response".to_string()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .map_err(|_| ApiError::new(504, "Timeout", "the node agent did not answer in time"))?
    .map_err(|e| {
        ApiError::new(
            502,
            "InternalError",
            format!("error reading from the node agent: {e}"),
        )
    })?;
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let parsed = parse_head(&text).ok_or_else(|| {
        ApiError::new(
            502,
            "InternalError",
            "the node agent sent a malformed response",
        )
    })?;
    let rest = Bytes::copy_from_slice(&buf[end + 4..]);
    let code = StatusCode::from_u16(parsed.status).unwrap_or(StatusCode::BAD_GATEWAY);

    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = code;
    for (k, v) in &parsed.headers {
        let lower = k.to_ascii_lowercase();
        let hop = matches!(
            lower.as_str(),
            "content-length" | "transfer-encoding" | "keep-alive"
        );
        let conn = matches!(lower.as_str(), "connection" | "upgrade");
        if hop || (conn && code != StatusCode::SWITCHING_PROTOCOLS) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(lower.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            resp.headers_mut().append(n, v);
        }
    }

    if code == StatusCode::SWITCHING_PROTOCOLS {
        let Some(on) = client_upgrade else {
            return Err(ApiError::new(
                502,
                "InternalError",
                "the node agent switched protocols without being asked",
            ));
        };
        tokio::spawn(async move {
            let Ok(up) = on.await else { return };
            let mut client = hyper_util::rt::TokioIo::new(up);
            if !rest.is_empty() && client.write_all(&rest).await.is_err() {
                return;
            }
            // Half-closes propagate both ways, so stream protocols can finish cleanly.
            let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
        });
        return Ok(resp);
    }

    let body = futures::stream::unfold((Some(rest), agent), |(first, mut agent)| async move {
        if let Some(b) = first.filter(|b| !b.is_empty()) {
            return Some((Ok::<Bytes, std::io::Error>(b), (None, agent)));
        }
        let mut chunk = vec![0u8; 32 * 1024];
        match agent.read(&mut chunk).await {
            Ok(0) => None,
            Ok(n) => {
                chunk.truncate(n);
                Some((Ok(Bytes::from(chunk)), (None, agent)))
            }
            Err(e) => Some((Err(e), (None, agent))),
        }
    });
    *resp.body_mut() = Body::from_stream(body);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_resolution() {
        let one = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "main"}]}});
        let two = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "init"}]}});
        let cases: Vec<(&Value, Option<&str>, Result<&str, &str>)> = vec![
            (&one, None, Ok("main")),
            (&one, Some(""), Ok("main")),
            (&one, Some("main"), Ok("main")),
            (
                &one,
                Some("side"),
                Err("container side is not valid for pod web"),
            ),
            (&two, Some("init"), Ok("init")),
            (
                &two,
                None,
                Err(
                    "a container name must be specified for pod web, choose one of: [a b] or one of the init containers: [init]",
                ),
            ),
        ];
        for (pod, req, want) in cases {
            let got = resolve_container(pod, req).map_err(|e| e.message);
            assert_eq!(got.as_deref().map_err(String::as_str), want, "{req:?}");
        }
    }

    #[test]
    fn agent_addresses() {
        let cases: Vec<(Value, Result<&str, &str>)> = vec![
            (
                json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
                                  "daemonEndpoints": {"kubeletEndpoint": {"Port": 11250}}}}),
                Ok("10.0.0.5:11250"),
            ),
            (
                json!({"status": {"addresses": [{"type": "InternalIP", "address": "fd00::5"}]}}),
                Ok("[fd00::5]:10250"),
            ),
            (
                json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}}),
                Ok("n1:10250"),
            ),
            (
                json!({"metadata": {"name": "n2"}, "status": {}}),
                Err("node n2 has no address to reach its agent"),
            ),
        ];
        for (node, want) in cases {
            let got = agent_address(&node).map_err(|e| e.message);
            assert_eq!(got.as_deref().map_err(String::as_str), want);
        }
    }

    #[test]
    fn paths_heads() {
        assert_eq!(
            agent_path("exec", "default", "web", "main").as_deref(),
            Some("/exec/default/web/main")
        );
        assert_eq!(
            agent_path("log", "d", "w", "c").as_deref(),
            Some("/containerLogs/d/w/c")
        );
        assert_eq!(
            agent_path("portforward", "d", "w", "").as_deref(),
            Some("/portForward/d/w")
        );
        assert_eq!(agent_path("binding", "d", "w", ""), None);
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer user-token"),
        );
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("v5.channel.k8s.io"),
        );
        let up = String::from_utf8(request_head(
            "GET",
            "/exec/d/w/c?command=ls",
            "127.0.0.1:1",
            "agent-token",
            &h,
            true,
        ))
        .unwrap();
        assert_eq!(
            up,
            "GET /exec/d/w/c?command=ls HTTP/1.1\r\nHost: 127.0.0.1:1\r\nAuthorization: Bearer agent-token\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-protocol: v5.channel.k8s.io\r\n\r\n"
        );
        let plain = String::from_utf8(request_head(
            "GET",
            "/containerLogs/d/w/c",
            "h:1",
            "t",
            &h,
            false,
        ))
        .unwrap();
        assert_eq!(
            plain,
            "GET /containerLogs/d/w/c HTTP/1.0\r\nHost: h:1\r\nConnection: close\r\nAuthorization: Bearer t\r\nsec-websocket-protocol: v5.channel.k8s.io\r\n\r\n"
        );
        assert_eq!(
            parse_head(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io"
            ),
            Some(Head {
                status: 101,
                headers: vec![
                    ("Upgrade".into(), "SPDY/3.1".into()),
                    (
                        "X-Stream-Protocol-Version".into(),
                        "v4.channel.k8s.io".into()
                    )
                ]
            })
        );
        assert_eq!(parse_head("SSH-2.0 hello"), None);
        assert_eq!(parse_head("HTTP/1.1 abc OK"), None);
    }
}
