//! Userspace backend: service IPs as /32 (IPv4) and /128 (IPv6) addresses on an interface, TCP and UDP proxied by tokio tasks.
//!
//! No netfilter needed. IPv6 listeners are IPV6_V6ONLY, so `[::]:port` and
//! `0.0.0.0:port` NodePort listeners coexist. Round-robin over endpoints, another endpoint tried
//! when a connect fails, ClientIP affinity with a timeout, NodePorts as
//! listeners on the node's addresses. A port with no endpoints has no
//! listener, so the kernel refuses connections (RST) to its address.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::ffi::OsString;

use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::backend::{Backend, BackendError, Exec, NodeSettings, Result, SyncReport};
use crate::plan::{Family, Proto, Targets};
use crate::tracker::DesiredState;

/// How long one connect attempt may take before the next endpoint is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle UDP sessions are dropped after this long.
const UDP_IDLE: Duration = Duration::from_secs(60);
/// TCP congestion control of the proxy's own sockets, unless configured
/// otherwise. A relay whose sockets pace (BBR, the default on some
/// systems) puts a second pacer behind the sender's: one stream through it
/// lost about 30 % against a direct connection on the benchmark machines,
/// and none with a loss-based algorithm (crates/svcnet-proxy/bench/README.md).
pub const DEFAULT_CONGESTION_CONTROL: &str = "cubic";

/// Endpoint choice for one listener, shared with its tasks and updated in place.
#[derive(Debug, Default)]
pub struct Balancer {
    endpoints: Mutex<Vec<SocketAddr>>,
    next: AtomicUsize,
    affinity: Mutex<Option<Affinity>>,
}

/// Affinity timeout and each client's endpoint with when it was last used.
type Affinity = (Duration, HashMap<IpAddr, (SocketAddr, Instant)>);
/// Listen address → (endpoints, affinity timeout).
type Wanted = BTreeMap<(SocketAddr, Proto), (Vec<SocketAddr>, Option<u32>)>;

impl Balancer {
    fn set(&self, eps: &[SocketAddr], affinity: Option<u32>) {
        *lock(&self.endpoints) = eps.to_vec();
        let mut a = lock(&self.affinity);
        match affinity {
            Some(t) => {
                let timeout = Duration::from_secs(u64::from(t));
                let mut map = a.take().map(|(_, m)| m).unwrap_or_default();
                map.retain(|_, (e, _)| eps.contains(e));
                *a = Some((timeout, map));
            }
            None => *a = None,
        }
    }

