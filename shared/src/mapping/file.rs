//! The mapping file: Excel's CSV dialects, every bad line named.

use std::collections::BTreeMap;

use crate::model::LockId;

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
        Some((n, header)) => errors.extend(header_problem(n, &header)),
        None if errors.is_empty() => {
            return Err(vec![format!("the file is empty: expected the header `{CSV_HEADER}`")]);
        }
        None => return Err(errors),
    }
    let mut seen = SeenRows::default();
    for (n, record) in lines {
        if let Err(e) = seen.take(text, n, &record) {
            errors.push(e);
        }
    }
    if errors.is_empty() { Ok(seen.rows) } else { Err(errors) }
}

fn header_problem(n: usize, header: &csv::StringRecord) -> Option<String> {
    let want: Vec<&str> = CSV_HEADER.split(',').collect();
    let matches =
        header.len() == want.len() && header.iter().zip(&want).all(|(g, w)| g.eq_ignore_ascii_case(w));
    let found: Vec<&str> = header.iter().collect();
    (!matches).then(|| {
        format!(
            "line {n}: expected the header `{CSV_HEADER}` (or `;`-separated), found `{}`",
            found.join(",")
        )
    })
}

/// The rows taken so far, so a unit or lock listed twice is refused with the line of the first.
#[derive(Default)]
struct SeenRows {
    rows: Vec<CsvRow>,
    units: BTreeMap<String, usize>,
    locks: BTreeMap<LockId, (usize, String)>,
}

impl SeenRows {
    /// Line `n` of `text`, or why it is refused.
    fn take(&mut self, text: &str, n: usize, record: &csv::StringRecord) -> Result<(), String> {
        let f: Vec<&str> = record.iter().collect();
        // A quote left open swallows the rest of the file into one field; no unit name or
        // lock id holds a line break, so an odd count of quotes on the line gives it away.
        let raw = text.lines().nth(n.saturating_sub(1)).unwrap_or_default();
        if raw.matches('"').count() % 2 == 1 {
            return Err(format!("line {n}: a quoted field is not closed (it runs into the next line)"));
        }
        let [raw_lock, unit] = f.as_slice() else {
            return Err(format!("line {n}: expected 2 fields (lock id, unit name), found {}", f.len()));
        };
        let (raw_lock, unit) = (*raw_lock, (*unit).to_owned());
        let Some(lock) = lock_id(raw_lock) else {
            return Err(format!(
                "line {n}: {raw_lock:?} is not a Tapkey lock id (a GUID such as ea610634-4fc0-4084-85b2-bebf52c3595f)"
            ));
        };
        if unit.is_empty() {
            return Err(format!("line {n}: the unit name is empty"));
        }
        if let Some(first) = self.units.get(&unit) {
            return Err(format!("line {n}: unit {unit} is listed twice (first on line {first})"));
        }
        if let Some((first, other)) = self.locks.get(&lock) {
            return Err(format!(
                "line {n}: lock {lock} is listed twice (on line {first} for unit {other}); one lock opens one unit"
            ));
        }
        self.units.insert(unit.clone(), n);
        self.locks.insert(lock.clone(), (n, unit.clone()));
        self.rows.push(CsvRow { line: n, lock, unit });
        Ok(())
    }
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
