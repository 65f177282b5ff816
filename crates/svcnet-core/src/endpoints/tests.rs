//! Tests of endpoint computation: Endpoints, EndpointSlices and mirroring.

use super::*;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// A pod: `name`, IPs, ready, named container ports, modifiers.
#[derive(Clone)]
struct P {
    ns: &'static str,
    name: String,
    ips: Vec<&'static str>,
    ready: bool,
    terminating: bool,
    phase: &'static str,
    labels: Vec<(&'static str, &'static str)>,
    ports: Vec<(&'static str, i32, &'static str)>,
    node: &'static str,
    hostname: Option<&'static str>,
    subdomain: Option<&'static str>,
}

fn p(name: &str, ip: &'static str) -> P {
    P {
        ns: "ns",
        name: name.to_owned(),
        ips: if ip.is_empty() { vec![] } else { vec![ip] },
        ready: true,
        terminating: false,
        phase: "Running",
        labels: vec![("app", "web")],
        ports: vec![],
        node: "node-1",
        hostname: None,
        subdomain: None,
    }
}

impl P {
    fn not_ready(mut self) -> Self {
        self.ready = false;
        self
    }
    fn terminating(mut self) -> Self {
        self.terminating = true;
        self
    }
    fn phase(mut self, phase: &'static str) -> Self {
        self.phase = phase;
        self
    }
    fn ns(mut self, ns: &'static str) -> Self {
        self.ns = ns;
        self
    }
    fn labels(mut self, labels: Vec<(&'static str, &'static str)>) -> Self {
        self.labels = labels;
        self
    }
    fn port(mut self, name: &'static str, port: i32) -> Self {
        self.ports.push((name, port, "TCP"));
        self
    }
    fn node(mut self, node: &'static str) -> Self {
        self.node = node;
        self
    }
    fn ips(mut self, ips: Vec<&'static str>) -> Self {
        self.ips = ips;
        self
    }
    fn host(mut self, hostname: &'static str, subdomain: &'static str) -> Self {
        self.hostname = Some(hostname);
        self.subdomain = Some(subdomain);
        self
    }
    fn build(&self) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.ns.to_owned()),
                uid: Some(format!("uid-{}", self.name)),
                resource_version: Some("7".to_owned()),
                labels: Some(
                    self.labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                deletion_timestamp: self.terminating.then_some(Time(Timestamp::UNIX_EPOCH)),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: (!self.node.is_empty()).then(|| self.node.to_owned()),
                hostname: self.hostname.map(str::to_owned),
                subdomain: self.subdomain.map(str::to_owned),
                containers: vec![Container {
                    name: "c".to_owned(),
                    ports: Some(
                        self.ports
                            .iter()
                            .map(|&(n, port, proto)| ContainerPort {
                                name: (!n.is_empty()).then(|| n.to_owned()),
                                container_port: port,
                                protocol: Some(proto.to_owned()),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(self.phase.to_owned()),
                pod_ip: self.ips.first().map(|s| s.to_string()),
                pod_ips: Some(
                    self.ips
                        .iter()
                        .map(|ip| PodIP { ip: ip.to_string() })
                        .collect(),
                ),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".to_owned(),
                    status: if self.ready { "True" } else { "False" }.to_owned(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }
}

/// A Service `web` in `ns` selecting `app=web` with the given ports
/// (name, port, targetPort, protocol).
fn svc(ports: &[(&str, i32, IntOrString, &str)]) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some("web".to_owned()),
            namespace: Some("ns".to_owned()),
            uid: Some("svc-uid".to_owned()),
            labels: Some([("tier".to_owned(), "front".to_owned())].into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("10.96.0.20".to_owned()),
            cluster_ips: Some(vec!["10.96.0.20".to_owned()]),
            ip_families: Some(vec!["IPv4".to_owned()]),
            selector: Some([("app".to_owned(), "web".to_owned())].into()),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, port, target, proto)| ServicePort {
                        name: (!n.is_empty()).then(|| n.to_string()),
                        port: *port,
                        target_port: Some(target.clone()),
                        protocol: Some(proto.to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

fn int(n: i32) -> IntOrString {
    IntOrString::Int(n)
}

fn named(s: &str) -> IntOrString {
    IntOrString::String(s.to_owned())
}

fn http_svc() -> Service {
    svc(&[("http", 80, int(8080), "TCP")])
}

fn with_spec(mut s: Service, f: impl FnOnce(&mut ServiceSpec)) -> Service {
    if let Some(spec) = s.spec.as_mut() {
        f(spec);
    }
    s
}

fn render_addr(a: &EndpointAddress) -> String {
    let mut s = a.ip.clone();
    if let Some(n) = &a.node_name {
        s += &format!(" node={n}");
    }
    if let Some(t) = &a.target_ref {
        s += &format!(
            " ref={}/{}/{}/{}",
            t.kind.as_deref().unwrap_or(""),
            t.namespace.as_deref().unwrap_or(""),
            t.name.as_deref().unwrap_or(""),
            t.uid.as_deref().unwrap_or("")
        );
    }
    if let Some(h) = &a.hostname {
        s += &format!(" host={h}");
    }
    s
}

fn render_core_ports(ports: Option<&Vec<CorePort>>) -> String {
    ports
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{}:{}/{}{}",
                p.name.as_deref().unwrap_or(""),
                p.port,
                p.protocol.as_deref().unwrap_or("?"),
                p.app_protocol
                    .as_ref()
                    .map(|a| format!("({a})"))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn render_endpoints(e: &Endpoints) -> String {
    let mut out = format!(
        "{}/{} labels={:?}",
        e.metadata.namespace.as_deref().unwrap_or(""),
        e.metadata.name.as_deref().unwrap_or(""),
        e.metadata.labels.clone().unwrap_or_default()
    );
    if let Some(a) = &e.metadata.annotations {
        out += &format!(" annotations={a:?}");
    }
    out.push('\n');
    for s in e.subsets.iter().flatten() {
        out += &format!("subset [{}]\n", render_core_ports(s.ports.as_ref()));
        for a in s.addresses.iter().flatten() {
            out += &format!("  ready {}\n", render_addr(a));
        }
        for a in s.not_ready_addresses.iter().flatten() {
            out += &format!("  notready {}\n", render_addr(a));
        }
    }
    out
}

fn render_slice_ports(ports: Option<&Vec<EndpointPort>>) -> String {
    match ports {
        None => "nil".to_owned(),
        Some(ps) => ps
            .iter()
            .map(|p| {
                format!(
                    "{}:{}/{}{}",
                    p.name.as_deref().unwrap_or("<none>"),
                    p.port.map_or("?".to_owned(), |n| n.to_string()),
                    p.protocol.as_deref().unwrap_or("?"),
                    p.app_protocol
                        .as_ref()
                        .map(|a| format!("({a})"))
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join(","),
    }
}

fn render_endpoint(e: &Endpoint) -> String {
    let c = e.conditions.clone().unwrap_or_default();
    let b = |v: Option<bool>| v.map_or("-".to_owned(), |v| v.to_string());
    let mut s = format!(
        "{} r={} s={} t={}",
        e.addresses.join("+"),
        b(c.ready),
        b(c.serving),
        b(c.terminating)
    );
    if let Some(n) = &e.node_name {
        s += &format!(" node={n}");
    }
    if let Some(z) = &e.zone {
        s += &format!(" zone={z}");
    }
    if let Some(t) = &e.target_ref {
        s += &format!(" ref={}", t.name.as_deref().unwrap_or(""));
    }
    if let Some(h) = &e.hostname {
        s += &format!(" host={h}");
    }
    s
}

fn render_slice(verb: &str, s: &EndpointSlice) -> String {
    let name = s
        .metadata
        .name
        .clone()
        .or_else(|| s.metadata.generate_name.clone().map(|g| format!("{g}*")))
        .unwrap_or_default();
    let mut out = format!(
        "{verb} {name} {} [{}] {} eps\n",
        s.address_type,
        render_slice_ports(s.ports.as_ref()),
        s.endpoints.len()
    );
    for e in &s.endpoints {
        out += &format!("  {}\n", render_endpoint(e));
    }
    out
}

fn render_diff(d: &SliceDiff) -> String {
    let mut out = String::new();
    for s in &d.create {
        out += &render_slice("create", s);
    }
    for s in &d.update {
        out += &render_slice("update", s);
    }
    for s in &d.delete {
        out += &render_slice("delete", s);
    }
    out
}

/// Pretends the API server stored the diff: creates get names, updates replace.
fn apply(existing: &[EndpointSlice], diff: &SliceDiff, next: &mut usize) -> Vec<EndpointSlice> {
    let mut out: Vec<EndpointSlice> = existing
        .iter()
        .filter(|e| {
            !diff
                .delete
                .iter()
                .any(|d| d.metadata.name == e.metadata.name)
        })
        .filter(|e| {
            !diff
                .update
                .iter()
                .any(|u| u.metadata.name == e.metadata.name)
        })
        .cloned()
        .collect();
    out.extend(diff.update.iter().cloned());
    for c in &diff.create {
        let mut c = c.clone();
        *next += 1;
        c.metadata.name = Some(format!(
            "{}{:05}",
            c.metadata.generate_name.clone().unwrap_or_default(),
            next
        ));
        c.metadata.resource_version = Some(next.to_string());
        out.push(c);
    }
    out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    out
}

fn refs(pods: &[Pod]) -> Vec<&Pod> {
    pods.iter().collect()
}

#[test]
fn endpoints_table() {
    let ready_a = p("a", "10.244.1.5").port("web", 8080);
    let cases: Vec<(&str, Service, Vec<P>, &str)> = vec![
        (
            "basic endpoint from pods",
            http_svc(),
            vec![
                p("b", "10.244.2.9").node("node-2"),
                p("a", "10.244.1.5"),
                p("other-ns", "10.244.1.6").ns("other"),
                p("unselected", "10.244.1.7").labels(vec![("app", "db")]),
                p("no-ip", ""),
                p("done", "10.244.1.8").phase("Succeeded"),
                p("failed", "10.244.1.9").phase("Failed"),
            ],
            "ns/web labels={\"tier\": \"front\"}
subset [http:8080/TCP]
  ready 10.244.1.5 node=node-1 ref=Pod/ns/a/uid-a
  ready 10.244.2.9 node=node-2 ref=Pod/ns/b/uid-b
",
        ),
        (
            "multiport, named targetPorts resolved per pod",
            svc(&[
                ("http", 80, named("web"), "TCP"),
                ("metrics", 9090, int(9090), "TCP"),
            ]),
            vec![
                ready_a.clone(),
                p("b", "10.244.1.6").port("web", 8081),
                p("c", "10.244.1.7").port("web", 8080),
                p("no-web", "10.244.1.8"),
            ],
            // Repacking groups ports by identical address sets, as upstream.
            "ns/web labels={\"tier\": \"front\"}
subset [http:8080/TCP]
  ready 10.244.1.5 node=node-1 ref=Pod/ns/a/uid-a
  ready 10.244.1.7 node=node-1 ref=Pod/ns/c/uid-c
subset [http:8081/TCP]
  ready 10.244.1.6 node=node-1 ref=Pod/ns/b/uid-b
subset [metrics:9090/TCP]
  ready 10.244.1.5 node=node-1 ref=Pod/ns/a/uid-a
  ready 10.244.1.6 node=node-1 ref=Pod/ns/b/uid-b
  ready 10.244.1.7 node=node-1 ref=Pod/ns/c/uid-c
  ready 10.244.1.8 node=node-1 ref=Pod/ns/no-web/uid-no-web
",
        ),
        (
            "ready, not ready, terminating",
            http_svc(),
            vec![
                p("a", "10.244.1.5"),
                p("b", "10.244.1.6").not_ready(),
                p("c", "10.244.1.7").terminating(),
            ],
            "ns/web labels={\"tier\": \"front\"}
subset [http:8080/TCP]
  ready 10.244.1.5 node=node-1 ref=Pod/ns/a/uid-a
  notready 10.244.1.6 node=node-1 ref=Pod/ns/b/uid-b
",
        ),
        (
            "publishNotReadyAddresses keeps not ready and terminating as ready",
            with_spec(http_svc(), |s| s.publish_not_ready_addresses = Some(true)),
            vec![
                p("a", "10.244.1.5"),
                p("b", "10.244.1.6").not_ready(),
                p("c", "10.244.1.7").terminating(),
            ],
            "ns/web labels={\"tier\": \"front\"}
subset [http:8080/TCP]
  ready 10.244.1.5 node=node-1 ref=Pod/ns/a/uid-a
  ready 10.244.1.6 node=node-1 ref=Pod/ns/b/uid-b
  ready 10.244.1.7 node=node-1 ref=Pod/ns/c/uid-c
",
        ),
        (
            "hostname only when subdomain is the service name",
            http_svc(),
            vec![
                p("a", "10.244.1.5").host("web-0", "web"),
                p("b", "10.244.1.6").host("db-0", "db"),
            ],
            "ns/web labels={\"tier\": \"front\"}
subset [http:8080/TCP]
  ready 10.244.1.5 node=node-1 ref=Pod/ns/a/uid-a host=web-0
  ready 10.244.1.6 node=node-1 ref=Pod/ns/b/uid-b
",
        ),
        (
            "headless without ports, labelled headless",
            with_spec(svc(&[]), |s| {
                s.cluster_ip = Some("None".to_owned());
                s.cluster_ips = Some(vec!["None".to_owned()]);
            }),
            vec![p("a", "10.244.1.5"), p("b", "10.244.1.6").not_ready()],
            "ns/web labels={\"service.kubernetes.io/headless\": \"\", \"tier\": \"front\"}
subset []
  ready 10.244.1.5 node=node-1 ref=Pod/ns/a/uid-a
  notready 10.244.1.6 node=node-1 ref=Pod/ns/b/uid-b
",
        ),
        (
            "ipv6 service picks the pod's ipv6 address",
            with_spec(http_svc(), |s| {
                s.cluster_ip = Some("fd00::20".to_owned());
                s.ip_families = Some(vec!["IPv6".to_owned()]);
            }),
            vec![
                p("a", "").ips(vec!["10.244.1.5", "fd00:244::5"]),
                p("v4only", "10.244.1.6"),
            ],
            "ns/web labels={\"tier\": \"front\"}
subset [http:8080/TCP]
  ready fd00:244::5 node=node-1 ref=Pod/ns/a/uid-a
",
        ),
        (
            "no pods",
            http_svc(),
            vec![],
            "ns/web labels={\"tier\": \"front\"}\n",
        ),
        (
            "udp and appProtocol carried",
            with_spec(svc(&[("dns", 53, int(5353), "UDP")]), |s| {
                if let Some(p) = s.ports.as_mut().and_then(|p| p.first_mut()) {
                    p.app_protocol = Some("dns".to_owned());
                }
            }),
            vec![p("a", "10.244.1.5")],
            "ns/web labels={\"tier\": \"front\"}
subset [dns:5353/UDP(dns)]
  ready 10.244.1.5 node=node-1 ref=Pod/ns/a/uid-a
",
        ),
    ];
    for (name, service, pods, want) in cases {
        let pods: Vec<Pod> = pods.iter().map(P::build).collect();
        let got = compute_endpoints(&service, &refs(&pods)).expect(name);
        assert_eq!(render_endpoints(&got), want, "{name}");
    }
}

#[test]
fn no_selector_means_user_managed() {
    let pods = vec![p("a", "10.244.1.5").build()];
    for selector in [None, Some(BTreeMap::new())] {
        let s = with_spec(http_svc(), |s| s.selector = selector.clone());
        assert_eq!(compute_endpoints(&s, &refs(&pods)), None);
        let existing = vec![new_slice(&http_svc(), Vec::new(), "IPv4")];
        let diff = compute_endpoint_slices(&s, &refs(&pods), &existing);
        assert_eq!(render_diff(&diff), "delete web-* IPv4 [nil] 0 eps\n");
    }
}

#[test]
fn endpoints_update_only_on_change() {
    let s = http_svc();
    let pods = vec![p("a", "10.244.1.5").build()];
    let desired = compute_endpoints(&s, &refs(&pods)).expect("selector");
    assert_eq!(endpoints_update(None, &desired), Some(desired.clone()));

    let mut stored = desired.clone();
    stored.metadata.resource_version = Some("42".to_owned());
    // A stored targetRef resourceVersion does not count as a change.
    if let Some(t) = stored
        .subsets
        .as_mut()
        .and_then(|s| s[0].addresses.as_mut())
        .and_then(|a| a[0].target_ref.as_mut())
    {
        t.resource_version = Some("9".to_owned());
    }
    assert_eq!(endpoints_update(Some(&stored), &desired), None);

    let pods2 = vec![p("a", "10.244.1.5").not_ready().build()];
    let desired2 = compute_endpoints(&s, &refs(&pods2)).expect("selector");
    let out = endpoints_update(Some(&stored), &desired2).expect("changed");
    assert_eq!(out.metadata.resource_version.as_deref(), Some("42"));
    assert_eq!(
        render_endpoints(&out),
        "ns/web labels={\"tier\": \"front\"}
subset [http:8080/TCP]
  notready 10.244.1.5 node=node-1 ref=Pod/ns/a/uid-a
"
    );
}

#[test]
fn endpoints_truncated_over_capacity() {
    let s = http_svc();
    let pods: Vec<Pod> = (0..1100)
        .map(|i| {
            let mut pod = p(&format!("p{i:04}"), "").build();
            let ip = format!("10.244.{}.{}", i / 250, i % 250 + 1);
            if let Some(st) = pod.status.as_mut() {
                st.pod_ip = Some(ip.clone());
                st.pod_ips = Some(vec![PodIP { ip }]);
            }
            pod
        })
        .collect();
    let e = compute_endpoints(&s, &refs(&pods)).expect("selector");
    let subsets = e.subsets.as_deref().unwrap_or_default();
    assert_eq!(subsets.len(), 1);
    assert_eq!(subsets[0].addresses.as_ref().map(Vec::len), Some(1000));
    assert_eq!(
        e.metadata.annotations,
        Some([(ANNOTATION_OVER_CAPACITY.to_owned(), "truncated".to_owned())].into())
    );
}

#[test]
fn repack_merges_and_not_ready_wins() {
    let addr = |ip: &str, uid: &str| EndpointAddress {
        ip: ip.to_owned(),
        target_ref: Some(ObjectReference {
            uid: Some(uid.to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let port = |name: &str, n: i32| CorePort {
        name: Some(name.to_owned()),
        port: n,
        protocol: Some("TCP".to_owned()),
        app_protocol: None,
    };
    let input = vec![
        EndpointSubset {
            addresses: Some(vec![addr("10.0.0.2", "b")]),
            not_ready_addresses: None,
            ports: Some(vec![port("p", 80)]),
        },
        EndpointSubset {
            addresses: Some(vec![addr("10.0.0.1", "a")]),
            not_ready_addresses: None,
            ports: Some(vec![port("p", 80)]),
        },
        EndpointSubset {
            addresses: Some(vec![addr("10.0.0.1", "a")]),
            not_ready_addresses: None,
            ports: Some(vec![port("q", 81)]),
        },
        EndpointSubset {
            addresses: None,
            not_ready_addresses: Some(vec![addr("10.0.0.2", "b")]),
            ports: Some(vec![port("q", 81)]),
        },
    ];
    let out = Endpoints {
        subsets: Some(repack_subsets(input)),
        ..Default::default()
    };
    assert_eq!(
        render_endpoints(&out),
        "/ labels={}
subset [p:80/TCP]
  ready 10.0.0.1 ref=///a
  ready 10.0.0.2 ref=///b
subset [q:81/TCP]
  ready 10.0.0.1 ref=///a
  notready 10.0.0.2 ref=///b
"
    );
}

#[test]
fn find_port_table() {
    let pod = p("a", "10.0.0.1")
        .port("web", 8080)
        .port("alt", 9000)
        .build();
    let mut udp_pod = pod.clone();
    if let Some(c) = udp_pod.spec.as_mut().map(|s| &mut s.containers[0]) {
        c.ports = Some(vec![ContainerPort {
            name: Some("dns".to_owned()),
            container_port: 5353,
            protocol: Some("UDP".to_owned()),
            ..Default::default()
        }]);
    }
    let sp = |target: Option<IntOrString>, proto: &str| ServicePort {
        port: 80,
        target_port: target,
        protocol: Some(proto.to_owned()),
        ..Default::default()
    };
    let cases = [
        (&pod, sp(None, "TCP"), Some(80)),
        (&pod, sp(Some(int(0)), "TCP"), Some(80)),
        (&pod, sp(Some(int(7000)), "TCP"), Some(7000)),
        (&pod, sp(Some(named("web")), "TCP"), Some(8080)),
        (&pod, sp(Some(named("alt")), "TCP"), Some(9000)),
        (&pod, sp(Some(named("8088")), "TCP"), None),
        (&pod, sp(Some(named("missing")), "TCP"), None),
        (&pod, sp(Some(named("web")), "UDP"), None),
        (&udp_pod, sp(Some(named("dns")), "UDP"), Some(5353)),
        (&udp_pod, sp(Some(named("dns")), "TCP"), None),
    ];
    for (i, (pod, port, want)) in cases.into_iter().enumerate() {
        assert_eq!(find_port(pod, &port), want, "case {i}");
    }
}

#[test]
fn pod_predicates() {
    let cases = [
        (p("a", "10.0.0.1"), true, true, true),
        (p("a", "10.0.0.1").not_ready(), false, true, true),
        (p("a", "10.0.0.1").terminating(), true, false, true),
        (p("a", "10.0.0.1").phase("Succeeded"), true, false, false),
        (p("a", "10.0.0.1").phase("Failed"), true, false, false),
        (p("a", "").phase("Pending"), true, false, false),
    ];
    for (i, (pod, ready, include_no_term, include_term)) in cases.into_iter().enumerate() {
        let pod = pod.build();
        assert_eq!(pod_is_ready(&pod), ready, "case {i}");
        assert_eq!(
            should_pod_be_in_endpoints(&pod, false),
            include_no_term,
            "case {i}"
        );
        assert_eq!(
            should_pod_be_in_endpoints(&pod, true),
            include_term,
            "case {i}"
        );
    }
    assert!(!pod_is_ready(&Pod::default()));
}

#[test]
fn slices_table() {
    let cases: Vec<(&str, Service, Vec<P>, &str)> = vec![
        (
            "basic",
            http_svc(),
            vec![
                p("b", "10.244.2.9").node("node-2"),
                p("a", "10.244.1.5"),
                p("x", "10.244.1.6").ns("other"),
            ],
            "create web-* IPv4 [http:8080/TCP] 2 eps
  10.244.1.5 r=true s=true t=false node=node-1 ref=a
  10.244.2.9 r=true s=true t=false node=node-2 ref=b
",
        ),
        (
            "ready, serving, terminating",
            http_svc(),
            vec![
                p("a", "10.244.1.5"),
                p("b", "10.244.1.6").not_ready(),
                p("c", "10.244.1.7").terminating(),
                p("d", "10.244.1.8").terminating().not_ready(),
                p("e", "10.244.1.9").phase("Failed"),
            ],
            "create web-* IPv4 [http:8080/TCP] 4 eps
  10.244.1.5 r=true s=true t=false node=node-1 ref=a
  10.244.1.6 r=false s=false t=false node=node-1 ref=b
  10.244.1.7 r=false s=true t=true node=node-1 ref=c
  10.244.1.8 r=false s=false t=true node=node-1 ref=d
",
        ),
        (
            "publishNotReadyAddresses",
            with_spec(http_svc(), |s| s.publish_not_ready_addresses = Some(true)),
            vec![
                p("b", "10.244.1.6").not_ready(),
                p("c", "10.244.1.7").terminating(),
            ],
            "create web-* IPv4 [http:8080/TCP] 2 eps
  10.244.1.6 r=true s=false t=false node=node-1 ref=b
  10.244.1.7 r=true s=true t=true node=node-1 ref=c
",
        ),
        (
            "named targetPorts: different numbers, different slices",
            svc(&[
                ("http", 80, named("web"), "TCP"),
                ("metrics", 9090, int(9090), "TCP"),
            ]),
            vec![
                p("a", "10.244.1.5").port("web", 8080),
                p("b", "10.244.1.6").port("web", 8081),
                p("c", "10.244.1.7").port("web", 8080),
            ],
            "create web-* IPv4 [http:8080/TCP,metrics:9090/TCP] 2 eps
  10.244.1.5 r=true s=true t=false node=node-1 ref=a
  10.244.1.7 r=true s=true t=false node=node-1 ref=c
create web-* IPv4 [http:8081/TCP,metrics:9090/TCP] 1 eps
  10.244.1.6 r=true s=true t=false node=node-1 ref=b
",
        ),
        (
            "hostname with matching subdomain",
            http_svc(),
            vec![
                p("a", "10.244.1.5").host("web-0", "web"),
                p("b", "10.244.1.6").host("x", "other"),
            ],
            "create web-* IPv4 [http:8080/TCP] 2 eps
  10.244.1.5 r=true s=true t=false node=node-1 ref=a host=web-0
  10.244.1.6 r=true s=true t=false node=node-1 ref=b
",
        ),
        (
            "nothing matches: placeholder",
            http_svc(),
            vec![p("x", "10.244.1.6").labels(vec![])],
            "create web-* IPv4 [nil] 0 eps\n",
        ),
        (
            "headless without families gets both address types",
            with_spec(http_svc(), |s| {
                s.cluster_ip = Some("None".to_owned());
                s.ip_families = None;
            }),
            vec![p("a", "").ips(vec!["10.244.1.5", "fd00:244::5"])],
            "create web-* IPv4 [http:8080/TCP] 1 eps
  10.244.1.5 r=true s=true t=false node=node-1 ref=a
create web-* IPv6 [http:8080/TCP] 1 eps
  fd00:244::5 r=true s=true t=false node=node-1 ref=a
",
        ),
    ];
    for (name, service, pods, want) in cases {
        let pods: Vec<Pod> = pods.iter().map(P::build).collect();
        let diff = compute_endpoint_slices(&service, &refs(&pods), &[]);
        assert_eq!(render_diff(&diff), want, "{name}");
        // Storing the result and reconciling again changes nothing.
        let mut n = 0;
        let stored = apply(&[], &diff, &mut n);
        let again = compute_endpoint_slices(&service, &refs(&pods), &stored);
        assert!(
            again.is_empty(),
            "{name}: second pass\n{}",
            render_diff(&again)
        );
    }
}

#[test]
fn slice_metadata_is_upstream_shaped() {
    let pods = vec![p("a", "10.244.1.5").build()];
    let mut s = with_spec(http_svc(), |s| s.cluster_ip = Some("None".to_owned()));
    s.metadata.labels = Some(
        [
            ("tier".to_owned(), "front".to_owned()),
            (LABEL_MANAGED_BY.to_owned(), "me".to_owned()),
        ]
        .into(),
    );
    let diff = compute_endpoint_slices(&s, &refs(&pods), &[]);
    let json = serde_json::to_value(&diff.create[0]).expect("json");
    assert_eq!(
        json,
        serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "generateName": "web-",
                "namespace": "ns",
                "labels": {
                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                    "kubernetes.io/service-name": "web",
                    "service.kubernetes.io/headless": "",
                    "tier": "front"
                },
                "ownerReferences": [{
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": "web",
                    "uid": "svc-uid",
                    "controller": true,
                    "blockOwnerDeletion": true
                }]
            },
            "addressType": "IPv4",
            "endpoints": [{
                "addresses": ["10.244.1.5"],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "nodeName": "node-1",
                "targetRef": {"kind": "Pod", "namespace": "ns", "name": "a", "uid": "uid-a"}
            }],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        })
    );
}

fn numbered_pods(n: usize) -> Vec<Pod> {
    (0..n)
        .map(|i| {
            let mut pod = p(&format!("p{i:03}"), "").build();
            let ip = format!("10.244.{}.{}", i / 200, i % 200 + 1);
            if let Some(st) = pod.status.as_mut() {
                st.pod_ip = Some(ip.clone());
                st.pod_ips = Some(vec![PodIP { ip }]);
            }
            pod
        })
        .collect()
}

fn summary(d: &SliceDiff) -> String {
    let names = |v: &[EndpointSlice]| {
        v.iter()
            .map(|s| {
                format!(
                    "{}({})",
                    s.metadata
                        .name
                        .clone()
                        .or(s.metadata.generate_name.clone())
                        .unwrap_or_default(),
                    s.endpoints.len()
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "create[{}] update[{}] delete[{}]",
        names(&d.create),
        names(&d.update),
        names(&d.delete)
    )
}

#[test]
fn many_endpoints_split_and_churn_is_minimal() {
    let s = http_svc();
    let mut n = 0;
    let pods = numbered_pods(250);
    let d1 = compute_endpoint_slices(&s, &refs(&pods), &[]);
    assert_eq!(
        summary(&d1),
        "create[web-(100) web-(100) web-(50)] update[] delete[]"
    );
    let stored = apply(&[], &d1, &mut n);
    assert!(compute_endpoint_slices(&s, &refs(&pods), &stored).is_empty());

    // Remove five pods that all sit in the last slice: only it changes.
    let fewer: Vec<&Pod> = pods.iter().take(245).collect();
    let d2 = compute_endpoint_slices(&s, &fewer, &stored);
    assert_eq!(summary(&d2), "create[] update[web-00003(45)] delete[]");
    let stored = apply(&stored, &d2, &mut n);

    // One pod turns not ready: one slice updated in place.
    let mut changed = pods[..245].to_vec();
    if let Some(c) = changed[10]
        .status
        .as_mut()
        .and_then(|s| s.conditions.as_mut())
    {
        c[0].status = "False".to_owned();
    }
    let d3 = compute_endpoint_slices(&s, &refs(&changed), &stored);
    assert_eq!(summary(&d3), "create[] update[web-00001(100)] delete[]");
    let p010 = d3.update[0]
        .endpoints
        .iter()
        .find(|e| e.target_ref.as_ref().and_then(|t| t.name.as_deref()) == Some("p010"))
        .map(render_endpoint);
    assert_eq!(
        p010.as_deref(),
        Some("10.244.0.11 r=false s=false t=false node=node-1 ref=p010")
    );

    // A smaller max splits accordingly.
    let opts = SliceOptions {
        max_endpoints_per_slice: 30,
        ..Default::default()
    };
    let d4 = compute_endpoint_slices_with(&s, &refs(&pods[..70]), &[], &opts);
    assert_eq!(
        summary(&d4),
        "create[web-(30) web-(30) web-(10)] update[] delete[]"
    );

    // A new pod fits into the fullest unchanged slice that has room.
    let d5 = compute_endpoint_slices(&s, &refs(&pods[..246]), &stored);
    assert_eq!(summary(&d5), "create[] update[web-00003(46)] delete[]");
}

#[test]
fn placeholder_lifecycle() {
    let s = http_svc();
    let mut n = 0;
    let d1 = compute_endpoint_slices(&s, &[], &[]);
    assert_eq!(summary(&d1), "create[web-(0)] update[] delete[]");
    let stored = apply(&[], &d1, &mut n);
    assert!(compute_endpoint_slices(&s, &[], &stored).is_empty());

    // A pod appears: the placeholder is reused rather than deleted and recreated.
    let pods = vec![p("a", "10.244.1.5").build()];
    let d2 = compute_endpoint_slices(&s, &refs(&pods), &stored);
    assert_eq!(summary(&d2), "create[] update[web-00001(1)] delete[]");
    assert_eq!(d2.update[0].metadata.resource_version.as_deref(), Some("1"));
    let stored = apply(&stored, &d2, &mut n);

    // It goes away again: back to the placeholder, same object.
    let d3 = compute_endpoint_slices(&s, &[], &stored);
    assert_eq!(render_diff(&d3), "update web-00001 IPv4 [nil] 0 eps\n");
    let stored = apply(&stored, &d3, &mut n);
    assert!(compute_endpoint_slices(&s, &[], &stored).is_empty());
}

#[test]
fn label_and_ownership_changes() {
    let s = http_svc();
    let mut n = 0;
    let pods = vec![p("a", "10.244.1.5").build()];
    let stored = apply(&[], &compute_endpoint_slices(&s, &refs(&pods), &[]), &mut n);

    let mut relabelled = s.clone();
    relabelled.metadata.labels = Some([("tier".to_owned(), "back".to_owned())].into());
    let d = compute_endpoint_slices(&relabelled, &refs(&pods), &stored);
    assert_eq!(summary(&d), "create[] update[web-00001(1)] delete[]");
    assert_eq!(
        d.update[0]
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("tier"))
            .map(String::as_str),
        Some("back")
    );

    // Slices owned by an older Service of the same name are replaced.
    let mut recreated = s.clone();
    recreated.metadata.uid = Some("new-uid".to_owned());
    let d = compute_endpoint_slices(&recreated, &refs(&pods), &stored);
    assert_eq!(summary(&d), "create[web-(1)] update[] delete[web-00001(1)]");

    // A port change moves endpoints to a new port mapping, reusing the slice.
    let moved = svc(&[("http", 80, int(9999), "TCP")]);
    let d = compute_endpoint_slices(&moved, &refs(&pods), &stored);
    assert_eq!(
        render_diff(&d),
        "update web-00001 IPv4 [http:9999/TCP] 1 eps\n  10.244.1.5 r=true s=true t=false node=node-1 ref=a\n"
    );

    // Zones come from the caller's node map.
    let opts = SliceOptions {
        node_zones: [("node-1".to_owned(), "zone-a".to_owned())].into(),
        ..Default::default()
    };
    let d = compute_endpoint_slices_with(&s, &refs(&pods), &stored, &opts);
    assert_eq!(
        render_diff(&d),
        "update web-00001 IPv4 [http:8080/TCP] 1 eps\n  10.244.1.5 r=true s=true t=false node=node-1 zone=zone-a ref=a\n"
    );

    // A Service being deleted gets no new slices.
    let mut dying = s.clone();
    dying.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
    let d = compute_endpoint_slices(&dying, &refs(&pods), &[]);
    assert!(d.is_empty(), "{}", render_diff(&d));

    // A family change deletes the slices of the old family.
    let v6 = with_spec(s.clone(), |sp| {
        sp.ip_families = Some(vec!["IPv6".to_owned()])
    });
    let d = compute_endpoint_slices(&v6, &refs(&pods), &stored);
    assert_eq!(summary(&d), "create[web-(0)] update[] delete[web-00001(1)]");
}

fn user_endpoints() -> Endpoints {
    let addr = |ip: &str| EndpointAddress {
        ip: ip.to_owned(),
        ..Default::default()
    };
    Endpoints {
        metadata: ObjectMeta {
            name: Some("ext".to_owned()),
            namespace: Some("ns".to_owned()),
            uid: Some("ep-uid".to_owned()),
            labels: Some([("team".to_owned(), "a".to_owned())].into()),
            annotations: Some(
                [
                    ("note".to_owned(), "x".to_owned()),
                    (
                        "kubectl.kubernetes.io/last-applied-configuration".to_owned(),
                        "{}".to_owned(),
                    ),
                ]
                .into(),
            ),
            ..Default::default()
        },
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![
                addr("192.168.0.2"),
                addr("fd00::0002"),
                addr("not-an-ip"),
            ]),
            not_ready_addresses: Some(vec![addr("192.168.0.3")]),
            ports: Some(vec![CorePort {
                name: Some("http".to_owned()),
                port: 8080,
                protocol: None,
                app_protocol: None,
            }]),
        }]),
    }
}

fn selectorless() -> Service {
    let mut s = with_spec(http_svc(), |s| s.selector = None);
    s.metadata.name = Some("ext".to_owned());
    s
}

#[test]
fn mirroring() {
    let ep = user_endpoints();
    let s = selectorless();
    let mut n = 0;
    let d = mirror_endpoints_to_slices(&ep, &s, &[]);
    assert_eq!(
        render_diff(&d),
        "create ext-* IPv4 [http:8080/TCP] 2 eps
  192.168.0.2 r=true s=- t=-
  192.168.0.3 r=false s=- t=-
create ext-* IPv6 [http:8080/TCP] 1 eps
  fd00::2 r=true s=- t=-
"
    );
    let meta = &d.create[0].metadata;
    assert_eq!(
        meta.labels,
        Some(
            [
                ("team".to_owned(), "a".to_owned()),
                (LABEL_SERVICE_NAME.to_owned(), "ext".to_owned()),
                (LABEL_MANAGED_BY.to_owned(), MIRRORING_CONTROLLER.to_owned()),
            ]
            .into()
        )
    );
    assert_eq!(
        meta.annotations,
        Some([("note".to_owned(), "x".to_owned())].into())
    );
    let owner = &meta.owner_references.as_deref().unwrap_or_default()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("Endpoints", "ext", "ep-uid")
    );

    let stored = apply(&[], &d, &mut n);
    assert!(mirror_endpoints_to_slices(&ep, &s, &stored).is_empty());

    // An address goes away: the slice is updated in place.
    let mut ep2 = ep.clone();
    if let Some(subs) = ep2.subsets.as_mut() {
        subs[0].not_ready_addresses = None;
    }
    let d2 = mirror_endpoints_to_slices(&ep2, &s, &stored);
    assert_eq!(
        render_diff(&d2),
        "update ext-00001 IPv4 [http:8080/TCP] 1 eps\n  192.168.0.2 r=true s=- t=-\n"
    );

    // A port change reuses the slice of the same address type.
    let mut ep3 = ep.clone();
    if let Some(p) = ep3.subsets.as_mut().and_then(|s| s[0].ports.as_mut()) {
        p[0].port = 9090;
    }
    let d3 = mirror_endpoints_to_slices(&ep3, &s, &stored);
    assert_eq!(
        summary(&d3),
        "create[] update[ext-00001(2) ext-00002(1)] delete[]"
    );

    // Skip-mirror or a selector on the Service: mirrored slices go away.
    let mut skip = ep.clone();
    skip.metadata.labels = Some([(LABEL_SKIP_MIRROR.to_owned(), "true".to_owned())].into());
    assert_eq!(
        summary(&mirror_endpoints_to_slices(&skip, &s, &stored)),
        "create[] update[] delete[ext-00001(2) ext-00002(1)]"
    );
    assert_eq!(
        summary(&mirror_endpoints_to_slices(&ep, &http_svc(), &stored)),
        "create[] update[] delete[ext-00001(2) ext-00002(1)]"
    );

    // The per-subset limit caps how many addresses are mirrored.
    let d4 = mirror_endpoints_to_slices_with(&ep, &s, &[], 2);
    assert_eq!(summary(&d4), "create[ext-(1) ext-(1)] update[] delete[]");
}

#[test]
fn unknown_nodes_are_left_out() {
    let pods = [p("a", "10.244.1.5"), p("b", "10.244.2.5").node("gone")];
    let pods: Vec<Pod> = pods.iter().map(P::build).collect();
    let opts = SliceOptions {
        known_nodes: Some(["node-1".to_owned()].into()),
        ..Default::default()
    };
    let d = compute_endpoint_slices_with(&http_svc(), &refs(&pods), &[], &opts);
    assert_eq!(summary(&d), "create[web-(1)] update[] delete[]");
    let publish = with_spec(http_svc(), |s| s.publish_not_ready_addresses = Some(true));
    let d = compute_endpoint_slices_with(&publish, &refs(&pods), &[], &opts);
    assert_eq!(summary(&d), "create[web-(2)] update[] delete[]");
}

#[test]
fn services_for_pod_table() {
    let web = http_svc();
    let mut db = http_svc();
    db.metadata.name = Some("db".to_owned());
    let db = with_spec(db, |s| {
        s.selector = Some([("app".to_owned(), "db".to_owned())].into())
    });
    let bare = selectorless();
    let services = [&web, &db, &bare];
    let cases = [
        (p("a", "10.0.0.1"), vec!["web"]),
        (
            p("a", "10.0.0.1").labels(vec![("app", "db"), ("x", "y")]),
            vec!["db"],
        ),
        (p("a", "10.0.0.1").ns("other"), vec![]),
        (p("a", "10.0.0.1").labels(vec![]), vec![]),
    ];
    for (pod, want) in cases {
        let got: Vec<&str> = services_for_pod(&pod.build(), &services)
            .iter()
            .filter_map(|s| s.metadata.name.as_deref())
            .collect();
        assert_eq!(got, want);
    }
}

#[test]
fn kubernetes_service_endpoints() {
    let ips: Vec<IpAddr> = vec![
        "172.18.0.3".parse().expect("ip"),
        "172.18.0.2".parse().expect("ip"),
    ];
    let ep = kubernetes_endpoints(&ips, 6443);
    assert_eq!(
        render_endpoints(&ep),
        "default/kubernetes labels={\"endpointslice.kubernetes.io/skip-mirror\": \"true\"}
subset [https:6443/TCP]
  ready 172.18.0.2
  ready 172.18.0.3
"
    );
    let slice = kubernetes_endpoint_slice(&ep);
    assert_eq!(
        render_slice("write", &slice),
        "write kubernetes IPv4 [https:6443/TCP] 2 eps
  172.18.0.2 r=true s=- t=-
  172.18.0.3 r=true s=- t=-
"
    );
    assert_eq!(
        slice.metadata.labels,
        Some([(LABEL_SERVICE_NAME.to_owned(), "kubernetes".to_owned())].into())
    );
    // It is never mirrored.
    assert!(!should_mirror(&ep, &selectorless()));
    let v6 = kubernetes_endpoint_slice(&kubernetes_endpoints(
        &["fd00::2".parse().expect("ip")],
        443,
    ));
    assert_eq!(
        render_slice("write", &v6),
        "write kubernetes IPv6 [https:443/TCP] 1 eps\n  fd00::2 r=true s=- t=-\n"
    );
    assert_eq!(kubernetes_endpoints(&[], 443).subsets, None);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// (ready, terminating, port number for the named "web" port)
    type PodGen = (bool, bool, bool);

    fn pods_from(spec: &[PodGen], offset: usize) -> Vec<Pod> {
        spec.iter()
            .enumerate()
            .map(|(i, &(ready, terminating, alt_port))| {
                let n = i + offset;
                let mut b =
                    p(&format!("p{n:04}"), "").port("web", if alt_port { 8081 } else { 8080 });
                if !ready {
                    b = b.not_ready();
                }
                if terminating {
                    b = b.terminating();
                }
                let mut pod = b.build();
                let ip = format!("10.{}.{}.{}", n / 65536, (n / 256) % 256, n % 256);
                if let Some(st) = pod.status.as_mut() {
                    st.pod_ip = Some(ip.clone());
                    st.pod_ips = Some(vec![PodIP { ip }]);
                }
                pod
            })
            .collect()
    }

    fn check_state(
        s: &Service,
        pods: &[Pod],
        stored: &[EndpointSlice],
        max: usize,
    ) -> Result<(), TestCaseError> {
        // Every wanted pod appears exactly once, with its own ports.
        let mut seen = BTreeSet::new();
        for slice in stored {
            prop_assert!(slice.endpoints.len() <= max, "slice over max");
            let ports = render_slice_ports(slice.ports.as_ref());
            for ep in &slice.endpoints {
                let name = ep
                    .target_ref
                    .as_ref()
                    .and_then(|t| t.name.clone())
                    .unwrap_or_default();
                prop_assert!(seen.insert(name.clone()), "{} twice", name);
                let pod = pods
                    .iter()
                    .find(|p| p.metadata.name.as_deref() == Some(name.as_str()));
                let pod = pod.ok_or_else(|| TestCaseError::fail(format!("{name} is not a pod")))?;
                let want_port = endpoint_ports(s, pod)[0].port;
                prop_assert_eq!(
                    ports.clone(),
                    format!("http:{}/TCP", want_port.unwrap_or(0))
                );
                prop_assert_eq!(
                    ep,
                    &pod_to_endpoint(pod, s, "IPv4", &SliceOptions::default())
                );
            }
        }
        prop_assert_eq!(seen.len(), pods.len());
        if pods.is_empty() {
            prop_assert_eq!(stored.len(), 1, "one placeholder");
            prop_assert!(stored[0].endpoints.is_empty());
        } else {
            prop_assert!(
                stored.iter().all(|s| !s.endpoints.is_empty()),
                "no empty slice next to endpoints"
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn slices_converge(
            first in prop::collection::vec(any::<PodGen>(), 0..260),
            second in prop::collection::vec(any::<PodGen>(), 0..260),
            keep in 0usize..260,
            max in 1usize..120,
        ) {
            let s = svc(&[("http", 80, named("web"), "TCP")]);
            let opts = SliceOptions { max_endpoints_per_slice: max, ..Default::default() };
            let mut n = 0;
            let pods1 = pods_from(&first, 0);
            let d1 = compute_endpoint_slices_with(&s, &refs(&pods1), &[], &opts);
            let stored = apply(&[], &d1, &mut n);
            check_state(&s, &pods1, &stored, max)?;
            prop_assert!(compute_endpoint_slices_with(&s, &refs(&pods1), &stored, &opts).is_empty());

            // Some pods stay (maybe changed), others come and go.
            let keep = keep.min(pods1.len());
            let mut pods2 = pods_from(&second, 10_000);
            pods2.extend(pods1.iter().take(keep).cloned());
            let d2 = compute_endpoint_slices_with(&s, &refs(&pods2), &stored, &opts);
            let stored2 = apply(&stored, &d2, &mut n);
            check_state(&s, &pods2, &stored2, max)?;
            prop_assert!(compute_endpoint_slices_with(&s, &refs(&pods2), &stored2, &opts).is_empty());
        }
    }
}
