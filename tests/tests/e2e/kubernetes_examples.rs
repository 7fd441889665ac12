//! The manifests in `examples/kubernetes/`, checked without a cluster: every YAML document
//! parses as its kind, every `WasmFilter` is one the control plane accepts, the sidecar's
//! config file is one the proxy accepts, and the pieces agree with each other (Service names
//! and ports, labels and selectors, routes and upstreams, RBAC verbs the controller needs).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize as _;
use serde_json::Value;
use weft_controlplane::crd::WasmFilterResource;
use weft_proxy::config::Config;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/kubernetes");

/// Every `.yaml` file under `examples/kubernetes/`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("examples/kubernetes exists") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Every document of every file, with the file it came from.
fn documents() -> Vec<(PathBuf, Value)> {
    let mut all = Vec::new();
    for path in yaml_files(Path::new(DIR)) {
        let text = std::fs::read_to_string(&path).expect("readable");
        for (i, document) in serde_norway::Deserializer::from_str(&text).enumerate() {
            let value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{} document {i}: {e}", path.display()));
            if !value.is_null() {
                all.push((path.clone(), value));
            }
        }
    }
    assert!(!all.is_empty(), "no manifests in {DIR}");
    all
}

/// The one document of `kind` named `name`.
fn find(kind: &str, name: &str) -> Value {
    let matches: Vec<Value> = documents()
        .into_iter()
        .map(|(_, d)| d)
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(matches.len(), 1, "expected one {kind} {name}");
    matches.into_iter().next().unwrap_or_default()
}

fn filters() -> Vec<WasmFilterResource> {
    documents()
        .into_iter()
        .filter(|(_, d)| d["kind"] == "WasmFilter")
        .map(|(path, d)| {
            serde_json::from_value(d)
                .unwrap_or_else(|e| panic!("{}: not a WasmFilter: {e}", path.display()))
        })
        .collect()
}

fn container<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn every_document_parses_as_its_kind() {
    for (path, document) in documents() {
        let file = path.display();
        assert!(document["apiVersion"].is_string(), "{file}: apiVersion");
        assert!(
            document["metadata"]["name"].is_string(),
            "{file}: metadata.name"
        );
        let kind = document["kind"].as_str().unwrap_or_default().to_owned();
        let parsed = match kind.as_str() {
            "WasmFilter" => serde_json::from_value::<WasmFilterResource>(document).map(drop),
            "Namespace" => serde_json::from_value::<Namespace>(document).map(drop),
            "ServiceAccount" => serde_json::from_value::<ServiceAccount>(document).map(drop),
            "ClusterRole" => serde_json::from_value::<ClusterRole>(document).map(drop),
            "ClusterRoleBinding" => {
                serde_json::from_value::<ClusterRoleBinding>(document).map(drop)
            }
            "Deployment" => serde_json::from_value::<Deployment>(document).map(drop),
            "Service" => serde_json::from_value::<Service>(document).map(drop),
            "ConfigMap" => serde_json::from_value::<ConfigMap>(document).map(drop),
            "CustomResourceDefinition" => {
                serde_json::from_value::<CustomResourceDefinition>(document).map(drop)
            }
            other => panic!("{file}: a {other:?}; add it to this test"),
        };
        parsed.unwrap_or_else(|e| panic!("{file}: not a valid {kind}: {e}"));
    }
}

#[test]
fn one_filter_per_first_party_filter_and_each_resolves() {
    let filters = filters();
    let names: BTreeSet<String> = filters
        .iter()
        .filter_map(|f| f.metadata.name.clone())
        .collect();
    let first_party: BTreeSet<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../filters"))
            .expect("filters/")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("Cargo.toml").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
    assert_eq!(names, first_party);
    for filter in &filters {
        let name = filter.metadata.name.as_deref().unwrap_or_default();
        filter
            .spec
            .resolve()
            .unwrap_or_else(|e| panic!("{name}: the control plane refuses it: {e}"));
        assert_eq!(
            filter.spec.module.kinds(),
            ["oci"],
            "{name}: a cluster module"
        );
        let oci = filter.spec.module.oci.as_deref().unwrap_or_default();
        assert!(oci.contains(&format!("/weft/{name}:")), "{name}: {oci}");
    }
}

/// Set in the child process that checks the sidecar's config with the pod's environment.
const CHILD: &str = "WEFT_EXAMPLES_SIDECAR_CHILD";
const POD_NAME: &str = "demo-7f9c8d-x2x4q";