    /// Endpoints in the order to try: the client's sticky endpoint first, then round-robin.
    pub fn order(&self, client: IpAddr, now: Instant) -> Vec<SocketAddr> {
        let eps = lock(&self.endpoints).clone();
        if eps.is_empty() {
            return eps;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % eps.len();
        let mut order: Vec<SocketAddr> =
            eps[start..].iter().chain(&eps[..start]).copied().collect();
        if let Some((timeout, map)) = lock(&self.affinity).as_mut()
            && let Some((e, at)) = map.get(&client).copied()
        {
            if now.duration_since(at) < *timeout && eps.contains(&e) {
                order.retain(|x| *x != e);
                order.insert(0, e);
            } else {
                map.remove(&client);
            }
        }
        order
    }

    /// Records a successful choice (affinity) and when the client was last seen.
    pub fn chosen(&self, client: IpAddr, ep: SocketAddr, now: Instant) {
        if let Some((_, map)) = lock(&self.affinity).as_mut() {
            map.insert(client, (ep, now));
        }
    }

    fn contains(&self, ep: &SocketAddr) -> bool {
        lock(&self.endpoints).contains(ep)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug)]
struct Listener {
    balancer: Arc<Balancer>,
    tasks: Vec<JoinHandle<()>>,
    /// A descriptor of the TCP listening socket, shared with the shards'
    /// accept tasks.
    socket: Option<std::net::TcpListener>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        // The tasks let go of their descriptors only when their threads get
        // to the abort; shutting the socket down takes it out of LISTEN now,
        // so the next sync can bind the address again at once.
        if let Some(s) = &self.socket {
            use std::os::fd::AsRawFd;
            let _ = nix::sys::socket::shutdown(s.as_raw_fd(), nix::sys::socket::Shutdown::Read);
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Single-threaded runtimes, one per core, all accepting TCP connections
/// from the same listening socket (each polls a descriptor of it, and the
/// one that is free first takes the connection) and serving each connection
/// to the end on its thread: no connection's wakeups cross threads (nginx's
/// and HAProxy's model). A socket per shard in an SO_REUSEPORT group, the
/// earlier shape, fixes a connection's shard by a hash of its addresses,
/// so a connection waits on a busy shard while the other idles: 10 % of
/// the two cores sat idle under load against 3 % now, and 25,700 against
/// 28,300 connections/s (bench/dataplane.sh). Threads inherit the creating
/// thread's network namespace.
#[derive(Debug)]
struct Shards {
    handles: Vec<Handle>,
    stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Shards {
    fn start() -> Shards {
        // At most 4: each shard adds a socket per TCP listener.
        let n = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        let (mut handles, mut stop) = (Vec::new(), Vec::new());
        for i in 0..n {
            let (htx, hrx) = std::sync::mpsc::channel();
            let (stx, srx) = tokio::sync::oneshot::channel::<()>();
            let spawned = std::thread::Builder::new()
                .name(format!("svcnet-userspace-{i}"))
                .spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    let _ = htx.send(rt.handle().clone());
                    rt.block_on(async {
                        let _ = srx.await;
                    });
                });
            if spawned.is_ok()
                && let Ok(h) = hrx.recv()
            {
                handles.push(h);
                stop.push(stx);
            }
        }
        Shards { handles, stop }
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        for s in self.stop.drain(..) {
            let _ = s.send(());
        }
    }
}

/// The userspace backend.
#[derive(Debug)]
pub struct UserspaceBackend {
    handle: Handle,
    shards: Shards,
    exec: Box<dyn Exec>,
    settings: NodeSettings,
    /// Interface carrying the service addresses (`lo` where there is no dummy driver).
    iface: String,
    /// This node's addresses (both families): NodePort listeners for
    /// nodePortAddresses, and whether IPv6 NodePorts are served at all.
    node_ips: Vec<IpAddr>,
    listeners: BTreeMap<(SocketAddr, Proto), Listener>,
    addrs: BTreeSet<IpAddr>,
    /// TCP congestion control set on every proxied TCP socket (None: the system's).
    congestion: Option<Arc<OsString>>,
}

impl UserspaceBackend {
    pub fn new(
        handle: Handle,
        exec: Box<dyn Exec>,
        settings: NodeSettings,
        iface: &str,
        node_ips: Vec<IpAddr>,
    ) -> Self {
        UserspaceBackend {
            handle,
            shards: Shards::start(),
            exec,
            settings,
            iface: iface.to_string(),
            node_ips,
            listeners: BTreeMap::new(),
            addrs: BTreeSet::new(),
            congestion: None,
        }
        .with_congestion_control(DEFAULT_CONGESTION_CONTROL)
    }

    /// Sets the TCP congestion control of the proxied connections' sockets
    /// (both sides): `""` keeps the system's. An algorithm this kernel
    /// cannot set (not loaded, or restricted to privileged processes) is
    /// reported once and the system's is kept.
    pub fn with_congestion_control(mut self, name: &str) -> Self {
        self.congestion = (!name.is_empty())
            .then(|| OsString::from(name))
            .and_then(|cc| match sockets::probe_congestion(&cc) {
                Ok(()) => Some(Arc::new(cc)),
                Err(e) => {
                    tracing::warn!(
                        "userspace: TCP congestion control {name:?} cannot be set ({e}); the system's is used"
                    );
                    None
                }
            });
        self
    }

