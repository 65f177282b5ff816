//! Allocating a Service's ClusterIPs and NodePorts on create, update and delete, all or nothing, as upstream's Service registry does.
//!
//! Each function works on copies of the allocators and writes them back
//! only on success, so a failed request leaves nothing allocated. Releases
//! are applied after all allocations, so a port freed by an update cannot be
//! handed out again within the same update (upstream's deferred release).
//! IP family defaulting (`ipFamilies`, `ipFamilyPolicy`) is assumed done.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::ServiceSpec;

use super::{
    AllocError, AllocFieldError, IpAllocator, PortAllocator, cluster_ip_field_error,
    cluster_ip_internal_message, health_check_node_port_message, node_port_field_error,
    node_port_internal_message,
};

/// Why a Service's addresses could not be allocated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServiceAllocError {
    /// A requested value cannot be had: a 422 Invalid with this field cause.
    #[error("{0}")]
    Invalid(AllocFieldError),
    /// Nothing left, or a requested healthCheckNodePort: a 500 with this message.
    #[error("{0}")]
    Internal(String),
}

/// What an operation took and gave back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllocChanges {
    /// ClusterIPs newly allocated.
    pub allocated_ips: Vec<IpAddr>,
    /// ClusterIPs released.
    pub released_ips: Vec<IpAddr>,
    /// Node ports (including healthCheckNodePort) newly allocated.
    pub allocated_ports: Vec<i32>,
    /// Node ports released.
    pub released_ports: Vec<i32>,
}

fn service_type(spec: &ServiceSpec) -> &str {
    spec.type_
        .as_deref()
        .filter(|t| !t.is_empty())
        .unwrap_or("ClusterIP")
}

/// Whether the type carries node ports (NodePort, LoadBalancer).
pub fn needs_node_ports(spec: &ServiceSpec) -> bool {
    matches!(service_type(spec), "NodePort" | "LoadBalancer")
}

/// Whether ports without a nodePort get one allocated: always for
/// NodePort, for LoadBalancer unless `allocateLoadBalancerNodePorts: false`.
fn should_allocate_node_ports(spec: &ServiceSpec) -> bool {
    match service_type(spec) {
        "NodePort" => true,
        "LoadBalancer" => spec.allocate_load_balancer_node_ports.unwrap_or(true),
        _ => false,
    }
}

/// Whether the Service needs a healthCheckNodePort (LoadBalancer with
/// `externalTrafficPolicy: Local`).
pub fn needs_health_check(spec: &ServiceSpec) -> bool {
    service_type(spec) == "LoadBalancer" && spec.external_traffic_policy.as_deref() == Some("Local")
}

fn needs_cluster_ip(spec: &ServiceSpec) -> bool {
    service_type(spec) != "ExternalName"
}

fn is_headless(spec: &ServiceSpec) -> bool {
    spec.cluster_ip.as_deref() == Some("None")
        || spec
            .cluster_ips
            .as_ref()
            .and_then(|v| v.first())
            .map(String::as_str)
            == Some("None")
}

fn port_node_ports(spec: &ServiceSpec) -> Vec<i32> {
    let mut seen = BTreeSet::new();
    spec.ports
        .iter()
        .flatten()
        .filter_map(|p| p.node_port.filter(|&n| n != 0))
        .filter(|n| seen.insert(*n))
        .collect()
}

fn health_check_port(spec: &ServiceSpec) -> Option<i32> {
    spec.health_check_node_port.filter(|&n| n != 0)
}

/// Every node port the Service holds (ports' nodePorts and the
/// healthCheckNodePort), for rebuilding an allocator from stored Services.
pub fn service_node_ports(spec: &ServiceSpec) -> Vec<i32> {
    let mut out = port_node_ports(spec);
    if let Some(hc) = health_check_port(spec).filter(|hc| !out.contains(hc)) {
        out.push(hc);
    }
    out
}

/// Every ClusterIP the Service holds, for rebuilding allocators.
pub fn service_cluster_ips(spec: &ServiceSpec) -> Vec<IpAddr> {
    if !needs_cluster_ip(spec) {
        return Vec::new();
    }
    let listed = spec.cluster_ips.clone().unwrap_or_default();
    let ips = if listed.is_empty() {
        spec.cluster_ip.clone().into_iter().collect()
    } else {
        listed
    };
    ips.iter().filter_map(|ip| ip.parse().ok()).collect()
}