#[test]
fn the_sidecar_config_is_one_the_proxy_accepts() {
    // The proxy reads its name and namespace from POD_NAME and POD_NAMESPACE when the file
    // does not give them, as this one does not. A test may not set environment variables
    // (other tests run on other threads), so this check runs again in a child process of
    // this test binary with the variables the downward API sets in the pod.
    if weft_tests::ran_alone_in_child(
        "kubernetes_examples::the_sidecar_config_is_one_the_proxy_accepts",
        &[
            (CHILD, "1"),
            ("POD_NAME", POD_NAME),
            ("POD_NAMESPACE", "default"),
        ],
    ) {
        return;
    }

    let config_map = find("ConfigMap", "demo-weft");
    let text = config_map["data"]["weft.yaml"]
        .as_str()
        .expect("data.weft.yaml");
    let config = Config::from_yaml(text, Path::new("examples/kubernetes/app.yaml#weft.yaml"))
        .unwrap_or_else(|e| panic!("the proxy refuses the sidecar's config: {e}"));
    let control_plane = config
        .control_plane
        .clone()
        .expect("a control_plane section");
    assert_eq!(
        (
            control_plane.name.as_str(),
            control_plane.namespace.as_str()
        ),
        (POD_NAME, "default")
    );

    // It reaches the control plane's Service on its gRPC port.
    let service = find("Service", "weft-controlplane");
    let grpc = service["spec"]["ports"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "grpc"))
        .expect("a grpc port");
    assert_eq!(
        control_plane.address,
        format!(
            "http://{}.{}.svc:{}",
            service["metadata"]["name"].as_str().unwrap_or_default(),
            service["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default(),
            grpc["port"]
        )
    );

    // The pod gives the proxy its identity, its config file, and writable state and cache.
    let app = find("Deployment", "demo");
    let pod = &app["spec"]["template"];
    let proxy = container(&app, "weft");
    let env = |name: &str| {
        proxy["env"]
            .as_array()
            .and_then(|e| e.iter().find(|v| v["name"] == name))
            .map(|v| v["valueFrom"]["fieldRef"]["fieldPath"].clone())
            .unwrap_or_default()
    };
    assert_eq!(env("POD_NAME"), "metadata.name");
    assert_eq!(env("POD_NAMESPACE"), "metadata.namespace");
    let args = strings(&proxy["args"]);
    let config_path = args
        .iter()
        .position(|a| *a == "--config")
        .map(|i| Path::new(args[i + 1]))
        .expect("--config FILE");
    let mounts = proxy["volumeMounts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mounted = |path: &Path| {
        mounts
            .iter()
            .any(|m| path.starts_with(m["mountPath"].as_str().unwrap_or("//")))
    };
    assert!(mounted(config_path), "the config file is mounted");
    assert!(mounted(&control_plane.state_dir), "state_dir is a volume");
    assert!(
        mounted(config.cache_dir.as_deref().expect("cache_dir")),
        "cache_dir is a volume"
    );

    // The filters select this proxy, and name routes and upstreams it has.
    let labels = &pod["metadata"]["labels"];
    for (key, value) in &control_plane.labels {
        assert_eq!(
            labels[key.as_str()],
            value.as_str(),
            "the pod carries label {key}"
        );
    }
    let routes: Vec<&str> = config
        .listeners
        .iter()
        .flat_map(|l| l.routes.iter().map(|r| r.name.as_str()))
        .collect();
    for filter in filters() {
        let name = filter.metadata.name.clone().unwrap_or_default();
        assert_eq!(
            filter.metadata.namespace.as_deref(),
            Some("default"),
            "{name}"
        );
        for (key, value) in &filter.spec.selector.match_labels {
            assert_eq!(
                control_plane.labels.get(key),
                Some(value),
                "{name} selects {key}"
            );
        }
        for route in filter.spec.match_.iter().flat_map(|m| &m.routes) {
            assert!(routes.contains(&route.as_str()), "{name}: no route {route}");
        }
        // ext-authz calls its `upstream`; header-router's rules send to theirs.
        if let Some(upstream) = filter
            .spec
            .config
            .as_ref()
            .and_then(|c| c["upstream"].as_str())
        {
            assert!(
                config.upstream(upstream).is_some(),
                "{name}: no upstream {upstream}"
            );
        }
        for rule in filter
            .spec
            .config
            .iter()
            .flat_map(|c| c["rules"].as_array().into_iter().flatten())
        {
            let upstream = rule["upstream"].as_str().unwrap_or_default();
            assert!(
                config.upstream(upstream).is_some(),
                "{name}: no upstream {upstream}"
            );
        }
    }

    // The Service sends traffic to the proxy's listener, not around it.
    let demo = find("Service", "demo");
    let target = demo["spec"]["ports"][0]["targetPort"]
        .as_str()
        .unwrap_or_default();
    let port = proxy["ports"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == target))
        .expect("the Service's targetPort is a port of the proxy");
    let listen = config.listeners[0].address;
    assert_eq!(port["containerPort"], listen.port());
}

