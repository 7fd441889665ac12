//! Registry credentials from image pull secrets: `.dockerconfigjson` and legacy `.dockercfg`
//! Secrets, with their keys matched to a registry the way Docker writes them.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use oci_client::secrets::RegistryAuth;

use super::Fetcher;
use super::error::{kube_message, list};
use super::oci::normalize_registry;

impl Fetcher {
    /// Credentials for `registry` from the dockerconfigjson Secret `namespace/name`.
    pub(super) async fn registry_auth(
        &self,
        namespace: &str,
        name: &str,
        registry: &str,
    ) -> Result<RegistryAuth, String> {
        let what = format!("pull secret {namespace}/{name}");
        let Some(kube) = &self.inner.kube else {
            return Err(format!(
                "reading the {what} needs a Kubernetes client, and this control plane has none"
            ));
        };
        let secrets = kube::Api::<Secret>::namespaced(kube.clone(), namespace);
        let secret = secrets
            .get_opt(name)
            .await
            .map_err(|e| {
                kube_message(&format!("cannot read the {what}"), "secrets", namespace, &e)
            })?
            .ok_or_else(|| format!("the {what} does not exist"))?;
        let data = secret.data.unwrap_or_default();
        let (key, json) = [".dockerconfigjson", ".dockercfg"]
            .into_iter()
            .find_map(|key| data.get(key).map(|value| (key, &value.0)))
            .ok_or_else(|| {
                format!(
                    "the {what} (type {}) has neither a .dockerconfigjson nor a .dockercfg key; \
                     keys present: {}",
                    secret.type_.as_deref().unwrap_or("unset"),
                    list(data.keys())
                )
            })?;
        let credentials = parse_docker_config(json, key == ".dockercfg")
            .map_err(|e| format!("the {what}, key {key}: {e}"))?;
        match find_credentials(&credentials, registry) {
            Some(Ok((user, password))) => Ok(RegistryAuth::Basic(user, password)),
            Some(Err(e)) => Err(format!("the {what}, entry for {registry}: {e}")),
            None => Err(format!(
                "the {what} has no credentials for registry {registry}; it has entries for: {}",
                list(credentials.keys())
            )),
        }
    }
}

/// The registry names Docker Hub goes by in config files.
const DOCKER_HUB: &[&str] = &["docker.io", "index.docker.io", "registry-1.docker.io"];

/// Whether the config-file key `key` (`host`, `host:port`, `https://host/v1/`, ...) names
/// `registry` (`host` or `host:port`, as in a reference).
fn registry_matches(key: &str, registry: &str) -> bool {
    let key = normalize_registry(key);
    let registry = registry.to_ascii_lowercase();
    if key == registry {
        return true;
    }
    if DOCKER_HUB.contains(&key.as_str()) && DOCKER_HUB.contains(&registry.as_str()) {
        return true;
    }
    // `host` covers `host:443`, the port https implies.
    registry.strip_suffix(":443") == Some(key.as_str())
}

/// One `auths` entry of a Docker config file.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Deserialize)]
struct DockerAuth {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    /// base64 of `user:password`.
    #[serde(default)]
    auth: Option<String>,
}

/// The entries of a `.dockerconfigjson` (`{"auths": {...}}`) or, with `legacy`, a `.dockercfg`
/// (the map itself), by registry key.
fn parse_docker_config(json: &[u8], legacy: bool) -> Result<BTreeMap<String, DockerAuth>, String> {
    #[derive(serde::Deserialize)]
    struct ConfigJson {
        #[serde(default)]
        auths: BTreeMap<String, DockerAuth>,
    }
    if legacy {
        serde_json::from_slice(json).map_err(|e| format!("not a Docker config: {e}"))
    } else {
        serde_json::from_slice::<ConfigJson>(json)
            .map(|config| config.auths)
            .map_err(|e| format!("not a Docker config: {e}"))
    }
}

/// The user name and password for `registry` among `entries`, preferring an exact key.
fn find_credentials(
    entries: &BTreeMap<String, DockerAuth>,
    registry: &str,
) -> Option<Result<(String, String), String>> {
    let exact = entries.get(registry);
    let entry = exact.or_else(|| {
        entries
            .iter()
            .find(|(key, _)| registry_matches(key, registry))
            .map(|(_, entry)| entry)
    })?;
    Some(credentials(entry))
}