/// Allocates what a new Service needs: ClusterIPs per family (requested
/// ones or random), node ports (requested or random; ports with the same
/// number share one) and a healthCheckNodePort. Fills them into `spec`.
/// `ips` holds one allocator per configured family; the first is the
/// default family.
pub fn allocate_create(
    ips: &mut [IpAllocator],
    ports: &mut PortAllocator,
    spec: &mut ServiceSpec,
    rng: &mut impl FnMut() -> u64,
) -> Result<AllocChanges, ServiceAllocError> {
    let mut ip_work = ips.to_vec();
    let mut port_work = ports.clone();
    let mut changes = AllocChanges::default();
    alloc_cluster_ips(&mut ip_work, spec, &mut changes, rng)?;
    if needs_node_ports(spec) {
        init_node_ports(&mut port_work, spec, &mut changes, rng)?;
    }
    if needs_health_check(spec) {
        alloc_health_check(&mut port_work, spec, &mut changes, rng)?;
    }
    ips.clone_from_slice(&ip_work);
    *ports = port_work;
    Ok(changes)
}

/// Allocates and releases what an update needs: ClusterIPs when changing
/// from ExternalName (released when changing to it, and cleared from
/// `new`), a second family on upgrade to dual-stack (released on
/// downgrade), node ports for new or changed ports (released for ports
/// dropped or when the type no longer has node ports) and the
/// healthCheckNodePort.
pub fn allocate_update(
    ips: &mut [IpAllocator],
    ports: &mut PortAllocator,
    new: &mut ServiceSpec,
    old: &ServiceSpec,
    rng: &mut impl FnMut() -> u64,
) -> Result<AllocChanges, ServiceAllocError> {
    let mut ip_work = ips.to_vec();
    let mut port_work = ports.clone();
    let mut changes = AllocChanges::default();
    let mut release_ips: Vec<IpAddr> = Vec::new();
    let mut release_ports: Vec<i32> = Vec::new();

    // ClusterIPs.
    if !needs_cluster_ip(old) && needs_cluster_ip(new) {
        alloc_cluster_ips(&mut ip_work, new, &mut changes, rng)?;
    } else if !is_headless(old) && needs_cluster_ip(old) && !needs_cluster_ip(new) {
        release_ips.extend(service_cluster_ips(old));
        new.cluster_ip = None;
        new.cluster_ips = None;
        new.ip_families = None;
        new.ip_family_policy = None;
    } else if !is_headless(old) && needs_cluster_ip(new) {
        let old_families = old.ip_families.as_deref().unwrap_or_default();
        let new_families = new.ip_families.clone().unwrap_or_default();
        if old_families.len() == 1 && new_families.len() == 2 {
            let mut cluster_ips = new.cluster_ips.clone().unwrap_or_default();
            cluster_ips.resize(2, String::new());
            let ip = alloc_one(
                &mut ip_work,
                &new_families[1],
                &cluster_ips,
                1,
                &mut changes,
                rng,
            )?;
            cluster_ips[1] = ip.to_string();
            new.cluster_ips = Some(cluster_ips);
        } else if old_families.len() == 2 && new_families.len() == 1 {
            let old_ips = old.cluster_ips.clone().unwrap_or_default();
            release_ips.extend(old_ips.get(1).and_then(|ip| ip.parse::<IpAddr>().ok()));
            if let Some(v) = new.cluster_ips.as_mut() {
                v.truncate(1);
            }
        }
    }

    // Node ports.
    if needs_node_ports(old) && !needs_node_ports(new) {
        let old_ports = port_node_ports(old);
        release_ports.extend(old_ports.iter().copied());
        // Drop the values carried over from the old type, as upstream's
        // strategy does; a changed value is left for validation to reject.
        for p in new.ports.iter_mut().flatten() {
            if p.node_port.is_some_and(|n| old_ports.contains(&n)) {
                p.node_port = None;
            }
        }
    }
    if needs_node_ports(new) {
        update_node_ports(
            &mut port_work,
            new,
            old,
            &mut changes,
            &mut release_ports,
            rng,
        )?;
    }
    match (needs_health_check(old), needs_health_check(new)) {
        (false, true) => alloc_health_check(&mut port_work, new, &mut changes, rng)?,
        (true, false) => {
            if let Some(hc) = health_check_port(old) {
                release_ports.push(hc);
                if new.health_check_node_port == Some(hc) {
                    new.health_check_node_port = None;
                }
            }
        }
        _ => {}
    }

    // Deferred releases, skipping anything the new spec still holds.
    let keep_ports = service_node_ports(new);
    for port in release_ports {
        if !keep_ports.contains(&port)
            && port_work.has(port)
            && !changes.released_ports.contains(&port)
        {
            port_work.release(port);
            changes.released_ports.push(port);
        }
    }
    let keep_ips = service_cluster_ips(new);
    for ip in release_ips {
        if keep_ips.contains(&ip) {
            continue;
        }
        if let Some(a) = ip_work.iter_mut().find(|a| a.contains(ip)) {
            a.release(ip);
            changes.released_ips.push(ip);
        }
    }
    ips.clone_from_slice(&ip_work);
    *ports = port_work;
    Ok(changes)
}

