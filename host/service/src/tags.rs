//! Wallet tags and groups (DESIGN §7 `PUT /keys/{key_id}/tags`, §8): what tags may hold,
//! who may name a group, and the admin's tag change.
//!
//! Groups are the comma-separated `group` tag, and policies trust them (e.g.
//! `resource in Custos::WalletGroup::"blind-hash-allowed"`), so only admins set them: at
//! generate a client without the admin role may not name one, and afterwards tags change
//! only through the admin's `PUT`, audited `TAGS_CHANGE` with the tags before and after.

use crate::audit::{AuditResult, NewEntry};
use crate::auth::{Client, Role, require_role};
use crate::clock;
use crate::error::{ApiError, ApiResult, bad_json};
use crate::service::{Caller, Service};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Body of `PUT /keys/{key_id}/tags`: the wallet's tags, replaced as a whole.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TagsRequest)]
pub struct TagsBody {
    /// The new tags (at most 32; keys 1-64 characters without `:`, values up to 256);
    /// `group` holds the wallet's groups, comma-separated
    tags: BTreeMap<String, String>,
    reason: Option<String>,
}

/// Tags as generate and the tag change take them. A key may not hold `:`, which
/// separates key and value in the tags policies see (`key:value`): a key `group:cold`
/// would read there as the tag of a wallet in group `cold`.
pub(crate) fn check_tags(tags: &BTreeMap<String, String>) -> ApiResult<()> {
    if tags.len() > 32
        || tags
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > 64 || v.len() > 256)
    {
        return Err(ApiError::invalid(
            "`tags`: at most 32, keys 1-64 characters, values up to 256",
        ));
    }
    if let Some(k) = tags.keys().find(|k| k.contains(':')) {
        return Err(ApiError::invalid(format!(
            "`tags`: key `{k}` holds `:`, which separates key and value in the tags policies see"
        )));
    }
    Ok(())
}

/// Whether `key` is the group tag however it is written (`Group`, ` group `, `GR OUP`).
fn names_group(key: &str) -> bool {
    key.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_lowercase()
        == "group"
}

/// At generate: only an admin names the new wallet's groups.
pub(crate) fn check_group_rights(
    client: &Client,
    tags: &BTreeMap<String, String>,
) -> ApiResult<()> {
    if client.has_role(Role::Admin) {
        return Ok(());
    }
    match tags.keys().find(|k| names_group(k)) {
        Some(k) => Err(ApiError::forbidden(format!(
            "`tags.{k}` names the wallet's groups, which only an admin sets; generate without it and ask an admin to set it (PUT /api/v1/keys/{{key_id}}/tags)"
        ))),
        None => Ok(()),
    }
}

impl Service {
    /// `PUT /keys/{key_id}/tags` (admin): replaces the wallet's tags, audited
    /// `TAGS_CHANGE`; the next policy decision reads them.
    pub(crate) fn change_tags(
        &self,
        caller: &Caller,
        key_id: &str,
        body: &[u8],
    ) -> ApiResult<(u16, Value)> {
        require_role(&caller.client, &[Role::Admin])?;
        let b: TagsBody = serde_json::from_slice(body).map_err(|e| bad_json("tags request", &e))?;
        check_tags(&b.tags)?;
        if b.reason.as_ref().is_some_and(|r| r.chars().count() > 512) {
            return Err(ApiError::invalid("`reason` is longer than 512 characters"));
        }
        let (before, after) = self.registry.set_tags(key_id, b.tags)?;
        self.audit.append(
            NewEntry::new("TAGS_CHANGE", AuditResult::Ok)
                .principal(&caller.client.name)
                .key_id(key_id)
                .client_ip(caller.ip.to_string())
                .details(json!({"old_tags": before.tags, "new_tags": after.tags,
                    "old_groups": before.groups(), "new_groups": after.groups(),
                    "reason": b.reason, "at": clock::rfc3339(caller.now)})),
        )?;
        Ok((200, after.to_json()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_is_named_however_it_is_written() {
        for k in ["group", "Group", " GROUP ", "gr oup", "\tgroup\n"] {
            assert!(names_group(k), "{k:?}");
        }
        for k in ["groups", "desk", "group_x"] {
            assert!(!names_group(k), "{k}");
        }
        let tags = |k: &str| [(k.to_string(), "v".to_string())].into_iter().collect();
        assert!(check_tags(&tags("desk")).is_ok());
        let e = check_tags(&tags("group:cold")).unwrap_err();
        assert!(e.message.contains("`group:cold`"), "{e}");
        assert!(check_tags(&tags("")).is_err());
    }
}
