//! Table-driven tests: cells compared with what a real cluster prints for the same objects.

use serde_json::{Value, json};

use super::*;

/// 2023-11-14T22:13:20Z.
const NOW: i64 = 1_700_000_000;
/// Created five minutes before `NOW`.
const CREATED: &str = "2023-11-14T22:08:20Z";

fn check(kind: &str, cases: Vec<(&str, Value, Vec<Value>)>) {
    let width = column_definitions(kind).len();
    for (name, obj, want) in cases {
        let got = row_cells(kind, &obj, NOW);
        assert_eq!(got.len(), width, "{kind} {name}: one cell per column");
        assert_eq!(got, want, "{kind} {name}");
    }
}

fn svc(spec: Value, status: Value) -> Value {
    json!({"metadata": {"name": "web", "creationTimestamp": CREATED}, "spec": spec, "status": status})
}

#[test]
fn service_cells() {
    check(
        "Service",
        vec![
            (
                "multi-port NodePort",
                svc(
                    json!({"type": "NodePort", "clusterIPs": ["10.96.12.7"], "selector": {"tier": "fe", "app": "frontend"},
                "ports": [{"port": 80, "nodePort": 31234, "protocol": "TCP"}, {"port": 443, "nodePort": 31235, "protocol": "TCP"}]}),
                    json!({}),
                ),
                vec![
                    json!("web"),
                    json!("NodePort"),
                    json!("10.96.12.7"),
                    json!("<none>"),
                    json!("80:31234/TCP,443:31235/TCP"),
                    json!("5m"),
                    json!("app=frontend,tier=fe"),
                ],
            ),
            (
                "LoadBalancer pending",
                svc(
                    json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.20"], "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}),
                    json!({"loadBalancer": {}}),
                ),
                vec![
                    json!("web"),
                    json!("LoadBalancer"),
                    json!("10.96.0.20"),
                    json!("<pending>"),
                    json!("80:30080/TCP"),
                    json!("5m"),
                    json!("<none>"),
                ],
            ),
            (
                "LoadBalancer with ingress and externalIPs",
                svc(
                    json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.20"], "externalIPs": ["192.0.2.9"], "ports": [{"port": 53, "nodePort": 30053, "protocol": "UDP"}]}),
                    json!({"loadBalancer": {"ingress": [{"ip": "172.18.0.200"}, {"hostname": "lb.example.com"}, {"ip": "172.18.0.100"}]}}),
                ),
                vec![
                    json!("web"),
                    json!("LoadBalancer"),
                    json!("10.96.0.20"),
                    json!("172.18.0.100,172.18.0.200,lb.example.com,192.0.2.9"),
                    json!("53:30053/UDP"),
                    json!("5m"),
                    json!("<none>"),
                ],
            ),
            (
                "ClusterIP with externalIPs, no ports",
                svc(
                    json!({"type": "ClusterIP", "clusterIPs": ["10.96.0.30"], "externalIPs": ["192.0.2.1", "192.0.2.2"]}),
                    json!({}),
                ),
                vec![
                    json!("web"),
                    json!("ClusterIP"),
                    json!("10.96.0.30"),
                    json!("192.0.2.1,192.0.2.2"),
                    json!("<none>"),
                    json!("5m"),
                    json!("<none>"),
                ],
            ),
            (
                "headless",
                svc(
                    json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 5000, "protocol": "TCP"}], "selector": {"app": "db"}}),
                    json!({}),
                ),
                vec![
                    json!("web"),
                    json!("ClusterIP"),
                    json!("None"),
                    json!("<none>"),
                    json!("5000/TCP"),
                    json!("5m"),
                    json!("app=db"),
                ],
            ),
            (
                "ExternalName",
                svc(
                    json!({"type": "ExternalName", "externalName": "db.example.com"}),
                    json!({}),
                ),
                vec![
                    json!("web"),
                    json!("ExternalName"),
                    json!("<none>"),
                    json!("db.example.com"),
                    json!("<none>"),
                    json!("5m"),
                    json!("<none>"),
                ],
            ),
        ],
    );
}

fn ep(subsets: Value) -> Value {
    json!({"metadata": {"name": "web", "creationTimestamp": CREATED}, "subsets": subsets})
}

