//! Prometheus metrics (`GET /metrics`): requests by route and status, sign latency by
//! algorithm, policy decisions, node up/down, whether each node's last backup is current.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlgoLabels {
    pub algo: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub node: String,
}

fn sign_histogram() -> Histogram {
    // 5 ms .. ~20 s
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RouteLabels, Counter>,
    pub sign_seconds: Family<AlgoLabels, Histogram, fn() -> Histogram>,
    pub decisions: Family<DecisionLabels, Counter>,
    pub node_up: Family<NodeLabels, Gauge>,
    pub node_backup_current: Family<NodeLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RouteLabels, Counter>::default();
        registry.register(
            "custos_http_requests",
            "API requests by method, route and status",
            requests.clone(),
        );
        let sign_seconds: Family<AlgoLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(sign_histogram);
        registry.register(
            "custos_sign_duration_seconds",
            "Threshold signing latency (all payloads of one request) by algorithm",
            sign_seconds.clone(),
        );
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "custos_policy_decisions",
            "Policy decisions (ALLOW, DENY, NEEDS_APPROVAL)",
            decisions.clone(),
        );
        let node_up = Family::<NodeLabels, Gauge>::default();
        registry.register(
            "custos_node_up",
            "1 if the TSS node answered its last health check, else 0",
            node_up.clone(),
        );
        let node_backup_current = Family::<NodeLabels, Gauge>::default();
        registry.register(
            "custos_node_backup_current",
            "1 if the TSS node holds exactly the keys and generations of its last backup, 0 if it changed since or was never backed up (as last seen up)",
            node_backup_current.clone(),
        );
        Self {
            registry,
            requests,
            sign_seconds,
            decisions,
            node_up,
            node_backup_current,
        }
    }

    pub fn request(&self, method: &str, route: &str, status: u16) {
        self.requests
            .get_or_create(&RouteLabels {
                method: method.to_string(),
                route: route.to_string(),
                status: status.to_string(),
            })
            .inc();
    }

    pub fn decision(&self, d: &str) {
        self.decisions
            .get_or_create(&DecisionLabels {
                decision: d.to_string(),
            })
            .inc();
    }

    pub fn signed(&self, algo: &str, seconds: f64) {
        self.sign_seconds
            .get_or_create(&AlgoLabels {
                algo: algo.to_string(),
            })
            .observe(seconds);
    }

    pub fn node(&self, id: u16, up: bool) {
        self.node_up
            .get_or_create(&NodeLabels {
                node: id.to_string(),
            })
            .set(i64::from(up));
    }

    pub fn node_backup(&self, id: u16, current: bool) {
        self.node_backup_current
            .get_or_create(&NodeLabels {
                node: id.to_string(),
            })
            .set(i64::from(current));
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        if prometheus_client::encoding::text::encode(&mut s, &self.registry).is_err() {
            s.clear();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_exposition_names_every_family() {
        let m = Metrics::new();
        m.request("POST", "/api/v1/keys/{key_id}/sign", 200);
        m.decision("ALLOW");
        m.signed("DKLS23", 0.02);
        m.node(1, true);
        m.node_backup(1, false);
        let t = m.encode();
        for want in [
            "custos_http_requests_total{method=\"POST\",route=\"/api/v1/keys/{key_id}/sign\",status=\"200\"} 1",
            "custos_policy_decisions_total{decision=\"ALLOW\"} 1",
            "custos_sign_duration_seconds_count{algo=\"DKLS23\"} 1",
            "custos_node_up{node=\"1\"} 1",
            "custos_node_backup_current{node=\"1\"} 0",
        ] {
            assert!(t.contains(want), "missing {want} in\n{t}");
        }
    }
}
