//! Schema evolution end to end: a 1.1 host runs plugins built against
//! `syncline:plugin@1.0.0` (the `legacy-tagger` and `legacy-validator`
//! fixtures, built from the frozen `wit/1.0/`) and loses none of the 1.1
//! fields on the way through them; messages declared 1.0 are upgraded on ingest; another major is
//! refused, and `syncline check` names the plugins to rebuild.

use serde_json::{json, Value};

use crate::harness::*;
use crate::support::{plugin, runtime, syncline};

const CONFIG: &str = crate::site_config!(
    r#"
[exception-queue.master-data]
owner = "Master data team"

[[pipeline]]
id = "items"
tenant = "acme"
stages = [{ transform = "legacy-tagger" }]
routes = [{ to = "erp" }]

[[pipeline]]
id = "checked"
tenant = "acme"
stages = [{ validate = "legacy-validator", on-violation = "exception:master-data" }]
routes = [{ to = "erp" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/items" }
allowed-hosts = ["{ERP}"]
"#
);

fn item(version: &str, body_extra: Value) -> Vec<u8> {
    let mut body = json!({"id": "SKU-1", "description": "Cola 0.33", "base-uom": "EA", "pack-size": 24, "product-family": "beverages", "lifecycle": "active"});
    body.as_object_mut().unwrap().extend(body_extra.as_object().unwrap().clone());
    json!({"schema-version": version, "kind": "item", "body": body}).to_string().into_bytes()
}

/// A site running [`CONFIG`] with the 1.0 fixtures.
fn legacy_site(erp: &Erp) -> Site {
    let site = Site::new(CONFIG, erp);
    site.share_plugin("legacy-tagger", "legacy-tagger");
    site.share_plugin("legacy-validator", "legacy-validator");
    site
}

fn header<'a>(msg: &'a Value, key: &str) -> &'a str {
    msg["headers"][key].as_str().unwrap_or_else(|| panic!("no header {key} in {msg}"))
}

/// The one output of the message `answer` accepted, once delivered.
fn output(host: &Host, answer: (u16, Value)) -> Value {
    assert_eq!(answer.0, 202, "{answer:?}");
    let t = host.settled(answer.1["id"].as_str().unwrap());
    assert_eq!(t["outputs"][0]["state"], "delivered", "{t}");
    t["outputs"][0]["message"].clone()
}