#[test]
fn endpoints_cells() {
    let five = json!([{"addresses": [{"ip": "10.244.0.5"}, {"ip": "10.244.1.3"}, {"ip": "10.244.2.4"}, {"ip": "10.244.1.9"}, {"ip": "10.244.2.8"}],
        "ports": [{"port": 5000, "protocol": "TCP"}]}]);
    check(
        "Endpoints",
        vec![
            (
                "five addresses",
                ep(five),
                vec![
                    json!("web"),
                    json!("10.244.0.5:5000,10.244.1.3:5000,10.244.2.4:5000 + 2 more..."),
                    json!("5m"),
                ],
            ),
            (
                "no subsets",
                ep(json!([])),
                vec![json!("web"), json!("<none>"), json!("5m")],
            ),
            (
                "missing subsets",
                json!({"metadata": {"name": "web"}}),
                vec![json!("web"), json!("<none>"), json!("<unknown>")],
            ),
            (
                "two ports, two addresses",
                ep(
                    json!([{"addresses": [{"ip": "10.244.0.5"}, {"ip": "10.244.1.3"}], "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}]),
                ),
                vec![
                    json!("web"),
                    json!("10.244.0.5:80,10.244.1.3:80,10.244.0.5:443 + 1 more..."),
                    json!("5m"),
                ],
            ),
            (
                "headless without ports, IPv6",
                ep(
                    json!([{"addresses": [{"ip": "fd00::5"}]}, {"addresses": [{"ip": "fd00::6"}], "ports": [{"port": 53}]}]),
                ),
                vec![json!("web"), json!("fd00::5,[fd00::6]:53"), json!("5m")],
            ),
            (
                "only not-ready addresses",
                ep(json!([{"notReadyAddresses": [{"ip": "10.244.0.5"}], "ports": [{"port": 80}]}])),
                vec![json!("web"), json!(""), json!("5m")],
            ),
        ],
    );
}

#[test]
fn endpoint_slice_cells() {
    let slice = |ports: Value, endpoints: Value| json!({"metadata": {"name": "web-abc12", "creationTimestamp": CREATED}, "addressType": "IPv4", "ports": ports, "endpoints": endpoints});
    check(
        "EndpointSlice",
        vec![
            (
                "two endpoints",
                slice(
                    json!([{"name": "http", "port": 5000, "protocol": "TCP"}]),
                    json!([{"addresses": ["10.244.0.5"]}, {"addresses": ["10.244.1.3"]}]),
                ),
                vec![
                    json!("web-abc12"),
                    json!("IPv4"),
                    json!("5000"),
                    json!("10.244.0.5,10.244.1.3"),
                    json!("5m"),
                ],
            ),
            (
                "empty slice",
                slice(json!(null), json!(null)),
                vec![
                    json!("web-abc12"),
                    json!("IPv4"),
                    json!("<unset>"),
                    json!("<unset>"),
                    json!("5m"),
                ],
            ),
            (
                "many ports and endpoints, unnamed unnumbered port",
                slice(
                    json!([{"port": 1}, {"name": "b"}, {}, {"port": 4}]),
                    json!([{"addresses": ["10.0.0.1", "10.0.0.2"]}, {"addresses": ["10.0.0.3"]}, {"addresses": ["10.0.0.4"]}]),
                ),
                vec![
                    json!("web-abc12"),
                    json!("IPv4"),
                    json!("1,b,* + 1 more..."),
                    json!("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more..."),
                    json!("5m"),
                ],
            ),
        ],
    );
}

fn pod(spec: Value, status: Value) -> Value {
    json!({"metadata": {"name": "web-1", "creationTimestamp": CREATED}, "spec": spec, "status": status})
}

fn running(name: &str, ready: bool, restarts: i64) -> Value {
    json!({"name": name, "ready": ready, "restartCount": restarts, "state": {"running": {"startedAt": CREATED}}})
}

#[test]
fn pod_cells() {
    let one = json!({"containers": [{"name": "app"}], "nodeName": "node-1"});
    let two = json!({"containers": [{"name": "a"}, {"name": "b"}]});
    let cells = |ready: &str, status: &str, restarts: &str, ip: &str, node: &str| {
        vec![
            json!("web-1"),
            json!(ready),
            json!(status),
            json!(restarts),
            json!("5m"),
            json!(ip),
            json!(node),
            json!("<none>"),
            json!("<none>"),
        ]
    };
    check(
        "Pod",
        vec![
            (
                "pending, unscheduled",
                pod(two.clone(), json!({"phase": "Pending"})),
                cells("0/2", "Pending", "0", "<none>", "<none>"),
            ),
            (
                "container creating",
                pod(
                    one.clone(),
                    json!({"phase": "Pending", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
                ),
                cells("0/1", "ContainerCreating", "0", "<none>", "node-1"),
            ),
            (
                "running and ready",
                pod(
                    one.clone(),
                    json!({"phase": "Running", "podIPs": [{"ip": "10.244.1.3"}], "containerStatuses": [running("app", true, 0)]}),
                ),
                cells("1/1", "Running", "0", "10.244.1.3", "node-1"),
            ),
            (
                "crash loop with last restart",
                pod(
                    one.clone(),
                    json!({"phase": "Running", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2023-11-14T22:11:20Z"}}}]}),
                ),
                cells("0/1", "CrashLoopBackOff", "5 (2m ago)", "<none>", "node-1"),
            ),
            (
                "completed",
                pod(
                    one.clone(),
                    json!({"phase": "Succeeded", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
                ),
                cells("0/1", "Completed", "0", "<none>", "node-1"),
            ),
            (
                "terminated without reason",
                pod(
                    one.clone(),
                    json!({"phase": "Failed", "containerStatuses": [{"name": "app", "restartCount": 0, "state": {"terminated": {"exitCode": 3}}}]}),
                ),
                cells("0/1", "ExitCode:3", "0", "<none>", "node-1"),
            ),
            (
                "one of two running, other completed, pod ready",
                pod(
                    two.clone(),
                    json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [
                running("a", true, 0), {"name": "b", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
                ),
                cells("1/2", "Running", "0", "<none>", "<none>"),
            ),
            (
                "one of two running, other completed, pod not ready",
                pod(
                    two.clone(),
                    json!({"phase": "Running", "containerStatuses": [
                running("a", true, 0), {"name": "b", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
                ),
                cells("1/2", "NotReady", "0", "<none>", "<none>"),
            ),
            (
                "init container running",
                pod(
                    json!({"initContainers": [{"name": "init"}], "containers": [{"name": "app"}]}),
                    json!({"phase": "Pending",
                "initContainerStatuses": [{"name": "init", "restartCount": 0, "state": {"running": {}}}],
                "containerStatuses": [{"name": "app", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]}),
                ),
                cells("0/1", "Init:0/1", "0", "<none>", "<none>"),
            ),
            (
                "second init container crash looping",
                pod(
                    json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "app"}]}),
                    json!({"phase": "Pending",
                "initContainerStatuses": [{"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 0}}},
                    {"name": "i2", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
                ),
                cells("0/1", "Init:CrashLoopBackOff", "2", "<none>", "<none>"),
            ),
            (
                "init container failed by signal",
                pod(
                    json!({"initContainers": [{"name": "i1"}], "containers": [{"name": "app"}]}),
                    json!({"phase": "Pending",
                "initContainerStatuses": [{"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
                ),
                cells("0/1", "Init:Signal:9", "0", "<none>", "<none>"),
            ),
            (
                "sidecar (restartable init) counts as a container",
                pod(
                    json!({"initContainers": [{"name": "side", "restartPolicy": "Always"}], "containers": [{"name": "app"}]}),
                    json!({"phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                "initContainerStatuses": [{"name": "side", "ready": true, "started": true, "restartCount": 1, "state": {"running": {}}}],
                "containerStatuses": [running("app", true, 0)]}),
                ),
                cells("2/2", "Running", "1", "<none>", "<none>"),
            ),
            (
                "terminating",
                json!({"metadata": {"name": "web-1", "creationTimestamp": CREATED, "deletionTimestamp": "2023-11-14T22:13:00Z"},
                "spec": one.clone(), "status": {"phase": "Running", "containerStatuses": [running("app", true, 0)]}}),
                cells("1/1", "Terminating", "0", "<none>", "node-1"),
            ),
            (
                "scheduling gated",
                pod(
                    two.clone(),
                    json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
                ),
                cells("0/2", "SchedulingGated", "0", "<none>", "<none>"),
            ),
            (
                "status reason wins over phase",
                pod(one.clone(), json!({"phase": "Failed", "reason": "Evicted"})),
                cells("0/1", "Evicted", "0", "<none>", "node-1"),
            ),
        ],
    );
    let gated = pod(
        json!({"containers": [{"name": "app"}], "readinessGates": [{"conditionType": "a"}, {"conditionType": "b"}]}),
        json!({"phase": "Running", "nominatedNodeName": "n2", "conditions": [{"type": "a", "status": "True"}, {"type": "b", "status": "False"}]}),
    );
    let cells = row_cells("Pod", &gated, NOW);
    assert_eq!(cells[7..], [json!("n2"), json!("1/2")]);
}

#[test]
fn deployment_and_replica_set_cells() {
    let template = json!({"spec": {"containers": [{"name": "web", "image": "nginx:1.25"}, {"name": "log", "image": "busybox"}]}});
    let dep = json!({"metadata": {"name": "frontend", "creationTimestamp": CREATED},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "frontend"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]}, "template": template},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2, "replicas": 3}});
    check(
        "Deployment",
        vec![
            (
                "rolling",
                dep.clone(),
                vec![
                    json!("frontend"),
                    json!("2/3"),
                    json!(3),
                    json!(2),
                    json!("5m"),
                    json!("web,log"),
                    json!("nginx:1.25,busybox"),
                    json!("app=frontend,env in (dev,prod)"),
                ],
            ),
            (
                "fresh, default replicas",
                json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}}}),
                vec![
                    json!("d"),
                    json!("0/1"),
                    json!(0),
                    json!(0),
                    json!("<unknown>"),
                    json!(""),
                    json!(""),
                    json!("!x"),
                ],
            ),
            (
                "bad operator",
                json!({"metadata": {"name": "d"}, "spec": {"replicas": 0, "selector": {"matchExpressions": [{"key": "x", "operator": "Near"}]}}}),
                vec![
                    json!("d"),
                    json!("0/0"),
                    json!(0),
                    json!(0),
                    json!("<unknown>"),
                    json!(""),
                    json!(""),
                    json!("<invalid>"),
                ],
            ),
        ],
    );
    let rs = json!({"metadata": {"name": "frontend-6b7f", "creationTimestamp": CREATED},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"pod-template-hash": "6b7f", "app": "frontend"}}, "template": template},
        "status": {"replicas": 3, "readyReplicas": 1}});
    check(
        "ReplicaSet",
        vec![
            (
                "scaling up",
                rs,
                vec![
                    json!("frontend-6b7f"),
                    json!(3),
                    json!(3),
                    json!(1),
                    json!("5m"),
                    json!("web,log"),
                    json!("nginx:1.25,busybox"),
                    json!("app=frontend,pod-template-hash=6b7f"),
                ],
            ),
            (
                "empty selector",
                json!({"metadata": {"name": "r"}, "spec": {"replicas": 2, "selector": {}}}),
                vec![
                    json!("r"),
                    json!(2),
                    json!(0),
                    json!(0),
                    json!("<unknown>"),
                    json!(""),
                    json!(""),
                    json!("<none>"),
                ],
            ),
        ],
    );
}

#[test]
fn node_namespace_lease_event_cells() {
    let node = json!({"metadata": {"name": "node-1", "creationTimestamp": "2023-11-12T22:13:20Z",
            "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": "", "kubernetes.io/role": "edge", "node-role.kubernetes.io/": "x"}},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}, {"type": "Hostname", "address": "node-1"}],
            "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.18.0", "containerRuntimeVersion": "svcnet://0.1.0"}}});
    check(
        "Node",
        vec![
            (
                "ready, cordoned, roles",
                node,
                vec![
                    json!("node-1"),
                    json!("Ready,SchedulingDisabled"),
                    json!("control-plane,edge,worker"),
                    json!("2d"),
                    json!("v1.33.0"),
                    json!("172.18.0.2"),
                    json!("<none>"),
                    json!("Debian GNU/Linux 12 (bookworm)"),
                    json!("6.18.0"),
                    json!("svcnet://0.1.0"),
                ],
            ),
            (
                "no status yet",
                json!({"metadata": {"name": "n2"}}),
                vec![
                    json!("n2"),
                    json!("Unknown"),
                    json!("<none>"),
                    json!("<unknown>"),
                    json!(""),
                    json!("<none>"),
                    json!("<none>"),
                    json!("<unknown>"),
                    json!("<unknown>"),
                    json!("<unknown>"),
                ],
            ),
            (
                "not ready",
                json!({"metadata": {"name": "n3"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
                vec![
                    json!("n3"),
                    json!("NotReady"),
                    json!("<none>"),
                    json!("<unknown>"),
                    json!(""),
                    json!("<none>"),
                    json!("<none>"),
                    json!("<unknown>"),
                    json!("<unknown>"),
                    json!("<unknown>"),
                ],
            ),
        ],
    );
    check(
        "Namespace",
        vec![(
            "active",
            json!({"metadata": {"name": "default", "creationTimestamp": CREATED}, "status": {"phase": "Active"}}),
            vec![json!("default"), json!("Active"), json!("5m")],
        )],
    );
    check(
        "Lease",
        vec![
            (
                "held",
                json!({"metadata": {"name": "node-1", "creationTimestamp": CREATED}, "spec": {"holderIdentity": "node-1"}}),
                vec![json!("node-1"), json!("node-1"), json!("5m")],
            ),
            (
                "free",
                json!({"metadata": {"name": "l", "creationTimestamp": CREATED}, "spec": {}}),
                vec![json!("l"), json!(""), json!("5m")],
            ),
        ],
    );
    check(
        "Event",
        vec![
            (
                "core event",
                json!({"metadata": {"name": "web-1.17a", "creationTimestamp": CREATED}, "type": "Normal", "reason": "Scheduled",
                "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{app}"}, "message": "Successfully assigned default/web-1 to node-1\n",
                "source": {"component": "default-scheduler"}, "firstTimestamp": "2023-11-14T22:08:20Z", "lastTimestamp": "2023-11-14T22:12:35Z", "count": 3}),
                vec![
                    json!("45s"),
                    json!("Normal"),
                    json!("Scheduled"),
                    json!("pod/web-1"),
                    json!("spec.containers{app}"),
                    json!("default-scheduler"),
                    json!("Successfully assigned default/web-1 to node-1"),
                    json!("5m"),
                    json!(3),
                    json!("web-1.17a"),
                ],
            ),
            (
                "events.k8s.io style with series",
                json!({"metadata": {"name": "e2"}, "type": "Warning", "reason": "BackOff", "involvedObject": {"kind": "Node"},
                "eventTime": "2023-11-14T22:08:20.000000Z", "series": {"count": 7, "lastObservedTime": "2023-11-14T22:13:10.500000Z"},
                "reportingComponent": "kubelet", "reportingInstance": "node-1", "message": "x"}),
                vec![
                    json!("10s"),
                    json!("Warning"),
                    json!("BackOff"),
                    json!("node"),
                    json!(""),
                    json!("kubelet, node-1"),
                    json!("x"),
                    json!("5m"),
                    json!(7),
                    json!("e2"),
                ],
            ),
        ],
    );
}

#[test]
fn columns_match_upstream() {
    let cases: &[(&str, &[(&str, i32)])] = &[
        (
            "Service",
            &[
                ("Name", 0),
                ("Type", 0),
                ("Cluster-IP", 0),
                ("External-IP", 0),
                ("Port(s)", 0),
                ("Age", 0),
                ("Selector", 1),
            ],
        ),
        ("Endpoints", &[("Name", 0), ("Endpoints", 0), ("Age", 0)]),
        (
            "Pod",
            &[
                ("Name", 0),
                ("Ready", 0),
                ("Status", 0),
                ("Restarts", 0),
                ("Age", 0),
                ("IP", 1),
                ("Node", 1),
                ("Nominated Node", 1),
                ("Readiness Gates", 1),
            ],
        ),
        (
            "Deployment",
            &[
                ("Name", 0),
                ("Ready", 0),
                ("Up-to-date", 0),
                ("Available", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1),
            ],
        ),
        (
            "ReplicaSet",
            &[
                ("Name", 0),
                ("Desired", 0),
                ("Current", 0),
                ("Ready", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1),
            ],
        ),
        (
            "Node",
            &[
                ("Name", 0),
                ("Status", 0),
                ("Roles", 0),
                ("Age", 0),
                ("Version", 0),
                ("Internal-IP", 1),
                ("External-IP", 1),
                ("OS-Image", 1),
                ("Kernel-Version", 1),
                ("Container-Runtime", 1),
            ],
        ),
        ("Namespace", &[("Name", 0), ("Status", 0), ("Age", 0)]),
        (
            "EndpointSlice",
            &[
                ("Name", 0),
                ("AddressType", 0),
                ("Ports", 0),
                ("Endpoints", 0),
                ("Age", 0),
            ],
        ),
        (
            "Event",
            &[
                ("Last Seen", 0),
                ("Type", 0),
                ("Reason", 0),
                ("Object", 0),
                ("Subobject", 1),
                ("Source", 1),
                ("Message", 0),
                ("First Seen", 1),
                ("Count", 1),
                ("Name", 1),
            ],
        ),
        ("Lease", &[("Name", 0), ("Holder", 0), ("Age", 0)]),
        ("ConfigMap", &[("Name", 0), ("Created At", 0)]),
    ];
    for (kind, want) in cases {
        let got: Vec<(&str, i32)> = column_definitions(kind)
            .iter()
            .map(|c| (c.name, c.priority))
            .collect();
        assert_eq!(&got, want, "{kind}");
    }
    let name = &column_definitions("Pod")[0];
    assert_eq!((name.type_, name.format), ("string", "name"));
}

#[test]
fn table_document() {
    let objs = [
        json!({"metadata": {"name": "a", "namespace": "default", "labels": {"app": "a"}, "creationTimestamp": CREATED}, "status": {"phase": "Active"}}),
    ];
    let meta = TableMeta {
        resource_version: Some("42".into()),
        continue_token: None,
        remaining_item_count: None,
    };
    let got = table("Namespace", &objs, NOW, IncludeObject::Metadata, &meta);
    assert_eq!(got["kind"], "Table");
    assert_eq!(got["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(got["metadata"], json!({"resourceVersion": "42"}));
    assert_eq!(
        got["columnDefinitions"][0],
        json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DOC, "priority": 0})
    );
    assert_eq!(got["columnDefinitions"][2]["format"], "");
    assert_eq!(
        got["rows"],
        json!([{"cells": ["a", "Active", "5m"], "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"name": "a", "namespace": "default", "labels": {"app": "a"}, "creationTimestamp": CREATED}}}])
    );

    let none = table(
        "Namespace",
        &objs,
        NOW,
        IncludeObject::None,
        &TableMeta::default(),
    );
    assert_eq!(none["rows"], json!([{"cells": ["a", "Active", "5m"]}]));
    assert_eq!(none["metadata"], json!({}));
    let full = table(
        "Namespace",
        &objs,
        NOW,
        IncludeObject::Object,
        &TableMeta {
            continue_token: Some("c".into()),
            remaining_item_count: Some(3),
            ..TableMeta::default()
        },
    );
    assert_eq!(full["rows"][0]["object"], objs[0]);
    assert_eq!(
        full["metadata"],
        json!({"continue": "c", "remainingItemCount": 3})
    );

    let done = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Succeeded"}});
    let t = table(
        "Pod",
        &[done],
        NOW,
        IncludeObject::None,
        &TableMeta::default(),
    );
    assert_eq!(
        t["rows"][0]["conditions"],
        json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}])
    );

    let cm = json!({"metadata": {"name": "cfg", "creationTimestamp": CREATED}});
    assert_eq!(
        row_cells("ConfigMap", &cm, NOW),
        vec![json!("cfg"), json!(CREATED)]
    );
}

#[test]
fn include_object_query() {
    let cases = [
        ("", Some(IncludeObject::Metadata)),
        ("Metadata", Some(IncludeObject::Metadata)),
        ("None", Some(IncludeObject::None)),
        ("Object", Some(IncludeObject::Object)),
        ("all", None),
    ];
    for (q, want) in cases {
        assert_eq!(IncludeObject::from_query(q), want, "{q}");
    }
}
