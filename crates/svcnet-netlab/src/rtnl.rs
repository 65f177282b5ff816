//! Netlink operations (links, addresses, routes) run inside one namespace, each made idempotent.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use nix::errno::Errno;
use rtnetlink::packet_route::link::{LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType,
};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use crate::cidr::Ipv4Net;
use crate::netns::{self, NetnsError};
use crate::plan::{Route, RouteKind};

/// Route protocol number marking every route the lab installs, so that
/// `svcnet down` finds them after a crash (`ip route show proto 213`).
pub const ROUTE_PROTO: u8 = 213;

/// Errors of netlink work.
#[derive(Debug, thiserror::Error)]
pub enum RtnlError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("{op}: permission denied: the svcnet lab needs root (CAP_NET_ADMIN)")]
    NotPermitted { op: String },
    #[error("{op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("opening a netlink socket: {0}")]
    Socket(#[source] std::io::Error),
}

pub type Result<T, E = RtnlError> = std::result::Result<T, E>;

fn errno_of(e: &rtnetlink::Error) -> Option<Errno> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| Errno::from_raw(-c.get())),
        _ => None,
    }
}

fn wrap(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> RtnlError {
    move |e| {
        let op = op.into();
        match errno_of(&e) {
            Some(Errno::EPERM) | Some(Errno::EACCES) => RtnlError::NotPermitted { op },
            _ => RtnlError::Netlink { op, source: e },
        }
    }
}

/// Runs `f` with a netlink handle bound to the named namespace (`None`: the
/// caller's). Blocks the calling thread: from async code use `spawn_blocking`.
pub fn in_ns<T, F, Fut>(ns: Option<&str>, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T>>,
{
    netns::run_in(ns, move || -> Result<T> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(RtnlError::Socket)?;
        rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection().map_err(RtnlError::Socket)?;
            let task = tokio::spawn(conn);
            let r = f(handle).await;
            task.abort();
            r
        })
    })?
}

/// The index of link `name`, or `None` when there is none.
pub async fn link_index(h: &Handle, name: &str) -> Result<Option<u32>> {
    match h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(Some(m)) => Ok(Some(m.header.index)),
        Ok(None) => Ok(None),
        Err(e) if matches!(errno_of(&e), Some(Errno::ENODEV)) => Ok(None),
        Err(e) => Err(wrap(format!("looking up link {name}"))(e)),
    }
}

/// All links of the namespace: (index, name, kind).
pub async fn links(h: &Handle) -> Result<Vec<(u32, String, Option<String>)>> {
    let msgs: Vec<LinkMessage> = h
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(wrap("listing links"))?;
    Ok(msgs
        .into_iter()
        .map(|m| {
            let mut name = String::new();
            let mut kind = None;
            for a in &m.attributes {
                match a {
                    LinkAttribute::IfName(n) => name = n.clone(),
                    LinkAttribute::LinkInfo(infos) => {
                        for i in infos {
                            if let LinkInfo::Kind(k) = i {
                                kind = Some(k.to_string());
                            }
                        }
                    }
                    _ => {}
                }
            }
            (m.header.index, name, kind)
        })
        .collect())
}

async fn set(h: &Handle, op: String, msg: LinkMessage) -> Result<()> {
    h.link().set(msg).execute().await.map_err(wrap(op))
}

/// Brings link `idx` up.
pub async fn up(h: &Handle, name: &str, idx: u32) -> Result<()> {
    set(
        h,
        format!("setting {name} up"),
        LinkUnspec::new_with_index(idx).up().build(),
    )
    .await
}

/// Attaches link `idx` to bridge `master` and brings it up.
pub async fn attach(h: &Handle, name: &str, idx: u32, master: u32) -> Result<()> {
    set(
        h,
        format!("attaching {name} to its bridge"),
        LinkUnspec::new_with_index(idx)
            .controller(master)
            .up()
            .build(),
    )
    .await
}

/// Creates bridge `name` (up) unless it exists; returns its index.
pub async fn ensure_bridge(h: &Handle, name: &str) -> Result<u32> {
    if let Some(i) = link_index(h, name).await? {
        up(h, name, i).await?;
        return Ok(i);
    }
    h.link()
        .add(LinkBridge::new(name).build())
        .execute()
        .await
        .map_err(wrap(format!("creating bridge {name}")))?;
    created(h, name).await
}

