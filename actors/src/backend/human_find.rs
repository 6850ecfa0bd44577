//! `human_find` over a list of users: the filters, order and pagination of
//! [`HumanFindQuery`], shared by every store so that they cannot drift apart.

use std::collections::HashMap;

use parsec_protocol::types::*;

use super::{HumanFindItem, HumanFindPage, HumanFindQuery};

/// What `human_find` needs to know of a user.
pub(crate) struct HumanRow {
    pub user_id: UserId,
    pub human_handle: Option<HumanHandle>,
    pub created_on: DateTime,
    pub revoked_on: Option<DateTime>,
}

/// Runs the query over every user of the organization.
pub(crate) fn find(mut rows: Vec<HumanRow>, q: &HumanFindQuery) -> HumanFindPage {
    // Ties are ordered by user id.
    rows.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    // PG's `human` row of an e-mail keeps the label of its first user.
    let mut first_label: HashMap<&str, (DateTime, &str)> = HashMap::new();
    for u in &rows {
        if let Some(h) = &u.human_handle {
            let e = first_label
                .entry(h.email.as_str())
                .or_insert((u.created_on, h.label.as_str()));
            if u.created_on < e.0 {
                *e = (u.created_on, h.label.as_str());
            }
        }
    }
    let is_revoked = |u: &HumanRow| super::revoked_at(u.revoked_on, q.now);
    let query = q.query.as_deref().filter(|s| !s.is_empty()).map(str::to_lowercase);
    let mut matches: Vec<(Option<String>, HumanFindItem)> = rows
        .iter()
        .filter(|u| !(q.omit_revoked && is_revoked(u)))
        .filter_map(|u| {
            let human = u.human_handle.as_ref().map(|h| {
                let label = first_label.get(h.email.as_str()).map_or(h.label.as_str(), |(_, l)| l);
                HumanHandle {
                    email: h.email.clone(),
                    label: label.to_string(),
                }
            });
            if human.is_none() && (q.omit_non_human || query.is_some()) {
                return None;
            }
            if let (Some(query), Some(h)) = (&query, &human)
                && !format!("{}{}", h.label, h.email)
                    .to_lowercase()
                    .contains(query.as_str())
            {
                return None;
            }
            let sort_key = human.as_ref().map(|h| h.label.to_lowercase());
            let item = HumanFindItem {
                user_id: u.user_id.clone(),
                human_handle: human,
                revoked: is_revoked(u),
            };
            Some((sort_key, item))
        })
        .collect();
    // `ORDER BY LOWER(label) NULLS LAST`; the sort is stable, so ties stay
    // in user id order.
    matches.sort_by(|(a, _), (b, _)| match (a, b) {
        (Some(a), Some(b)) => a.cmp(b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    let total = matches.len() as u64;
    let start = q.page.saturating_sub(1).saturating_mul(q.per_page);
    let results = matches
        .into_iter()
        .skip(usize::try_from(start).unwrap_or(usize::MAX))
        .take(usize::try_from(q.per_page).unwrap_or(usize::MAX))
        .map(|(_, item)| item)
        .collect();
    HumanFindPage { results, total }
}