#[test]
fn a_plugin_built_against_1_0_keeps_working_under_1_1_and_loses_no_new_field() {
    let erp = Erp::start(&[]);
    let site = legacy_site(&erp);
    let host = Host::start(&site);
    let post = |body: Vec<u8>| host.ingest("acme", "items", "messages", "application/json", &[], &body);

    // A 1.1 item: the 1.0 plugin sees its `gtin` as the extension and a
    // 1.0 label; what it returns gets the field back, and nothing twice.
    let out = output(&host, post(item("1.1.0", json!({"gtin": "04012345678901", "extensions": {"buyer": "B7"}}))));
    assert_eq!(header(&out, "seen-schema-version"), "1.0.0");
    assert_eq!(header(&out, "seen-gtin"), "04012345678901");
    assert_eq!(out["schema-version"], "1.1.0");
    assert_eq!(out["body"]["gtin"], "04012345678901");
    assert_eq!(out["body"]["description"], "Cola 0.33 (tagged by a 1.0 plugin)");
    assert_eq!(out["body"]["extensions"], json!({"buyer": "B7"}), "{out}");

    // A 1.1 item without one: nothing is made up.
    let out = output(&host, post(item("1.1.0", json!({}))));
    assert_eq!(header(&out, "seen-gtin"), "none");
    assert!(out["body"].get("gtin").is_none(), "{out}");

    // A 1.0 mapping's way of saying it (an extension) becomes the field:
    // here the plugin itself writes the `gtin` extension from an `ean`.
    let out = output(&host, post(item("1.0.0", json!({"extensions": {"ean": "4000000000017"}}))));
    assert_eq!(out["body"]["gtin"], "4000000000017");
    assert!(out["body"].get("extensions").is_none(), "{out}");

    // A 1.1 inventory position's safety stock travels as the extension and back.
    let position = json!({"schema-version": "1.1.0", "kind": "inventory-position", "body": {
        "item": "SKU-1", "location": "DC-1", "on-hand": 40, "allocated": 5, "in-transit": 0, "available": 35,
        "uom": "EA", "as-of": "2026-11-30T08:00:00Z", "safety-stock": 12.5}});
    let out = output(&host, post(position.to_string().into_bytes()));
    assert_eq!(header(&out, "seen-safety-stock"), "12.5");
    assert_eq!(out["body"]["safety-stock"], 12.5);
    assert!(out["body"].get("extensions").is_none(), "{out}");

    // Whatever label a plugin writes, its output is stored and delivered
    // as the version of the bindings it came through.
    for label in ["1.0.0", "banana", "2.0.0"] {
        let mut msg: Value = serde_json::from_slice(&item("1.1.0", json!({"gtin": "1"}))).unwrap();
        msg["headers"] = json!({"relabel": label});
        let out = output(&host, post(msg.to_string().into_bytes()));
        assert_eq!((out["schema-version"].as_str(), out["body"]["gtin"].as_str()), (Some("1.1.0"), Some("1")), "{label}: {out}");
    }

    // The ERP got the 1.1 form from the current sink.
    let docs = erp.documents();
    assert_eq!(docs.len(), 7, "{docs:?}");
    assert!(docs[0]["body"].to_string().contains(r#""gtin":"04012345678901""#), "{:?}", docs[0]);

    // A plugin of another major dropped over the live one is rejected on
    // reload, saying why; the 1.0 version keeps serving.
    let live = site.dir.path().join("plugins/shared/legacy-tagger.wasm");
    replace_file(&live, &std::fs::read(plugin("future-major")).unwrap());
    let record = host.effective_reload(1);
    assert_eq!(record["outcome"], "rejected", "{record}");
    assert!(record["error"].as_str().unwrap().contains("was built for syncline:plugin@2.0.0"), "{record}");
    let out = output(&host, post(item("1.1.0", json!({"gtin": "2"}))));
    assert_eq!((header(&out, "seen-gtin"), out["body"]["gtin"].as_str()), ("2", Some("2")));

    // One that names this version and the right export, with the wrong
    // types, is refused on reload too — not at every call after it.
    replace_file(&live, &std::fs::read(plugin("mistyped")).unwrap());
    let record = host.effective_reload(2);
    assert_eq!(record["outcome"], "rejected", "{record}");
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("plugin legacy-tagger (") && error.contains("does not match the transformer world") && error.contains("type mismatch"), "{record}");
    let out = output(&host, post(item("1.1.0", json!({"gtin": "3"}))));
    assert_eq!((header(&out, "seen-gtin"), out["body"]["gtin"].as_str()), ("3", Some("3")));
}

#[test]
fn a_validator_built_against_1_0_checks_a_1_1_field_it_sees_as_an_extension() {
    let erp = Erp::start(&[]);
    let site = legacy_site(&erp);
    let host = Host::start(&site);
    let post = |body: Vec<u8>| host.ingest("acme", "checked", "messages", "application/json", &[], &body);

    // A good GTIN passes and is delivered with its field.
    let out = output(&host, post(item("1.1.0", json!({"gtin": "04012345678901"}))));
    assert_eq!(out["body"]["gtin"], "04012345678901");

    // A bad one is reported by the 1.0 validator, its severity and text
    // carried through the 1.0 result types, and parked for master data.
    let (status, answer) = post(item("1.1.0", json!({"gtin": "12"})));
    assert_eq!(status, 202, "{answer}");
    let t = host.settled(answer["id"].as_str().unwrap());
    assert_eq!(t["input"]["state"], "exception", "{t}");
    let exception = t["exceptions"][0].to_string();
    for part in ["bad-gtin", "body.extensions.gtin", "`12` is not a GTIN", "error", "master-data"] {
        assert!(exception.contains(part), "{part} in {exception}");
    }
    assert!(t["outputs"].as_array().is_none_or(Vec::is_empty), "{t}");
}

#[test]
fn messages_declared_1_0_are_upgraded_and_may_not_use_1_1_fields() {
    let erp = Erp::start(&[]);
    let site = legacy_site(&erp);
    let host = Host::start(&site);
    let post = |body: Vec<u8>| host.ingest("acme", "items", "messages", "application/json", &[], &body);

    // Upgraded by the rule: the 1.0 extension is the 1.1 field.
    let out = output(&host, post(item("1.0.0", json!({"extensions": {"gtin": "04012345678901"}}))));
    assert_eq!((out["schema-version"].as_str(), out["body"]["gtin"].as_str()), (Some("1.1.0"), Some("04012345678901")));

    // A 1.1 field under a 1.0 label is refused, naming the field and the fix.
    let (status, body) = post(item("1.0.0", json!({"gtin": "04012345678901"})));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "field-not-in-version", "{body}");
    let text = body["error"]["message"].as_str().unwrap();
    assert!(text.contains("`body.gtin` is not part of schema version 1.0.0") && text.contains("schema-version 1.1.0"), "{text}");

    // A newer minor and another major are refused, saying what the host reads.
    for v in ["1.2.0", "2.0.0", "0.9.0"] {
        let (status, body) = post(item(v, json!({})));
        assert_eq!(status, 422, "{v}: {body}");
        assert_eq!(body["error"]["code"], "unsupported-schema-version");
        assert!(body["error"]["message"].as_str().unwrap().contains("this host reads 1.x up to 1.1.0"), "{body}");
    }
}

