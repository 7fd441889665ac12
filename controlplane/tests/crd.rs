//! The committed CRD (`examples/kubernetes/crd.yaml`) is generated from the Rust types and
//! must not drift; its schema must be one the API server accepts (structural) and carry the
//! validation that refuses obviously bad specs at `kubectl apply`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use weft_controlplane::crd::{CRD_NAME, crd, crd_yaml};

const BIN: &str = env!("CARGO_BIN_EXE_weft-controlplane");

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/kubernetes/crd.yaml")
}

#[test]
fn the_committed_crd_matches_the_rust_types() {
    let path = committed_path();
    let want = crd_yaml();
    if std::env::var_os("WEFT_BLESS").is_some() {
        std::fs::write(&path, &want).expect("write the CRD");
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    if have != want {
        let first = have
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(have.lines().count().min(want.lines().count()));
        panic!(
            "{} is out of date (first difference at line {}): regenerate it with\n  \
             cargo run -p weft-controlplane -- crd > examples/kubernetes/crd.yaml\n\
             committed: {:?}\ngenerated: {:?}",
            path.display(),
            first + 1,
            have.lines().nth(first),
            want.lines().nth(first)
        );
    }
}

#[test]
fn the_binary_prints_the_generated_crd() {
    let output = Command::new(BIN).arg("crd").output().expect("run");
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), crd_yaml());
}

/// Every schema node says its type (or is a free-form object), and no node has both
/// `properties` and `additionalProperties`: the rules of a structural schema.
fn check_structural(node: &Value, at: &str, problems: &mut Vec<String>) {
    let Some(object) = node.as_object() else {
        return;
    };
    let free_form = object.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if !object.contains_key("type") && !free_form {
        problems.push(format!("{at}: no type"));
    }
    if object.contains_key("properties") && object.contains_key("additionalProperties") {
        problems.push(format!("{at}: both properties and additionalProperties"));
    }
    for key in ["oneOf", "anyOf", "allOf", "not"] {
        if object.contains_key(key) {
            problems.push(format!("{at}: {key} (not structural without care)"));
        }
    }
    if let Some(Value::Object(properties)) = object.get("properties") {
        for (name, child) in properties {
            check_structural(child, &format!("{at}.{name}"), problems);
        }
    }
    if let Some(items) = object.get("items") {
        check_structural(items, &format!("{at}[]"), problems);
    }
    if let Some(additional @ Value::Object(_)) = object.get("additionalProperties") {
        check_structural(additional, &format!("{at}{{}}"), problems);
    }
}

#[test]
fn the_schema_is_structural_with_status_printer_columns_and_validation() {
    let crd = serde_json::to_value(crd()).expect("json");
    assert_eq!(crd["metadata"]["name"], CRD_NAME);
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object(), "{version}");

    let schema = &version["schema"]["openAPIV3Schema"];
    let mut problems = Vec::new();
    check_structural(schema, "", &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");

    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        columns,
        [
            "Ready", "Reason", "Selected", "Updated", "Rejected", "Serving", "Age"
        ]
    );

    let spec = &schema["properties"]["spec"]["properties"];
    assert_eq!(spec["sha256"]["pattern"], "^[0-9a-f]{64}$");
    assert_eq!(
        spec["config"]["x-kubernetes-preserve-unknown-fields"],
        Value::Bool(true)
    );
    assert_eq!(
        spec["failurePolicy"]["enum"],
        serde_json::json!(["FailClosed", "FailOpen"])
    );
    assert_eq!(
        spec["phase"]["enum"],
        serde_json::json!(["Authn", "Authz", "Stats", "Unspecified"])
    );
    assert_eq!(
        spec["pullPolicy"]["enum"],
        serde_json::json!(["IfNotPresent", "Always"])
    );
    assert!(
        spec["module"]["properties"]["url"]["pattern"]
            .as_str()
            .is_some_and(|p| p.starts_with("^https://")),
        "{}",
        spec["module"]
    );
    let rules: Vec<&str> = schema["x-kubernetes-validations"]
        .as_array()
        .expect("CEL rules")
        .iter()
        .map(|r| r["rule"].as_str().unwrap_or_default())
        .collect();
    for wanted in [
        "filter(x, x).size() == 1",
        "!has(self.spec.module.file)",
        "has(self.spec.sha256) || has(self.spec.module.oci)",
        "!has(self.spec.pullSecret) || has(self.spec.module.oci)",
    ] {
        assert!(
            rules.iter().any(|r| r.contains(wanted)),
            "no rule with {wanted:?} in {rules:#?}"
        );
    }
}

/// The schema node that `field_path` (`.a.b`, relative to `node`) names, if the schema has it.
fn schema_at<'a>(node: &'a Value, field_path: &str) -> Option<&'a Value> {
    let rest = field_path.strip_prefix('.')?;
    rest.split('.')
        .try_fold(node, |node, name| node["properties"].get(name))
}

/// Every CEL rule, wherever it is in `node`, with the schema node it is declared on.
fn cel_rules<'a>(node: &'a Value, at: &str, rules: &mut Vec<(String, &'a Value, &'a Value)>) {
    for rule in node["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        rules.push((at.to_owned(), node, rule));
    }
    if let Some(Value::Object(properties)) = node.get("properties") {
        for (name, child) in properties {
            cel_rules(child, &format!("{at}.{name}"), rules);
        }
    }
    if let Some(items) = node.get("items") {
        cel_rules(items, &format!("{at}[]"), rules);
    }
}

/// A rule without `fieldPath` fails as `<nil>: Invalid value: "object": ...` in kubectl; with
/// one, the API server names the field (`spec.pullSecret: Forbidden: ...`). It refuses a CRD
/// whose `fieldPath` names no field of the schema, so each must resolve from where its rule
/// is declared.
#[test]
fn every_cel_rule_names_the_field_it_is_about() {
    let crd = serde_json::to_value(crd()).expect("json");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut rules = Vec::new();
    cel_rules(schema, "", &mut rules);
    assert!(rules.len() >= 4, "{rules:#?}");
    let mut paths = Vec::new();
    for (at, node, rule) in rules {
        let Some(field_path) = rule["fieldPath"].as_str() else {
            panic!("the rule at {at:?} has no fieldPath: {rule:#}");
        };
        assert!(
            schema_at(node, field_path).is_some(),
            "the fieldPath {field_path:?} of the rule at {at:?} names no field of the schema"
        );
        if let Some(reason) = rule.get("reason") {
            assert!(
                [
                    "FieldValueInvalid",
                    "FieldValueForbidden",
                    "FieldValueRequired",
                    "FieldValueDuplicate"
                ]
                .contains(&reason.as_str().unwrap_or_default()),
                "{rule:#}"
            );
        }
        // The API server puts the field before the message; the message need not repeat it.
        let message = rule["message"].as_str().expect("a message");
        let field = format!("{at}{field_path}");
        let field = field.trim_start_matches('.');
        assert!(!message.contains(field), "{message:?} repeats {field}");
        paths.push(field.to_owned());
    }
    for wanted in [
        "spec.module",
        "spec.module.file",
        "spec.sha256",
        "spec.pullSecret",
    ] {
        assert!(
            paths.iter().any(|p| p == wanted),
            "{wanted} not in {paths:?}"
        );
    }
}
