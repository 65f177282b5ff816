//! What a container runs: its program (a host executable or a built-in image) and its environment.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};

/// The default PATH images get when the container sets none (the Docker default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a container cannot be started; `reason` is the waiting reason shown on the pod.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct StartError {
    pub reason: &'static str,
    pub message: String,
}

/// A program to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entrypoint {
    /// An executable from the node's filesystem with its argv.
    Host(Vec<String>),
    /// A built-in image implemented by `svcnet builtin <argv...>` (argv starts with the
    /// built-in's name, e.g. `agnhost netexec --http-port=8080`).
    Builtin(Vec<String>),
}

/// The repository part of an image reference, without registry host, tag or digest.
fn image_repo(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    // A ':' after the last '/' starts the tag; one before it belongs to a registry port.
    let last_slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    let name = match no_digest[last_slash..].find(':') {
        Some(i) => &no_digest[..last_slash + i],
        None => no_digest,
    };
    name.rsplit('/').next().unwrap_or(name)
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Resolves the container's program the way the image's ENTRYPOINT/CMD would, for the images
/// svcnet knows; any other image needs `command`.
pub fn entrypoint(
    c: &Container,
    expand: &dyn Fn(&str) -> String,
) -> Result<Entrypoint, StartError> {
    let image = c.image.clone().unwrap_or_default();
    let command: Vec<String> = c.command.iter().flatten().map(|s| expand(s)).collect();
    let args: Vec<String> = c.args.iter().flatten().map(|s| expand(s)).collect();
    let repo = image_repo(&image);
    let builtin = match repo {
        "agnhost" => Some("agnhost"),
        "pause" => Some("pause"),
        r if r.starts_with("nginx") => Some("nginx"),
        _ => None,
    };
    if let Some(name) = builtin {
        // `command: [/agnhost, ...]` or `[nginx, ...]` names the image's own binary.
        let own = command.first().is_some_and(|c0| basename(c0) == name);
        if command.is_empty() || own {
            let mut argv = vec![name.to_string()];
            argv.extend(command.iter().skip(1).cloned());
            argv.extend(args);
            return Ok(Entrypoint::Builtin(argv));
        }
    }
    // Built-in images returned above; any other image needs a command from the node.
    if command.is_empty() {
        return Err(StartError {
            reason: "ErrImagePull",
            message: format!(
                "image {image:?} is not available: svcnet runs containers from the node's \
                     filesystem and has no image store; set `command` to a program on the node \
                     (built-in images: registry.k8s.io/e2e-test-images/agnhost, nginx, pause)"
            ),
        });
    }
    let mut argv = command;
    argv.extend(args);
    Ok(Entrypoint::Host(argv))
}

/// Finds `prog` like execvp would with `path`; `None` when it does not exist or is not executable.
pub fn look_path(prog: &str, path: &str, workdir: &std::path::Path) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if prog.contains('/') {
        let p = workdir.join(prog);
        return is_exec(&p).then_some(p);
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| std::path::Path::new(d).join(prog))
        .find(|p| is_exec(p))
}

/// Expands `$(VAR)` references from `vars`; `$$` is a literal `$`; unknown references stay as
/// written (Kubernetes' `expansion.Expand`).
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Values the environment can refer to that are not in the pod object itself.
#[derive(Debug, Clone, Default)]
pub struct EnvContext {
    pub pod_ips: Vec<String>,
    pub host_ips: Vec<String>,
    pub node_name: String,
    /// ConfigMap data by name (only those the pod refers to, fetched beforehand).
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Secret data by name, decoded.
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
}

fn field_value(pod: &Pod, path: &str, ctx: &EnvContext) -> Option<String> {
    let m = &pod.metadata;
    let keyed = |prefix: &str, map: &Option<BTreeMap<String, String>>| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(|k| {
                map.as_ref()
                    .and_then(|l| l.get(k).cloned())
                    .unwrap_or_default()
            })
    };
    if let Some(v) = keyed("metadata.labels['", &m.labels) {
        return Some(v);
    }
    if let Some(v) = keyed("metadata.annotations['", &m.annotations) {
        return Some(v);
    }
    let spec = pod.spec.as_ref();
    Some(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => ctx.node_name.clone(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" => ctx.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => ctx.pod_ips.join(","),
        "status.hostIP" => ctx.host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => ctx.host_ips.join(","),
        _ => return None,
    })
}

