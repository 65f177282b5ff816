//! Node registration, status updates and the heartbeat Lease in kube-node-lease.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::agent::{AgentError, Inner};

fn memory_ki() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn kernel() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The Node's status as this agent reports it.
pub(crate) fn node_status(inner: &Inner, now: Timestamp, since: &str) -> Value {
    let cfg = &inner.cfg;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let resources = json!({
        "cpu": cpus.to_string(),
        "memory": format!("{}Ki", memory_ki()),
        "pods": "110",
        "ephemeral-storage": "0",
    });
    let cond = |t: &str, status: &str, reason: &str, message: &str| {
        json!({"type": t, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now.to_string(), "lastTransitionTime": since})
    };
    json!({
        "addresses": [
            {"type": "InternalIP", "address": cfg.node_ip.to_string()},
            {"type": "Hostname", "address": cfg.node_name},
        ],
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": cfg.streaming_port}},
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": kernel(),
            "osImage": "svcnet node",
            "containerRuntimeVersion": "svcnet://0.1.0",
            "kubeletVersion": "v1.33.0-svcnet",
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        },
    })
}

fn kube_err(context: &str) -> impl FnOnce(kube::Error) -> AgentError + '_ {
    move |source| AgentError::Kube {
        context: context.to_string(),
        source,
    }
}

/// Creates the Node (or takes over an existing one) and reports its status.
pub(crate) async fn register(inner: &Inner) -> Result<(), AgentError> {
    let cfg = &inner.cfg;
    let nodes: Api<Node> = Api::all(inner.client.clone());
    let arch = std::env::consts::ARCH
        .replace("x86_64", "amd64")
        .replace("aarch64", "arm64");
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": cfg.node_name, "labels": {
            "kubernetes.io/hostname": cfg.node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch,
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": arch,
        }},
        "spec": {"podCIDR": cfg.pod_cidr.to_string(), "podCIDRs": [cfg.pod_cidr.to_string()]},
    }))
    .map_err(|e| AgentError::Kube {
        context: "building the Node".into(),
        source: kube::Error::SerdeError(e),
    })?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let spec = json!({"spec": {"podCIDR": cfg.pod_cidr.to_string(), "podCIDRs": [cfg.pod_cidr.to_string()]}});
            // podCIDR is immutable once set; a mismatch is reported but not fatal.
            if let Err(e) = nodes
                .patch(
                    &cfg.node_name,
                    &PatchParams::default(),
                    &Patch::Merge(&spec),
                )
                .await
            {
                tracing::warn!(error = %e, "updating the Node's pod CIDR");
            }
        }
        Err(e) => return Err(kube_err("registering the Node")(e)),
    }
    let now = Timestamp::now();
    update_status(inner, now, &now.to_string()).await?;
    renew_lease(inner).await
}

async fn update_status(inner: &Inner, now: Timestamp, since: &str) -> Result<(), AgentError> {
    let nodes: Api<Node> = Api::all(inner.client.clone());
    let body = json!({"status": node_status(inner, now, since)});
    nodes
        .patch_status(
            &inner.cfg.node_name,
            &PatchParams::default(),
            &Patch::Merge(&body),
        )
        .await
        .map_err(kube_err("updating the Node status"))?;
    Ok(())
}

async fn renew_lease(inner: &Inner) -> Result<(), AgentError> {
    let leases: Api<Lease> = Api::namespaced(inner.client.clone(), "kube-node-lease");
    let name = &inner.cfg.node_name;
    let now = Timestamp::now();
    let renew = format!("{now:.6}");
    let spec = json!({"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": renew});
    match leases
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": spec})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": spec,
            }))
            .map_err(|e| AgentError::Kube {
                context: "building the Lease".into(),
                source: kube::Error::SerdeError(e),
            })?;
            leases
                .create(&PostParams::default(), &lease)
                .await
                .map_err(kube_err("creating the node Lease"))?;
            Ok(())
        }
        Err(e) => Err(kube_err("renewing the node Lease")(e)),
    }
}

/// Renews the Lease and refreshes the Node status forever (errors are logged and retried).
pub(crate) async fn heartbeat(inner: std::sync::Arc<Inner>) {
    let since = Timestamp::now().to_string();
    let mut lease = tokio::time::interval(inner.cfg.lease_interval);
    let mut status = tokio::time::interval(inner.cfg.status_interval);
    loop {
        tokio::select! {
            _ = lease.tick() => {
                if let Err(e) = renew_lease(&inner).await {
                    tracing::warn!(error = %e, "node heartbeat");
                }
            }
            _ = status.tick() => {
                if let Err(e) = update_status(&inner, Timestamp::now(), &since).await {
                    tracing::warn!(error = %e, "node status");
                }
            }
        }
    }
}
