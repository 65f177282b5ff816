//! The pod's /etc/resolv.conf and /etc/hosts, rendered as kubelet (and containerd) write them.

use k8s_openapi::api::core::v1::Pod;

/// Upstream limits (kubelet `validation.MaxDNSSearchPaths`, resolver nameserver limit).
const MAX_SEARCHES: usize = 32;
const MAX_NAMESERVERS: usize = 3;

/// The parts of a resolv.conf that matter to pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parses a host resolv.conf (`nameserver`, `search`/`domain`, `options`; comments ignored).
    pub fn parse(text: &str) -> ResolvConf {
        let mut out = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => out.nameservers.extend(words.next().map(str::to_string)),
                // The last search/domain line wins, as in glibc.
                Some("search" | "domain") => out.searches = words.map(str::to_string).collect(),
                Some("options") => out.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        out
    }

    /// The file text, in containerd's order: search, nameservers, options.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if !self.searches.is_empty() {
            s.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for ns in &self.nameservers {
            s.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.options.is_empty() {
            s.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        s
    }
}

/// Node-level DNS settings (kubelet `--cluster-dns`, `--cluster-domain`, `--resolv-conf`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub host: ResolvConf,
}

/// The pod's resolv.conf per dnsPolicy (ClusterFirst default, ClusterFirstWithHostNet, Default,
/// None) merged with spec.dnsConfig, as kubelet's `GetPodDNS` does.
pub fn pod_resolv_conf(pod: &Pod, dns: &DnsSettings) -> ResolvConf {
    let spec = pod.spec.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster = match policy {
        "None" => None,
        "Default" => Some(false),
        "ClusterFirstWithHostNet" => Some(true),
        // ClusterFirst on the host network falls back to the node's resolver.
        _ => Some(!host_network),
    };
    let mut out = match cluster {
        None => ResolvConf::default(),
        Some(false) => dns.host.clone(),
        // Without a configured cluster DNS kubelet also falls back to the host resolver.
        Some(true) if dns.cluster_dns.is_empty() => dns.host.clone(),
        Some(true) => {
            let zone = dns.cluster_domain.trim_end_matches('.');
            let mut searches = vec![
                format!("{ns}.svc.{zone}"),
                format!("svc.{zone}"),
                zone.to_string(),
            ];
            searches.extend(dns.host.searches.iter().cloned());
            ResolvConf {
                nameservers: dns.cluster_dns.clone(),
                searches,
                options: vec!["ndots:5".into()],
            }
        }
    };
    if let Some(cfg) = &spec.dns_config {
        for n in cfg.nameservers.iter().flatten() {
            if !out.nameservers.contains(n) {
                out.nameservers.push(n.clone());
            }
        }
        for s in cfg.searches.iter().flatten() {
            if !out.searches.contains(s) {
                out.searches.push(s.clone());
            }
        }
        for o in cfg.options.iter().flatten() {
            let name = o.name.clone().unwrap_or_default();
            let rendered = match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name.clone(),
            };
            // A dnsConfig option replaces the option of the same name.
            out.options
                .retain(|e| e.split(':').next().unwrap_or(e) != name.as_str());
            out.options.push(rendered);
        }
    }
    dedup(&mut out.searches);
    out.searches.truncate(MAX_SEARCHES);
    out.nameservers.truncate(MAX_NAMESERVERS);
    out
}

fn dedup(v: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|s| seen.insert(s.clone()));
}

/// The pod's hostname: spec.hostname, else the pod name cut to 63 characters (kubelet trims a
/// trailing `-` or `.` after cutting).
pub fn pod_hostname(pod: &Pod) -> String {
    if let Some(h) = pod.spec.as_ref().and_then(|s| s.hostname.clone())
        && !h.is_empty()
    {
        return h;
    }
    let name = pod.metadata.name.clone().unwrap_or_default();
    if name.len() <= 63 {
        return name;
    }
    name[..63].trim_end_matches(['-', '.']).to_string()
}

