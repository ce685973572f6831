//! The staff assistant's audit trail of one business, read-only: `/console/b/{biz}/audit` (page)
//! and `/console/api/b/{biz}/audit` (JSON). Every batch change and refusal of the staff tools is
//! one row ([`crate::store::staff::AuditRow`]); a business's staff see only their business's rows.

use axum::extract::Path;
use serde::Serialize;

use super::pages::Ctx;
use super::{Answer, ConsoleError};
use crate::store::staff::AuditRow;

/// Rows shown, newest first.
const SHOWN: i64 = 200;

#[derive(Serialize)]
struct AuditView {
    id: String,
    name: String,
    rows: Vec<AuditLine>,
}

#[derive(Serialize)]
struct AuditLine {
    #[serde(flatten)]
    row: AuditRow,
    /// Local time of the business.
    at: String,
}

pub(super) async fn audit(ctx: Ctx, Path(biz): Path<String>) -> Answer {
    ctx.p.can_view(&biz)?;
    let store = &ctx.c.rt.store;
    let b = store.business(&biz).await?.ok_or(ConsoleError::NotFound)?;
    let policy = b.policy().map_err(crate::agent::BookingError::from)?;
    let rows = store
        .staff_audit(&biz, SHOWN)
        .await?
        .into_iter()
        .map(|row| AuditLine {
            at: format!(
                "{} {}",
                policy.date_iso(row.at_ms),
                policy.time_display(row.at_ms)
            ),
            row,
        })
        .collect();
    let view = AuditView {
        id: b.id,
        name: b.name,
        rows,
    };
    ctx.c.render(ctx.fmt, &ctx.page, "audit.html", &view)
}
