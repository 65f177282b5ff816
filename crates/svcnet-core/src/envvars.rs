//! Service environment variables a pod starts with, as upstream's kubelet builds them (`getServiceEnvVarMap` + `envvars.FromServices`).
//!
//! Upstream collects the Services into a map keyed by name and then into a
//! map of variables, so its order is random; we emit Services sorted by
//! name and each Service's variables in `FromServices` order, so the result
//! is deterministic.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, Service};

/// The namespace whose `kubernetes` Service every pod sees.
pub const MASTER_SERVICE_NAMESPACE: &str = "default";
/// The Services from the master namespace that every pod sees.
const MASTER_SERVICES: &[&str] = &["kubernetes"];

/// The service variables for a pod in `pod_namespace`.
///
/// `services` may hold Services of any namespace; only the pod's own
/// (when `enable_service_links`) and `default/kubernetes` (always) count.
/// A Service of the pod's namespace that is itself named `kubernetes`
/// wins over `default/kubernetes`, as in upstream, where the master entry
/// is only added when the name is not taken yet and namespace Services
/// overwrite it.
pub fn service_env_vars(
    services: &[&Service],
    pod_namespace: &str,
    enable_service_links: bool,
) -> Vec<EnvVar> {
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    let mut masters: BTreeMap<&str, &Service> = BTreeMap::new();
    for svc in services {
        if !is_service_ip_set(svc) {
            continue;
        }
        let Some(name) = svc.metadata.name.as_deref() else {
            continue;
        };
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        if ns == MASTER_SERVICE_NAMESPACE && MASTER_SERVICES.contains(&name) {
            masters.entry(name).or_insert(svc);
        } else if ns == pod_namespace && enable_service_links {
            chosen.insert(name, svc);
        }
    }
    for (name, svc) in masters {
        chosen.entry(name).or_insert(svc);
    }
    from_services(chosen.into_values())
}

/// Upstream's `envvars.FromServices` for already-filtered Services, in order.
pub fn from_services<'a>(services: impl IntoIterator<Item = &'a Service>) -> Vec<EnvVar> {
    let mut out = Vec::new();
    for svc in services {
        if !is_service_ip_set(svc) {
            continue;
        }
        let (Some(name), Some(spec)) = (svc.metadata.name.as_deref(), svc.spec.as_ref()) else {
            continue;
        };
        let Some(ip) = spec.cluster_ip.as_deref() else {
            continue;
        };
        let prefix = env_var_name(name);
        let ports = spec.ports.as_deref().unwrap_or_default();
        push(&mut out, format!("{prefix}_SERVICE_HOST"), ip.to_owned());
        // Validation requires ports on a Service with a ClusterIP; without
        // any we still publish the host rather than fail.
        let Some(first) = ports.first() else {
            continue;
        };
        let port_var = format!("{prefix}_SERVICE_PORT");
        push(&mut out, port_var.clone(), first.port.to_string());
        for sp in ports {
            if let Some(pn) = sp.name.as_deref().filter(|n| !n.is_empty()) {
                push(
                    &mut out,
                    format!("{port_var}_{}", env_var_name(pn)),
                    sp.port.to_string(),
                );
            }
        }
        // Docker link compatible variables.
        for (i, sp) in ports.iter().enumerate() {
            let proto = sp
                .protocol
                .as_deref()
                .filter(|p| !p.is_empty())
                .unwrap_or("TCP");
            let lower = proto.to_ascii_lowercase();
            // Upstream formats "%s://%s:%d" with the bare ClusterIP, also for
            // IPv6 (no brackets); we match it.
            let url = format!("{lower}://{ip}:{}", sp.port);
            if i == 0 {
                push(&mut out, format!("{prefix}_PORT"), url.clone());
            }
            let pp = format!("{prefix}_PORT_{}_{}", sp.port, proto.to_ascii_uppercase());
            push(&mut out, pp.clone(), url);
            push(&mut out, format!("{pp}_PROTO"), lower);
            push(&mut out, format!("{pp}_PORT"), sp.port.to_string());
            push(&mut out, format!("{pp}_ADDR"), ip.to_owned());
        }
    }
    out
}

/// Upper-cases and turns `-` into `_`, as upstream's `makeEnvVariableName`.
pub fn env_var_name(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}