/// The kubelet-managed /etc/hosts for a pod with `ips`.
pub fn pod_hosts_file(pod: &Pod, ips: &[String], cluster_domain: &str) -> String {
    let host = pod_hostname(pod);
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let spec = pod.spec.clone().unwrap_or_default();
    let domain = spec
        .subdomain
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|sub| format!("{sub}.{ns}.svc.{}", cluster_domain.trim_end_matches('.')));
    let mut s = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    for ip in ips {
        match &domain {
            Some(d) => s.push_str(&format!("{ip}\t{host}.{d}\t{host}\n")),
            None => s.push_str(&format!("{ip}\t{host}\n")),
        }
    }
    if let Some(aliases) = spec.host_aliases.as_ref().filter(|a| !a.is_empty()) {
        s.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            let names = a.hostnames.clone().unwrap_or_default();
            s.push_str(&format!("{}\t{}\n", a.ip, names.join("\t")));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "shop"},
            "spec": spec,
        }))
        .expect("pod json")
    }

    fn settings() -> DnsSettings {
        DnsSettings {
            cluster_dns: vec!["10.96.0.10".into()],
            cluster_domain: "cluster.local".into(),
            host: ResolvConf::parse(
                "# generated\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0\n",
            ),
        }
    }

    #[test]
    fn resolv_conf_per_policy() {
        let cases = [
            (
                json!({"containers": []}),
                "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n\
                 nameserver 10.96.0.10\noptions ndots:5\n",
            ),
            (
                json!({"dnsPolicy": "Default"}),
                "search corp.example\nnameserver 192.0.2.53\noptions edns0\n",
            ),
            (
                json!({"hostNetwork": true}),
                "search corp.example\nnameserver 192.0.2.53\noptions edns0\n",
            ),
            (
                json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}),
                "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n\
                 nameserver 10.96.0.10\noptions ndots:5\n",
            ),
            (
                json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.2.3.4"],
                    "searches": ["ns1.svc.cluster-domain.example", "my.dns.search.suffix"],
                    "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}),
                "search ns1.svc.cluster-domain.example my.dns.search.suffix\n\
                 nameserver 1.2.3.4\noptions ndots:2 edns0\n",
            ),
            (
                json!({"dnsConfig": {"nameservers": ["10.96.0.10", "8.8.8.8"],
                    "searches": ["cluster.local", "extra"],
                    "options": [{"name": "ndots", "value": "1"}]}}),
                "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example extra\n\
                 nameserver 10.96.0.10\nnameserver 8.8.8.8\noptions ndots:1\n",
            ),
        ];
        for (spec, want) in cases {
            let got = pod_resolv_conf(&pod(spec.clone()), &settings()).render();
            assert_eq!(got, want, "spec {spec}");
        }
    }

    #[test]
    fn no_cluster_dns_falls_back_to_host() {
        let mut s = settings();
        s.cluster_dns.clear();
        let got = pod_resolv_conf(&pod(json!({})), &s).render();
        assert_eq!(
            got,
            "search corp.example\nnameserver 192.0.2.53\noptions edns0\n"
        );
    }

    #[test]
    fn hosts_file_variants() {
        let head = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n\
            ::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
            fe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n";
        let cases = [
            (json!({}), "10.244.1.5\tweb-0\n".to_string()),
            (
                json!({"hostname": "db", "subdomain": "backend"}),
                "10.244.1.5\tdb.backend.shop.svc.cluster.local\tdb\n".to_string(),
            ),
            (
                json!({"hostAliases": [{"ip": "127.0.0.1", "hostnames": ["foo.local", "bar.local"]}]}),
                "10.244.1.5\tweb-0\n\n# Entries added by HostAliases.\n127.0.0.1\tfoo.local\tbar.local\n"
                    .to_string(),
            ),
        ];
        for (spec, tail) in cases {
            let got = pod_hosts_file(&pod(spec.clone()), &["10.244.1.5".into()], "cluster.local");
            assert_eq!(got, format!("{head}{tail}"), "spec {spec}");
        }
    }

    #[test]
    fn long_names_are_cut_like_kubelet() {
        let mut p = pod(json!({}));
        let name = format!("{}-{}", "a".repeat(62), "bcd");
        p.metadata.name = Some(name);
        assert_eq!(pod_hostname(&p), "a".repeat(62));
    }
}
