//! svcnet-client: the one way svcnet's components (agent, controllers,
//! proxy, DNS, `svcnet up`) build a Kubernetes API client — from a
//! kubeconfig file, or inferred like kubectl does (in-cluster, then
//! `$KUBECONFIG` / `~/.kube/config`).

use std::path::Path;

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no usable cluster configuration (in-cluster or $KUBECONFIG/~/.kube/config): {0}")]
    Infer(#[source] kube::config::InferConfigError),
    #[error("building the API client: {0}")]
    Client(#[source] kube::Error),
}

/// A client from `kubeconfig` (its current context), or inferred when `None`.
pub async fn client(kubeconfig: Option<&Path>) -> Result<kube::Client, ClientError> {
    let cfg = match kubeconfig {
        Some(p) => {
            let err = |source| ClientError::Kubeconfig {
                path: p.display().to_string(),
                source,
            };
            let kc = kube::config::Kubeconfig::read_from(p).map_err(err)?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(err)?
        }
        None => kube::Config::infer().await.map_err(ClientError::Infer)?,
    };
    kube::Client::try_from(cfg).map_err(ClientError::Client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_kubeconfigs_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing");
        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, "{{{ not yaml").expect("write");
        let no_context = dir.path().join("empty");
        std::fs::write(&no_context, "apiVersion: v1\nkind: Config\n").expect("write");
        for p in [&missing, &garbage, &no_context] {
            let Err(e) = client(Some(p)).await else {
                panic!("{p:?}: a client from a bad kubeconfig");
            };
            assert!(matches!(e, ClientError::Kubeconfig { .. }), "{p:?}: {e}");
            assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        }
    }

    #[tokio::test]
    async fn a_kubeconfig_with_a_server_gives_a_client() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("config");
        std::fs::write(
            &p,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
        )
        .expect("write");
        let c = client(Some(&p)).await.expect("client");
        assert_eq!(c.default_namespace(), "default");
    }
}
