//! Memory: resident memory added by each loaded plugin (compiled code
//! mapped, bound, one warm instance after a call) and by each tenant (a
//! host process running the example pipeline for 1 tenant against 1 + K).

use std::time::Duration;

use syncline::runtime::{EngineOptions, Limits, PluginContext, Runtime};

use crate::e2e::{self, root};
use crate::procstat;
use crate::stats::Figures;

/// MiB added per plugin: `count` distinct versions of `name` (a custom
/// section makes each a new digest), each loaded from the compile cache,
/// bound and called once. Records `plugin-MiB:NAME`.
pub fn per_plugin(name: &str, count: usize, f: &mut Figures) -> anyhow::Result<()> {
    let base = std::fs::read(root().join(format!("target/plugins/{name}.wasm")))?;
    let cache = root().join("target/bench-cache");
    let variants: Vec<Vec<u8>> = (0..count)
        .map(|i| crate::reload::with_custom_section(&base, 16, 7000 + i as u64))
        .collect();
    {
        // Compile once so the measured loads come from the cache.
        let rt = Runtime::new(&EngineOptions::default(), Some(&cache))?;
        for v in &variants {
            rt.load_bytes(name, v)?;
        }
    }
    let rt = Runtime::new(&EngineOptions::default(), Some(&cache))?;
    let msg = syncline_model::json::from_str(&e2e::rec(1))?;
    let me = std::process::id();
    let before = procstat::rss_mib(me);
    let mut kept = Vec::new();
    for v in &variants {
        let p = rt.load_bytes(name, v)?;
        let mut ctx = PluginContext::new(name);
        ctx.limits = Limits {
            instances: 1,
            ..Limits::default()
        };
        let i = rt.bind(p, ctx)?;
        match i.plugin().world {
            syncline::runtime::World::Validator => drop(i.validate(msg.clone())?),
            _ => drop(i.transform(msg.clone())?),
        }
        kept.push(i);
    }
    f.add(
        &format!("plugin-MiB:{name}"),
        (procstat::rss_mib(me) - before) / count as f64,
    );
    Ok(())
}

/// Pipeline ids are unique across tenants.
fn pipeline_id(t: usize) -> String {
    if t == 0 {
        "replenishment-release".into()
    } else {
        format!("replenishment-release-{t}")
    }
}

/// The example config with its tenant and pipeline repeated `tenants` times.
fn tenants_config(erp: &str, tenants: usize) -> String {
    let text = e2e::example_config(erp, "normal", true);
    let (head, rest) = text.split_once("[[tenant]]").expect("a tenant");
    let (pipeline, sinks) = rest.split_once("[sink.").expect("a sink");
    let pipeline = pipeline.split_once("[[pipeline]]").expect("a pipeline").1;
    let mut out = head.to_string();
    for t in 0..tenants {
        let id = if t == 0 {
            "acme".to_string()
        } else {
            format!("tenant-{t}")
        };
        let p = pipeline
            .replace("tenant = \"acme\"", &format!("tenant = \"{id}\""))
            .replace(
                "id = \"replenishment-release\"",
                &format!("id = \"{}\"", pipeline_id(t)),
            );
        out += &format!("[[tenant]]\nid = \"{id}\"\n\n[[pipeline]]{p}");
    }
    out + "[sink." + sinks
}

/// MiB added per tenant: a host with 1 tenant against one with
/// `1 + extra`, each having sent one message through every tenant's
/// pipeline (so every stage holds a warm instance). Records `tenant-MiB`.
pub fn per_tenant(extra: usize, f: &mut Figures) -> anyhow::Result<()> {
    let mut rss = Vec::new();
    for tenants in [1, 1 + extra] {
        let (_erp, erp_url) = e2e::erp("127.0.0.1:0")?;
        let site = tempfile::tempdir()?;
        let path = site.path().join("syncline.toml");
        std::fs::write(
            &path,
            tenants_config(erp_url.trim_start_matches("http://"), tenants),
        )?;
        let (host, url) = e2e::host(&path, false)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        for t in 0..tenants {
            let id = if t == 0 {
                "acme".to_string()
            } else {
                format!("tenant-{t}")
            };
            let body = e2e::rec(t);
            let mut resp = agent
                .post(&format!(
                    "{url}/v1/tenants/{id}/pipelines/{}/messages",
                    pipeline_id(t)
                ))
                .header("content-type", "application/json")
                .send(body.as_bytes())?;
            anyhow::ensure!(
                resp.status().as_u16() == 202,
                "ingest for {id} answered {}",
                resp.status()
            );
            // Read to its end so the connection is reused.
            resp.body_mut().read_to_vec()?;
        }
        e2e::await_delivery(
            &erp_url,
            tenants,
            |k| k.contains("/k:B-"),
            Duration::from_secs(60),
        )?;
        std::thread::sleep(Duration::from_millis(300));
        rss.push(procstat::rss_mib(host.0.id()));
    }
    f.add("tenant-MiB", (rss[1] - rss[0]) / extra as f64);
    f.add("host-MiB", rss[0]);
    Ok(())
}
