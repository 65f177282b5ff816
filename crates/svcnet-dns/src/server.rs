//! The sockets: DNS over UDP and TCP, forwarding off the hot path, and HTTP `/healthz`, `/readyz`, `/metrics`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use std::os::fd::AsRawFd;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

use crate::answer::{self, Outcome, Transport, Zone, fast};
use crate::batch;
use crate::forward::Forwarder;
use crate::index::Shared;
use crate::metrics::Metrics;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("binding DNS {proto} on {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Zone(#[from] answer::AnswerError),
}

/// Server settings (the `svcnet dns` flags).
#[derive(Debug, Clone)]
pub struct Config {
    /// UDP and TCP listen address.
    pub listen: SocketAddr,
    pub cluster_domain: String,
    /// TTL of cluster records.
    pub ttl: u32,
    pub upstreams: Vec<SocketAddr>,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub metrics_listen: Option<SocketAddr>,
    /// UDP receive loops (0: one per available core).
    pub udp_workers: usize,
}

impl Config {
    pub fn new(listen: SocketAddr, upstreams: Vec<SocketAddr>) -> Config {
        Config {
            listen,
            cluster_domain: "cluster.local".into(),
            ttl: 5,
            upstreams,
            metrics_listen: None,
            udp_workers: 0,
        }
    }
}

/// UDP receive buffer size asked for.
const RCVBUF: usize = 4 << 20;

#[derive(Debug)]
struct State {
    shared: Arc<Shared>,
    zone: Zone,
    forwarder: Forwarder,
    metrics: Metrics,
    /// Bounds concurrent upstream exchanges and TCP connections.
    forwards: Arc<Semaphore>,
    tcp_conns: Arc<Semaphore>,
}

/// A bound DNS server; `serve` runs it.
#[derive(Debug)]
pub struct Server {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
    http: Option<TcpListener>,
    state: Arc<State>,
    workers: usize,
}

impl Server {
    /// Binds UDP and TCP on the same port (a port of 0 picks one free for both) and the HTTP port.
    pub async fn bind(cfg: &Config, shared: Arc<Shared>) -> Result<Server, ServerError> {
        let zone = Zone::new(&cfg.cluster_domain, cfg.ttl)?;
        let (udp, tcp) = bind_pair(cfg.listen).await?;
        // Bursts of queries (many clients at once) overflow the default receive buffer, and
        // the kernel then drops them silently; best effort, the kernel may cap it.
        let _ = nix::sys::socket::setsockopt(&udp, nix::sys::socket::sockopt::RcvBuf, &RCVBUF);
        let http = match cfg.metrics_listen {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .map_err(|source| ServerError::Bind {
                        proto: "http",
                        addr: a,
                        source,
                    })?,
            ),
            None => None,
        };
        let workers = match cfg.udp_workers {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        };
        let state = Arc::new(State {
            shared,
            zone,
            forwarder: Forwarder::new(cfg.upstreams.clone()),
            metrics: Metrics::default(),
            forwards: Arc::new(Semaphore::new(1024)),
            tcp_conns: Arc::new(Semaphore::new(512)),
        });
        Ok(Server {
            udp: Arc::new(udp),
            tcp,
            http,
            state,
            workers,
        })
    }

    pub fn dns_addr(&self) -> SocketAddr {
        self.udp.local_addr().unwrap_or(([0, 0, 0, 0], 0).into())
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|h| h.local_addr().ok())
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..self.workers {
            tasks.spawn(udp_loop(self.udp.clone(), self.state.clone()));
        }
        tasks.spawn(tcp_loop(self.tcp, self.state.clone()));
        if let Some(h) = self.http {
            tasks.spawn(http_loop(h, self.state.clone()));
        }
        shutdown.await;
        tasks.abort_all();
    }
}

async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), ServerError> {
    let err = |proto, addr, source| ServerError::Bind {
        proto,
        addr,
        source,
    };
    let mut last = None;
    // With port 0 the UDP port may be taken for TCP; try a few.
    for _ in 0..if addr.port() == 0 { 20 } else { 1 } {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|e| err("udp", addr, e))?;
        let bound = udp.local_addr().map_err(|e| err("udp", addr, e))?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(err("tcp", bound, e)),
        }
    }
    Err(last.unwrap_or_else(|| err("tcp", addr, std::io::Error::other("no port"))))
}

