//! `portier mapping import units.csv` and `portier mapping locks` (design §6.3).
//!
//! The CSV is what Kinnovis support asks operators for: header `Tapkey Lock ID,Kinnovis Unit
//! Name`, one unit per line. Every line is checked (lock id syntax, unit known to Kinnovis, no
//! unit or lock twice) and every problem is reported with its line before anything is written:
//! an import is all or nothing. The mappings go to the store (`TENANT#t / MAP#unit#name`), where
//! the planner reads them on both runtimes, replacing a configured mapping of the same unit.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::TenantConfig;
use crate::error::{CallError, InfraError};
use crate::model::{ItemKind, ItemRef, Mapping, Target};
use crate::store::Records;
use crate::tenants::TenantRuntime;

mod file;
mod locks;

pub use file::{CSV_HEADER, CsvRow, parse_csv};
pub use locks::{LockLine, LocksReport, locks, render_locks};

/// Why an import wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Every bad line, each naming its line number.
    #[error("{} problem(s), nothing imported:\n{}", .0.len(), .0.join("\n"))]
    Invalid(Vec<String>),
    #[error("tenant {0} is not a Kinnovis location with a Tapkey provider")]
    NotApplicable(String),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub imported: usize,
    /// Units that had a stored mapping before (now replaced).
    pub replaced: usize,
    /// Whether units and locks were checked against Kinnovis and Tapkey (not `--offline`).
    pub checked: bool,
    /// Units whose locks differ from before: the people booking them need a reconcile.
    pub changed: Vec<ItemRef>,
}

/// What [`import`] checks the file against, besides its own syntax.
pub enum Check<'a> {
    /// Every unit exists at the Kinnovis location; every lock is bound to the tenant's Tapkey
    /// owner account and active (a grant on any other lock fails, and the next webhook would
    /// take away access that works today).
    Online(&'a TenantRuntime),
    /// The file alone (`--offline`), for preparing a mapping without the systems at hand.
    Offline,
}

/// Checks the CSV (with [`Check::Online`], against Kinnovis and Tapkey) and stores it, or
/// stores nothing and names every bad line.
pub async fn import(
    records: &Records,
    config: &TenantConfig,
    check: Check<'_>,
    text: &str,
) -> Result<ImportReport, ImportError> {
    if config.source.kind() != crate::model::SourceKind::Kinnovis || config.providers.tapkey.is_none() {
        return Err(ImportError::NotApplicable(config.id.to_string()));
    }
    let rows = parse_csv(text).map_err(ImportError::Invalid)?;
    let checked = match check {
        Check::Online(tenant) => {
            let errors = check_online(tenant, &rows).await?;
            if !errors.is_empty() {
                return Err(ImportError::Invalid(errors));
            }
            true
        }
        Check::Offline => false,
    };
    let before_stored = records.stored_mappings(&config.id).await?;
    let before = records.mappings_for(config).await?;
    let mappings: Vec<Mapping> = rows
        .iter()
        .map(|r| Mapping {
            item: ItemRef { kind: ItemKind::Unit, id: r.unit.clone() },
            targets: vec![Target::TapkeyLock(r.lock.clone())],
        })
        .collect();
    let replaced = mappings.iter().filter(|m| before_stored.iter().any(|b| b.item == m.item)).count();
    records.put_mappings(&config.id, &mappings).await?;
    let after = records.mappings_for(config).await?;
    Ok(ImportReport { imported: mappings.len(), replaced, checked, changed: changed_items(&before, &after) })
}

/// Items whose targets differ between two mapping sets (added, removed or changed).
pub fn changed_items(before: &[Mapping], after: &[Mapping]) -> Vec<ItemRef> {
    let targets = |set: &[Mapping]| -> BTreeMap<ItemRef, Vec<String>> {
        set.iter()
            .map(|m| {
                let mut t: Vec<String> = m.targets.iter().map(ToString::to_string).collect();
                t.sort();
                (m.item.clone(), t)
            })
            .collect()
    };
    let (a, b) = (targets(before), targets(after));
    let mut changed: Vec<ItemRef> =
        a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).cloned().collect();
    changed.sort();
    changed.dedup();
    changed
}

