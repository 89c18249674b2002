//! Routing what the stages produced: a canonical exception goes to its
//! queue; anything else to the sinks of the first route whose `when`
//! matches (or the default route), keyed by its own ordering key, in its
//! service tier, carrying its scoped idempotency key; with no route, a dead
//! letter.

use std::time::Duration;

use syncline_model::date::Date;
use syncline_model::{json as mjson, Body, Message};

use super::{Item, RowResult};
use crate::config::{Pipeline, StatusWindow, Tier};
use crate::pipeline::fields::View;
use crate::store::records::{ExceptionDetail, RouteStep, Step};
use crate::store::{NewBaseline, NewDeadLetter, NewDelivery, NewException};

/// Places `item` (an output of the last stage) into its row's result.
pub(super) fn place(cfg: &Pipeline, item: Item, results: &mut [RowResult]) {
    let Item { row, mut msg, key } = item;
    let r = &mut results[row];
    if let Body::Exception(e) = &msg.body {
        r.exceptions.push(NewException {
            queue: e.queue.clone(),
            message_id: msg.id.clone(),
            detail: ExceptionDetail::Record { code: e.code.clone(), text: e.text.clone(), severity: e.severity.as_str().to_string() },
            json: mjson::to_string(&msg),
        });
        return;
    }
    let (route, ordering_key) = {
        let view = View::new(&msg);
        // Order is kept per key within the pipeline (the store scopes it).
        (cfg.routes.iter().find(|r| r.when.as_ref().is_none_or(|c| view.matches(c))), view.ordering_key(&cfg.ordering_key))
    };
    match route {
        Some(route) => {
            // What the sink gets carries its scoped key (a message that
            // passed the stages unchanged still has the client's).
            msg.idempotency_key = Some(key);
            let json = mjson::to_string(&msg);
            let sinks: Vec<&str> = route.to.iter().map(|s| s.as_str()).collect();
            r.steps.push(Step::Route(RouteStep { route: msg.id.clone(), to: sinks.iter().map(|s| s.to_string()).collect() }));
            // An approved planning record joins the pipeline's baseline.
            if cfg.baseline.is_some() && matches!(msg.body, Body::Forecast(_) | Body::ReplenishmentRecommendation(_)) {
                if let Some((item, location)) = msg.item_location() {
                    let (item, location) = (item.to_string(), location.to_string());
                    r.baseline.push(NewBaseline { kind: msg.body.kind().to_string(), item, location, message_id: msg.id.clone(), json: json.clone() });
                }
            }
            // An order the pipeline expects an execution status for.
            let expect_ms = cfg.expect_status.as_ref().and_then(|e| window(e, &msg)).map(|w| w.as_millis() as i64);
            let tier = Tier::of(msg.priority, cfg.tier);
            let message = std::sync::Arc::new(msg);
            for sink in &route.to {
                r.deliveries.push(NewDelivery {
                    id: message.id.clone(),
                    sink: sink.to_string(),
                    ordering_key: ordering_key.clone(),
                    tier,
                    expect_ms,
                    json: json.clone(),
                    message: Some(message.clone()),
                });
            }
        }
        None => r.dead.push(NewDeadLetter {
            message_id: msg.id.clone(),
            place: "routing".into(),
            plugin: String::new(),
            digest: String::new(),
            reason: "no route matched and the pipeline has no default route".into(),
            attempts: vec![],
            json: mjson::to_string(&msg),
            outcome_unknown: false,
        }),
    }
}

/// How long after its delivery `msg`, an order, may wait for its execution
/// status (`None`: not an order). An order a formatter wrote in a target
/// system's own format (a `raw` body) is still one: its headers say which
/// canonical kind it was and its need-by and placed-by dates.
fn window(expect: &crate::config::ExpectStatus, msg: &Message) -> Option<Duration> {
    let (need_by, placed_by) = match &msg.body {
        Body::PurchaseRequisition(r) => (r.need_by.as_str(), r.order_by.as_str()),
        Body::TransferProposal(t) => (t.need_by.as_str(), t.ship_by.as_str()),
        Body::Raw(_) if matches!(msg.header("canonical-kind"), Some("purchase-requisition" | "transfer-proposal")) => {
            (msg.header("need-by").unwrap_or(""), msg.header("placed-by").unwrap_or(""))
        }
        _ => return None,
    };
    Some(match expect.within {
        StatusWindow::Fixed(d) => d,
        StatusWindow::LeadTime => {
            let days = match (Date::parse(need_by), Date::parse(placed_by)) {
                (Ok(need), Ok(placed)) => need.days_since(placed).max(0) as u64,
                _ => 0,
            };
            Duration::from_secs(days * 86_400).max(expect.at_least)
        }
    })
}

#[cfg(test)]
mod tests {
    use syncline_model::Raw;

    use super::*;

    /// A pipeline with a conditional route, a fan-out and no default.
    fn pipeline() -> (tempfile::TempDir, Pipeline) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("plugins/shared")).unwrap();
        std::fs::write(dir.path().join("plugins/shared/http-sink.wasm"), b"").unwrap();
        let text = r#"