fn credentials(entry: &DockerAuth) -> Result<(String, String), String> {
    if let (Some(user), Some(password)) = (&entry.username, &entry.password)
        && !user.is_empty()
    {
        return Ok((user.clone(), password.clone()));
    }
    let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) else {
        return Err("neither username and password nor auth is set".to_owned());
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|e| format!("auth is not base64: {e}"))?;
    let decoded = String::from_utf8(decoded).map_err(|_| "auth is not UTF-8 text".to_owned())?;
    match decoded.split_once(':') {
        Some((user, password)) if !user.is_empty() => Ok((user.to_owned(), password.to_owned())),
        _ => Err("auth does not decode to user:password".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn entry(user: &str, password: &str) -> DockerAuth {
        DockerAuth {
            username: Some(user.to_owned()),
            password: Some(password.to_owned()),
            auth: None,
        }
    }

    #[test]
    fn dockerconfigjson_username_and_password() {
        let json = br#"{"auths":{"registry.example.com":{"username":"u","password":"p"}}}"#;
        let entries = parse_docker_config(json, false).unwrap();
        assert_eq!(
            find_credentials(&entries, "registry.example.com"),
            Some(Ok(("u".to_owned(), "p".to_owned())))
        );
    }

    #[test]
    fn dockerconfigjson_auth_field_is_decoded() {
        // base64("robot$ci:pa:ss") — the password may itself hold colons.
        let auth = base64::engine::general_purpose::STANDARD.encode("robot$ci:pa:ss");
        let json = format!(r#"{{"auths":{{"https://127.0.0.1:5000/v2/":{{"auth":"{auth}"}}}}}}"#);
        let entries = parse_docker_config(json.as_bytes(), false).unwrap();
        assert_eq!(
            find_credentials(&entries, "127.0.0.1:5000"),
            Some(Ok(("robot$ci".to_owned(), "pa:ss".to_owned())))
        );
    }

    #[test]
    fn dockercfg_is_the_map_itself() {
        let json = br#"{"quay.io":{"username":"u","password":"p","email":"x@y"}}"#;
        let entries = parse_docker_config(json, true).unwrap();
        assert_eq!(
            find_credentials(&entries, "quay.io"),
            Some(Ok(("u".to_owned(), "p".to_owned())))
        );
    }

    #[test]
    fn dockerconfigjson_errors() {
        assert!(parse_docker_config(b"not json", false).is_err());
        let entries = parse_docker_config(br#"{"auths":{"r.io":{}}}"#, false).unwrap();
        assert_eq!(
            find_credentials(&entries, "r.io"),
            Some(Err(
                "neither username and password nor auth is set".to_owned()
            ))
        );
        let entries = parse_docker_config(br#"{"auths":{"r.io":{"auth":"%%%"}}}"#, false).unwrap();
        assert!(matches!(find_credentials(&entries, "r.io"), Some(Err(e)) if e.contains("base64")));
        let no_colon = base64::engine::general_purpose::STANDARD.encode("nocolon");
        let json = format!(r#"{{"auths":{{"r.io":{{"auth":"{no_colon}"}}}}}}"#);
        let entries = parse_docker_config(json.as_bytes(), false).unwrap();
        assert!(
            matches!(find_credentials(&entries, "r.io"), Some(Err(e)) if e.contains("user:password"))
        );
        assert_eq!(find_credentials(&entries, "other.io"), None);
    }

    #[test]
    fn registry_keys_match_as_docker_writes_them() {
        assert!(registry_matches(
            "registry.example.com",
            "registry.example.com"
        ));
        assert!(registry_matches(
            "https://registry.example.com",
            "registry.example.com"
        ));
        assert!(registry_matches(
            "https://registry.example.com/v2/",
            "registry.example.com"
        ));
        assert!(registry_matches(
            "Registry.Example.com",
            "registry.example.com"
        ));
        assert!(registry_matches("127.0.0.1:5000", "127.0.0.1:5000"));
        assert!(registry_matches("http://127.0.0.1:5000", "127.0.0.1:5000"));
        assert!(registry_matches(
            "registry.example.com",
            "registry.example.com:443"
        ));
        assert!(registry_matches("https://index.docker.io/v1/", "docker.io"));
        // A port names another registry on the same host.
        assert!(!registry_matches("127.0.0.1", "127.0.0.1:5000"));
        assert!(!registry_matches("127.0.0.1:5001", "127.0.0.1:5000"));
        assert!(!registry_matches("example.com", "registry.example.com"));
    }

    #[test]
    fn exact_key_wins_over_a_looser_match() {
        let mut entries = BTreeMap::new();
        entries.insert("https://r.io".to_owned(), entry("loose", "1"));
        entries.insert("r.io".to_owned(), entry("exact", "2"));
        assert_eq!(
            find_credentials(&entries, "r.io"),
            Some(Ok(("exact".to_owned(), "2".to_owned())))
        );
    }
}