    /// Every (listen address, protocol) with its endpoints and affinity.
    /// NodePort listen addresses of one family.
    fn node_port_ips(&self, fam: Family) -> Vec<IpAddr> {
        let cidrs = self.settings.node_port_cidrs(fam);
        if !cidrs.is_empty() {
            return self
                .node_ips
                .iter()
                .filter(|ip| cidrs.iter().any(|c| c.contains(**ip)))
                .copied()
                .collect();
        }
        match fam {
            Family::V4 => vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
            // Only on a node that has IPv6 addresses (binding [::] fails without IPv6).
            Family::V6 if self.node_ips.iter().any(|ip| ip.is_ipv6()) => {
                vec![IpAddr::V6(Ipv6Addr::UNSPECIFIED)]
            }
            Family::V6 => Vec::new(),
        }
    }

    fn wanted(&self, state: &DesiredState) -> (Wanted, BTreeSet<IpAddr>) {
        let mut want = BTreeMap::new();
        let mut addrs = BTreeSet::new();
        let np_ips = [
            self.node_port_ips(Family::V4),
            self.node_port_ips(Family::V6),
        ];
        for p in state.ports.values() {
            let proto = p.key.proto;
            if proto == Proto::Sctp {
                continue;
            }
            let mut add = |ip: IpAddr, port: u16, t: &Targets, vip: bool| {
                if vip {
                    addrs.insert(ip);
                }
                if let Targets::Endpoints(e) = t {
                    want.insert((SocketAddr::new(ip, port), proto), (e.clone(), p.affinity));
                }
            };
            for ip in &p.cluster_ips {
                add(*ip, p.port, &p.internal, true);
            }
            for ip in p.external_ips.iter().chain(&p.lb_ips) {
                add(*ip, p.port, &p.external, true);
            }
            if let Some(np) = p.node_port {
                for ip in &np_ips[p.family().index()] {
                    add(*ip, np, &p.external, false);
                }
            }
        }
        (want, addrs)
    }

    fn listen(&self, addr: SocketAddr, proto: Proto, balancer: Arc<Balancer>) -> Result<Listener> {
        let err = |e: std::io::Error| {
            BackendError::Userspace(format!("listening on {addr}/{}: {e}", proto.lower()))
        };
        let _g = self.handle.enter();
        match proto {
            Proto::Tcp => {
                // One listening socket, a descriptor of it registered with
                // every shard (the backend's runtime where no shard
                // started), all made before any accepts, so a failure
                // leaves nothing behind.
                let std = sockets::tcp(addr, self.congestion.as_deref()).map_err(err)?;
                std.set_nonblocking(true).map_err(err)?;
                let runtimes = if self.shards.handles.is_empty() {
                    std::slice::from_ref(&self.handle)
                } else {
                    &self.shards.handles[..]
                };
                let mut socks = Vec::new();
                for _ in runtimes {
                    socks.push(std.try_clone().map_err(err)?);
                }
                let mut tasks = Vec::new();
                for (sock, h) in socks.into_iter().zip(runtimes) {
                    let _in = h.enter();
                    let l = TcpListener::from_std(sock).map_err(err)?;
                    tasks.push(h.spawn(serve_tcp(l, balancer.clone(), self.congestion.clone())));
                }
                Ok(Listener {
                    balancer,
                    tasks,
                    socket: Some(std),
                })
            }
            _ => {
                let std = sockets::udp(addr).map_err(err)?;
                std.set_nonblocking(true).map_err(err)?;
                let s = UdpSocket::from_std(std).map_err(err)?;
                let task = self.handle.spawn(serve_udp(Arc::new(s), balancer.clone()));
                Ok(Listener {
                    balancer,
                    tasks: vec![task],
                    socket: None,
                })
            }
        }
    }
}

/// The interface address of a service IP: /32 or /128 (no duplicate address detection for IPv6).
fn host_addr(ip: &IpAddr) -> (String, bool) {
    match ip {
        IpAddr::V4(_) => (format!("{ip}/32"), false),
        IpAddr::V6(_) => (format!("{ip}/128"), true),
    }
}

/// IPv6 sockets with IPV6_V6ONLY set, so they never collide with IPv4 listeners on the same port.
mod sockets {
    use std::ffi::OsString;
    use std::io;
    use std::net::SocketAddr;
    use std::os::fd::{AsRawFd, OwnedFd};

    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, listen,
        setsockopt, socket, sockopt,
    };

