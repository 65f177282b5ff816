//! Table-driven tests of strategic merge patch, JSON merge patch and JSON patch.

use serde_json::{Value, json};

use super::*;

struct Case {
    name: &'static str,
    kind: &'static str,
    original: Value,
    patch: Value,
    want: Value,
}

fn check_ok(cases: Vec<Case>) {
    for c in cases {
        let got = strategic_merge_patch_for_kind(c.kind, &c.original, &c.patch)
            .unwrap_or_else(|e| panic!("{}: unexpected error {e}", c.name));
        assert_eq!(got, c.want, "{}", c.name);
    }
}

#[test]
fn strategic_merge_patch_cases() {
    check_ok(vec![
        Case {
            name: "kubectl apply: service port 80 -> 8080",
            kind: "Service",
            original: json!({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 5000, "protocol": "TCP"}], "type": "ClusterIP"}}),
            patch: json!({"spec": {"$setElementOrder/ports": [{"port": 8080}], "ports": [{"name": "http", "port": 8080, "targetPort": 5000}, {"$patch": "delete", "port": 80}]}}),
            want: json!({"spec": {"ports": [{"name": "http", "port": 8080, "targetPort": 5000}], "type": "ClusterIP"}}),
        },
        Case {
            name: "null deletes a field, maps merge recursively",
            kind: "Service",
            original: json!({"metadata": {"name": "s", "labels": {"a": "1", "b": "2"}}, "spec": {"selector": {"app": "x"}}}),
            patch: json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"selector": null}}),
            want: json!({"metadata": {"name": "s", "labels": {"b": "2", "c": "3"}}, "spec": {}}),
        },
        Case {
            name: "null for a missing field is ignored",
            kind: "Service",
            original: json!({"spec": {"type": "ClusterIP"}}),
            patch: json!({"spec": {"externalName": null, "selector": {"app": "x", "tier": null}}}),
            want: json!({"spec": {"type": "ClusterIP", "selector": {"app": "x"}}}),
        },
        Case {
            name: "list without patch strategy is replaced",
            kind: "Service",
            original: json!({"spec": {"externalIPs": ["1.1.1.1", "2.2.2.2"]}}),
            patch: json!({"spec": {"externalIPs": ["3.3.3.3"]}}),
            want: json!({"spec": {"externalIPs": ["3.3.3.3"]}}),
        },
        Case {
            name: "primitive list with merge strategy merges as a set",
            kind: "Service",
            original: json!({"metadata": {"finalizers": ["a", "b"]}}),
            patch: json!({"metadata": {"finalizers": ["b", "c"]}}),
            want: json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
        },
        Case {
            name: "$deleteFromPrimitiveList removes from a merged primitive list",
            kind: "Pod",
            original: json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "x"]}}),
            want: json!({"metadata": {"finalizers": ["a", "c"]}}),
        },
        Case {
            name: "$setElementOrder on a primitive list",
            kind: "Pod",
            original: json!({"metadata": {"finalizers": ["a", "b"]}}),
            patch: json!({"metadata": {"$setElementOrder/finalizers": ["c", "b", "a"], "finalizers": ["c"]}}),
            want: json!({"metadata": {"finalizers": ["c", "b", "a"]}}),
        },
        Case {
            name: "deployment: container env merged by name",
            kind: "Deployment",
            original: json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                {"name": "side", "image": "busybox"}]}}}}),
            patch: json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:2", "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}]}]}}}}),
            want: json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:2", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "20"}, {"name": "C", "value": "3"}]},
                {"name": "side", "image": "busybox"}]}}}}),
        },
        Case {
            name: "deployment: kubectl apply removes an env var and reorders",
            kind: "Deployment",
            original: json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}]}]}}}}),
            patch: json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "web"}], "containers": [
                {"name": "web", "$setElementOrder/env": [{"name": "C"}, {"name": "A"}], "env": [{"$patch": "delete", "name": "B"}]}]}}}}),
            want: json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "env": [{"name": "C", "value": "3"}, {"name": "A", "value": "1"}]}]}}}}),
        },
        Case {
            name: "pod spec: a new container is appended, with nested directives stripped",
            kind: "Pod",
            original: json!({"spec": {"containers": [{"name": "a", "image": "x"}]}}),
            patch: json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                "containers": [{"name": "b", "image": "y", "$setElementOrder/ports": [{"containerPort": 80}], "ports": [{"containerPort": 80}], "command": null}]}}),
            want: json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y", "ports": [{"containerPort": 80}]}]}}),
        },
        Case {
            name: "container ports merged by containerPort",
            kind: "Pod",
            original: json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]}]}}),
            patch: json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 443, "name": "https"}]}]}}),
            want: json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443, "name": "https"}]}]}}),
        },
        Case {
            name: "pod status conditions merged by type",
            kind: "Pod",
            original: json!({"status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}]}}),
            patch: json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}]}}),
            want: json!({"status": {"phase": "Running", "conditions": [
                {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}]}}),
        },
        Case {
            name: "node addresses merged by type",
            kind: "Node",
            original: json!({"status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.2"}, {"type": "Hostname", "address": "n1"}]}}),
            patch: json!({"status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.3"}]}}),
            want: json!({"status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.3"}, {"type": "Hostname", "address": "n1"}]}}),
        },
        Case {
            name: "ownerReferences merged by uid",
            kind: "ReplicaSet",
            original: json!({"metadata": {"ownerReferences": [{"uid": "u1", "kind": "Deployment", "name": "d"}]}}),
            patch: json!({"metadata": {"ownerReferences": [{"uid": "u1", "controller": true}, {"uid": "u2", "kind": "X", "name": "x"}]}}),
            want: json!({"metadata": {"ownerReferences": [{"uid": "u1", "kind": "Deployment", "name": "d", "controller": true}, {"uid": "u2", "kind": "X", "name": "x"}]}}),
        },
        Case {
            name: "$patch: replace on a map",
            kind: "Service",
            original: json!({"spec": {"selector": {"app": "a", "tier": "b"}}}),
            patch: json!({"spec": {"selector": {"$patch": "replace", "app": "c"}}}),
            want: json!({"spec": {"selector": {"app": "c"}}}),
        },
        Case {
            name: "$patch: delete on a map empties it",
            kind: "Service",
            original: json!({"spec": {"selector": {"app": "a"}, "type": "ClusterIP"}}),
            patch: json!({"spec": {"selector": {"$patch": "delete"}}}),
            want: json!({"spec": {"selector": {}, "type": "ClusterIP"}}),
        },
        Case {
            name: "$patch: replace as a list element replaces the merged list",
            kind: "Pod",
            original: json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}),
            patch: json!({"spec": {"containers": [{"name": "c", "image": "z"}, {"$patch": "replace"}]}}),
            want: json!({"spec": {"containers": [{"name": "c", "image": "z"}]}}),
        },
        Case {
            name: "$patch: delete as a list element removes by merge key",
            kind: "Service",
            original: json!({"spec": {"ports": [{"port": 80}, {"port": 443}]}}),
            patch: json!({"spec": {"ports": [{"$patch": "delete", "port": 80}]}}),
            want: json!({"spec": {"ports": [{"port": 443}]}}),
        },
        Case {
            name: "$setElementOrder reorders containers",
            kind: "Pod",
            original: json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}}),
            patch: json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}}),
            want: json!({"spec": {"containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}}),
        },
        Case {
            name: "$setElementOrder: a server-only item goes before the first patch item that follows it live",
            kind: "Pod",
            original: json!({"spec": {"containers": [{"name": "a"}, {"name": "s"}, {"name": "b"}]}}),
            patch: json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}], "containers": [{"name": "b", "image": "i"}]}}),
            want: json!({"spec": {"containers": [{"name": "s"}, {"name": "b", "image": "i"}, {"name": "a"}]}}),
        },
        Case {
            name: "$retainKeys clears fields of the deployment strategy",
            kind: "Deployment",
            original: json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            patch: json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            want: json!({"spec": {"strategy": {"type": "Recreate"}}}),
        },
        Case {
            name: "$retainKeys on a volume element",
            kind: "Pod",
            original: json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}),
            patch: json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["configMap", "name"], "configMap": {"name": "cm"}}]}}),
            want: json!({"spec": {"volumes": [{"name": "v", "configMap": {"name": "cm"}}]}}),
        },
        Case {
            name: "a value of another type replaces the original",
            kind: "Service",
            original: json!({"spec": {"ports": [{"port": 80}]}}),
            patch: json!({"spec": {"ports": "none"}}),
            want: json!({"spec": {"ports": "none"}}),
        },
        Case {
            name: "merge key numbers compare by value, the patch's fields win",
            kind: "Service",
            original: json!({"spec": {"ports": [{"port": 80, "name": "a"}]}}),
            patch: json!({"spec": {"ports": [{"port": 80.0, "name": "b"}]}}),
            want: json!({"spec": {"ports": [{"port": 80.0, "name": "b"}]}}),
        },
        Case {
            name: "$patch: delete of the whole object",
            kind: "Service",
            original: json!({"spec": {"type": "ClusterIP"}}),
            patch: json!({"$patch": "delete"}),
            want: json!({}),
        },
        Case {
            name: "unknown kind: JSON merge patch semantics (lists replaced)",
            kind: "Widget",
            original: json!({"spec": {"containers": [{"name": "a"}], "x": 1}}),
            patch: json!({"spec": {"containers": [{"name": "b"}], "x": null}}),
            want: json!({"spec": {"containers": [{"name": "b"}]}}),
        },
    ]);
}