/// Releases everything a deleted Service held.
pub fn release_service(
    ips: &mut [IpAllocator],
    ports: &mut PortAllocator,
    spec: &ServiceSpec,
) -> AllocChanges {
    let mut changes = AllocChanges::default();
    for ip in service_cluster_ips(spec) {
        if let Some(a) = ips.iter_mut().find(|a| a.has(ip)) {
            a.release(ip);
            changes.released_ips.push(ip);
        }
    }
    for port in service_node_ports(spec) {
        if ports.has(port) {
            ports.release(port);
            changes.released_ports.push(port);
        }
    }
    changes
}

fn family_of(a: &IpAllocator) -> &'static str {
    if a.is_ipv6() { "IPv6" } else { "IPv4" }
}

/// Allocates `cluster_ips[index]` (or a random IP when empty) from the
/// allocator of `family`.
fn alloc_one(
    ips: &mut [IpAllocator],
    family: &str,
    cluster_ips: &[String],
    index: usize,
    changes: &mut AllocChanges,
    rng: &mut impl FnMut() -> u64,
) -> Result<IpAddr, ServiceAllocError> {
    let requested = cluster_ips.get(index).map(String::as_str).unwrap_or("");
    let Some(alloc) = ips.iter_mut().find(|a| family_of(a) == family) else {
        return Err(ServiceAllocError::Invalid(AllocFieldError {
            field: format!("spec.ipFamilies[{index}]"),
            value: format!("{family:?}"),
            bad_value: serde_json::Value::from(family),
            detail: "not configured on this cluster".to_owned(),
        }));
    };
    if requested.is_empty() {
        let ip = alloc
            .allocate_next(rng)
            .map_err(|e| ServiceAllocError::Internal(cluster_ip_internal_message(&e)))?;
        changes.allocated_ips.push(ip);
        return Ok(ip);
    }
    let Ok(ip) = requested.parse::<IpAddr>() else {
        // Validation rejects this first; upstream's allocator would report
        // the unparsable IP as Go's nil IP.
        let mut err = cluster_ip_field_error(cluster_ips, requested, &AllocError::Full);
        err.detail = format!(
            "failed to allocate IP {requested}: the provided IP (<nil>) is not in the valid range. The range of valid IPs is {}",
            alloc.cidr()
        );
        return Err(ServiceAllocError::Invalid(err));
    };
    alloc.allocate(ip).map_err(|e| {
        ServiceAllocError::Invalid(cluster_ip_field_error(cluster_ips, requested, &e))
    })?;
    changes.allocated_ips.push(ip);
    Ok(ip)
}

fn alloc_cluster_ips(
    ips: &mut [IpAllocator],
    spec: &mut ServiceSpec,
    changes: &mut AllocChanges,
    rng: &mut impl FnMut() -> u64,
) -> Result<(), ServiceAllocError> {
    if !needs_cluster_ip(spec) || is_headless(spec) {
        return Ok(());
    }
    let mut families = spec.ip_families.clone().unwrap_or_default();
    if families.is_empty() {
        families.extend(ips.first().map(|a| family_of(a).to_owned()));
    }
    let mut cluster_ips = spec.cluster_ips.clone().unwrap_or_default();
    if cluster_ips.is_empty() {
        cluster_ips.extend(spec.cluster_ip.clone().filter(|ip| !ip.is_empty()));
    }
    if cluster_ips.len() < families.len() {
        cluster_ips.resize(families.len(), String::new());
    }
    for (i, family) in families.iter().enumerate() {
        let ip = alloc_one(ips, family, &cluster_ips, i, changes, rng)?;
        cluster_ips[i] = ip.to_string();
    }
    spec.cluster_ip = cluster_ips.first().cloned();
    spec.cluster_ips = Some(cluster_ips);
    spec.ip_families = Some(families);
    Ok(())
}