    /// A socket bound to `addr`: IPv6 ones are IPV6_V6ONLY (so `[::]:p` and
    /// `0.0.0.0:p` coexist).
    fn sock(addr: SocketAddr, ty: SockType) -> io::Result<OwnedFd> {
        let family = match addr {
            SocketAddr::V4(_) => AddressFamily::Inet,
            SocketAddr::V6(_) => AddressFamily::Inet6,
        };
        let fd = socket(family, ty, SockFlag::SOCK_CLOEXEC, None)?;
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
        match addr {
            SocketAddr::V4(a) => bind(fd.as_raw_fd(), &SockaddrIn::from(a))?,
            SocketAddr::V6(a) => {
                setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
                bind(fd.as_raw_fd(), &SockaddrIn6::from(a))?;
            }
        }
        Ok(fd)
    }

    /// A listening TCP socket. TCP_NODELAY and the congestion control are
    /// set on it: accepted sockets inherit both (no syscall per connection).
    pub(super) fn tcp(
        addr: SocketAddr,
        congestion: Option<&OsString>,
    ) -> io::Result<std::net::TcpListener> {
        let fd = sock(addr, SockType::Stream)?;
        setsockopt(&fd, sockopt::TcpNoDelay, &true)?;
        if let Some(cc) = congestion {
            setsockopt(&fd, sockopt::TcpCongestion, cc)?;
        }
        listen(&fd, Backlog::new(1024)?)?;
        Ok(std::net::TcpListener::from(fd))
    }

    /// Whether this process can give a TCP socket the congestion control `cc`.
    pub(super) fn probe_congestion(cc: &OsString) -> io::Result<()> {
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        setsockopt(&fd, sockopt::TcpCongestion, cc)?;
        Ok(())
    }

    pub(super) fn udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
        Ok(std::net::UdpSocket::from(sock(addr, SockType::Datagram)?))
    }
}

impl Backend for UserspaceBackend {
    fn mode(&self) -> &'static str {
        "userspace"
    }

    fn sync(&mut self, state: &DesiredState, _full: bool) -> Result<SyncReport> {
        let (want, addrs) = self.wanted(state);
        for ip in addrs.difference(&self.addrs.clone()) {
            let (a, v6) = host_addr(ip);
            let mut args = vec!["addr", "add", a.as_str(), "dev", self.iface.as_str()];
            if v6 {
                args.push("nodad");
            }
            match self.exec.run("ip", &args, "") {
                Ok(_) => {}
                Err(BackendError::Failed { stderr, .. }) if stderr.contains("File exists") => {}
                Err(e) => return Err(e),
            }
            self.addrs.insert(*ip);
        }
        let mut changed = 0;
        self.listeners.retain(|k, _| want.contains_key(k));
        for (key, (eps, aff)) in &want {
            if let Some(l) = self.listeners.get(key) {
                l.balancer.set(eps, *aff);
                continue;
            }
            let b = Arc::new(Balancer::default());
            b.set(eps, *aff);
            let l = self.listen(key.0, key.1, b)?;
            self.listeners.insert(*key, l);
            changed += 1;
        }
        for ip in self.addrs.clone().difference(&addrs) {
            let (a, _) = host_addr(ip);
            let _ = self
                .exec
                .run("ip", &["addr", "del", &a, "dev", &self.iface], "");
            self.addrs.remove(ip);
            changed += 1;
        }
        Ok(SyncReport {
            full: false,
            changed_ports: changed,
        })
    }

    fn cleanup(&mut self) -> Result<()> {
        self.listeners.clear();
        for ip in std::mem::take(&mut self.addrs) {
            let (a, _) = host_addr(&ip);
            let _ = self
                .exec
                .run("ip", &["addr", "del", &a, "dev", &self.iface], "");
        }
        Ok(())
    }
}

