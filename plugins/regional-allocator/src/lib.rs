//! `regional-allocator`: shares short supply across regions and DCs. Transfer
//! recommendations that draw the same item from the same source location
//! compete for what that location has: when their demand exceeds it, the
//! highest priority (1 first) is served first, and within a priority what is
//! left is shared in proportion to demand (fair share), in whole units (the
//! units a floor leaves go to the largest remainders, then to the earliest).
//!
//! Supply is the source's latest inventory position that came through the
//! pipeline (`available`, kept in plugin state and reduced by what is
//! allocated), else the `supply` table (`source,item,available`); a source
//! with neither is not constrained. Every recommendation it constrains gets
//! a `rule` header saying how its quantity was set; one cut short gets its
//! new quantity and a `decision` header (kept in the audit log by the host);
//! one that gets nothing becomes an `exception` (`no-supply`) for
//! `exception-queue` (default `allocation`). Supplier-sourced
//! recommendations, inventory positions and other kinds pass through.
//!
//! Give the pipeline `ordering-key = ["body.item"]` so an item's
//! recommendations and positions meet in one batch (the stage's batch
//! window is the allocation window).
use syncline_sdk::prelude::*;

/// The plugin.
pub struct RegionalAllocator;

fn state_key(source: &str, item: &str) -> String {
    format!("available/{source}/{item}")
}

/// What `source` has of `item` now.
fn supply(source: &str, item: &str) -> Result<Option<f64>, PluginError> {
    if let Some(bytes) = state::get(&state_key(source, item)) {
        return Ok(String::from_utf8_lossy(&bytes).parse::<f64>().ok());
    }
    if !reference::tables().iter().any(|t| t == "supply") {
        return Ok(None);
    }
    for row in reference::find("supply", "item", item)? {
        if row.get("source") == Some(source) {
            return row.number("supply", "available").map(Some);
        }
    }
    Ok(None)
}

/// Whole units for each demand from `supply`: by priority level (lowest
/// number first), each level shared in proportion to demand.
pub fn shares(demands: &[(u8, f64)], supply: f64) -> Vec<f64> {
    let mut out = vec![0.0; demands.len()];
    let mut left = supply.max(0.0).floor();
    let mut levels: Vec<u8> = demands.iter().map(|d| d.0).collect();
    levels.sort_unstable();
    levels.dedup();
    for level in levels {
        let members: Vec<usize> = (0..demands.len()).filter(|&i| demands[i].0 == level).collect();
        let want: f64 = members.iter().map(|&i| demands[i].1.max(0.0)).sum();
        if want <= left {
            for &i in &members {
                out[i] = demands[i].1.max(0.0);
            }
            left -= want;
            continue;
        }
        // Fair share of what is left, floored; the remainder unit by unit.
        let mut fractions = Vec::with_capacity(members.len());
        let mut given = 0.0;
        for &i in &members {
            let exact = left * demands[i].1.max(0.0) / want;
            out[i] = exact.floor();
            given += out[i];
            fractions.push((exact - exact.floor(), i));
        }
        fractions.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal).then(a.1.cmp(&b.1)));
        let mut spare = (left - given).round() as usize;
        for (_, i) in fractions {
            if spare == 0 {
                break;
            }
            out[i] += 1.0;
            spare -= 1;
        }
        left = 0.0;
    }
    out
}