/// The container's environment in order: service variables first, then `envFrom`, then `env`
/// (later entries win, `$(VAR)` refers to earlier ones), as kubelet's `makeEnvironmentVariables`.
pub fn container_env(
    pod: &Pod,
    c: &Container,
    service_env: &[EnvVar],
    ctx: &EnvContext,
) -> Result<Vec<(String, String)>, StartError> {
    let mut order: Vec<String> = Vec::new();
    let mut vals: BTreeMap<String, String> = BTreeMap::new();
    fn put(vals: &mut BTreeMap<String, String>, order: &mut Vec<String>, k: String, v: String) {
        if !vals.contains_key(&k) {
            order.push(k.clone());
        }
        vals.insert(k, v);
    }
    let config_error = |message: String| StartError {
        reason: "CreateContainerConfigError",
        message,
    };
    for ev in service_env {
        put(
            &mut vals,
            &mut order,
            ev.name.clone(),
            ev.value.clone().unwrap_or_default(),
        );
    }
    let mut tmp: Vec<(String, String)> = Vec::new();
    for src in c.env_from.iter().flatten() {
        let prefix = src.prefix.clone().unwrap_or_default();
        let (data, optional, what, name) = if let Some(r) = &src.config_map_ref {
            (
                ctx.config_maps.get(&r.name),
                r.optional.unwrap_or(false),
                "configmap",
                &r.name,
            )
        } else if let Some(r) = &src.secret_ref {
            (
                ctx.secrets.get(&r.name),
                r.optional.unwrap_or(false),
                "secret",
                &r.name,
            )
        } else {
            continue;
        };
        match data {
            Some(d) => tmp.extend(d.iter().map(|(k, v)| (format!("{prefix}{k}"), v.clone()))),
            None if optional => {}
            None => return Err(config_error(format!("{what} \"{name}\" not found"))),
        }
    }
    for (k, v) in tmp {
        put(&mut vals, &mut order, k, v);
    }
    for ev in c.env.iter().flatten() {
        let value = if let Some(src) = &ev.value_from {
            if let Some(f) = &src.field_ref {
                field_value(pod, &f.field_path, ctx).ok_or_else(|| {
                    config_error(format!("unsupported fieldRef {:?}", f.field_path))
                })?
            } else if let Some(r) = &src.config_map_key_ref {
                match ctx.config_maps.get(&r.name).and_then(|d| d.get(&r.key)) {
                    Some(v) => v.clone(),
                    None if r.optional.unwrap_or(false) => continue,
                    None if ctx.config_maps.contains_key(&r.name) => {
                        return Err(config_error(format!(
                            "couldn't find key {} in ConfigMap {}/{}",
                            r.key,
                            pod.metadata.namespace.as_deref().unwrap_or("default"),
                            r.name
                        )));
                    }
                    None => {
                        return Err(config_error(format!("configmap \"{}\" not found", r.name)));
                    }
                }
            } else if let Some(r) = &src.secret_key_ref {
                match ctx.secrets.get(&r.name).and_then(|d| d.get(&r.key)) {
                    Some(v) => v.clone(),
                    None if r.optional.unwrap_or(false) => continue,
                    None if ctx.secrets.contains_key(&r.name) => {
                        return Err(config_error(format!(
                            "couldn't find key {} in Secret {}/{}",
                            r.key,
                            pod.metadata.namespace.as_deref().unwrap_or("default"),
                            r.name
                        )));
                    }
                    None => return Err(config_error(format!("secret \"{}\" not found", r.name))),
                }
            } else {
                // resourceFieldRef: svcnet enforces no resources; report none.
                String::new()
            }
        } else {
            expand(ev.value.as_deref().unwrap_or(""), &vals)
        };
        put(&mut vals, &mut order, ev.name.clone(), value);
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = vals.get(&k).cloned().unwrap_or_default();
            (k, v)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).expect("container json")
    }

    #[test]
    fn image_repos() {
        for (image, want) in [
            ("registry.k8s.io/e2e-test-images/agnhost:2.53", "agnhost"),
            ("nginx", "nginx"),
            ("nginx:1.27", "nginx"),
            (
                "localhost:5000/team/nginx-unprivileged:1@sha256:abc",
                "nginx-unprivileged",
            ),
            ("busybox@sha256:abc", "busybox"),
        ] {
            assert_eq!(image_repo(image), want, "{image}");
        }
    }

    #[test]
    fn entrypoints() {
        let id = |s: &str| s.to_string();
        let agn = "registry.k8s.io/e2e-test-images/agnhost:2.53";
        let cases: Vec<(serde_json::Value, Result<Entrypoint, &str>)> = vec![
            (
                json!({"name": "c", "image": agn, "args": ["netexec", "--http-port=8080"]}),
                Ok(Entrypoint::Builtin(vec![
                    "agnhost".into(),
                    "netexec".into(),
                    "--http-port=8080".into(),
                ])),
            ),
            (
                json!({"name": "c", "image": agn, "command": ["/agnhost", "serve-hostname"], "args": ["--port", "9376"]}),
                Ok(Entrypoint::Builtin(vec![
                    "agnhost".into(),
                    "serve-hostname".into(),
                    "--port".into(),
                    "9376".into(),
                ])),
            ),
            (
                json!({"name": "c", "image": agn, "command": ["sh", "-c", "sleep 1"]}),
                Ok(Entrypoint::Host(vec![
                    "sh".into(),
                    "-c".into(),
                    "sleep 1".into(),
                ])),
            ),
            (
                json!({"name": "c", "image": "nginx:1.27"}),
                Ok(Entrypoint::Builtin(vec!["nginx".into()])),
            ),
            (
                json!({"name": "c", "image": "registry.k8s.io/pause:3.10"}),
                Ok(Entrypoint::Builtin(vec!["pause".into()])),
            ),
            (
                json!({"name": "c", "image": "busybox", "command": ["sleep"], "args": ["3600"]}),
                Ok(Entrypoint::Host(vec!["sleep".into(), "3600".into()])),
            ),
            (json!({"name": "c", "image": "redis"}), Err("ErrImagePull")),
            (
                json!({"name": "c", "image": "redis", "args": ["--port", "1"]}),
                Err("ErrImagePull"),
            ),
        ];
        for (c, want) in cases {
            let got = entrypoint(&container(c.clone()), &id);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{c}"),
                (Err(e), Err(reason)) => {
                    assert_eq!(e.reason, reason, "{c}");
                    assert!(e.message.contains("has no image store"), "{}", e.message);
                }
                (g, w) => panic!("{c}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn expansion() {
        let vars: BTreeMap<String, String> = [
            ("A".to_string(), "x".to_string()),
            ("B".into(), "y z".into()),
        ]
        .into();
        for (input, want) in [
            ("$(A)", "x"),
            ("pre-$(A)-$(B)", "pre-x-y z"),
            ("$$(A)", "$(A)"),
            ("$(MISSING)", "$(MISSING)"),
            ("$A", "$A"),
            ("cost $", "cost $"),
            ("$(unterminated", "$(unterminated"),
        ] {
            assert_eq!(expand(input, &vars), want, "{input}");
        }
    }

    #[test]
    fn env_order_and_sources() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {"containers": []}
        }))
        .expect("pod");
        let c = container(json!({"name": "c", "image": "x",
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        "env": [
            {"name": "MY_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "URL", "value": "http://$(REDIS_SERVICE_HOST):$(MISSING)"},
            {"name": "REDIS_SERVICE_HOST", "value": "override"},
            {"name": "KEY", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}},
        ]}));
        let svc = vec![EnvVar {
            name: "REDIS_SERVICE_HOST".into(),
            value: Some("10.96.0.7".into()),
            ..Default::default()
        }];
        let ctx = EnvContext {
            pod_ips: vec!["10.244.1.9".into()],
            host_ips: vec!["172.18.0.2".into()],
            node_name: "node-1".into(),
            config_maps: [(
                "cfg".to_string(),
                [("k".to_string(), "v".to_string())].into(),
            )]
            .into(),
            secrets: BTreeMap::new(),
        };
        let got = container_env(&pod, &c, &svc, &ctx).expect("env");
        let want: Vec<(String, String)> = [
            ("REDIS_SERVICE_HOST", "override"),
            ("CFG_k", "v"),
            ("MY_POD", "p"),
            ("MY_IP", "10.244.1.9"),
            ("NODE", "node-1"),
            ("APP", "web"),
            ("URL", "http://10.96.0.7:$(MISSING)"),
            ("KEY", "v"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn env_errors() {
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns"}}))
                .expect("pod");
        let cases = [
            (
                json!({"name": "c", "env": [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]}),
                "CreateContainerConfigError: configmap \"nope\" not found",
            ),
            (
                json!({"name": "c", "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}),
                "CreateContainerConfigError: couldn't find key k in Secret ns/s",
            ),
            (
                json!({"name": "c", "env": [{"name": "K", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]}),
                "CreateContainerConfigError: unsupported fieldRef \"spec.bogus\"",
            ),
        ];
        let ctx = EnvContext {
            secrets: [("s".to_string(), BTreeMap::new())].into(),
            ..Default::default()
        };
        for (c, want) in cases {
            let err = container_env(&pod, &container(c.clone()), &[], &ctx).expect_err("error");
            assert_eq!(err.to_string(), want, "{c}");
        }
    }

    #[test]
    fn look_path_finds_programs() {
        let wd = std::path::Path::new("/");
        assert!(look_path("sh", DEFAULT_PATH, wd).is_some());
        assert!(look_path("/bin/sh", DEFAULT_PATH, wd).is_some());
        assert_eq!(look_path("no-such-program-svcnet", DEFAULT_PATH, wd), None);
        assert_eq!(look_path("sh", "", wd), None);
    }
}