#[test]
fn a_plugin_of_another_major_is_refused_and_check_names_what_to_rebuild() {
    // Loading says what it was built for and what to rebuild against.
    let err = runtime().load_file(&plugin("future-major")).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, syncline::runtime::LoadError::Version { ref version, .. } if version == "2.0.0"), "{text}");
    assert!(text.contains("built for syncline:plugin@2.0.0") && text.contains("rebuild it against syncline:plugin@1.1.0"), "{text}");
    let legacy = runtime().load_file(&plugin("legacy-tagger")).unwrap();
    assert_eq!(legacy.api_version, "1.0.0");

    let erp = Erp::start(&[]);
    let config = CONFIG.to_string()
        + r#"
[[pipeline]]
id = "future"
tenant = "acme"
stages = [{ transform = "future-major" }, { transform = "legacy-tagger" }]
routes = [{ to = "erp" }]
"#;
    let site = legacy_site(&erp);
    site.rewrite(&config, &erp);
    site.share_plugin("future-major", "future-major");

    // check names every plugin that must be rebuilt, and notes the ones
    // running through older bindings.
    let out = syncline().arg("check").arg(site.config()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("1 plugin(s) must be rebuilt against syncline:plugin@1.1.0"), "{err}");
    assert!(err.contains("future-major (") && err.contains("stage 1 of pipeline `future`") && err.contains("built against syncline:plugin@2.0.0"), "{err}");
    assert!(!err.contains("legacy-tagger"), "{err}");

    // The host refuses to start with it, with the same reason.
    let out = syncline().arg("run").arg(site.config()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("was built for syncline:plugin@2.0.0"), "{err}");

    // Without it, check passes and says what the 1.0 plugin does not see.
    site.rewrite(CONFIG, &erp);
    let out = syncline().arg("check").arg(site.config()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("built against syncline:plugin@1.0.0: runs through the 1.0 bindings, which show it item.gtin, inventory-position.safety-stock as extensions"),
        "{stdout}"
    );

    // inspect tells the version too.
    let out = syncline().arg("inspect").arg(plugin("legacy-tagger")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("world    syncline:plugin/transformer@1.0.0"), "{stdout}");
}
