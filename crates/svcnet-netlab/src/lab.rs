//! Building and tearing down a whole lab from its [`Plan`]: idempotent creation, complete removal, crash leftovers.

use std::fmt;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use crate::netns::{self, NetnsError};
use crate::plan::{self, HOST_PEER, LAB_BRIDGE, NODE_LINK, POD_BRIDGE, PREFIX, Plan};
use crate::rtnl::{self, RtnlError};

/// Where each lab records its plan, so that teardown after a crash knows its routes.
/// Under /run like the namespaces themselves: both vanish at reboot.
pub const STATE_DIR: &str = "/run/svcnet/netlab";

/// How long processes left in a lab namespace get between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// Errors of lab creation and teardown.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("the svcnet lab needs root (CAP_NET_ADMIN): run it as root, e.g. `sudo svcnet up`")]
    NotRoot,
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Rtnl(#[from] RtnlError),
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a lab state file: {source}")]
    State {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T, E = LabError> = std::result::Result<T, E>;

/// What a teardown removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    pub namespaces: Vec<String>,
    pub links: Vec<String>,
    pub routes: Vec<String>,
    pub processes: usize,
}

impl Removed {
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
            && self.links.is_empty()
            && self.routes.is_empty()
            && self.processes == 0
    }

    fn merge(&mut self, o: Removed) {
        self.namespaces.extend(o.namespaces);
        self.links.extend(o.links);
        self.routes.extend(o.routes);
        self.processes += o.processes;
    }
}

impl fmt::Display for Removed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(f, "nothing to remove");
        }
        let mut parts = Vec::new();
        let list = |what: &str, v: &[String]| {
            format!(
                "{} {what}{} ({})",
                v.len(),
                if v.len() == 1 { "" } else { "s" },
                v.join(", ")
            )
        };
        if !self.namespaces.is_empty() {
            parts.push(list("namespace", &self.namespaces));
        }
        if !self.links.is_empty() {
            parts.push(list("link", &self.links));
        }
        if !self.routes.is_empty() {
            parts.push(list("route", &self.routes));
        }
        if self.processes > 0 {
            parts.push(format!(
                "{} process{}",
                self.processes,
                if self.processes == 1 { "" } else { "es" }
            ));
        }
        write!(f, "removed {}", parts.join(", "))
    }
}

fn state_path(cluster: &str) -> PathBuf {
    PathBuf::from(STATE_DIR).join(format!("{cluster}.json"))
}

fn io(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    move |source| LabError::Io {
        op: op.into(),
        source,
    }
}

/// The recorded plan of a lab that was created on this machine (since boot).
pub fn recorded(cluster: &str) -> Result<Option<Plan>> {
    let p = state_path(cluster);
    match fs::read_to_string(&p) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| LabError::State {
                path: p.display().to_string(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(format!("reading {}", p.display()))(e)),
    }
}