/// Whether `role` allows `verb` on `resource` (`plural` or `plural/subresource`) of `group`.
fn allows(role: &Value, group: &str, resource: &str, verb: &str) -> bool {
    role["rules"].as_array().into_iter().flatten().any(|rule| {
        let any = |field: &str, want: &str| {
            strings(&rule[field])
                .iter()
                .any(|v| *v == want || *v == "*")
        };
        any("apiGroups", group) && any("resources", resource) && any("verbs", verb)
    })
}

#[test]
fn rbac_covers_what_the_controller_does() {
    let role = find("ClusterRole", "weft-controlplane");
    for (group, resource, verb) in [
        ("weft.dev", "wasmfilters", "list"),
        ("weft.dev", "wasmfilters", "watch"),
        ("weft.dev", "wasmfilters", "get"),
        ("weft.dev", "wasmfilters/status", "patch"),
        ("", "configmaps", "get"),
        ("", "configmaps", "list"),
        ("", "configmaps", "watch"),
        ("", "secrets", "get"),
        ("authentication.k8s.io", "tokenreviews", "create"),
    ] {
        assert!(
            allows(&role, group, resource, verb),
            "{verb} {resource}.{group}"
        );
    }
    assert!(
        !allows(&role, "", "secrets", "list"),
        "secrets are read by name only"
    );
    assert!(
        !allows(&role, "weft.dev", "wasmfilters", "update"),
        "the spec is the user's"
    );

    let binding = find("ClusterRoleBinding", "weft-controlplane");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], "weft-controlplane");
    let subject = &binding["subjects"][0];
    assert_eq!(subject["kind"], "ServiceAccount");
    let account = find(
        "ServiceAccount",
        subject["name"].as_str().unwrap_or_default(),
    );
    assert_eq!(account["metadata"]["namespace"], subject["namespace"]);
    find(
        "Namespace",
        subject["namespace"].as_str().unwrap_or_default(),
    );

    let deployment = find("Deployment", "weft-controlplane");
    assert_eq!(deployment["metadata"]["namespace"], subject["namespace"]);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        subject["name"]
    );
}

#[test]
fn the_control_plane_deployment() {
    let deployment = find("Deployment", "weft-controlplane");
    assert_eq!(deployment["spec"]["replicas"], 1);
    let container = container(&deployment, "controlplane");
    let args = strings(&container["args"]);
    let arg = |flag: &str| {
        args.iter()
            .position(|a| *a == flag)
            .map(|i| args[i + 1])
            .unwrap_or_else(|| panic!("no {flag}"))
    };
    assert_eq!(arg("--source"), "kubernetes");
    assert_eq!(arg("--listen"), "0.0.0.0:18000");
    assert_eq!(arg("--admin"), "0.0.0.0:18001");
    let port = |name: &str| {
        container["ports"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == name))
            .map(|p| p["containerPort"].clone())
            .unwrap_or_default()
    };
    assert_eq!(port("grpc"), 18000);
    assert_eq!(port("admin"), 18001);
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], "admin", "{probe}");
    }
    assert!(container["resources"]["requests"].is_object());
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
        true
    );

    let service = find("Service", "weft-controlplane");
    let ports: Vec<(Value, Value)> = service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| (p["port"].clone(), p["targetPort"].clone()))
        .collect();
    assert_eq!(
        ports,
        [
            (Value::from(18000), Value::from("grpc")),
            (Value::from(18001), Value::from("admin"))
        ]
    );
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["template"]["metadata"]["labels"]
    );
}

