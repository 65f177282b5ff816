//! Pod network plumbing in the node's namespace: the pod bridge, a network namespace per pod, a
//! veth into it with the pod IP and a default route via the bridge.
//!
//! Uses `ip` (iproute2) for these few per-pod steps; the lab topology itself is netlink-built by
//! `svcnet-netlab`.

use std::net::Ipv4Addr;

use crate::ipam::Cidr;

/// Errors of pod network setup.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("running ip {args}: {source}")]
    Spawn {
        args: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ip {args} failed: {stderr}")]
    Failed { args: String, stderr: String },
}

async fn ip(args: &[&str]) -> Result<String, NetError> {
    let joined = args.join(" ");
    let out = tokio::process::Command::new("ip")
        .args(args)
        .output()
        .await
        .map_err(|source| NetError::Spawn {
            args: joined.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(NetError::Failed {
            args: joined,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Names of a pod's network objects, derived from its uid so they are unique on the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNet {
    /// Network namespace name (a file under /run/netns).
    pub netns: String,
    /// Node-side veth name (≤ 15 characters).
    pub host_veth: String,
}

impl PodNet {
    pub fn for_uid(uid: &str) -> PodNet {
        let short: String = uid
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(10)
            .collect();
        PodNet {
            netns: format!("svcnet-pod-{short}"),
            host_veth: format!("svcv{short}"),
        }
    }

    pub fn netns_path(&self) -> std::path::PathBuf {
        std::path::Path::new("/run/netns").join(&self.netns)
    }
}

/// Creates the pod bridge with the CIDR's gateway address unless it exists.
pub async fn ensure_bridge(bridge: &str, cidr: Cidr) -> Result<(), NetError> {
    if ip(&["link", "show", "dev", bridge]).await.is_err() {
        ip(&["link", "add", bridge, "type", "bridge"]).await?;
    }
    let gw = format!("{}/{}", cidr.gateway(), cidr.len);
    let addrs = ip(&["-4", "addr", "show", "dev", bridge]).await?;
    if !addrs.contains(&format!("inet {gw} ")) {
        ip(&["addr", "add", &gw, "dev", bridge]).await?;
    }
    ip(&["link", "set", bridge, "up"]).await?;
    Ok(())
}

/// Builds the pod's namespace and link from scratch (a leftover of an earlier run is removed).
pub async fn setup(pn: &PodNet, bridge: &str, addr: Ipv4Addr, cidr: Cidr) -> Result<(), NetError> {
    teardown(pn).await;
    ip(&["netns", "add", &pn.netns]).await?;
    let ns = pn.netns.as_str();
    ip(&[
        "link",
        "add",
        &pn.host_veth,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns,
    ])
    .await?;
    ip(&["link", "set", &pn.host_veth, "master", bridge, "up"]).await?;
    let cidr_addr = format!("{addr}/{}", cidr.len);
    ip(&["-n", ns, "addr", "add", &cidr_addr, "dev", "eth0"]).await?;
    ip(&["-n", ns, "link", "set", "lo", "up"]).await?;
    ip(&["-n", ns, "link", "set", "eth0", "up"]).await?;
    ip(&[
        "-n",
        ns,
        "route",
        "add",
        "default",
        "via",
        &cidr.gateway().to_string(),
    ])
    .await?;
    Ok(())
}

/// Removes the pod's link and namespace; missing pieces are fine.
pub async fn teardown(pn: &PodNet) {
    let _ = ip(&["link", "del", &pn.host_veth]).await;
    let _ = ip(&["netns", "del", &pn.netns]).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_interface_limits() {
        let pn = PodNet::for_uid("3f2a9c1e-77aa-4b1c-9d2e-000000000001");
        assert_eq!(pn.netns, "svcnet-pod-3f2a9c1e77");
        assert_eq!(pn.host_veth, "svcv3f2a9c1e77");
        assert!(pn.host_veth.len() <= 15);
        assert_eq!(
            pn.netns_path(),
            std::path::Path::new("/run/netns/svcnet-pod-3f2a9c1e77")
        );
    }
}
