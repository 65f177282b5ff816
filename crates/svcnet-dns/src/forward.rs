//! Forwarding of names outside the cluster zone to upstream resolvers, with a TTL-bounded cache.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RData;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::answer::{self, MAX_UDP_PAYLOAD, reply_to};

/// Why one upstream exchange failed (logged at debug; the client gets SERVFAIL).
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("upstream {0}: {1}")]
    Io(SocketAddr, #[source] std::io::Error),
    #[error("upstream {0} did not answer in time")]
    Timeout(SocketAddr),
    #[error("upstream {0} sent an unparsable or mismatched reply")]
    BadReply(SocketAddr),
    #[error("query could not be encoded: {0}")]
    Encode(#[source] hickory_proto::ProtoError),
}

type Key = (String, u16, u16);

#[derive(Debug)]
struct Cached {
    reply: Message,
    stored: Instant,
    ttl: u32,
}

/// Forwards queries and caches answers (NOERROR by their smallest TTL, NXDOMAIN by the SOA minimum).
#[derive(Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    cache: Mutex<HashMap<Key, Cached>>,
    /// Time allowed for one upstream before trying the next.
    pub per_upstream: Duration,
    /// Time allowed for all upstreams together.
    pub total: Duration,
    pub max_entries: usize,
    pub max_ttl: u32,
    pub max_negative_ttl: u32,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>) -> Forwarder {
        Forwarder {
            upstreams,
            cache: Mutex::new(HashMap::new()),
            per_upstream: Duration::from_millis(1000),
            total: Duration::from_millis(2000),
            max_entries: 10_000,
            max_ttl: 300,
            max_negative_ttl: 30,
        }
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// The reply for `req` (ID and OPT as the client expects) and whether it came from the cache.
    pub async fn resolve(&self, req: &Message) -> (Message, bool) {
        let Some(q) = req.queries.first() else {
            return (reply_to(req, ResponseCode::FormErr), false);
        };
        let key: Key = (
            q.name().to_lowercase().to_ascii(),
            u16::from(q.query_type()),
            u16::from(q.query_class()),
        );
        if let Some(m) = self.cached(&key) {
            return (self.for_client(req, m), true);
        }
        let deadline = Instant::now() + self.total;
        for up in &self.upstreams {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.exchange(req, *up, left.min(self.per_upstream)).await {
                Ok(m) => {
                    self.store(key, &m);
                    return (self.for_client(req, m), false);
                }
                Err(e) => tracing::debug!(error = %e, "forwarding failed"),
            }
        }
        (reply_to(req, ResponseCode::ServFail), false)
    }

    fn for_client(&self, req: &Message, mut m: Message) -> Message {
        let mut r = reply_to(req, m.response_code);
        r.metadata.authentic_data = m.authentic_data;
        r.insert_answers(std::mem::take(&mut m.answers));
        r.insert_authorities(std::mem::take(&mut m.authorities));
        r.insert_additionals(std::mem::take(&mut m.additionals));
        r
    }

    fn cached(&self, key: &Key) -> Option<Message> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let c = cache.get(key)?;
        let age = c.stored.elapsed().as_secs() as u32;
        if age >= c.ttl {
            return None;
        }
        let mut m = c.reply.clone();
        for r in m
            .answers
            .iter_mut()
            .chain(m.authorities.iter_mut())
            .chain(m.additionals.iter_mut())
        {
            r.decrement_ttl(age);
        }
        Some(m)
    }

    fn store(&self, key: Key, m: &Message) {
        let ttl = match m.response_code {
            ResponseCode::NoError if !m.answers.is_empty() => m
                .answers
                .iter()
                .map(|r| r.ttl)
                .min()
                .unwrap_or(0)
                .min(self.max_ttl),
            ResponseCode::NoError | ResponseCode::NXDomain => m
                .authorities
                .iter()
                .find_map(|r| match &r.data {
                    RData::SOA(soa) => Some(soa.minimum.min(r.ttl)),
                    _ => None,
                })
                .unwrap_or(0)
                .min(self.max_negative_ttl),
            _ => 0,
        };
        if ttl == 0 {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= self.max_entries {
            cache.retain(|_, c| c.stored.elapsed().as_secs() < u64::from(c.ttl));
            if cache.len() >= self.max_entries {
                cache.clear();
            }
        }
        cache.insert(
            key,
            Cached {
                reply: m.clone(),
                stored: Instant::now(),
                ttl,
            },
        );
    }

    async fn exchange(
        &self,
        req: &Message,
        up: SocketAddr,
        wait: Duration,
    ) -> Result<Message, ForwardError> {
        let q = &req.queries[0];
        // A fresh random ID and source port per exchange, so spoofed replies are hard to match.
        let id: u16 = rand::random();
        let mut out = answer::query(q.name(), q.query_type(), id, Some(MAX_UDP_PAYLOAD));
        out.queries[0].set_query_class(q.query_class());
        out.metadata.checking_disabled = req.checking_disabled;
        let bytes = out.to_vec().map_err(ForwardError::Encode)?;
        let fut = async {
            let m = udp_exchange(&bytes, up).await?;
            if m.truncation {
                tcp_exchange(&bytes, up).await
            } else {
                Ok(m)
            }
        };
        let m = tokio::time::timeout(wait, fut)
            .await
            .map_err(|_| ForwardError::Timeout(up))??;
        let same_q = m.queries.first().is_some_and(|r| {
            r.query_type() == q.query_type() && r.name().eq_ignore_root_case(q.name())
                || r.name() == q.name()
        });
        if m.id != id || !same_q {
            return Err(ForwardError::BadReply(up));
        }
        Ok(m)
    }
}

async fn udp_exchange(bytes: &[u8], up: SocketAddr) -> Result<Message, ForwardError> {
    let io = |e| ForwardError::Io(up, e);
    let bind: SocketAddr = if up.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = UdpSocket::bind(bind).await.map_err(io)?;
    // Connected, so an ICMP port-unreachable fails fast instead of waiting for the timeout.
    sock.connect(up).await.map_err(io)?;
    sock.send(bytes).await.map_err(io)?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await.map_err(io)?;
        if let Ok(m) = Message::from_vec(&buf[..n]) {
            return Ok(m);
        }
    }
}

async fn tcp_exchange(bytes: &[u8], up: SocketAddr) -> Result<Message, ForwardError> {
    let io = |e| ForwardError::Io(up, e);
    let mut s = TcpStream::connect(up).await.map_err(io)?;
    let len = u16::try_from(bytes.len()).map_err(|_| ForwardError::BadReply(up))?;
    s.write_all(&[&len.to_be_bytes()[..], bytes].concat())
        .await
        .map_err(io)?;
    let n = s.read_u16().await.map_err(io)? as usize;
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).await.map_err(io)?;
    Message::from_vec(&buf).map_err(|_| ForwardError::BadReply(up))
}