/// Decides a batch: for each input position, its output.
fn allocate(batch: &[Message]) -> Result<Vec<Message>, PluginError> {
    let queue = config::get_or("exception-queue", "allocation");
    // The latest positions first: they set what sources have.
    for msg in batch {
        if let Body::InventoryPosition(p) = &msg.body {
            state::set(&state_key(&p.location, &p.item), p.available.to_string().as_bytes())?;
        }
    }
    let mut out: Vec<Option<Message>> = vec![None; batch.len()];
    let mut groups: Vec<((String, String), Vec<usize>)> = Vec::new();
    for (at, msg) in batch.iter().enumerate() {
        match &msg.body {
            Body::ReplenishmentRecommendation(rec) => match &rec.source {
                SourceRef::Location(source) => {
                    let key = (source.clone(), rec.item.clone());
                    match groups.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, g)) => g.push(at),
                        None => groups.push((key, vec![at])),
                    }
                }
                SourceRef::Supplier(_) => out[at] = Some(msg.clone()),
            },
            _ => out[at] = Some(msg.clone()),
        }
    }
    for ((source, item), members) in groups {
        let Some(available) = supply(&source, &item)? else {
            for &at in &members {
                out[at] = Some(batch[at].clone());
            }
            continue;
        };
        let rec = |at: usize| match &batch[at].body {
            Body::ReplenishmentRecommendation(r) => r,
            _ => unreachable!("grouped recommendations only"),
        };
        let demands: Vec<(u8, f64)> = members.iter().map(|&at| (rec(at).priority, rec(at).quantity)).collect();
        let demand: f64 = demands.iter().map(|d| d.1).sum();
        let given = shares(&demands, available);
        for (k, &at) in members.iter().enumerate() {
            let (r, g) = (rec(at), given[k]);
            let context = format!("{source} has {available} {} of {item} for a demand of {demand}", r.uom);
            out[at] = Some(if g >= r.quantity {
                batch[at].clone().with_header("rule", format!("full quantity: {context}"))
            } else if g > 0.0 {
                let why = format!("cut: {} gets {g} of {} {} (priority {}): {context}", r.id, r.quantity, r.uom, r.priority);
                let mut m = batch[at].clone().with_header("rule", why.clone()).with_header("decision", why);
                if let Body::ReplenishmentRecommendation(body) = &mut m.body {
                    body.quantity = g;
                }
                m
            } else {
                let why = format!("deferred: {} gets nothing of {} {} (priority {}): {context}", r.id, r.quantity, r.uom, r.priority);
                let exception = Exception {
                    code: "no-supply".into(),
                    severity: Severity::Warning,
                    domain: "allocation".into(),
                    entities: vec![
                        EntityRef { kind: "recommendation".into(), id: r.id.clone() },
                        EntityRef { kind: "item".into(), id: item.clone() },
                        EntityRef { kind: "location".into(), id: source.clone() },
                    ],
                    text: why.clone(),
                    queue: queue.clone(),
                    extensions: vec![],
                };
                batch[at].derive(Body::Exception(exception)).with_header("decision", why)
            });
        }
        let used: f64 = given.iter().sum();
        state::set(&state_key(&source, &item), (available - used).max(0.0).to_string().as_bytes())?;
    }
    Ok(out.into_iter().map(|m| m.expect("every input has its output")).collect())
}

impl Allocator for RegionalAllocator {
    fn allocate(batch: Vec<Message>) -> Result<Vec<Message>, PluginError> {
        allocate(&batch)
    }
}

export_allocator!(RegionalAllocator);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_first_then_fair_share_in_whole_units() {
        // 100 for: priority 1 wants 50; priority 2 wants 60 and 30.
        assert_eq!(shares(&[(1, 50.0), (2, 60.0), (2, 30.0)], 100.0), vec![50.0, 33.0, 17.0]);
        // Enough for everyone.
        assert_eq!(shares(&[(1, 5.0), (2, 6.0)], 20.0), vec![5.0, 6.0]);
        // Nothing left for the lower priority.
        assert_eq!(shares(&[(2, 10.0), (1, 40.0)], 40.0), vec![0.0, 40.0]);
        // Equal remainders go to the earliest.
        assert_eq!(shares(&[(3, 10.0), (3, 10.0), (3, 10.0)], 10.0), vec![4.0, 3.0, 3.0]);
        assert_eq!(shares(&[(1, 10.0)], 0.0), vec![0.0]);
    }
}
