//! `portier mapping locks`: the Tapkey bound locks and the units mapped to each.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::ImportError;
use crate::model::{ItemKind, Target};
use crate::sources::kinnovis::dto::{AccessState, BookingStatus};
use crate::store::Records;
use crate::tenants::TenantRuntime;

/// One Tapkey bound lock as `mapping locks` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockLine {
    pub id: String,
    pub title: String,
    pub active: bool,
    pub bound: bool,
    /// Units mapped to this lock.
    pub units: Vec<String>,
    /// Current or future bookings (access granted) of those units.
    pub bookings_needing: usize,
}

/// The bound locks, and what needs attention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocksReport {
    pub locks: Vec<LockLine>,
    pub warnings: Vec<String>,
}

/// Lists the tenant's Tapkey bound locks with the units mapped to each, and warns when a lock
/// that bookings need cannot receive grants (Portier never deactivates a lock; Tapkey licences
/// are the operator's to activate).
pub async fn locks(records: &Records, tenant: &TenantRuntime) -> Result<LocksReport, ImportError> {
    let Some(tapkey) = tenant.tapkey() else {
        return Err(ImportError::NotApplicable(tenant.config.id.to_string()));
    };
    let bound = tapkey.client().bound_locks().await?;
    let mappings = records.mappings_for(&tenant.config).await?;
    let mut units_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in mappings.iter().filter(|m| m.item.kind == ItemKind::Unit) {
        for t in &m.targets {
            #[allow(irrefutable_let_patterns)] // other lock systems' targets join `Target` over time
            let Target::TapkeyLock(lock) = t else { continue };
            units_of.entry(lock.as_str().to_ascii_lowercase()).or_default().push(m.item.id.clone());
        }
    }
    // Bookings that hold (or will hold) access, by unit, from the Kinnovis export.
    let mut needing: BTreeMap<String, usize> = BTreeMap::new();
    if let Some(kinnovis) = tenant.kinnovis() {
        let today = records.now().date_naive();
        for b in kinnovis.client().bookings(None).await? {
            let live = matches!(b.status, BookingStatus::Reserved | BookingStatus::Active)
                && b.access.state == AccessState::Granted
                && b.move_out.is_none_or(|d| d >= today);
            if live {
                *needing.entry(b.unit.name.clone()).or_default() += 1;
            }
        }
    }
    let mut report = LocksReport { locks: Vec::new(), warnings: Vec::new() };
    for lock in &bound {
        let units = units_of.remove(&lock.id.to_ascii_lowercase()).unwrap_or_default();
        let bookings_needing = units.iter().map(|u| needing.get(u).copied().unwrap_or(0)).sum();
        let line = LockLine {
            id: lock.id.clone(),
            title: lock.label().to_owned(),
            active: lock.active != Some(false),
            bound: lock.unbind_date.is_none(),
            units,
            bookings_needing,
        };
        if (!line.active || !line.bound) && line.bookings_needing > 0 {
            report.warnings.push(format!(
                "lock {} ({}) is {} but {} booking(s) of unit {} need it: no grants are made until it is {} in Tapkey",
                line.title,
                line.id,
                if line.bound { "not active" } else { "unbound" },
                line.bookings_needing,
                line.units.join(", "),
                if line.bound { "activated" } else { "bound again" },
            ));
        }
        report.locks.push(line);
    }
    for (lock, units) in units_of {
        report.warnings.push(format!(
            "unit {} is mapped to lock {lock}, which is not bound to Tapkey owner account {}",
            units.join(", "),
            tapkey.client().config().owner_account_id
        ));
    }
    Ok(report)
}

/// The report as a table for a terminal.
pub fn render_locks(report: &LocksReport) -> String {
    let rows = report.locks.iter().map(|l| {
        let state = match (l.bound, l.active) {
            (false, _) => "unbound",
            (true, true) => "active",
            (true, false) => "INACTIVE",
        };
        let units = if l.units.is_empty() { "-".to_owned() } else { l.units.join(", ") };
        vec![l.id.clone(), l.title.clone(), state.to_owned(), units, l.bookings_needing.to_string()]
    });
    let mut out = crate::table::columns("", Some(&["lock id", "title", "state", "units", "bookings"]), rows);
    for w in &report.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}