async fn udp_loop(sock: Arc<UdpSocket>, st: Arc<State>) {
    let mut reader = st.shared.reader();
    let fd = sock.as_raw_fd();
    // calloc'd: only the bytes datagrams actually fill are touched.
    let mut bufs: Vec<Vec<u8>> = (0..batch::BATCH).map(|_| vec![0u8; batch::SLOT]).collect();
    let mut outs: Vec<Vec<u8>> = (0..batch::BATCH)
        .map(|_| Vec::with_capacity(answer::MAX_UDP_PAYLOAD as usize))
        .collect();
    let mut got = Vec::with_capacity(batch::BATCH);
    let mut ready = Vec::with_capacity(batch::BATCH);
    loop {
        got.clear();
        // ICMP errors from earlier sends surface here on some systems; keep serving.
        if sock.readable().await.is_err()
            || sock
                .try_io(Interest::READABLE, || batch::recv(fd, &mut bufs, &mut got))
                .is_err()
        {
            continue;
        }
        let start = Instant::now();
        let ix = reader.get();
        ready.clear();
        for &(slot, n, peer) in &got {
            let (pkt, out) = (&bufs[slot][..n], &mut outs[slot]);
            if let Some(qtype) = fast::answer_fast(ix, &st.zone, pkt, Transport::Udp, out) {
                ready.push((slot, peer, Some(qtype), ResponseCode::NoError));
                continue;
            }
            let a = answer::answer(ix, &st.zone, pkt, Transport::Udp);
            match a.outcome {
                Outcome::Reply(bytes) => {
                    *out = bytes;
                    ready.push((slot, peer, a.qtype, a.rcode));
                }
                Outcome::Drop => st.metrics.dropped(),
                Outcome::Forward(req) => {
                    // Bounded: past the limit a query is dropped and the client retries.
                    let Ok(permit) = st.forwards.clone().try_acquire_owned() else {
                        st.metrics.dropped();
                        continue;
                    };
                    let (sock, st) = (sock.clone(), st.clone());
                    tokio::spawn(async move {
                        let bytes = forward(&st, &req, Transport::Udp, start).await;
                        let _ = sock.send_to(&bytes, peer).await;
                        drop(permit);
                    });
                }
            }
        }
        let msgs: Vec<(&[u8], SocketAddr)> = ready
            .iter()
            .map(|&(slot, peer, _, _)| (outs[slot].as_slice(), peer))
            .collect();
        let sent = sock
            .try_io(Interest::WRITABLE, || batch::send(fd, &msgs))
            .unwrap_or(0);
        // Whatever the socket did not take at once goes out one by one.
        for (b, peer) in &msgs[sent..] {
            let _ = sock.send_to(b, *peer).await;
        }
        let took = start.elapsed();
        for &(_, _, qtype, rcode) in &ready {
            st.metrics.record(qtype, rcode, Transport::Udp, took);
        }
    }
}

async fn forward(st: &State, req: &Message, transport: Transport, start: Instant) -> Vec<u8> {
    let (reply, hit) = st.forwarder.resolve(req).await;
    st.metrics.forwarded(hit);
    let bytes = answer::encode(&reply, answer::reply_limit(req, transport));
    st.metrics.record(
        req.queries.first().map(|q| q.query_type()),
        reply.response_code,
        transport,
        start.elapsed(),
    );
    bytes
}

async fn tcp_loop(l: TcpListener, st: Arc<State>) {
    loop {
        let Ok((s, _)) = l.accept().await else {
            continue;
        };
        let Ok(permit) = st.tcp_conns.clone().try_acquire_owned() else {
            drop(s);
            continue;
        };
        let st = st.clone();
        tokio::spawn(async move {
            let _ = tcp_conn(s, &st).await;
            drop(permit);
        });
    }
}

const TCP_IDLE: Duration = Duration::from_secs(10);

async fn tcp_conn(mut s: TcpStream, st: &State) -> std::io::Result<()> {
    let mut reader = st.shared.reader();
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::new();
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, s.read_u16()).await {
            Ok(Ok(n)) => n as usize,
            _ => return Ok(()),
        };
        tokio::time::timeout(TCP_IDLE, s.read_exact(&mut buf[..len]))
            .await
            .map_err(std::io::Error::other)??;
        let start = Instant::now();
        let (ix, pkt) = (reader.get(), &buf[..len]);
        if let Some(qtype) = fast::answer_fast(ix, &st.zone, pkt, Transport::Tcp, &mut out) {
            st.metrics.record(
                Some(qtype),
                ResponseCode::NoError,
                Transport::Tcp,
                start.elapsed(),
            );
            write_framed(&mut s, &out).await?;
            continue;
        }
        let a = answer::answer(ix, &st.zone, pkt, Transport::Tcp);
        let bytes = match a.outcome {
            Outcome::Reply(b) => {
                st.metrics
                    .record(a.qtype, a.rcode, Transport::Tcp, start.elapsed());
                b
            }
            Outcome::Forward(req) => forward(st, &req, Transport::Tcp, start).await,
            Outcome::Drop => {
                st.metrics.dropped();
                return Ok(());
            }
        };
        write_framed(&mut s, &bytes).await?;
    }
}

/// Writes one length-prefixed DNS message (an oversized one as an empty frame).
async fn write_framed(s: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let n = u16::try_from(bytes.len()).unwrap_or(0);
    s.write_all(&[&n.to_be_bytes()[..], &bytes[..n as usize]].concat())
        .await
}

async fn http_loop(l: TcpListener, st: Arc<State>) {
    loop {
        let Ok((s, _)) = l.accept().await else {
            continue;
        };
        let st = st.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), http_conn(s, &st)).await;
        });
    }
}

/// Minimal HTTP/1.1: one GET per connection is all probes and Prometheus need.
async fn http_conn(mut s: TcpStream, st: &State) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut b = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = s.read(&mut b).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&b[..n]);
    }
    let line =
        String::from_utf8_lossy(head.split(|&c| c == b'\n').next().unwrap_or(&[])).to_string();
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, ctype, body) = match path.split('?').next().unwrap_or("") {
        "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
        "/readyz" if st.shared.synced() => ("200 OK", "text/plain", "ok\n".to_string()),
        "/readyz" => (
            "503 Service Unavailable",
            "text/plain",
            "not synced with the API server yet\n".to_string(),
        ),
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", st.metrics.render()),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(resp.as_bytes()).await?;
    s.shutdown().await
}