/// The documents in a stream, split the way kubectl splits `kubectl apply -f` input
/// (k8s.io/apimachinery's YAMLReader): at lines starting with `---` (followed by nothing or a
/// comment), each chunk parsed on its own; chunks of only comments and blanks are skipped.
/// Two manifests concatenated without a `---` between them are one chunk, in which the
/// later keys win: one object where two were meant.
fn kubectl_documents(stream: &str, what: &str) -> Vec<Value> {
    let mut chunks = vec![String::new()];
    for line in stream.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix("---") {
            let rest = rest.trim();
            assert!(
                rest.is_empty() || rest.starts_with('#'),
                "{what}: kubectl refuses {line:?}"
            );
            chunks.push(String::new());
        } else if let Some(chunk) = chunks.last_mut() {
            chunk.push_str(line);
        }
    }
    chunks
        .iter()
        .map(|chunk| {
            serde_norway::from_str::<Value>(chunk)
                .unwrap_or_else(|e| panic!("{what}: kubectl cannot parse {chunk:?}: {e}"))
        })
        .filter(|document| !document.is_null())
        .collect()
}

/// The documents of one file, as a YAML parser reads them (every document, separators or not).
fn file_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("readable");
    serde_norway::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).expect("YAML"))
        .filter(|document| !document.is_null())
        .collect()
}