#[test]
fn strategic_merge_patch_errors() {
    let cases: Vec<(&str, Value, Value, u16, &str)> = vec![
        (
            "patch is not an object",
            json!({}),
            json!([1]),
            400,
            "invalid JSON document",
        ),
        (
            "original is not an object",
            json!("x"),
            json!({}),
            400,
            "invalid JSON document",
        ),
        (
            "$patch: merge on a map",
            json!({"spec": {"selector": {"a": "b"}}}),
            json!({"spec": {"selector": {"$patch": "merge"}}}),
            422,
            r#"unknown patch type: merge in map: {"$patch":"merge"}"#,
        ),
        (
            "$patch: merge in a list",
            json!({"spec": {"ports": [{"port": 80}]}}),
            json!({"spec": {"ports": [{"$patch": "merge", "port": 80}]}}),
            422,
            "merging lists cannot yet be specified in the patch",
        ),
        (
            "unknown directive in a list",
            json!({"spec": {"ports": [{"port": 80}]}}),
            json!({"spec": {"ports": [{"$patch": "frob", "port": 80}]}}),
            422,
            r#"unknown patch type: frob in map: {"$patch":"frob","port":80}"#,
        ),
        (
            "merge list element without merge key",
            json!({"spec": {"ports": [{"port": 80}]}}),
            json!({"spec": {"ports": [{"name": "x"}]}}),
            422,
            r#"map: {"name":"x"} does not contain declared merge key: port"#,
        ),
        (
            "delete directive without merge key",
            json!({"spec": {"ports": [{"port": 80}]}}),
            json!({"spec": {"ports": [{"$patch": "delete"}]}}),
            422,
            r#"map: {"$patch":"delete"} does not contain declared merge key: port"#,
        ),
        (
            "$retainKeys not a list",
            json!({"spec": {}}),
            json!({"spec": {"$retainKeys": "type"}}),
            400,
            "invalid patch format of retainKeys",
        ),
        (
            "$retainKeys missing a key the patch sets",
            json!({"spec": {}}),
            json!({"spec": {"$retainKeys": ["a"], "b": 1}}),
            400,
            "invalid patch format of retainKeys",
        ),
        (
            "$setElementOrder without a list name",
            json!({"spec": {}}),
            json!({"spec": {"$setElementOrder": []}}),
            400,
            "invalid patch format of setElementOrder list",
        ),
        (
            "$setElementOrder that is not a list",
            json!({"spec": {}}),
            json!({"spec": {"$setElementOrder/ports": {"port": 80}}}),
            422,
            "expected a list, but received a map",
        ),
        (
            "$deleteFromPrimitiveList without a list name",
            json!({"metadata": {}}),
            json!({"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}}),
            400,
            "invalid patch format of primitive list",
        ),
        (
            "patch list out of $setElementOrder order",
            json!({"spec": {"ports": [{"port": 1}, {"port": 2}]}}),
            json!({"spec": {"$setElementOrder/ports": [{"port": 1}, {"port": 2}], "ports": [{"port": 2}, {"port": 1}]}}),
            422,
            "the order in patch list:\n[{\"port\":2},{\"port\":1}]\n doesn't match $setElementOrder list:\n[{\"port\":1},{\"port\":2}]",
        ),
        (
            "list of lists",
            json!({"metadata": {"finalizers": [["a"]]}}),
            json!({"metadata": {"finalizers": [["b"]]}}),
            422,
            "lists of lists are not supported",
        ),
        (
            "mixed element types",
            json!({"metadata": {"finalizers": ["a"]}}),
            json!({"metadata": {"finalizers": [1]}}),
            422,
            r#"list element types are not identical: [["a"],[1]]"#,
        ),
        (
            "objects in a primitive merge list",
            json!({"metadata": {"finalizers": [{"a": 1}]}}),
            json!({"metadata": {"finalizers": [{"b": 1}]}}),
            422,
            "cannot merge lists without merge key for type map",
        ),
    ];
    for (name, original, patch, code, msg) in cases {
        let err = strategic_merge_patch_for_kind("Service", &original, &patch)
            .err()
            .unwrap_or_else(|| panic!("{name}: no error"));
        assert_eq!(err.to_string(), msg, "{name}");
        assert_eq!(err.status_code(), code, "{name}");
    }
}

#[test]
fn custom_schema_is_used() {
    #[derive(Debug)]
    struct ByKey;
    impl MergeSchema for ByKey {
        fn field(&self, path: &[String]) -> FieldMeta {
            if path == ["items"] {
                FieldMeta {
                    strategy: Strategy::Merge,
                    merge_key: Some("k"),
                    retain_keys: false,
                }
            } else {
                FieldMeta::default()
            }
        }
    }
    let original = json!({"items": [{"k": 1, "v": "a"}], "other": [1]});
    let patch = json!({"items": [{"k": 2, "v": "b"}], "other": [2]});
    let got = strategic_merge_patch(&original, &patch, &ByKey).ok();
    assert_eq!(
        got,
        Some(json!({"items": [{"k": 2, "v": "b"}, {"k": 1, "v": "a"}], "other": [2]}))
    );
    let got = strategic_merge_patch(&original, &patch, &NoTags).ok();
    assert_eq!(
        got,
        Some(json!({"items": [{"k": 2, "v": "b"}], "other": [2]}))
    );
}

/// RFC 7386 Appendix A.
#[test]
fn json_merge_patch_rfc7386_vectors() {
    let cases = [
        (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
        (
            json!({"a": "b"}),
            json!({"b": "c"}),
            json!({"a": "b", "b": "c"}),
        ),
        (json!({"a": "b"}), json!({"a": null}), json!({})),
        (
            json!({"a": "b", "b": "c"}),
            json!({"a": null}),
            json!({"b": "c"}),
        ),
        (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
        (
            json!({"a": {"b": "c"}}),
            json!({"a": {"b": "d", "c": null}}),
            json!({"a": {"b": "d"}}),
        ),
        (
            json!({"a": [{"b": "c"}]}),
            json!({"a": [1]}),
            json!({"a": [1]}),
        ),
        (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
        (json!({"a": "b"}), json!(["c"]), json!(["c"])),
        (json!({"a": "foo"}), json!(null), json!(null)),
        (json!({"a": "foo"}), json!("bar"), json!("bar")),
        (
            json!({"e": null}),
            json!({"a": 1}),
            json!({"e": null, "a": 1}),
        ),
        (
            json!([1, 2]),
            json!({"a": "b", "c": null}),
            json!({"a": "b"}),
        ),
        (
            json!({}),
            json!({"a": {"bb": {"ccc": null}}}),
            json!({"a": {"bb": {}}}),
        ),
    ];
    for (original, patch, want) in cases {
        assert_eq!(
            json_merge_patch(&original, &patch),
            want,
            "{original} + {patch}"
        );
    }
}

/// RFC 6902 Appendix A.
#[test]
fn json_patch_rfc6902_vectors() {
    let ok = [
        (
            "A.1",
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/baz", "value": "qux"}]),
            json!({"baz": "qux", "foo": "bar"}),
        ),
        (
            "A.2",
            json!({"foo": ["bar", "baz"]}),
            json!([{"op": "add", "path": "/foo/1", "value": "qux"}]),
            json!({"foo": ["bar", "qux", "baz"]}),
        ),
        (
            "A.3",
            json!({"baz": "qux", "foo": "bar"}),
            json!([{"op": "remove", "path": "/baz"}]),
            json!({"foo": "bar"}),
        ),
        (
            "A.4",
            json!({"foo": ["bar", "qux", "baz"]}),
            json!([{"op": "remove", "path": "/foo/1"}]),
            json!({"foo": ["bar", "baz"]}),
        ),
        (
            "A.5",
            json!({"baz": "qux", "foo": "bar"}),
            json!([{"op": "replace", "path": "/baz", "value": "boo"}]),
            json!({"baz": "boo", "foo": "bar"}),
        ),
        (
            "A.6",
            json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
            json!([{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]),
            json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
        ),
        (
            "A.7",
            json!({"foo": ["all", "grass", "cows", "eat"]}),
            json!([{"op": "move", "from": "/foo/1", "path": "/foo/3"}]),
            json!({"foo": ["all", "cows", "eat", "grass"]}),
        ),
        (
            "A.8",
            json!({"baz": "qux", "foo": ["a", 2, "c"]}),
            json!([{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}]),
            json!({"baz": "qux", "foo": ["a", 2, "c"]}),
        ),
        (
            "A.10",
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/child", "value": {"grandchild": {}}}]),
            json!({"foo": "bar", "child": {"grandchild": {}}}),
        ),
        (
            "A.11",
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}]),
            json!({"foo": "bar", "baz": "qux"}),
        ),
        (
            "A.14",
            json!({"/": 9, "~1": 10}),
            json!([{"op": "test", "path": "/~01", "value": 10}]),
            json!({"/": 9, "~1": 10}),
        ),
        (
            "A.16",
            json!({"foo": ["bar"]}),
            json!([{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}]),
            json!({"foo": ["bar", ["abc", "def"]]}),
        ),
        (
            "copy",
            json!({"a": {"b": 1}}),
            json!([{"op": "copy", "from": "/a", "path": "/c"}]),
            json!({"a": {"b": 1}, "c": {"b": 1}}),
        ),
    ];
    for (name, doc, ops, want) in ok {
        let got = json_patch(&doc, &ops).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name}");
    }
    let errors = [
        (
            "A.9",
            json!({"baz": "qux"}),
            json!([{"op": "test", "path": "/baz", "value": "bar"}]),
            422,
            "operation '/0' failed at path '/baz': value did not match",
        ),
        (
            "A.12",
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/baz/bat", "value": "qux"}]),
            422,
            "operation '/0' failed at path '/baz/bat': path is invalid",
        ),
        (
            "A.15",
            json!({"/": 9, "~1": 10}),
            json!([{"op": "test", "path": "/~01", "value": "10"}]),
            422,
            "operation '/0' failed at path '/~01': value did not match",
        ),
        (
            "remove missing",
            json!({"a": 1}),
            json!([{"op": "remove", "path": "/b"}]),
            422,
            "operation '/0' failed at path '/b': path is invalid",
        ),
        (
            "second op fails",
            json!({"a": 1}),
            json!([{"op": "remove", "path": "/a"}, {"op": "replace", "path": "/a", "value": 2}]),
            422,
            "operation '/1' failed at path '/a': path is invalid",
        ),
    ];
    for (name, doc, ops, code, msg) in errors {
        let err = json_patch(&doc, &ops)
            .err()
            .unwrap_or_else(|| panic!("{name}: no error"));
        assert_eq!(err.to_string(), msg, "{name}");
        assert_eq!(err.status_code(), code, "{name}");
    }
    let bad = json_patch(&json!({}), &json!([{"op": "frob", "path": "/a"}])).err();
    assert_eq!(bad.map(|e| e.status_code()), Some(400));
    let bad = json_patch(&json!({}), &json!({"op": "add"})).err();
    assert_eq!(bad.map(|e| e.status_code()), Some(400));
}
