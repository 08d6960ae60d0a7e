//! The clients the auth tests share.

use super::Clients;

pub(super) const SECRET: &str = "dev-secret-123";
pub(super) const NOW: i64 = 1_700_000_000;

pub(super) fn clients_json() -> String {
    serde_json::json!({"clients":[
        {"name":"main","access_key":"AK-main","secret_key":SECRET,
         "roles":["signer","admin","auditor"]},
        {"name":"approver-1","access_key":"AK-appr","secret_key":"appr-secret-456",
         "roles":["approver"]},
        {"name":"locked","access_key":"AK-locked","secret_key":"locked-secret-789",
         "roles":["signer"],"ip_allowlist":["127.0.0.0/8","::1/128","10.1.2.3"]},
        {"name":"slow","access_key":"AK-slow","secret_key":"slow-secret-000",
         "roles":["signer"],"rate_limit":{"per_second":1,"burst":3}}
    ]})
    .to_string()
}

pub(super) fn clients() -> Clients {
    Clients::from_json(&clients_json()).unwrap()
}