async fn serve_tcp(l: TcpListener, b: Arc<Balancer>, congestion: Option<Arc<OsString>>) {
    loop {
        let Ok((conn, peer)) = l.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (b, cc) = (b.clone(), congestion.clone());
        tokio::spawn(async move {
            // TCP_NODELAY and the congestion control come from the listener.
            let Some(up) = connect(&b, peer.ip(), cc.as_deref()).await else {
                // No endpoint answered: reset rather than hang.
                let _ = conn.set_zero_linger();
                return;
            };
            crate::relay::relay(conn, up).await;
        });
    }
}

/// Tries endpoints in order until one accepts.
async fn connect(b: &Balancer, client: IpAddr, cc: Option<&OsString>) -> Option<TcpStream> {
    for ep in b.order(client, Instant::now()) {
        let Ok(sock) = upstream_socket(ep, cc) else {
            continue;
        };
        if let Ok(Ok(s)) = tokio::time::timeout(CONNECT_TIMEOUT, sock.connect(ep)).await {
            b.chosen(client, ep, Instant::now());
            return Some(s);
        }
    }
    None
}

/// An unconnected socket for `ep` with TCP_NODELAY and the congestion control set.
fn upstream_socket(ep: SocketAddr, cc: Option<&OsString>) -> std::io::Result<TcpSocket> {
    let s = match ep {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    s.set_nodelay(true)?;
    if let Some(cc) = cc {
        // Set once already (the backend probes it); a failure here keeps the system's.
        let _ = nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::TcpCongestion, cc);
    }
    Ok(s)
}

struct UdpSession {
    ep: SocketAddr,
    sock: Arc<UdpSocket>,
    last: Instant,
    task: JoinHandle<()>,
}