async fn created(h: &Handle, name: &str) -> Result<u32> {
    link_index(h, name)
        .await?
        .ok_or_else(|| RtnlError::Netlink {
            op: format!("creating {name}"),
            source: rtnetlink::Error::RequestFailed,
        })
}

/// Creates veth `name` here with its peer `peer` in namespace `peer_ns`,
/// unless `name` exists; returns the index of `name`.
pub async fn ensure_veth(
    h: &Handle,
    name: &str,
    peer: &str,
    peer_ns: &std::fs::File,
) -> Result<u32> {
    if let Some(i) = link_index(h, name).await? {
        return Ok(i);
    }
    let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
        .name(peer.to_string())
        .setns_by_fd(peer_ns.as_raw_fd())
        .build();
    let msg = LinkVeth::new(name, peer)
        .set_info_data(rtnetlink::packet_route::link::InfoData::Veth(
            rtnetlink::packet_route::link::InfoVeth::Peer(peer_msg),
        ))
        .build();
    h.link()
        .add(msg)
        .execute()
        .await
        .map_err(wrap(format!("creating veth {name} (peer {peer})")))?;
    created(h, name).await
}

/// Deletes link `name` if present; `Ok(true)` when it was there.
pub async fn delete_link(h: &Handle, name: &str) -> Result<bool> {
    let Some(i) = link_index(h, name).await? else {
        return Ok(false);
    };
    match h.link().del(i).execute().await {
        Ok(()) => Ok(true),
        Err(e) if matches!(errno_of(&e), Some(Errno::ENODEV)) => Ok(false),
        Err(e) => Err(wrap(format!("deleting link {name}"))(e)),
    }
}

/// Adds `ip/len` to link `idx` unless it is there.
pub async fn ensure_addr(h: &Handle, name: &str, idx: u32, ip: Ipv4Addr, len: u8) -> Result<()> {
    match h.address().add(idx, IpAddr::V4(ip), len).execute().await {
        Ok(()) => Ok(()),
        Err(e) if matches!(errno_of(&e), Some(Errno::EEXIST)) => Ok(()),
        Err(e) => Err(wrap(format!("adding {ip}/{len} to {name}"))(e)),
    }
}

fn route_msg(r: &Route) -> RouteMessage {
    let b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(r.dst.addr(), r.dst.prefix_len())
        .protocol(RouteProtocol::Other(ROUTE_PROTO));
    match r.kind {
        RouteKind::Via(gw) => b.gateway(gw).build(),
        RouteKind::Unreachable => b.kind(RouteType::Unreachable).build(),
    }
}

/// Installs `r` in the main table, replacing a route to the same prefix.
pub async fn replace_route(h: &Handle, r: &Route) -> Result<()> {
    h.route()
        .add(route_msg(r))
        .replace()
        .execute()
        .await
        .map_err(wrap(format!("adding route {r}")))
}

/// The lab's routes (protocol [`ROUTE_PROTO`]) in the main table.
pub async fn lab_routes(h: &Handle) -> Result<Vec<(Route, RouteMessage)>> {
    let msgs: Vec<RouteMessage> = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(wrap("listing routes"))?;
    let mut out = Vec::new();
    for m in msgs {
        if m.header.protocol != RouteProtocol::Other(ROUTE_PROTO) {
            continue;
        }
        let mut dst = None;
        let mut gw = None;
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = Some(*ip),
                RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gw = Some(*ip),
                _ => {}
            }
        }
        let Some(dst) = dst.and_then(|ip| Ipv4Net::new(ip, m.header.destination_prefix_length))
        else {
            continue;
        };
        let kind = match (m.header.kind, gw) {
            (RouteType::Unreachable, _) => RouteKind::Unreachable,
            (_, Some(gw)) => RouteKind::Via(gw),
            _ => continue,
        };
        out.push((Route { dst, kind }, m));
    }
    Ok(out)
}

/// Deletes one route given as listed by [`lab_routes`]; gone already is fine.
pub async fn delete_route(h: &Handle, r: &Route, m: RouteMessage) -> Result<()> {
    match h.route().del(m).execute().await {
        Ok(()) => Ok(()),
        Err(e) if matches!(errno_of(&e), Some(Errno::ESRCH) | Some(Errno::ENOENT)) => Ok(()),
        Err(e) => Err(wrap(format!("deleting route {r}"))(e)),
    }
}

/// Writes a sysctl of the namespace the calling thread is in.
pub fn sysctl(key: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(format!("/proc/sys/{}", key.replace('.', "/")), value)
}
