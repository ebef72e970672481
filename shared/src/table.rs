//! Aligned columns for the terminal reports (`explain`, `drift`, `mapping locks`): no borders,
//! widths from the content, the same whether stdout is a terminal or a pipe.

use comfy_table::{Table, presets};

/// `rows` as columns two spaces apart, each line after `indent`; a `header` row first when
/// given. Nothing at all when there is neither.
pub fn columns<R, C>(indent: &str, header: Option<&[&str]>, rows: R) -> String
where
    R: IntoIterator<Item = C>,
    C: IntoIterator<Item = String>,
{
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    if let Some(header) = header {
        table.set_header(header.iter().copied());
    }
    for row in rows {
        table.add_row(row.into_iter().collect::<Vec<_>>());
    }
    if table.row_count() == 0 && header.is_none() {
        return String::new();
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    let mut out = String::new();
    for line in table.lines() {
        out.push_str(indent);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let rows = [["a", "bb", "c"], ["ccc", "d", "e"]].map(|r| r.map(str::to_owned));
        let text = columns("  ", Some(&["x", "y", "last"]), rows);
        assert_eq!(text, "  x    y   last\n  a    bb  c\n  ccc  d   e\n");
    }

    #[test]
    fn no_rows_and_no_header_is_nothing() {
        assert_eq!(columns("  ", None, Vec::<Vec<String>>::new()), "");
        assert_eq!(columns("", Some(&["id", "title"]), Vec::<Vec<String>>::new()), "id  title\n");
    }
}
