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

use crate::config::TenantConfig;
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

/// A Tapkey bound lock id is a GUID in its usual 8-4-4-4-12 form.
fn lock_id(raw: &str) -> Option<LockId> {
    let ok = raw.len() == 36 && uuid::Uuid::try_parse(raw).is_ok();
    ok.then(|| LockId(raw.to_ascii_lowercase()))
}

/// The field separator: Excel writes `;` where the decimal mark is a comma (DE, AT), `,`
/// elsewhere. The header has neither inside a name, so its first line decides.
fn delimiter(text: &str) -> u8 {
    let first = text.lines().next().unwrap_or_default();
    if first.matches(';').count() > first.matches(',').count() { b';' } else { b',' }
}

/// Parses and checks the CSV on its own (syntax, duplicates); every problem names its line.
/// Comma- or semicolon-separated, RFC 4180 quoting, with or without Excel's UTF-8 BOM.
pub fn parse_csv(text: &str) -> Result<Vec<CsvRow>, Vec<String>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .delimiter(delimiter(text))
        .from_reader(text.as_bytes());
    let mut errors = Vec::new();
    let mut records = Vec::new();
    for record in reader.records() {
        match record {
            // Lines holding only separators or spaces are as blank as empty ones.
            Ok(r) if r.iter().all(str::is_empty) => {}
            Ok(r) => records.push((r.position().map_or(0, |p| line_of(text, p.byte())), r)),
            Err(e) => {
                let line = e.position().map_or(0, |p| line_of(text, p.byte()));
                errors.push(format!("line {line}: {}", csv_problem(&e)));
            }
        }
    }
    let mut lines = records.into_iter();
    match lines.next() {
        Some((n, header)) => {
            let want: Vec<&str> = CSV_HEADER.split(',').collect();
            let matches = header.len() == want.len()
                && header.iter().zip(&want).all(|(g, w)| g.eq_ignore_ascii_case(w));
            if !matches {
                let found: Vec<&str> = header.iter().collect();
                errors.push(format!(
                    "line {n}: expected the header `{CSV_HEADER}` (or `;`-separated), found `{}`",
                    found.join(",")
                ));
            }
        }
        None if errors.is_empty() => {
            return Err(vec![format!("the file is empty: expected the header `{CSV_HEADER}`")]);
        }
        None => return Err(errors),
    }
    let mut rows: Vec<CsvRow> = Vec::new();
    let mut units: BTreeMap<String, usize> = BTreeMap::new();
    let mut locks: BTreeMap<LockId, (usize, String)> = BTreeMap::new();
    for (n, record) in lines {
        let f: Vec<&str> = record.iter().collect();
        // A quote left open swallows the rest of the file into one field; no unit name or
        // lock id holds a line break, so an odd count of quotes on the line gives it away.
        let raw = text.lines().nth(n.saturating_sub(1)).unwrap_or_default();
        if raw.matches('"').count() % 2 == 1 {
            errors.push(format!("line {n}: a quoted field is not closed (it runs into the next line)"));
            continue;
        }
        let [raw_lock, unit] = f.as_slice() else {
            errors.push(format!("line {n}: expected 2 fields (lock id, unit name), found {}", f.len()));
            continue;
        };
        let (raw_lock, unit) = (*raw_lock, (*unit).to_owned());
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
        if let Some(first) = units.get(&unit) {
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
        rows.push(CsvRow { line: n, lock, unit });
    }
    if errors.is_empty() { Ok(rows) } else { Err(errors) }
}

/// The 1-based line where a record starts. The csv crate's own line count skips blank lines,
/// and after `\r\n` its offset can point at the `\n`: step over line ends first.
fn line_of(text: &str, byte: u64) -> usize {
    let bytes = text.as_bytes();
    let mut at = usize::try_from(byte).unwrap_or(usize::MAX).min(bytes.len());
    while at < bytes.len() && matches!(bytes[at], b'\r' | b'\n') {
        at += 1;
    }
    bytes[..at].iter().filter(|b| **b == b'\n').count() + 1
}

fn csv_problem(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "not UTF-8 text (save the file as \"CSV UTF-8\")".into(),
        _ => e.to_string(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