version = 1
[[tenant]]
id = "acme"
[[pipeline]]
id = "p"
tenant = "acme"
ordering-key = { fields = ["headers.order"], raw = ["/order"] }
routes = [
  { when = { "headers.to" = ["eu"] }, to = ["eu", "archive"] },
  { when = { "headers.to" = ["us"] }, to = "us" },
]
[sink.eu]
plugin = "http-sink"
[sink.us]
plugin = "http-sink"
[sink.archive]
plugin = "http-sink"
"#;
        let config = crate::config::load_str(&dir.path().join("syncline.toml"), text).unwrap();
        (dir, config.pipelines[0].clone())
    }

    fn item(to: &str, order: &str) -> Item {
        let data = format!(r#"{{"order": "{order}"}}"#).into_bytes();
        let mut msg = Message::new(Body::Raw(Raw { content_type: "application/json".into(), data }));
        msg.id = format!("m-{to}-{order}");
        msg.set_header("to", to);
        msg.set_header("order", order);
        Item { row: 0, msg, key: format!("acme/p/k:{order}/0") }
    }

    #[test]
    fn the_first_matching_route_wins_and_fans_out_with_the_output_key() {
        let (_d, cfg) = pipeline();
        let mut results = vec![RowResult::default()];
        place(&cfg, item("eu", "PO-1"), &mut results);
        let r = &results[0];
        let sinks: Vec<&str> = r.deliveries.iter().map(|d| d.sink.as_str()).collect();
        assert_eq!(sinks, ["eu", "archive"]);
        assert!(r.deliveries.iter().all(|d| d.ordering_key == "PO-1"), "keyed by the output's own fields");
        let sent: Message = mjson::from_str(&r.deliveries[0].json).unwrap();
        assert_eq!(sent.idempotency_key.as_deref(), Some("acme/p/k:PO-1/0"), "the sink gets the scoped key");
        assert!(matches!(&r.steps[0], Step::Route(s) if s.to == ["eu", "archive"]));
    }

    #[test]
    fn no_matching_route_is_a_dead_letter_and_an_exception_record_is_parked() {
        let (_d, cfg) = pipeline();
        let mut results = vec![RowResult::default()];
        place(&cfg, item("mars", "PO-2"), &mut results);
        assert!(results[0].deliveries.is_empty());
        assert_eq!(results[0].dead[0].place, "routing");
        let mut exception = item("eu", "PO-3");
        exception.msg.body = Body::Exception(syncline_model::Exception {
            queue: "master-data".into(),
            code: "unknown-item".into(),
            severity: syncline_model::Severity::Error,
            domain: "master-data".into(),
            entities: vec![],
            text: "no such item".into(),
            extensions: Default::default(),
        });
        place(&cfg, exception, &mut results);
        assert_eq!(results[0].exceptions[0].queue, "master-data");
        assert!(results[0].deliveries.is_empty(), "an exception record is not routed to sinks");
    }

    #[test]
    fn an_orders_status_window_is_fixed_or_its_own_lead_time_and_never_below_the_floor() {
        use crate::config::ExpectStatus;
        let requisition = |need_by: &str, order_by: &str| {
            Body::PurchaseRequisition(syncline_model::PurchaseRequisition {
                id: "PR-1".into(),
                item: "SKU-1".into(),
                location: "DC-1".into(),
                supplier: "SUP-7".into(),
                quantity: 10.0,
                uom: "EA".into(),
                need_by: need_by.into(),
                order_by: order_by.into(),
                recommendation: None,
                rule: String::new(),
                extensions: vec![],
            })
        };
        let day = Duration::from_secs(86_400);
        let fixed = ExpectStatus { within: StatusWindow::Fixed(Duration::from_secs(7200)), at_least: day, queue: "q".into() };
        let lead = ExpectStatus { within: StatusWindow::LeadTime, at_least: day, queue: "q".into() };
        let msg = |body: Body| Message::new(body);
        assert_eq!(window(&fixed, &msg(requisition("2026-12-21", "2026-12-14"))), Some(Duration::from_secs(7200)));
        assert_eq!(window(&lead, &msg(requisition("2026-12-21", "2026-12-14"))), Some(7 * day), "need-by minus order-by");
        assert_eq!(window(&lead, &msg(requisition("2026-12-21", "2026-12-21"))), Some(day), "a same-day order gets the floor");
        assert_eq!(window(&lead, &msg(requisition("soon", "2026-12-21"))), Some(day), "dates that do not read get the floor");
        let csv = || msg(Body::Raw(Raw { content_type: "text/csv".into(), data: b"a,b".to_vec() }));
        assert_eq!(window(&lead, &csv()), None, "not an order");
        // An order a formatter wrote as the ERP's CSV is still one.
        let formatted = csv().with_header("canonical-kind", "purchase-requisition").with_header("need-by", "2026-12-21").with_header("placed-by", "2026-12-07");
        assert_eq!(window(&lead, &formatted), Some(14 * day));
        assert_eq!(window(&fixed, &formatted), Some(Duration::from_secs(7200)));
    }
}
