"""The official Python client against svcnet: create, list, watch, patch, delete."""
import sys
import threading

from kubernetes import client, config, watch

config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
ns = "default"

events = []
ready = threading.Event()


def watcher(rv):
    w = watch.Watch()
    ready.set()
    for ev in w.stream(v1.list_namespaced_service, ns, resource_version=rv,
                       field_selector="metadata.name=py-svc", timeout_seconds=20):
        events.append((ev["type"], ev["object"].metadata.name))
        if ev["type"] == "DELETED":
            w.stop()


listed = v1.list_namespaced_service(ns)
t = threading.Thread(target=watcher, args=(listed.metadata.resource_version,))
t.start()
ready.wait()

body = client.V1Service(
    metadata=client.V1ObjectMeta(name="py-svc", labels={"app": "py"}),
    spec=client.V1ServiceSpec(selector={"app": "py"},
                              ports=[client.V1ServicePort(port=80, target_port=8080)]),
)
created = v1.create_namespaced_service(ns, body)
assert created.spec.cluster_ip.startswith("10.96."), created.spec.cluster_ip
assert created.spec.ports[0].protocol == "TCP"

names = [s.metadata.name for s in v1.list_namespaced_service(ns, label_selector="app=py").items]
assert names == ["py-svc"], names

patched = v1.patch_namespaced_service("py-svc", ns, {"metadata": {"labels": {"tier": "web"}}})
assert patched.metadata.labels == {"app": "py", "tier": "web"}, patched.metadata.labels

v1.delete_namespaced_service("py-svc", ns)
try:
    v1.read_namespaced_service("py-svc", ns)
    raise SystemExit("still there after delete")
except client.exceptions.ApiException as e:
    assert e.status == 404, e.status

t.join(timeout=30)
assert [e[0] for e in events] == ["ADDED", "MODIFIED", "DELETED"], events
print("python client ok")
