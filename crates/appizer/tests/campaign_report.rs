//! The campaign report against a brute-force count: generated assignment, delivery,
//! open and goal events (in the shapes the runner, the delivery loop and apps send)
//! go in through the capture API; every figure of the report must equal a count over
//! what was generated, its rates and tests the statistics of those counts, and its
//! conversion funnel, run as a query, the same numbers.

mod common;

use std::collections::BTreeMap;

use appizer_analytics::stats::{chi_squared, compare, Rate};
use common::push::start;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A small deterministic generator (splitmix64), so a failure can be replayed.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

#[derive(Default, Debug, Clone, Copy, PartialEq)]
struct Expected {
    assigned: u64,
    sent: u64,
    failed: u64,
    delivered: u64,
    opened: u64,
    converted: u64,
}

#[tokio::test]
async fn report_figures_equal_a_brute_force_count_and_its_funnel() {
    let s = start().await;
    let admin = s.server.keys.admin_key.clone();
    let created = s
        .api
        .post(
            &format!("{}/campaigns", s.base),
            &admin,
            json!({
                "name": "Measured",
                "when": {"type": "at", "at": chrono::Utc::now() + chrono::Duration::days(1)},
                "variants": [{"name": "A", "title": "a", "body": "a"},
                             {"name": "B", "title": "b", "body": "b"}],
                "control_percent": 20,
                "goal": {"event": "purchase",
                         "properties": [{"key": "total", "operator": "gte", "value": 10}],
                         "window_hours": 1}
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:#}", created.body);
    let id = created.body["id"].as_str().unwrap().to_string();
    let t0 = chrono::Utc::now() + chrono::Duration::seconds(1);
    let at = |ms: i64| (t0 + chrono::Duration::milliseconds(ms)).to_rfc3339();
    let mut rng = Seeded(0x5eed);
    let mut expected: BTreeMap<&str, Expected> = BTreeMap::new();
    let mut batch = Vec::new();
    let tagged = |group: &str, extra: Value| {
        let mut p = json!({"$push_campaign_id": id, "$push_variant": group});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };
    for i in 0..400i64 {
        let user = format!("p{i}");
        let group = match rng.next() % 10 {
            0 | 1 => "control",
            2..=5 => "A",
            _ => "B",
        };
        let e = expected.entry(group).or_default();
        let assigned_at = 10 * i;
        let track = |event: &str, properties: Value, ms: i64| {
            json!({"type": "track", "userId": user, "event": event,
                   "properties": properties, "timestamp": at(ms)})
        };
        // A purchase before the assignment never counts.
        if rng.chance(0.2) {
            batch.push(track("purchase", json!({"total": 50}), assigned_at - 5));
        }
        batch.push(track(
            "$push_assigned",
            tagged(group, json!({"$push_run": "once"})),
            assigned_at,
        ));
        e.assigned += 1;
        let p_buy = match group {
            "control" => 0.10,
            "A" => 0.25,
            _ => 0.40,
        };
        if group != "control" {
            if rng.chance(0.9) {
                batch.push(track(
                    "$push_sent",
                    tagged(group, json!({})),
                    assigned_at + 1,
                ));
                e.sent += 1;
                if rng.chance(0.8) {
                    batch.push(track(
                        "$push_delivered",
                        tagged(group, json!({})),
                        assigned_at + 2,
                    ));
                    e.delivered += 1;
                }
                if rng.chance(0.3) {
                    batch.push(track(
                        "$push_opened",
                        tagged(group, json!({})),
                        assigned_at + 3,
                    ));
                    e.opened += 1;
                }
            } else {
                batch.push(track(
                    "$push_failed",
                    tagged(group, json!({"$push_error": "x"})),
                    assigned_at + 1,
                ));
                e.failed += 1;
            }
        }
        if rng.chance(p_buy) {
            // Small purchases are not the goal; a second purchase counts once.
            let total = if rng.chance(0.2) { 5 } else { 20 };
            batch.push(track("purchase", json!({"total": total}), assigned_at + 4));
            if total >= 10 {
                e.converted += 1;
            }
            if rng.chance(0.3) {
                batch.push(track("purchase", json!({"total": 99}), assigned_at + 6));
                if total < 10 {
                    e.converted += 1;
                }
            }
        }
    }
    // Another campaign's events are not this one's.
    batch.push(json!({"type": "track", "userId": "p0", "event": "$push_assigned",
                      "properties": {"$push_campaign_id": uuid::Uuid::now_v7(), "$push_variant": "A"},
                      "timestamp": at(1)}));
    for chunk in batch.chunks(500) {
        s.capture(chunk.to_vec()).await;
    }
    // Every generated time has passed.
    let last = t0 + chrono::Duration::milliseconds(10 * 400 + 100);
    if let Ok(wait) = (last - chrono::Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
    let report = s
        .api
        .get(&format!("{}/campaigns/{id}/report", s.base), &admin)
        .await;
    assert_eq!(report.status, StatusCode::OK, "{:#}", report.body);
    let r = &report.body;
    let groups: BTreeMap<String, &Value> = r["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["group"].as_str().unwrap().to_string(), g))
        .collect();
    assert_eq!(groups.len(), 3, "{r:#}");
    let close = |a: &Value, b: f64| (a.as_f64().unwrap() - b).abs() < 1e-9;
    let mut rates = BTreeMap::new();
    for (name, e) in &expected {
        let g = groups[*name];
        let got = Expected {
            assigned: g["assigned"].as_u64().unwrap(),
            sent: g["sent"].as_u64().unwrap(),
            failed: g["failed"].as_u64().unwrap(),
            delivered: g["delivered"].as_u64().unwrap(),
            opened: g["opened"].as_u64().unwrap(),
            converted: g["converted"].as_u64().unwrap(),
        };
        assert_eq!(got, *e, "{name}: {g:#}");
        let conversion = Rate::new(e.converted, e.assigned);
        let open = Rate::new(e.opened, e.sent);
        for (field, rate) in [("conversion_rate", conversion), ("open_rate", open)] {
            assert!(close(&g[field]["rate"], rate.rate), "{name} {field}");
            assert!(close(&g[field]["low"], rate.low), "{name} {field}");
            assert!(close(&g[field]["high"], rate.high), "{name} {field}");
        }
        rates.insert(*name, conversion);
    }
    for variant in ["A", "B"] {
        let c = compare(rates[variant], rates["control"]);
        let got = &groups[variant]["against_control"];
        assert!(close(&got["lift"], c.lift.unwrap()), "{variant} lift");
        assert!(
            close(&got["test"]["p_value"], c.test.unwrap().p_value),
            "{variant} p"
        );
    }
    let chi = chi_squared(&[rates["A"], rates["B"]]).unwrap();
    assert!(close(&r["across_variants"]["statistic"], chi.statistic));
    assert!(close(&r["across_variants"]["p_value"], chi.p_value));
    assert_eq!(r["goal"]["event"], "purchase");
    // The report's conversion funnel, run as a query, answers its numbers.
    let funnel = s.query("funnels", r["conversion_funnel"].clone()).await;
    for result in funnel["results"].as_array().unwrap() {
        let group = result["breakdown_value"].as_str().unwrap();
        let steps = result["steps"].as_array().unwrap();
        assert_eq!(steps[0]["count"], groups[group]["assigned"], "{group}");
        assert_eq!(steps[1]["count"], groups[group]["converted"], "{group}");
    }
}
