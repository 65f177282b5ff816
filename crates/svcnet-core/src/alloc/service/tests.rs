//! Tests of Service-level allocation: create, update, delete.

use super::*;
use crate::alloc::PortRange;
use k8s_openapi::api::core::v1::ServicePort;

/// Always starts scans at the bottom of each band: dynamic IPs come out as
/// the first address above the static band (10.96.0.17 in a /24, port 30086).
fn zero() -> impl FnMut() -> u64 {
    || 0
}

fn allocs() -> (Vec<IpAllocator>, PortAllocator) {
    (
        vec![IpAllocator::new("10.96.0.0/24").expect("cidr")],
        PortAllocator::new(PortRange::parse("30000-32767").expect("range")),
    )
}

fn dual() -> Vec<IpAllocator> {
    vec![
        IpAllocator::new("10.96.0.0/24").expect("cidr"),
        IpAllocator::new("fd00::/120").expect("cidr"),
    ]
}

fn spec(type_: &str, ports: &[(&str, i32, &str, i32)]) -> ServiceSpec {
    ServiceSpec {
        type_: Some(type_.to_owned()),
        ip_families: Some(vec!["IPv4".to_owned()]),
        ports: Some(
            ports
                .iter()
                .map(|&(name, port, proto, node_port)| ServicePort {
                    name: (!name.is_empty()).then(|| name.to_owned()),
                    port,
                    protocol: Some(proto.to_owned()),
                    node_port: (node_port != 0).then_some(node_port),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    }
}

fn with(mut s: ServiceSpec, f: impl FnOnce(&mut ServiceSpec)) -> ServiceSpec {
    f(&mut s);
    s
}

fn show(s: &ServiceSpec) -> String {
    let ports: Vec<String> = s
        .ports
        .iter()
        .flatten()
        .map(|p| {
            format!(
                "{}/{}->{}",
                p.port,
                p.protocol.as_deref().unwrap_or(""),
                p.node_port.unwrap_or(0)
            )
        })
        .collect();
    format!(
        "ip={} ips={:?} ports=[{}] hc={}",
        s.cluster_ip.as_deref().unwrap_or("-"),
        s.cluster_ips.clone().unwrap_or_default(),
        ports.join(" "),
        s.health_check_node_port.unwrap_or(0)
    )
}

fn err_text(e: &ServiceAllocError) -> String {
    match e {
        ServiceAllocError::Invalid(f) => format!("invalid: {f}"),
        ServiceAllocError::Internal(m) => format!("internal: {m}"),
    }
}

#[test]
fn create_table() {
    let cases: Vec<(&str, ServiceSpec, &str)> = vec![
        (
            "clusterIP auto",
            spec("ClusterIP", &[("", 80, "TCP", 0)]),
            "ip=10.96.0.17 ips=[\"10.96.0.17\"] ports=[80/TCP->0] hc=0",
        ),
        (
            "clusterIP requested",
            with(spec("ClusterIP", &[("", 80, "TCP", 0)]), |s| {
                s.cluster_ip = Some("10.96.0.5".to_owned())
            }),
            "ip=10.96.0.5 ips=[\"10.96.0.5\"] ports=[80/TCP->0] hc=0",
        ),
        (
            "headless gets nothing",
            with(spec("ClusterIP", &[("", 80, "TCP", 0)]), |s| {
                s.cluster_ip = Some("None".to_owned())
            }),
            "ip=None ips=[] ports=[80/TCP->0] hc=0",
        ),
        (
            "external name gets nothing",
            with(spec("ExternalName", &[]), |s| s.ip_families = None),
            "ip=- ips=[] ports=[] hc=0",
        ),
        (
            "nodePort auto, same number shares",
            spec(
                "NodePort",
                &[
                    ("dns", 53, "UDP", 0),
                    ("dns-tcp", 53, "TCP", 0),
                    ("http", 80, "TCP", 0),
                ],
            ),
            "ip=10.96.0.17 ips=[\"10.96.0.17\"] ports=[53/UDP->30086 53/TCP->30086 80/TCP->30087] hc=0",
        ),
        (
            "a later request for the same number wins",
            spec(
                "NodePort",
                &[("dns", 53, "UDP", 0), ("dns-tcp", 53, "TCP", 30053)],
            ),
            "ip=10.96.0.17 ips=[\"10.96.0.17\"] ports=[53/UDP->30053 53/TCP->30053] hc=0",
        ),
        (
            "loadBalancer without node ports",
            with(spec("LoadBalancer", &[("", 80, "TCP", 0)]), |s| {
                s.allocate_load_balancer_node_ports = Some(false)
            }),
            "ip=10.96.0.17 ips=[\"10.96.0.17\"] ports=[80/TCP->0] hc=0",
        ),
        (
            "loadBalancer Local gets a health check port",
            with(spec("LoadBalancer", &[("", 80, "TCP", 0)]), |s| {
                s.external_traffic_policy = Some("Local".to_owned())
            }),
            "ip=10.96.0.17 ips=[\"10.96.0.17\"] ports=[80/TCP->30086] hc=30087",
        ),
    ];
    for (name, mut s, want) in cases {
        let (mut ips, mut ports) = allocs();
        let changes = allocate_create(&mut ips, &mut ports, &mut s, &mut zero()).expect(name);
        assert_eq!(show(&s), want, "{name}");
        let held: Vec<i32> = service_node_ports(&s);
        assert_eq!(
            ports.allocated(),
            {
                let mut h = held.clone();
                h.sort_unstable();
                h
            },
            "{name}"
        );
        assert_eq!(changes.allocated_ips, service_cluster_ips(&s), "{name}");
    }
}

#[test]
fn create_errors_leave_nothing_allocated() {
    let (mut ips, mut ports) = allocs();
    ips[0]
        .allocate("10.96.0.5".parse().expect("ip"))
        .expect("seed");
    ports.allocate(32233).expect("seed");
    let before = (ips.clone(), ports.clone());
    let cases: Vec<(ServiceSpec, &str)> = vec![
        (
            with(spec("ClusterIP", &[("", 80, "TCP", 0)]), |s| {
                s.cluster_ip = Some("10.96.0.5".to_owned())
            }),
            r#"invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.5"}: failed to allocate IP 10.96.0.5: provided IP is already allocated"#,
        ),
        (
            with(spec("ClusterIP", &[("", 80, "TCP", 0)]), |s| {
                s.cluster_ip = Some("10.97.0.5".to_owned())
            }),
            r#"invalid: spec.clusterIPs: Invalid value: []string{"10.97.0.5"}: failed to allocate IP 10.97.0.5: the provided IP (10.97.0.5) is not in the valid range. The range of valid IPs is 10.96.0.0/24"#,
        ),
        (
            with(spec("ClusterIP", &[("", 80, "TCP", 0)]), |s| {
                s.cluster_ip = Some("bogus".to_owned())
            }),
            r#"invalid: spec.clusterIPs: Invalid value: []string{"bogus"}: failed to allocate IP bogus: the provided IP (<nil>) is not in the valid range. The range of valid IPs is 10.96.0.0/24"#,
        ),
        (
            spec("NodePort", &[("a", 80, "TCP", 0), ("b", 81, "TCP", 32233)]),
            "invalid: spec.ports[1].nodePort: Invalid value: 32233: provided port is already allocated",
        ),
        (
            spec("NodePort", &[("a", 80, "TCP", 0), ("b", 81, "TCP", 8080)]),
            "invalid: spec.ports[1].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767",
        ),
        (
            with(spec("LoadBalancer", &[("", 80, "TCP", 0)]), |s| {
                s.external_traffic_policy = Some("Local".to_owned());
                s.health_check_node_port = Some(32233);
            }),
            "internal: failed to allocate requested HealthCheck NodePort 32233: provided port is already allocated",
        ),
        (
            with(spec("ClusterIP", &[("", 80, "TCP", 0)]), |s| {
                s.ip_families = Some(vec!["IPv6".to_owned()])
            }),
            r#"invalid: spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster"#,
        ),
    ];
    for (mut s, want) in cases {
        let e = allocate_create(&mut ips, &mut ports, &mut s, &mut zero()).expect_err(want);
        assert_eq!(err_text(&e), want);
        assert_eq!((&ips, &ports), (&before.0, &before.1), "{want}");
    }
    // Full ranges are internal errors.
    let mut tiny = vec![IpAllocator::new("10.0.0.0/30").expect("cidr")];
    let mut s = spec("ClusterIP", &[("", 80, "TCP", 0)]);
    for _ in 0..2 {
        allocate_create(&mut tiny, &mut ports, &mut s.clone(), &mut zero()).expect("room");
    }
    assert_eq!(
        err_text(&allocate_create(&mut tiny, &mut ports, &mut s, &mut zero()).expect_err("full")),
        "internal: failed to allocate a serviceIP: range is full"
    );
    let mut small = PortAllocator::new(PortRange::parse("30000-30000").expect("range"));
    let mut s = with(
        spec("NodePort", &[("", 80, "TCP", 0), ("b", 81, "TCP", 0)]),
        |s| s.cluster_ip = Some("None".to_owned()),
    );
    assert_eq!(
        err_text(&allocate_create(&mut tiny, &mut small, &mut s, &mut zero()).expect_err("full")),
        "internal: failed to allocate a nodePort: range is full"
    );
    assert_eq!(small.used(), 0);
}

#[test]
fn dual_stack_create() {
    let mut ips = dual();
    let (_, mut ports) = allocs();
    let mut s = with(spec("ClusterIP", &[("", 80, "TCP", 0)]), |s| {
        s.ip_families = Some(vec!["IPv6".to_owned(), "IPv4".to_owned()]);
        s.cluster_ips = Some(vec!["fd00::5".to_owned()]);
    });
    allocate_create(&mut ips, &mut ports, &mut s, &mut zero()).expect("dual");
    assert_eq!(
        show(&s),
        "ip=fd00::5 ips=[\"fd00::5\", \"10.96.0.17\"] ports=[80/TCP->0] hc=0"
    );
}

fn create(ips: &mut [IpAllocator], ports: &mut PortAllocator, s: ServiceSpec) -> ServiceSpec {
    let mut s = s;
    allocate_create(ips, ports, &mut s, &mut zero()).expect("create");
    s
}

#[test]
fn update_table() {
    // (name, old (created first), new before patching, expected new, expected ips held, expected ports held)
    type Case = (
        &'static str,
        ServiceSpec,
        ServiceSpec,
        &'static str,
        Vec<&'static str>,
        Vec<i32>,
    );
    let np = spec(
        "NodePort",
        &[("http", 80, "TCP", 30080), ("https", 443, "TCP", 30443)],
    );
    let cases: Vec<Case> = vec![
        (
            "NodePort to ClusterIP releases and clears node ports",
            np.clone(),
            with(np.clone(), |s| s.type_ = Some("ClusterIP".to_owned())),
            "ip=10.96.0.17 ips=[\"10.96.0.17\"] ports=[80/TCP->0 443/TCP->0] hc=0",
            vec!["10.96.0.17"],
            vec![],
        ),
        (
            "ClusterIP to NodePort allocates",
            spec("ClusterIP", &[("http", 80, "TCP", 0)]),
            spec("NodePort", &[("http", 80, "TCP", 0)]),
            "ip=10.96.0.17 ips=[\"10.96.0.17\"] ports=[80/TCP->30086] hc=0",
            vec!["10.96.0.17"],
            vec![30086],
        ),
        (
            "to ExternalName releases and clears the ClusterIP",
            np.clone(),
            with(np.clone(), |s| s.type_ = Some("ExternalName".to_owned())),
            "ip=- ips=[] ports=[80/TCP->0 443/TCP->0] hc=0",
            vec![],
            vec![],
        ),
        (
            "from ExternalName allocates",
            with(spec("ExternalName", &[("http", 80, "TCP", 0)]), |s| {
                s.ip_families = None
            }),
            spec("ClusterIP", &[("http", 80, "TCP", 0)]),
            "ip=10.96.0.17 ips=[\"10.96.0.17\"] ports=[80/TCP->0] hc=0",
            vec!["10.96.0.17"],
            vec![],
        ),
        (
            "PUT without allocated values keeps them",
            np.clone(),
            spec(
                "NodePort",
                &[("http", 80, "TCP", 0), ("https", 443, "TCP", 0)],
            ),
            "ip=10.96.0.17 ips=[\"10.96.0.17\"] ports=[80/TCP->30080 443/TCP->30443] hc=0",
            vec!["10.96.0.17"],
            vec![30080, 30443],
        ),
        (
            "dropped port releases its node port, new port gets a fresh one",
            np.clone(),
            spec(
                "NodePort",
                &[("http", 80, "TCP", 30080), ("admin", 8443, "TCP", 0)],
            ),
            "ip=10.96.0.17 ips=[\"10.96.0.17\"] ports=[80/TCP->30080 8443/TCP->30086] hc=0",
            vec!["10.96.0.17"],
            vec![30080, 30086],
        ),
        (
            "a changed node port moves",
            np.clone(),
            spec(
                "NodePort",
                &[("http", 80, "TCP", 30081), ("https", 443, "TCP", 30443)],
            ),
            "ip=10.96.0.17 ips=[\"10.96.0.17\"] ports=[80/TCP->30081 443/TCP->30443] hc=0",
            vec!["10.96.0.17"],
            vec![30081, 30443],
        ),
        (
            "swapping node ports between ports needs no allocation",
            np.clone(),
            spec(
                "NodePort",
                &[("http", 80, "TCP", 30443), ("https", 443, "TCP", 30080)],
            ),
            "ip=10.96.0.17 ips=[\"10.96.0.17\"] ports=[80/TCP->30443 443/TCP->30080] hc=0",
            vec!["10.96.0.17"],
            vec![30080, 30443],
        ),
        (
            "Local to Cluster releases the health check port",
            with(spec("LoadBalancer", &[("", 80, "TCP", 30080)]), |s| {
                s.external_traffic_policy = Some("Local".to_owned())
            }),
            with(spec("LoadBalancer", &[("", 80, "TCP", 30080)]), |s| {
                s.external_traffic_policy = Some("Cluster".to_owned());
                s.health_check_node_port = Some(30086);
            }),
            "ip=10.96.0.17 ips=[\"10.96.0.17\"] ports=[80/TCP->30080] hc=0",
            vec!["10.96.0.17"],
            vec![30080],
        ),
        (
            "Cluster to Local allocates the health check port",
            spec("LoadBalancer", &[("", 80, "TCP", 30080)]),
            with(spec("LoadBalancer", &[("", 80, "TCP", 30080)]), |s| {
                s.external_traffic_policy = Some("Local".to_owned())
            }),
            "ip=10.96.0.17 ips=[\"10.96.0.17\"] ports=[80/TCP->30080] hc=30086",
            vec!["10.96.0.17"],
            vec![30080, 30086],
        ),
    ];
    for (name, old, new, want, want_ips, want_ports) in cases {
        let (mut ips, mut ports) = allocs();
        let old = create(&mut ips, &mut ports, old);
        let mut new = new;
        crate::defaults::patch_allocated_values(&mut new, &old);
        allocate_update(&mut ips, &mut ports, &mut new, &old, &mut zero()).expect(name);
        assert_eq!(show(&new), want, "{name}");
        let held: Vec<String> = ips[0].allocated().iter().map(|ip| ip.to_string()).collect();
        assert_eq!(held, want_ips, "{name}");
        assert_eq!(ports.allocated(), want_ports, "{name}");
    }
}

#[test]
fn update_errors_and_deferred_release() {
    let (mut ips, mut ports) = allocs();
    let old = create(
        &mut ips,
        &mut ports,
        spec("NodePort", &[("http", 80, "TCP", 30080)]),
    );
    let _other = create(
        &mut ips,
        &mut ports,
        spec("NodePort", &[("x", 80, "TCP", 30090)]),
    );
    let before = (ips.clone(), ports.clone());
    // Taking another Service's port fails and changes nothing.
    let mut new = spec("NodePort", &[("http", 80, "TCP", 30090)]);
    let e = allocate_update(&mut ips, &mut ports, &mut new, &old, &mut zero()).expect_err("taken");
    assert_eq!(
        err_text(&e),
        "invalid: spec.ports[0].nodePort: Invalid value: 30090: provided port is already allocated"
    );
    assert_eq!((&ips, &ports), (&before.0, &before.1));

    // A port released by this update is not reused by the same update.
    let mut band = PortAllocator::new(PortRange::parse("30000-30016").expect("range"));
    let mut v4 = vec![IpAllocator::new("10.96.0.0/24").expect("cidr")];
    let old = create(
        &mut v4,
        &mut band,
        spec("NodePort", &[("a", 80, "TCP", 30016)]),
    );
    // Upper band is only 30016: dynamic allocation must fall back to the static band.
    let mut new = spec("NodePort", &[("b", 81, "TCP", 0)]);
    crate::defaults::patch_allocated_values(&mut new, &old);
    allocate_update(&mut v4, &mut band, &mut new, &old, &mut zero()).expect("update");
    assert_eq!(
        show(&new),
        "ip=10.96.0.17 ips=[\"10.96.0.17\"] ports=[81/TCP->30000] hc=0"
    );
    assert_eq!(band.allocated(), vec![30000]);
}

#[test]
fn dual_stack_upgrade_and_downgrade() {
    let mut ips = dual();
    let (_, mut ports) = allocs();
    let old = create(
        &mut ips,
        &mut ports,
        spec("ClusterIP", &[("", 80, "TCP", 0)]),
    );
    let mut up = with(old.clone(), |s| {
        s.ip_families = Some(vec!["IPv4".to_owned(), "IPv6".to_owned()])
    });
    allocate_update(&mut ips, &mut ports, &mut up, &old, &mut zero()).expect("upgrade");
    assert_eq!(
        show(&up),
        "ip=10.96.0.17 ips=[\"10.96.0.17\", \"fd00::11\"] ports=[80/TCP->0] hc=0"
    );
    assert_eq!(ips[1].used(), 1);
    let mut down = with(up.clone(), |s| {
        s.ip_families = Some(vec!["IPv4".to_owned()])
    });
    let changes =
        allocate_update(&mut ips, &mut ports, &mut down, &up, &mut zero()).expect("downgrade");
    assert_eq!(
        show(&down),
        "ip=10.96.0.17 ips=[\"10.96.0.17\"] ports=[80/TCP->0] hc=0"
    );
    assert_eq!(
        changes.released_ips,
        vec!["fd00::11".parse::<IpAddr>().expect("ip")]
    );
    assert_eq!(ips[1].used(), 0);
}

#[test]
fn delete_releases_everything() {
    let (mut ips, mut ports) = allocs();
    let s = create(
        &mut ips,
        &mut ports,
        with(
            spec("LoadBalancer", &[("a", 80, "TCP", 0), ("b", 443, "TCP", 0)]),
            |s| {
                s.external_traffic_policy = Some("Local".to_owned());
            },
        ),
    );
    assert_eq!(ports.used(), 3);
    let changes = release_service(&mut ips, &mut ports, &s);
    assert_eq!(changes.released_ports, vec![30086, 30087, 30088]);
    assert_eq!((ips[0].used(), ports.used()), (0, 0));
    // Releasing again is harmless.
    assert_eq!(
        release_service(&mut ips, &mut ports, &s),
        AllocChanges::default()
    );
}

#[test]
fn unchanged_update_changes_nothing() {
    let (mut ips, mut ports) = allocs();
    let old = create(
        &mut ips,
        &mut ports,
        with(
            spec(
                "LoadBalancer",
                &[("dns", 53, "UDP", 0), ("dns-tcp", 53, "TCP", 0)],
            ),
            |s| {
                s.external_traffic_policy = Some("Local".to_owned());
            },
        ),
    );
    let before = (ips.clone(), ports.clone());
    let mut new = old.clone();
    let changes = allocate_update(&mut ips, &mut ports, &mut new, &old, &mut zero()).expect("noop");
    assert_eq!(changes, AllocChanges::default());
    assert_eq!(new, old);
    assert_eq!((&ips, &ports), (&before.0, &before.1));
}
