//! Rows for Postgres's `COPY ... FROM STDIN (FORMAT csv)`: the fastest way into a table, one
//! round trip and no per-row statement to parse and plan. Bulk writers (event appends, read
//! store batches) send their rows with [`copy_in`], which builds them as it sends.

use std::fmt::Display;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::PgConnection;

/// CSV rows as `COPY` reads them: text fields quoted (quotes doubled), an unquoted empty field
/// for NULL, numbers and ids as their text.
#[derive(Debug, Default)]
pub struct CopyRows {
    buf: Vec<u8>,
    open: bool,
}

impl CopyRows {
    /// Room for `bytes` of rows up front: a buffer grown by doubling copies itself over and
    /// over, and its large reallocations made the allocator consolidate its free lists.
    fn with_capacity(bytes: usize) -> Self {
        Self { buf: Vec::with_capacity(bytes), ..Self::default() }
    }

    fn separate(&mut self) {
        if self.open {
            self.buf.push(b',');
        }
        self.open = true;
    }

    /// A value whose text needs no quoting: numbers, UUIDs.
    pub fn plain(&mut self, value: impl Display) -> &mut Self {
        use std::io::Write;
        self.separate();
        // Writing to a Vec cannot fail.
        let _ = write!(self.buf, "{value}");
        self
    }

    /// Text, quoted.
    pub fn text(&mut self, value: &str) -> &mut Self {
        self.separate();
        self.buf.push(b'"');
        for byte in value.bytes() {
            if byte == b'"' {
                self.buf.push(b'"');
            }
            self.buf.push(byte);
        }
        self.buf.push(b'"');
        self
    }

    pub fn optional_text(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(value) => self.text(value),
            None => self.null(),
        }
    }

    pub fn time(&mut self, value: DateTime<Utc>) -> &mut Self {
        self.plain(value.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    pub fn optional_time(&mut self, value: Option<DateTime<Utc>>) -> &mut Self {
        match value {
            Some(value) => self.time(value),
            None => self.null(),
        }
    }

    pub fn null(&mut self) -> &mut Self {
        self.separate();
        self
    }

    pub fn end_row(&mut self) {
        self.buf.push(b'\n');
        self.open = false;
    }
}

/// Rows to a piece of a streamed `COPY`: the server parses and inserts one piece while the
/// next is built, and the buffer holds one piece, not a whole batch. (At 5M it sped the bulk
/// append beneath a replay by a fifth; `movies ingest`, bound by the server's inserts into
/// random-key indexes, not at all: docs/benchmarks.md.)
const PIECE_ROWS: usize = 1000;

/// Sends a row per item of `items` into `table (columns)` on `conn`, written by `write` about
/// `row_bytes` long, in pieces of [`PIECE_ROWS`]: each piece goes out as soon as it is built.
pub async fn copy_in<T>(
    conn: &mut PgConnection,
    table: &str,
    columns: &str,
    items: &[T],
    row_bytes: usize,
    mut write: impl FnMut(&mut CopyRows, &T),
) -> sqlx::Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let mut copy = conn.copy_in_raw(&format!("COPY {table} ({columns}) FROM STDIN (FORMAT csv)")).await?;
    let mut rows = CopyRows::with_capacity(PIECE_ROWS.min(items.len()) * row_bytes);
    for piece in items.chunks(PIECE_ROWS) {
        rows.buf.clear();
        for item in piece {
            write(&mut rows, item);
        }
        if let Err(error) = copy.send(rows.buf.as_slice()).await {
            let _ = copy.abort(error.to_string()).await;
            return Err(error);
        }
    }
    copy.finish().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_quoted_with_quotes_doubled_and_null_is_an_empty_field() {
        let mut rows = CopyRows::default();
        rows.plain(7).text(r#"say "hi", then \n go"#).null().optional_text(Some("")).end_row();
        rows.plain(1.5).time(DateTime::from_timestamp(0, 1_000).unwrap()).end_row();
        assert_eq!(
            String::from_utf8(rows.buf).unwrap(),
            "7,\"say \"\"hi\"\", then \\n go\",,\"\"\n1.5,1970-01-01T00:00:00.000001Z\n"
        );
    }
}