/// Builds the lab. Idempotent: what exists is kept, what is missing is added,
/// routes are replaced. Blocks: from async code call it in `spawn_blocking`.
pub fn create(plan: &Plan) -> Result<()> {
    if !netns::has_net_admin() {
        return Err(LabError::NotRoot);
    }
    // Record first, so that a crash half-way is still cleaned up completely.
    fs::create_dir_all(STATE_DIR).map_err(io(format!("creating {STATE_DIR}")))?;
    let state = serde_json::to_string_pretty(plan).map_err(|source| LabError::State {
        path: STATE_DIR.into(),
        source,
    })?;
    let sp = state_path(&plan.cluster);
    fs::write(&sp, state).map_err(io(format!("writing {}", sp.display())))?;

    for ns in plan.namespaces() {
        netns::create(&ns)?;
    }
    let host_ns = fs::File::open("/proc/thread-self/ns/net")
        .map_err(io("opening the host network namespace"))?;
    let lab_ns_path = netns::path(&plan.net_ns)?;
    let lab_ns =
        fs::File::open(&lab_ns_path).map_err(io(format!("opening {}", lab_ns_path.display())))?;

    // Node ends first: each veth is created in its node with the peer moved
    // into the lab namespace in the same request.
    for (i, node) in plan.nodes.iter().enumerate() {
        let lab_ns = &lab_ns;
        rtnl::in_ns(Some(&node.netns), |h| async move {
            let port = Plan::lab_port(i);
            rtnl::ensure_veth(&h, NODE_LINK, &port, lab_ns).await?;
            Ok(())
        })?;
    }

    // The lab namespace: the bridge, node ports, and the host's veth.
    let host_ns_ref = &host_ns;
    rtnl::in_ns(Some(&plan.net_ns), |h| async move {
        if let Some(lo) = rtnl::link_index(&h, "lo").await? {
            rtnl::up(&h, "lo", lo).await?;
        }
        let br = rtnl::ensure_bridge(&h, LAB_BRIDGE).await?;
        if rtnl::link_index(&h, HOST_PEER).await?.is_none() {
            // A host end without its lab end is a stale leftover: replace it.
            rtnl::in_ns(None, |hh| async move {
                rtnl::delete_link(&hh, &plan.host_link).await
            })
            .ok();
        }
        let host = rtnl::ensure_veth(&h, HOST_PEER, &plan.host_link, host_ns_ref).await?;
        rtnl::attach(&h, HOST_PEER, host, br).await?;
        for i in 0..plan.nodes.len() {
            let port = Plan::lab_port(i);
            if let Some(idx) = rtnl::link_index(&h, &port).await? {
                rtnl::attach(&h, &port, idx, br).await?;
            }
        }
        Ok(())
    })?;

    // Nodes: addresses, the pod bridge, routes, forwarding.
    let len = plan.node_cidr.prefix_len();
    for node in &plan.nodes {
        rtnl::in_ns(Some(&node.netns), |h| async move {
            if let Some(lo) = rtnl::link_index(&h, "lo").await? {
                rtnl::up(&h, "lo", lo).await?;
            }
            let eth = rtnl::link_index(&h, NODE_LINK)
                .await?
                .ok_or_else(|| missing_link(&node.netns, NODE_LINK))?;
            rtnl::ensure_addr(&h, NODE_LINK, eth, node.ip, len).await?;
            rtnl::up(&h, NODE_LINK, eth).await?;
            let br = rtnl::ensure_bridge(&h, POD_BRIDGE).await?;
            rtnl::ensure_addr(
                &h,
                POD_BRIDGE,
                br,
                node.pod_gateway,
                node.pod_cidr.prefix_len(),
            )
            .await?;
            for r in &node.routes {
                rtnl::replace_route(&h, r).await?;
            }
            // Per-namespace sysctl: this thread is inside the node namespace.
            rtnl::sysctl("net.ipv4.ip_forward", "1").map_err(|source| RtnlError::Io {
                op: format!("enabling forwarding in {}", node.netns),
                source,
            })?;
            Ok(())
        })?;
    }

    // Host: the address on its veth and the lab's routes, nothing else.
    rtnl::in_ns(None, |h| async move {
        let idx = rtnl::link_index(&h, &plan.host_link)
            .await?
            .ok_or_else(|| missing_link("host", &plan.host_link))?;
        rtnl::ensure_addr(&h, &plan.host_link, idx, plan.host_ip, len).await?;
        rtnl::up(&h, &plan.host_link, idx).await?;
        for r in &plan.host_routes {
            rtnl::replace_route(&h, r).await?;
        }
        Ok(())
    })?;
    Ok(())
}

fn missing_link(ns: &str, link: &str) -> RtnlError {
    RtnlError::Netlink {
        op: format!("link {link} missing in {ns} after creating it"),
        source: rtnetlink::Error::RequestFailed,
    }
}

/// Removes the lab of `plan`: processes left in its namespaces, the host
/// veth, the host routes, the namespaces and the state file.
pub fn destroy(plan: &Plan) -> Result<Removed> {
    let mut removed = remove_namespaces(&plan.netns_prefix())?;
    let routes = plan.host_routes.clone();
    let link = plan.host_link.clone();
    let (links, gone) = rtnl::in_ns(None, |h| async move {
        let mut links = Vec::new();
        if rtnl::delete_link(&h, &link).await? {
            links.push(link.clone());
        }
        let mut gone = Vec::new();
        for (r, m) in rtnl::lab_routes(&h).await? {
            if routes.contains(&r) {
                rtnl::delete_route(&h, &r, m).await?;
                gone.push(r.to_string());
            }
        }
        Ok((links, gone))
    })?;
    removed.links.extend(links);
    removed.routes.extend(gone);
    remove_state(&plan.cluster)?;
    Ok(removed)
}