async fn serve_udp(front: Arc<UdpSocket>, b: Arc<Balancer>) {
    let mut sessions: HashMap<SocketAddr, UdpSession> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    let mut last_sweep = Instant::now();
    loop {
        let Ok((n, client)) = front.recv_from(&mut buf).await else {
            continue;
        };
        let now = Instant::now();
        if now.duration_since(last_sweep) > UDP_IDLE {
            sessions.retain(|_, s| {
                let keep = now.duration_since(s.last) < UDP_IDLE;
                if !keep {
                    s.task.abort();
                }
                keep
            });
            last_sweep = now;
        }
        // A session whose endpoint was removed starts over (the userspace twin of conntrack cleanup).
        if sessions.get(&client).is_some_and(|s| !b.contains(&s.ep))
            && let Some(s) = sessions.remove(&client)
        {
            s.task.abort();
        }
        if let std::collections::hash_map::Entry::Vacant(slot) = sessions.entry(client) {
            let Some(ep) = b.order(client.ip(), now).first().copied() else {
                continue;
            };
            let local: SocketAddr = match ep {
                SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let Ok(sock) = UdpSocket::bind(local).await else {
                continue;
            };
            if sock.connect(ep).await.is_err() {
                continue;
            }
            b.chosen(client.ip(), ep, now);
            let sock = Arc::new(sock);
            let (back, f) = (sock.clone(), front.clone());
            let task = tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = back.recv(&mut buf).await {
                    let _ = f.send_to(&buf[..n], client).await;
                }
            });
            slot.insert(UdpSession {
                ep,
                sock,
                last: now,
                task,
            });
        }
        if let Some(s) = sessions.get_mut(&client) {
            s.last = now;
            let _ = s.sock.send(&buf[..n]).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    /// The congestion control a new TCP socket gets here.
    fn system_congestion() -> OsString {
        let fd = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::TcpCongestion)
            .expect("getsockopt")
    }

    /// The relay relies on accepted sockets inheriting TCP_NODELAY and the
    /// congestion control from the listener, and on upstream sockets
    /// getting both: an algorithm other than the system's shows it.
    #[test]
    fn proxied_sockets_get_nodelay_and_the_congestion_control() {
        use nix::sys::socket::{getsockopt, sockopt::TcpCongestion};
        // Reno is built into every kernel and open to unprivileged processes.
        let cc = OsString::from(if system_congestion() == "reno" {
            "cubic"
        } else {
            "reno"
        });
        let l = sockets::tcp(ep("127.0.0.1:0"), Some(&cc)).expect("listen");
        let addr = l.local_addr().expect("addr");
        let _c = std::net::TcpStream::connect(addr).expect("connect");
        let (s, _) = l.accept().expect("accept");
        assert!(s.nodelay().expect("nodelay"));
        assert_eq!(getsockopt(&s, TcpCongestion).expect("cc"), cc);

        let up = upstream_socket(addr, Some(&cc)).expect("socket");
        assert!(up.nodelay().expect("nodelay"));
        assert_eq!(getsockopt(&up, TcpCongestion).expect("cc"), cc);
        let plain = upstream_socket(addr, None).expect("socket");
        assert_eq!(
            getsockopt(&plain, TcpCongestion).expect("cc"),
            system_congestion()
        );
    }

    /// A Service removed in one sync and added in the next listens on its
    /// address again at once, and the new listener gets the connections.
    #[test]
    fn an_address_is_listened_on_again_right_after_its_listener_goes() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let exec = Box::new(crate::backend::FakeExec::default());
        let be = UserspaceBackend::new(
            rt.handle().clone(),
            exec,
            NodeSettings::default(),
            "lo",
            vec![],
        );
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let backend = std::net::TcpListener::bind("127.0.0.1:0").expect("backend");
        backend.set_nonblocking(true).expect("nonblocking");
        let eps = [backend.local_addr().expect("addr")];
        for i in 0..50 {
            let b = Arc::new(Balancer::default());
            b.set(&eps, None);
            let l = be
                .listen(addr, Proto::Tcp, b)
                .unwrap_or_else(|e| panic!("listen {i}: {e}"));
            let _c = std::net::TcpStream::connect(addr).expect("connect");
            let deadline = Instant::now() + Duration::from_secs(5);
            while let Err(e) = backend.accept() {
                assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
                assert!(Instant::now() < deadline, "{i}: not proxied");
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(l);
        }
    }

    #[test]
    fn an_unknown_congestion_control_keeps_the_systems() {
        assert!(sockets::probe_congestion(&OsString::from("no-such-cc")).is_err());
        assert!(sockets::probe_congestion(&OsString::from("reno")).is_ok());
    }

    #[test]
    fn round_robin_and_affinity() {
        let b = Balancer::default();
        let eps = [ep("10.0.0.1:80"), ep("10.0.0.2:80"), ep("10.0.0.3:80")];
        b.set(&eps, None);
        let c: IpAddr = "10.1.0.1".parse().expect("ip");
        let now = Instant::now();
        let firsts: Vec<String> = (0..4).map(|_| b.order(c, now)[0].to_string()).collect();
        assert_eq!(
            firsts,
            ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.1:80"]
        );
        assert_eq!(b.order(c, now).len(), 3, "every endpoint is tried once");

        b.set(&eps, Some(10));
        b.chosen(c, eps[2], now);
        // (seconds later, expected first endpoint)
        let rows = [(0, "10.0.0.3:80"), (9, "10.0.0.3:80")];
        for (later, want) in rows {
            assert_eq!(
                b.order(c, now + Duration::from_secs(later))[0].to_string(),
                want,
                "+{later}s"
            );
        }
        // Expired: round-robin again, and the stale entry is forgotten.
        let expired: BTreeSet<String> = (0..3)
            .map(|_| b.order(c, now + Duration::from_secs(10))[0].to_string())
            .collect();
        assert_eq!(expired.len(), 3, "{expired:?}");
        // Removing the sticky endpoint forgets it.
        b.chosen(c, eps[2], now);
        b.set(&eps[..2], Some(10));
        assert!(!b.order(c, now).contains(&eps[2]));
        // Turning affinity off spreads again.
        b.set(&eps, None);
        let firsts: BTreeSet<String> = (0..3).map(|_| b.order(c, now)[0].to_string()).collect();
        assert_eq!(firsts.len(), 3);
    }
}