/// Every row whose unit Kinnovis does not know or whose lock Tapkey cannot grant on.
async fn check_online(tenant: &TenantRuntime, rows: &[CsvRow]) -> Result<Vec<String>, ImportError> {
    let (Some(kinnovis), Some(tapkey)) = (tenant.kinnovis(), tenant.tapkey()) else {
        return Err(ImportError::NotApplicable(tenant.config.id.to_string()));
    };
    let known = kinnovis.client().units().await?;
    let bound = tapkey.client().bound_locks().await?;
    let owner = &tapkey.client().config().owner_account_id;
    let mut errors = Vec::new();
    for row in rows {
        if !known.iter().any(|u| u.name == row.unit) {
            let hint = match known.iter().find(|u| u.name.eq_ignore_ascii_case(&row.unit)) {
                Some(u) => format!(" (did you mean {}?)", u.name),
                None => String::new(),
            };
            errors.push(format!(
                "line {}: unit {} is not a unit of Kinnovis location {}{hint}",
                row.line,
                row.unit,
                kinnovis.client().config().location_id
            ));
        }
        match bound.iter().find(|l| l.id.eq_ignore_ascii_case(row.lock.as_str())) {
            None => errors.push(format!(
                "line {}: lock {} is not a bound lock of Tapkey owner account {owner} (`portier mapping locks` lists them)",
                row.line, row.lock
            )),
            Some(l) if l.unbind_date.is_some() => errors.push(format!(
                "line {}: lock {} ({}) is unbound from Tapkey owner account {owner}; bind it again first",
                row.line,
                row.lock,
                l.label()
            )),
            Some(l) if l.active == Some(false) => errors.push(format!(
                "line {}: lock {} ({}) is not active in Tapkey (no licence); activate it first",
                row.line,
                row.lock,
                l.label()
            )),
            Some(_) => {}
        }
    }
    Ok(errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LockId;

    const L1: &str = "ea610634-4fc0-4084-85b2-bebf52c3595f";
    const L2: &str = "0b7c2f3e-91d4-4a55-8f0e-6c1d2e3f4a5b";

    #[test]
    fn a_good_file_parses_with_quotes_a_bom_and_blank_lines() {
        let csv = format!(
            "\u{feff}Tapkey Lock ID,Kinnovis Unit Name\r\n{L1},A-017\r\n\r\n\"{}\",\"B-1, \"\"corner\"\"\"\n",
            L2.to_uppercase()
        );
        let rows = parse_csv(&csv).expect("valid");
        assert_eq!(
            rows,
            vec![
                CsvRow { line: 2, lock: LockId(L1.into()), unit: "A-017".into() },
                CsvRow { line: 4, lock: LockId(L2.into()), unit: "B-1, \"corner\"".into() },
            ]
        );
    }

    #[test]
    fn excel_in_germany_writes_semicolons_a_bom_and_quotes() {
        let csv = format!(
            "\u{feff}Tapkey Lock ID;Kinnovis Unit Name\r\n{L1};\"A-017; Ecke\"\r\n;\r\n\"{L2}\";B-2\r\n"
        );
        let rows = parse_csv(&csv).expect("valid");
        assert_eq!(
            rows,
            vec![
                CsvRow { line: 2, lock: LockId(L1.into()), unit: "A-017; Ecke".into() },
                CsvRow { line: 4, lock: LockId(L2.into()), unit: "B-2".into() },
            ]
        );
        let bad = format!("Tapkey Lock ID;Kinnovis Unit Name\n{L1};A-017;extra\n");
        assert!(parse_csv(&bad).expect_err("3 fields")[0].starts_with("line 2: expected 2 fields"));
    }

    #[test]
    fn changed_items_are_the_ones_whose_targets_differ() {
        let m = |id: &str, lock: &str| Mapping {
            item: ItemRef { kind: ItemKind::Unit, id: id.into() },
            targets: vec![Target::TapkeyLock(LockId(lock.into()))],
        };
        let before = [m("A", L1), m("B", L2)];
        let after = [m("A", L1), m("B", L1), m("C", L2)];
        let ids: Vec<String> = changed_items(&before, &after).into_iter().map(|i| i.id).collect();
        assert_eq!(ids, ["B", "C"]);
        assert!(changed_items(&before, &before).is_empty());
    }

    #[test]
    fn every_bad_line_is_named() {
        let csv = format!(
            "Tapkey Lock ID,Kinnovis Unit Name\n{L1},A-017\nnot-a-lock,A-018\n{L2},A-017\n{L1},A-019\n{L2}\n{L2},\n\"{L2},A-020\n"
        );
        let errors = parse_csv(&csv).expect_err("invalid");
        let expect = [
            "line 3: \"not-a-lock\" is not a Tapkey lock id",
            "line 4: unit A-017 is listed twice (first on line 2)",
            "line 5: lock ea610634-4fc0-4084-85b2-bebf52c3595f is listed twice (on line 2 for unit A-017)",
            "line 6: expected 2 fields",
            "line 7: the unit name is empty",
            "line 8: a quoted field is not closed",
        ];
        assert_eq!(errors.len(), expect.len(), "{errors:#?}");
        for (e, want) in errors.iter().zip(expect) {
            assert!(e.starts_with(want), "{e} should start with {want}");
        }
    }

    #[test]
    fn the_header_is_required() {
        let errors = parse_csv(&format!("Lock,Unit\n{L1},A-017\n")).expect_err("invalid");
        assert!(errors[0].starts_with("line 1: expected the header"), "{errors:?}");
        assert!(parse_csv("").expect_err("empty")[0].contains("empty"));
        assert_eq!(parse_csv("tapkey lock id , kinnovis unit name\n").map(|r| r.len()), Ok(0));
    }
}