/// Upstream's `initNodePorts`: ports sharing a port number share a node
/// port; a requested node port for that number wins.
fn init_node_ports(
    alloc: &mut PortAllocator,
    spec: &mut ServiceSpec,
    changes: &mut AllocChanges,
    rng: &mut impl FnMut() -> u64,
) -> Result<(), ServiceAllocError> {
    let allocate_new = should_allocate_node_ports(spec);
    let requested: Vec<(i32, i32)> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| (p.port, p.node_port.unwrap_or(0)))
        .collect();
    let mut by_port: Vec<(i32, i32)> = Vec::new();
    for (i, p) in spec.ports.iter_mut().flatten().enumerate() {
        let node_port = p.node_port.unwrap_or(0);
        if node_port == 0 && !allocate_new {
            continue;
        }
        let shared = by_port
            .iter()
            .find(|(port, _)| *port == p.port)
            .map(|(_, np)| *np);
        match shared {
            None => {
                // A later port with the same number may carry the request.
                let wanted = requested[i..]
                    .iter()
                    .find(|(port, np)| *port == p.port && *np != 0)
                    .map_or(0, |(_, np)| *np);
                let np = if wanted != 0 {
                    alloc.allocate(wanted).map_err(|e| {
                        ServiceAllocError::Invalid(node_port_field_error(i, wanted, &e))
                    })?;
                    wanted
                } else {
                    alloc
                        .allocate_next(rng)
                        .map_err(|e| ServiceAllocError::Internal(node_port_internal_message(&e)))?
                };
                changes.allocated_ports.push(np);
                p.node_port = Some(np);
                by_port.push((p.port, np));
            }
            Some(np) if node_port != np => {
                if node_port == 0 {
                    p.node_port = Some(np);
                } else {
                    alloc.allocate(node_port).map_err(|e| {
                        ServiceAllocError::Invalid(node_port_field_error(i, node_port, &e))
                    })?;
                    changes.allocated_ports.push(node_port);
                }
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Upstream's `updateNodePorts`: keep node ports the old version held,
/// allocate requested new ones and random ones for ports without, and
/// release old ones no longer used.
fn update_node_ports(
    alloc: &mut PortAllocator,
    new: &mut ServiceSpec,
    old: &ServiceSpec,
    changes: &mut AllocChanges,
    release: &mut Vec<i32>,
    rng: &mut impl FnMut() -> u64,
) -> Result<(), ServiceAllocError> {
    let old_ports = if needs_node_ports(old) {
        port_node_ports(old)
    } else {
        Vec::new()
    };
    let allocate_new = should_allocate_node_ports(new);
    let mut taken: Vec<i32> = Vec::new();
    for (i, p) in new.ports.iter_mut().flatten().enumerate() {
        let node_port = p.node_port.unwrap_or(0);
        if node_port == 0 && !allocate_new {
            continue;
        }
        if node_port != 0 {
            if !old_ports.contains(&node_port) && !taken.contains(&node_port) {
                alloc.allocate(node_port).map_err(|e| {
                    ServiceAllocError::Invalid(node_port_field_error(i, node_port, &e))
                })?;
                changes.allocated_ports.push(node_port);
                taken.push(node_port);
            }
        } else {
            let np = alloc
                .allocate_next(rng)
                .map_err(|e| ServiceAllocError::Internal(node_port_internal_message(&e)))?;
            changes.allocated_ports.push(np);
            p.node_port = Some(np);
        }
    }
    let now = port_node_ports(new);
    release.extend(old_ports.into_iter().filter(|p| !now.contains(p)));
    Ok(())
}

fn alloc_health_check(
    alloc: &mut PortAllocator,
    spec: &mut ServiceSpec,
    changes: &mut AllocChanges,
    rng: &mut impl FnMut() -> u64,
) -> Result<(), ServiceAllocError> {
    match health_check_port(spec) {
        Some(hc) => {
            alloc
                .allocate(hc)
                .map_err(|e| ServiceAllocError::Internal(health_check_node_port_message(hc, &e)))?;
            changes.allocated_ports.push(hc);
        }
        None => {
            let hc = alloc.allocate_next(rng).map_err(|e| {
                // Upstream prints the (zero) port it failed to get.
                ServiceAllocError::Internal(format!(
                    "failed to allocate a HealthCheck NodePort 0: {e}"
                ))
            })?;
            changes.allocated_ports.push(hc);
            spec.health_check_node_port = Some(hc);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
