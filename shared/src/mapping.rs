//! `portier mapping import units.csv` and `portier mapping locks` (design §6.3).
//!
//! The CSV is what Kinnovis support asks operators for: header `Tapkey Lock ID,Kinnovis Unit
//! Name`, one unit per line. Every line is checked (lock id syntax, unit known to Kinnovis, no
//! unit or lock twice) and every problem is reported with its line before anything is written:
//! an import is all or nothing. The mappings go to the store (`TENANT#t / MAP#unit#name`), where
//! the planner reads them on both runtimes, replacing a configured mapping of the same unit.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::error::{CallError, InfraError};
use crate::model::{ItemKind, ItemRef, LockId, Mapping, Target};
use crate::sources::kinnovis::dto::{AccessState, BookingStatus};
use crate::store::Records;
use crate::tenants::TenantRuntime;

/// The header Kinnovis support uses.
pub const CSV_HEADER: &str = "Tapkey Lock ID,Kinnovis Unit Name";

/// One valid line of the CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvRow {
    /// 1-based line number in the file.
    pub line: usize,
    pub lock: LockId,
    pub unit: String,
}

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

/// Splits one CSV line into fields (RFC 4180 quoting, `""` inside quotes; no line breaks in
/// fields, which unit names and lock ids never have).
fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.trim().is_empty() && !was_quoted => {
                field.clear();
                quoted = true;
                was_quoted = true;
            }
            (false, ',') => {
                out.push(std::mem::take(&mut field).trim().to_owned());
                was_quoted = false;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    out.push(field.trim().to_owned());
    Ok(out)
}

/// A Tapkey bound lock id is a GUID in its usual 8-4-4-4-12 form.
fn lock_id(raw: &str) -> Option<LockId> {
    let ok = raw.len() == 36 && uuid::Uuid::try_parse(raw).is_ok();
    ok.then(|| LockId(raw.to_ascii_lowercase()))
}

/// Parses and checks the CSV on its own (syntax, duplicates); every problem names its line.
pub fn parse_csv(text: &str) -> Result<Vec<CsvRow>, Vec<String>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text); // Excel writes a BOM
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l)).filter(|(_, l)| !l.trim().is_empty());
    let mut errors = Vec::new();
    match lines.next() {
        Some((n, header)) => {
            let got = fields(header).unwrap_or_default();
            let want: Vec<&str> = CSV_HEADER.split(',').collect();
            let matches =
                got.len() == want.len() && got.iter().zip(&want).all(|(g, w)| g.eq_ignore_ascii_case(w));
            if !matches {
                errors
                    .push(format!("line {n}: expected the header `{CSV_HEADER}`, found `{}`", header.trim()));
            }
        }
        None => return Err(vec![format!("the file is empty: expected the header `{CSV_HEADER}`")]),
    }
    let mut rows: Vec<CsvRow> = Vec::new();
    let mut units: BTreeMap<String, usize> = BTreeMap::new();
    let mut locks: BTreeMap<LockId, (usize, String)> = BTreeMap::new();
    for (n, line) in lines {
        let f = match fields(line) {
            Ok(f) => f,
            Err(e) => {
                errors.push(format!("line {n}: {e}"));
                continue;
            }
        };
        let [raw_lock, unit] = f.as_slice() else {
            errors.push(format!("line {n}: expected 2 fields (lock id, unit name), found {}", f.len()));
            continue;
        };
        let Some(lock) = lock_id(raw_lock) else {
            errors.push(format!(
                "line {n}: {raw_lock:?} is not a Tapkey lock id (a GUID such as ea610634-4fc0-4084-85b2-bebf52c3595f)"
            ));
            continue;
        };
        if unit.is_empty() {
            errors.push(format!("line {n}: the unit name is empty"));
            continue;
        }
        if let Some(first) = units.get(unit) {
            errors.push(format!("line {n}: unit {unit} is listed twice (first on line {first})"));
            continue;
        }
        if let Some((first, other)) = locks.get(&lock) {
            errors.push(format!(
                "line {n}: lock {lock} is listed twice (on line {first} for unit {other}); one lock opens one unit"
            ));
            continue;
        }
        units.insert(unit.clone(), n);
        locks.insert(lock.clone(), (n, unit.clone()));
        rows.push(CsvRow { line: n, lock, unit: unit.clone() });
    }
    if errors.is_empty() { Ok(rows) } else { Err(errors) }
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub imported: usize,
    /// Units that had a stored mapping before (now replaced).
    pub replaced: usize,
}

/// Checks the CSV against Kinnovis (every unit must exist at the location) and stores it,
/// or stores nothing and names every bad line.
pub async fn import(
    records: &Records,
    tenant: &TenantRuntime,
    text: &str,
) -> Result<ImportReport, ImportError> {
    let (Some(kinnovis), Some(_)) = (tenant.kinnovis(), tenant.tapkey()) else {
        return Err(ImportError::NotApplicable(tenant.config.id.to_string()));
    };
    let rows = parse_csv(text).map_err(ImportError::Invalid)?;
    let known = kinnovis.client().units().await?;
    let mut errors = Vec::new();
    for row in &rows {
        if known.iter().any(|u| u.name == row.unit) {
            continue;
        }
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
    if !errors.is_empty() {
        return Err(ImportError::Invalid(errors));
    }
    let before = records.stored_mappings(&tenant.config.id).await?;
    let mappings: Vec<Mapping> = rows
        .iter()
        .map(|r| Mapping {
            item: ItemRef { kind: ItemKind::Unit, id: r.unit.clone() },
            targets: vec![Target::TapkeyLock(r.lock.clone())],
        })
        .collect();
    let replaced = mappings.iter().filter(|m| before.iter().any(|b| b.item == m.item)).count();
    records.put_mappings(&tenant.config.id, &mappings).await?;
    Ok(ImportReport { imported: mappings.len(), replaced })
}

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
    let mut out = String::new();
    let _ = writeln!(out, "{:<36}  {:<24}  {:<8}  {:<16}  bookings", "lock id", "title", "state", "units");
    for l in &report.locks {
        let state = match (l.bound, l.active) {
            (false, _) => "unbound",
            (true, true) => "active",
            (true, false) => "INACTIVE",
        };
        let units = if l.units.is_empty() { "-".to_owned() } else { l.units.join(", ") };
        let _ = writeln!(
            out,
            "{:<36}  {:<24}  {:<8}  {:<16}  {}",
            l.id, l.title, state, units, l.bookings_needing
        );
    }
    for w in &report.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const L1: &str = "ea610634-4fc0-4084-85b2-bebf52c3595f";
    const L2: &str = "0b7c2f3e-91d4-4a55-8f0e-6c1d2e3f4a5b";

    #[test]
    fn a_good_file_parses_with_quotes_a_bom_and_blank_lines() {
        let csv = format!(
            "\u{feff}Tapkey Lock ID,Kinnovis Unit Name\r\n{L1},A-017\r\n\r\n\"{}\", \"B-1, \"\"corner\"\"\"\n",
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