/// Whether the Service has a ClusterIP (not empty, not `None`).
pub fn is_service_ip_set(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty() && ip != "None")
}

fn push(out: &mut Vec<EnvVar>, name: String, value: String) {
    out.push(EnvVar {
        name,
        value: Some(value),
        value_from: None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn svc(ns: &str, name: &str, ip: &str, ports: &[(&str, i32, &str)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(ns.to_owned()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: (!ip.is_empty()).then(|| ip.to_owned()),
                ports: Some(
                    ports
                        .iter()
                        .map(|&(n, p, proto)| ServicePort {
                            name: (!n.is_empty()).then(|| n.to_owned()),
                            port: p,
                            protocol: (!proto.is_empty()).then(|| proto.to_owned()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn render(vars: &[EnvVar]) -> String {
        vars.iter()
            .map(|v| format!("{}={}\n", v.name, v.value.as_deref().unwrap_or("")))
            .collect()
    }

    const KUBERNETES: &str = "\
KUBERNETES_SERVICE_HOST=10.96.0.1
KUBERNETES_SERVICE_PORT=443
KUBERNETES_SERVICE_PORT_HTTPS=443
KUBERNETES_PORT=tcp://10.96.0.1:443
KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443
KUBERNETES_PORT_443_TCP_PROTO=tcp
KUBERNETES_PORT_443_TCP_PORT=443
KUBERNETES_PORT_443_TCP_ADDR=10.96.0.1
";

    #[test]
    fn env_vars_table() {
        let kube = svc(
            "default",
            "kubernetes",
            "10.96.0.1",
            &[("https", 443, "TCP")],
        );
        let redis = svc("my-ns", "redis-master", "10.96.12.7", &[("", 6379, "")]);
        let multi = svc(
            "my-ns",
            "web-app",
            "10.96.5.5",
            &[("http", 80, "TCP"), ("dns-udp", 53, "UDP")],
        );
        let headless = svc("my-ns", "headless", "None", &[("", 80, "")]);
        let external = svc("my-ns", "ext", "", &[("", 80, "")]);
        let other_ns = svc("other", "db", "10.96.9.9", &[("", 5432, "")]);
        let v6 = svc("my-ns", "six", "fd00::5", &[("", 80, "")]);
        let own_kube = svc("my-ns", "kubernetes", "10.96.7.7", &[("", 8443, "")]);

        let redis_vars = "\
REDIS_MASTER_SERVICE_HOST=10.96.12.7
REDIS_MASTER_SERVICE_PORT=6379
REDIS_MASTER_PORT=tcp://10.96.12.7:6379
REDIS_MASTER_PORT_6379_TCP=tcp://10.96.12.7:6379
REDIS_MASTER_PORT_6379_TCP_PROTO=tcp
REDIS_MASTER_PORT_6379_TCP_PORT=6379
REDIS_MASTER_PORT_6379_TCP_ADDR=10.96.12.7
";
        let web_vars = "\
WEB_APP_SERVICE_HOST=10.96.5.5
WEB_APP_SERVICE_PORT=80
WEB_APP_SERVICE_PORT_HTTP=80
WEB_APP_SERVICE_PORT_DNS_UDP=53
WEB_APP_PORT=tcp://10.96.5.5:80
WEB_APP_PORT_80_TCP=tcp://10.96.5.5:80
WEB_APP_PORT_80_TCP_PROTO=tcp
WEB_APP_PORT_80_TCP_PORT=80
WEB_APP_PORT_80_TCP_ADDR=10.96.5.5
WEB_APP_PORT_53_UDP=udp://10.96.5.5:53
WEB_APP_PORT_53_UDP_PROTO=udp
WEB_APP_PORT_53_UDP_PORT=53
WEB_APP_PORT_53_UDP_ADDR=10.96.5.5
";
        let six_vars = "\
SIX_SERVICE_HOST=fd00::5
SIX_SERVICE_PORT=80
SIX_PORT=tcp://fd00::5:80
SIX_PORT_80_TCP=tcp://fd00::5:80
SIX_PORT_80_TCP_PROTO=tcp
SIX_PORT_80_TCP_PORT=80
SIX_PORT_80_TCP_ADDR=fd00::5
";
        let own_kube_vars = "\
KUBERNETES_SERVICE_HOST=10.96.7.7
KUBERNETES_SERVICE_PORT=8443
KUBERNETES_PORT=tcp://10.96.7.7:8443
KUBERNETES_PORT_8443_TCP=tcp://10.96.7.7:8443
KUBERNETES_PORT_8443_TCP_PROTO=tcp
KUBERNETES_PORT_8443_TCP_PORT=8443
KUBERNETES_PORT_8443_TCP_ADDR=10.96.7.7
";
        let cases: Vec<(&str, Vec<&Service>, &str, bool, String)> = vec![
            (
                "redis example",
                vec![&redis, &kube],
                "my-ns",
                true,
                format!("{KUBERNETES}{redis_vars}"),
            ),
            (
                "links off keeps kubernetes",
                vec![&redis, &kube],
                "my-ns",
                false,
                KUBERNETES.to_owned(),
            ),
            (
                "headless, external name and other namespaces skipped",
                vec![&headless, &external, &other_ns, &kube],
                "my-ns",
                true,
                KUBERNETES.to_owned(),
            ),
            (
                "named ports and UDP",
                vec![&multi],
                "my-ns",
                true,
                web_vars.to_owned(),
            ),
            (
                "ipv6 without brackets",
                vec![&v6],
                "my-ns",
                true,
                six_vars.to_owned(),
            ),
            (
                "sorted by service name",
                vec![&multi, &redis],
                "my-ns",
                true,
                format!("{redis_vars}{web_vars}"),
            ),
            (
                "own kubernetes wins, listed first",
                vec![&own_kube, &kube],
                "my-ns",
                true,
                own_kube_vars.to_owned(),
            ),
            (
                "own kubernetes wins, listed last",
                vec![&kube, &own_kube],
                "my-ns",
                true,
                own_kube_vars.to_owned(),
            ),
            (
                "own kubernetes ignored with links off",
                vec![&kube, &own_kube],
                "my-ns",
                false,
                KUBERNETES.to_owned(),
            ),
            (
                "pod in default",
                vec![&kube, &other_ns],
                "default",
                true,
                KUBERNETES.to_owned(),
            ),
            (
                "pod in other",
                vec![&kube, &other_ns],
                "other",
                true,
                format!(
                    "\
DB_SERVICE_HOST=10.96.9.9
DB_SERVICE_PORT=5432
DB_PORT=tcp://10.96.9.9:5432
DB_PORT_5432_TCP=tcp://10.96.9.9:5432
DB_PORT_5432_TCP_PROTO=tcp
DB_PORT_5432_TCP_PORT=5432
DB_PORT_5432_TCP_ADDR=10.96.9.9
{KUBERNETES}"
                ),
            ),
            ("nothing", vec![], "my-ns", true, String::new()),
        ];
        for (name, services, ns, links, want) in cases {
            assert_eq!(
                render(&service_env_vars(&services, ns, links)),
                want,
                "{name}"
            );
        }
    }

    /// The seed document's example, verbatim and in the same order.
    #[test]
    fn seed_redis_master_example() {
        let redis = svc(
            "default",
            "redis-master",
            "172.17.0.6",
            &[("", 6379, "TCP")],
        );
        assert_eq!(
            render(&service_env_vars(&[&redis], "default", true)),
            "\
REDIS_MASTER_SERVICE_HOST=172.17.0.6
REDIS_MASTER_SERVICE_PORT=6379
REDIS_MASTER_PORT=tcp://172.17.0.6:6379
REDIS_MASTER_PORT_6379_TCP=tcp://172.17.0.6:6379
REDIS_MASTER_PORT_6379_TCP_PROTO=tcp
REDIS_MASTER_PORT_6379_TCP_PORT=6379
REDIS_MASTER_PORT_6379_TCP_ADDR=172.17.0.6
"
        );
    }

    #[test]
    fn names_and_portless() {
        assert_eq!(env_var_name("my-svc-2"), "MY_SVC_2");
        let mut bare = svc("ns", "bare", "10.96.0.9", &[]);
        assert_eq!(
            render(&from_services([&bare])),
            "BARE_SERVICE_HOST=10.96.0.9\n"
        );
        bare.spec = None;
        assert_eq!(render(&from_services([&bare])), "");
    }
}