/// `Kind namespace/name` of each document.
fn identities(documents: &[Value]) -> Vec<String> {
    documents
        .iter()
        .map(|d| {
            format!(
                "{} {}/{}",
                d["kind"].as_str().unwrap_or("?"),
                d["metadata"]["namespace"].as_str().unwrap_or(""),
                d["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// The README's shell blocks (```sh or ```bash) that run `kubectl apply`.
fn readme_apply_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(DIR).join("README.md")).expect("README.md");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match &mut current {
            None if line == "```sh" || line == "```bash" => current = Some(String::new()),
            None => {}
            Some(block) if line == "```" => {
                if block.contains("kubectl apply") {
                    blocks.push(std::mem::take(block));
                }
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    blocks
}

/// Stands in for kubectl: `kubectl apply -f FILE|-` saves what kubectl would read in
/// `$WEFT_APPLIED/N.yaml` (N counting from 0) and the argument in `N.arg`; every other
/// command (`rollout status`, ...) does nothing.
const KUBECTL: &str = r#"#!/bin/sh
set -e
[ "$1" = apply ] || exit 0
if [ "$#" -ne 3 ] || [ "$2" != -f ]; then
  echo "the test's kubectl knows only 'apply -f FILE' and 'apply -f -', not: $*" >&2
  exit 2
fi
n=0
while [ -e "$WEFT_APPLIED/$n.yaml" ]; do n=$((n + 1)); done
printf '%s' "$3" > "$WEFT_APPLIED/$n.arg"
if [ "$3" = - ]; then cat > "$WEFT_APPLIED/$n.yaml"; else cat -- "$3" > "$WEFT_APPLIED/$n.yaml"; fi
"#;

/// The README's `kubectl apply` commands, run as written from the repository root with a
/// stand-in kubectl ([`KUBECTL`]): what each sends, split as kubectl splits it, is the
/// documents it should be. In particular the filters, edited and concatenated into one stream,
/// arrive as five WasmFilters, not one. Every manifest is applied by some command.
#[test]
fn the_readme_applies_every_manifest_as_its_documents() {
    use std::os::unix::fs::PermissionsExt as _;

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let scratch = tempfile::tempdir().expect("tempdir");
    let bin = scratch.path().join("bin");
    let applied = scratch.path().join("applied");
    std::fs::create_dir_all(&bin).expect("bin");
    std::fs::create_dir_all(&applied).expect("applied");
    let kubectl = bin.join("kubectl");
    std::fs::write(&kubectl, KUBECTL).expect("kubectl");
    std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let blocks = readme_apply_blocks();
    assert!(!blocks.is_empty(), "no `kubectl apply` in the README");
    for block in &blocks {
        let output = Command::new("bash")
            .args(["-e", "-u", "-o", "pipefail", "-c", block])
            .current_dir(&root)
            .env("PATH", &path)
            .env("WEFT_APPLIED", &applied)
            .output()
            .expect("run bash");
        assert!(
            output.status.success(),
            "the README's\n{block}\nfails: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // What each `kubectl apply` sent, in order.
    let mut sent = Vec::new();
    for n in 0.. {
        let yaml = applied.join(format!("{n}.yaml"));
        if !yaml.exists() {
            break;
        }
        let arg = std::fs::read_to_string(applied.join(format!("{n}.arg"))).expect("arg");
        let stream = std::fs::read_to_string(&yaml).expect("stream");
        let documents = kubectl_documents(&stream, &format!("kubectl apply -f {arg}"));
        sent.push((arg, documents));
    }

    let mut covered = BTreeSet::new();
    let filters_dir = Path::new(DIR).join("filters");
    for (arg, documents) in &sent {
        if arg == "-" {
            // The filters, with the registry the cluster sees.
            let mut wanted = Vec::new();
            for path in yaml_files(&filters_dir) {
                wanted.extend(file_documents(&path));
                covered.insert(path);
            }
            assert_eq!(
                identities(documents),
                identities(&wanted),
                "kubectl apply -f -"
            );
            assert_eq!(
                documents.len(),
                5,
                "five filters: {:?}",
                identities(documents)
            );
            for (document, want) in documents.iter().zip(&wanted) {
                let oci = document["spec"]["module"]["oci"]
                    .as_str()
                    .unwrap_or_default();
                let name = document["metadata"]["name"].as_str().unwrap_or_default();
                assert_eq!(
                    oci,
                    want["spec"]["module"]["oci"]
                        .as_str()
                        .unwrap_or_default()
                        .replace("registry.example.com", "kind-registry:5000"),
                    "{name}"
                );
                assert!(
                    oci.starts_with("oci://kind-registry:5000/weft/"),
                    "{name}: {oci}"
                );
                let mut edited = document.clone();
                edited["spec"]["module"]["oci"] = want["spec"]["module"]["oci"].clone();
                assert_eq!(&edited, want, "{name}: only the registry changes");
            }
        } else {
            // A file, applied as is: kubectl reads the documents a YAML parser does.
            let path = root.join(arg);
            let wanted = file_documents(&path);
            assert!(!wanted.is_empty(), "{arg}: no documents");
            assert_eq!(documents, &wanted, "kubectl apply -f {arg}");
            covered.insert(Path::new(DIR).join(arg.trim_start_matches("examples/kubernetes/")));
        }
    }
    let kinds = |arg: &str| -> Vec<String> {
        sent.iter()
            .filter(|(a, _)| a == arg)
            .flat_map(|(_, d)| {
                d.iter()
                    .map(|d| d["kind"].as_str().unwrap_or("?").to_owned())
            })
            .collect()
    };
    assert_eq!(
        kinds("examples/kubernetes/crd.yaml"),
        ["CustomResourceDefinition"]
    );
    assert_eq!(
        kinds("examples/kubernetes/rbac.yaml"),
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding"
        ]
    );
    assert_eq!(
        kinds("examples/kubernetes/controlplane.yaml"),
        ["Deployment", "Service"]
    );
    assert_eq!(
        kinds("examples/kubernetes/app.yaml"),
        ["ConfigMap", "Deployment", "Service"]
    );
    assert_eq!(kinds("-"), ["WasmFilter"; 5]);
    let all: BTreeSet<PathBuf> = yaml_files(Path::new(DIR)).into_iter().collect();
    let missing: Vec<_> = all.difference(&covered).collect();
    assert!(missing.is_empty(), "the README applies none of {missing:?}");
}

/// Every manifest starts a document of its own, so any of them concatenated in any order (as
/// `cat *.yaml | kubectl apply -f -` or a loop without separators would) are still the
/// documents they are one by one.
#[test]
fn every_manifest_is_safe_to_concatenate() {
    let files = yaml_files(Path::new(DIR));
    let mut stream = String::new();
    let mut wanted = Vec::new();
    for path in files.iter().rev() {
        let text = std::fs::read_to_string(path).expect("readable");
        assert!(
            text.starts_with("---\n"),
            "{}: start it with `---` so it can follow another manifest",
            path.display()
        );
        assert!(
            text.ends_with('\n'),
            "{}: end it with a newline",
            path.display()
        );
        let documents = kubectl_documents(&text, &path.display().to_string());
        assert_eq!(documents, file_documents(path), "{}", path.display());
        wanted.extend(documents);
        stream.push_str(&text);
    }
    assert_eq!(kubectl_documents(&stream, "all manifests"), wanted);
}