/// Removes a cluster's lab by name: its recorded plan when there is one,
/// else `fallback` (the plan it would have had), else what its names reveal.
pub fn destroy_cluster(cluster: &str, fallback: Option<&Plan>) -> Result<Removed> {
    plan::check_cluster_name(cluster)?;
    if let Some(p) = recorded(cluster)? {
        return destroy(&p);
    }
    if let Some(p) = fallback.filter(|p| p.cluster == cluster) {
        return destroy(p);
    }
    let mut removed = remove_namespaces(&plan::netns_prefix(cluster))?;
    let link = format!("{PREFIX}{cluster}");
    if rtnl::in_ns(None, |h| async move { rtnl::delete_link(&h, &link).await })? {
        removed.links.push(format!("{PREFIX}{cluster}"));
    }
    Ok(removed)
}

/// Removes every svcnet lab on the machine: all recorded labs, then every
/// namespace and host link named `svcnet-*` and every route with the lab's
/// protocol number — the leftovers of crashed runs.
pub fn down_all() -> Result<Removed> {
    let mut removed = Removed::default();
    if let Ok(rd) = fs::read_dir(STATE_DIR) {
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(cluster) = name.strip_suffix(".json")
                && plan::check_cluster_name(cluster).is_ok()
            {
                removed.merge(destroy_cluster(cluster, None)?);
            }
        }
    }
    removed.merge(remove_namespaces(PREFIX)?);
    let (links, routes) = rtnl::in_ns(None, |h| async move {
        let mut links = Vec::new();
        for (_, name, kind) in rtnl::links(&h).await? {
            if name.starts_with(PREFIX)
                && kind.as_deref() == Some("veth")
                && rtnl::delete_link(&h, &name).await?
            {
                links.push(name);
            }
        }
        let mut routes = Vec::new();
        for (r, m) in rtnl::lab_routes(&h).await? {
            rtnl::delete_route(&h, &r, m).await?;
            routes.push(r.to_string());
        }
        Ok((links, routes))
    })?;
    removed.links.extend(links);
    removed.routes.extend(routes);
    Ok(removed)
}

fn remove_namespaces(prefix: &str) -> Result<Removed> {
    let mut removed = Removed::default();
    for ns in netns::list()?.into_iter().filter(|n| n.starts_with(prefix)) {
        if netns::exists(&ns) {
            removed.processes += netns::kill_all_in(&ns, KILL_GRACE)?;
        }
        if netns::delete(&ns)? {
            removed.namespaces.push(ns);
        }
    }
    Ok(removed)
}

fn remove_state(cluster: &str) -> Result<()> {
    let p = state_path(cluster);
    match fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("removing {}", p.display()))(e)),
    }
}

/// What of a cluster's lab (or, with `None`, of any svcnet lab) is present.
pub fn leftovers(cluster: Option<&str>) -> Result<Removed> {
    let prefix = cluster
        .map(plan::netns_prefix)
        .unwrap_or_else(|| PREFIX.to_string());
    let host_link = cluster.map(|c| format!("{PREFIX}{c}"));
    let namespaces: Vec<String> = netns::list()?
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    let processes = namespaces
        .iter()
        .filter(|n| netns::exists(n))
        .map(|n| netns::pids_in(n).map(|p| p.len()))
        .sum::<Result<usize, _>>()?;
    let recorded_routes = match cluster {
        Some(c) => recorded(c)?.map(|p| p.host_routes),
        None => None,
    };
    let (links, routes) = rtnl::in_ns(None, |h| async move {
        let links: Vec<String> = rtnl::links(&h)
            .await?
            .into_iter()
            .filter(|(_, n, k)| match &host_link {
                Some(l) => n == l,
                None => n.starts_with(PREFIX) && k.as_deref() == Some("veth"),
            })
            .map(|(_, n, _)| n)
            .collect();
        let routes = rtnl::lab_routes(&h)
            .await?
            .into_iter()
            .filter(|(r, _)| match (&cluster, &recorded_routes) {
                (None, _) => true,
                (Some(_), Some(rs)) => rs.contains(r),
                (Some(_), None) => false,
            })
            .map(|(r, _)| r.to_string())
            .collect();
        Ok((links, routes))
    })?;
    Ok(Removed {
        namespaces,
        links,
        routes,
        processes,
    })
}
