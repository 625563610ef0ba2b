//! Apache Parquet, the columnar format data teams export event tables in (Spark, pandas/pyarrow,
//! DuckDB, Polars, BigQuery). The columns are the CSV format's — `user`, `item`, `timestamp`,
//! `kind`, found by name (case-insensitive; extra columns ignored) among the top-level columns:
//!
//! - `user`, `item`: strings (`BYTE_ARRAY`) or integers (`INT32`, `INT64`; an integer id is the
//!   same id as its decimal text in a CSV file);
//! - `timestamp`: `INT64` or `INT32`, plain or annotated `TIMESTAMP`/`DATE`, taken as the integer
//!   it holds (a `TIMESTAMP(MILLIS)` column stays in milliseconds: only order matters);
//! - `kind`: a string, `click` or `exposure` (case-insensitive, surrounding spaces ignored).
//!
//! Compression: uncompressed, snappy, gzip, zstd and lz4. The file is read a row group at a time,
//! each column in batches, so memory holds one batch of each column besides the log; the log's
//! event vector is sized once from the file's row count. A null or bad value is a malformed
//! record — numbered by its row from 1, an error or, under `--lenient`, a skip — and a file
//! whose columns are missing or of another type is refused before any row is read.
//!
//! [`ParquetWriter`] (one event at a time; [`crate::write`] for a whole log) writes the four columns as strings and
//! `INT64` (snappy, dictionary-encoded ids), in row groups of a million events.

use std::fmt::Write as _;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use ::parquet::basic::{Compression, Type as PhysicalType};
use ::parquet::column::reader::{get_typed_column_reader, ColumnReader, ColumnReaderImpl};
use ::parquet::data_type::{ByteArray, ByteArrayType, DataType, Int32Type, Int64Type};
use ::parquet::errors::ParquetError;
use ::parquet::file::properties::WriterProperties;
use ::parquet::file::reader::{FileReader, RowGroupReader};
use ::parquet::file::serialized_reader::SerializedFileReader;
use ::parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use ::parquet::schema::parser::parse_message_type;
use ::parquet::schema::types::SchemaDescriptor;

use super::{malformed, Event, EventKind, EventLog, ReadOptions};
use crate::error::{DataError, Result};
use crate::FileError;

/// The required columns, in the order [`ParquetWriter`] puts them.
const COLUMNS: [&str; 4] = ["user", "item", "timestamp", "kind"];

/// Rows read from each column at a time.
const BATCH_ROWS: usize = 64 * 1024;

/// Rows per row group that [`ParquetWriter`] produces.
const ROW_GROUP_ROWS: usize = 1 << 20;

/// The schema [`ParquetWriter`] produces.
const SCHEMA: &str = "message events {
  REQUIRED BYTE_ARRAY user (STRING);
  REQUIRED BYTE_ARRAY item (STRING);
  REQUIRED INT64 timestamp;
  REQUIRED BYTE_ARRAY kind (STRING);
}";

/// The physical types a column may have, and how a row's value is held until it is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Physical {
    Text,
    Int32,
    Int64,
}

/// One value of a row: a string's bytes or an integer.
#[derive(Clone, Debug)]
enum Value {
    Text(ByteArray),
    Int(i64),
}

/// Where each required column is in the file, its type and whether it may hold nulls.
#[derive(Clone, Copy, Debug)]
struct Column {
    index: usize,
    physical: Physical,
    max_def_level: i16,
}

/// Reads a Parquet file of events; a bad schema is always an error, bad rows follow `opts`.
pub fn read(path: &Path, opts: ReadOptions) -> Result<EventLog> {
    let source = path.display().to_string();
    let file = File::open(path).map_err(|e| FileError::new(path, e))?;
    let fail = |e| parquet_error(&source, e);
    let reader = SerializedFileReader::new(file).map_err(fail)?;
    let metadata = reader.metadata();
    let columns = find_columns(metadata.file_metadata().schema_descr()).map_err(|reason| {
        DataError::Schema {
            file: source.clone(),
            reason,
        }
    })?;
    let mut log = EventLog::default();
    log.events
        .reserve_exact(usize::try_from(metadata.file_metadata().num_rows()).unwrap_or(0));
    let mut row = 0u64;
    let mut batch: [Vec<Option<Value>>; 4] = Default::default();
    let mut ids = [String::new(), String::new()];
    for group in 0..reader.num_row_groups() {
        let group = reader.get_row_group(group).map_err(fail)?;
        let mut cursors = columns
            .iter()
            .map(|c| Cursor::new(&*group, *c))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(fail)?;
        loop {
            let mut rows = None;
            for (cursor, values) in cursors.iter_mut().zip(&mut batch) {
                let n = cursor.read(BATCH_ROWS, values).map_err(fail)?;
                if rows.is_some_and(|rows| rows != n) {
                    return Err(parquet_error(
                        &source,
                        ParquetError::General("columns of a row group differ in length".into()),
                    ));
                }
                rows = Some(n);
            }
            let rows = rows.unwrap_or(0);
            if rows == 0 {
                break;
            }
            let [users, items, stamps, kinds] = &batch;
            for i in 0..rows {
                row += 1;
                let fields = (&users[i], &items[i], &stamps[i], &kinds[i]);
                if let Err(reason) = push_row(&mut log, &mut ids, fields) {
                    malformed(&mut log, opts, &source, row, reason)?;
                }
            }
        }
    }
    Ok(log)
}

/// One row's fields, each `None` where the row holds a null.
type Row<'a> = (
    &'a Option<Value>,
    &'a Option<Value>,
    &'a Option<Value>,
    &'a Option<Value>,
);

/// Parses one row into the log or says why it is malformed (leaving the log as it was);
/// `ids` is scratch for integer ids.
fn push_row(
    log: &mut EventLog,
    ids: &mut [String; 2],
    (user, item, ts, kind): Row<'_>,
) -> std::result::Result<(), String> {
    let ts = match ts {
        Some(Value::Int(ts)) => *ts,
        _ => return Err("empty timestamp".to_owned()),
    };
    let kind = super::parse_kind(text(kind, "kind")?.trim())?;
    let [user_id, item_id] = ids;
    let (user, item) = (
        id_text(user, "user", user_id)?,
        id_text(item, "item", item_id)?,
    );
    let (user, item) = (log.users.intern(user), log.items.intern(item));
    log.events.push(Event {
        user,
        item,
        ts,
        kind,
    });
    Ok(())
}

/// A string field's text.
fn text<'a>(value: &'a Option<Value>, name: &str) -> std::result::Result<&'a str, String> {
    match value {
        Some(Value::Text(bytes)) => bytes
            .as_utf8()
            .map_err(|_| format!("{name} is not valid UTF-8")),
        Some(Value::Int(_)) | None => Err(format!("empty {name}")),
    }
}

/// An id field's text: a string as it is, an integer in decimal (written into `scratch`).
fn id_text<'a>(
    value: &'a Option<Value>,
    name: &str,
    scratch: &'a mut String,
) -> std::result::Result<&'a str, String> {
    match value {
        Some(Value::Int(v)) => {
            scratch.clear();
            write!(scratch, "{v}").expect("writing to a String cannot fail");
            Ok(scratch)
        }
        _ => match text(value, name)? {
            "" => Err(format!("empty {name}")),
            t => Ok(t),
        },
    }
}

/// Finds the required columns among the top-level ones; errors name the first one missing,
/// repeated, nested or of a type this reader does not take.
fn find_columns(schema: &SchemaDescriptor) -> std::result::Result<[Column; 4], String> {
    let mut found = [None; 4];
    for (index, column) in schema.columns().iter().enumerate() {
        let Some(slot) = COLUMNS
            .iter()
            .position(|name| column.name().eq_ignore_ascii_case(name))
        else {
            continue;
        };
        // A field of a nested group (`a.user`) is not the table's column.
        if column.path().parts().len() != 1 {
            continue;
        }
        let name = COLUMNS[slot];
        if found[slot].is_some() {
            return Err(format!("schema repeats column '{name}'"));
        }
        if column.max_rep_level() > 0 {
            return Err(format!(
                "column '{name}' is a list; it must hold one value per row"
            ));
        }
        let physical = match (column.physical_type(), slot) {
            (PhysicalType::BYTE_ARRAY, 0 | 1 | 3) => Physical::Text,
            (PhysicalType::INT32, 0..=2) => Physical::Int32,
            (PhysicalType::INT64, 0..=2) => Physical::Int64,
            (other, _) => {
                let expected = match slot {
                    0 | 1 => "a string or an integer",
                    2 => "INT64 or INT32",
                    _ => "a string",
                };
                return Err(format!(
                    "column '{name}' is {other:?}; it must be {expected}"
                ));
            }
        };
        found[slot] = Some(Column {
            index,
            physical,
            max_def_level: column.max_def_level(),
        });
    }
    let mut columns = [None; 4];
    for (slot, (column, name)) in found.into_iter().zip(COLUMNS).enumerate() {
        columns[slot] = Some(column.ok_or_else(|| {
            format!("schema lacks column '{name}' (needs {})", COLUMNS.join(","))
        })?);
    }
    Ok(columns.map(|c| c.expect("every slot was filled above")))
}

/// One column of a row group, read in batches.
enum Cursor {
    Text(Typed<ByteArrayType>),
    Int32(Typed<Int32Type>),
    Int64(Typed<Int64Type>),
}

/// A typed column reader with its reusable buffers.
struct Typed<T: DataType> {
    reader: ColumnReaderImpl<T>,
    max_def_level: i16,
    levels: Vec<i16>,
    values: Vec<T::T>,
}

impl<T: DataType> Typed<T> {
    fn new(reader: ColumnReader, max_def_level: i16) -> Self {
        Typed {
            reader: get_typed_column_reader(reader),
            max_def_level,
            levels: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Reads up to `rows` rows into `out` (cleared first), `None` for a null; returns how many.
    fn read(
        &mut self,
        rows: usize,
        out: &mut Vec<Option<Value>>,
        convert: impl Fn(&T::T) -> Value,
    ) -> std::result::Result<usize, ParquetError> {
        out.clear();
        self.levels.clear();
        self.values.clear();
        let nullable = self.max_def_level > 0;
        let levels = nullable.then_some(&mut self.levels);
        let (read, _, _) = self
            .reader
            .read_records(rows, levels, None, &mut self.values)?;
        if nullable {
            let mut values = self.values.iter();
            for &level in &self.levels[..read] {
                out.push(if level == self.max_def_level {
                    values.next().map(&convert)
                } else {
                    None
                });
            }
        } else {
            out.extend(self.values[..read].iter().map(|v| Some(convert(v))));
        }
        Ok(read)
    }
}

impl Cursor {
    fn new(
        group: &dyn RowGroupReader,
        column: Column,
    ) -> std::result::Result<Cursor, ParquetError> {
        let reader = group.get_column_reader(column.index)?;
        let level = column.max_def_level;
        Ok(match column.physical {
            Physical::Text => Cursor::Text(Typed::new(reader, level)),
            Physical::Int32 => Cursor::Int32(Typed::new(reader, level)),
            Physical::Int64 => Cursor::Int64(Typed::new(reader, level)),
        })
    }

    fn read(
        &mut self,
        rows: usize,
        out: &mut Vec<Option<Value>>,
    ) -> std::result::Result<usize, ParquetError> {
        match self {
            Cursor::Text(c) => c.read(rows, out, |v| Value::Text(v.clone())),
            Cursor::Int32(c) => c.read(rows, out, |v| Value::Int(i64::from(*v))),
            Cursor::Int64(c) => c.read(rows, out, |v| Value::Int(*v)),
        }
    }
}

/// Writes Parquet one event at a time, a row group (a million events) at once.
/// [`ParquetWriter::finish`] writes the last row group and the footer; a file not finished is
/// not a Parquet file.
pub struct ParquetWriter {
    writer: SerializedFileWriter<File>,
    source: String,
    rows_per_group: usize,
    users: Vec<ByteArray>,
    items: Vec<ByteArray>,
    stamps: Vec<i64>,
    kinds: Vec<ByteArray>,
}

impl ParquetWriter {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> Result<ParquetWriter> {
        ParquetWriter::with_row_groups(path, ROW_GROUP_ROWS)
    }

    /// [`ParquetWriter::create`] with `rows_per_group` rows in each row group.
    fn with_row_groups(path: &Path, rows_per_group: usize) -> Result<ParquetWriter> {
        let source = path.display().to_string();
        let fail = |e| parquet_error(&source, e);
        let schema = Arc::new(parse_message_type(SCHEMA).map_err(fail)?);
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(rows_per_group))
            .set_created_by(format!("slowfast {}", env!("CARGO_PKG_VERSION")))
            .build();
        let file = File::create(path).map_err(|e| FileError::new(path, e))?;
        let writer = SerializedFileWriter::new(file, schema, Arc::new(props)).map_err(fail)?;
        Ok(ParquetWriter {
            writer,
            source,
            rows_per_group: rows_per_group.max(1),
            users: Vec::new(),
            items: Vec::new(),
            stamps: Vec::new(),
            kinds: Vec::new(),
        })
    }

    /// Appends one event.
    pub fn push(&mut self, user: &str, item: &str, ts: i64, kind: EventKind) -> Result<()> {
        self.users.push(ByteArray::from(user));
        self.items.push(ByteArray::from(item));
        self.stamps.push(ts);
        self.kinds.push(ByteArray::from(kind.as_str()));
        if self.stamps.len() >= self.rows_per_group {
            self.write_group()?;
        }
        Ok(())
    }

    /// Writes the buffered events as one row group.
    fn write_group(&mut self) -> Result<()> {
        let fail = |e| parquet_error(&self.source, e);
        let mut group = self.writer.next_row_group().map_err(fail)?;
        write_column::<ByteArrayType>(&mut group, &self.users).map_err(fail)?;
        write_column::<ByteArrayType>(&mut group, &self.items).map_err(fail)?;
        write_column::<Int64Type>(&mut group, &self.stamps).map_err(fail)?;
        write_column::<ByteArrayType>(&mut group, &self.kinds).map_err(fail)?;
        group.close().map_err(fail)?;
        self.users.clear();
        self.items.clear();
        self.stamps.clear();
        self.kinds.clear();
        Ok(())
    }

    /// Writes what is buffered and the footer.
    pub fn finish(mut self) -> Result<()> {
        if !self.stamps.is_empty() {
            self.write_group()?;
        }
        let source = self.source.clone();
        self.writer
            .close()
            .map(|_| ())
            .map_err(|e| parquet_error(&source, e))
    }
}

/// Writes the next column of a row group.
fn write_column<T: DataType>(
    group: &mut SerializedRowGroupWriter<'_, File>,
    values: &[T::T],
) -> std::result::Result<(), ParquetError> {
    let mut column = group
        .next_column()?
        .ok_or_else(|| ParquetError::General("the schema has fewer columns than written".into()))?;
    column.typed::<T>().write_batch(values, None, None)?;
    column.close()
}

fn parquet_error(file: &str, source: ParquetError) -> DataError {
    DataError::Parquet {
        file: file.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use ::parquet::basic::ZstdLevel;
    use ::parquet::file::writer::SerializedColumnWriter;

    use super::*;
    use crate::synth::{self, SynthConfig};
    use crate::Format;

    /// A column of a hand-made table: its values, `None` for a null.
    enum Values {
        Text(Vec<Option<&'static str>>),
        Int32(Vec<Option<i32>>),
        Int64(Vec<Option<i64>>),
    }

    /// Writes one row group of `columns` under `schema` with `compression`.
    fn write_table(path: &Path, schema: &str, columns: &[Values], compression: Compression) {
        let props = WriterProperties::builder()
            .set_compression(compression)
            .build();
        let schema = Arc::new(parse_message_type(schema).unwrap());
        let file = File::create(path).unwrap();
        let mut writer = SerializedFileWriter::new(file, schema, Arc::new(props)).unwrap();
        let mut group = writer.next_row_group().unwrap();
        for values in columns {
            let mut column = group.next_column().unwrap().unwrap();
            match values {
                Values::Text(v) => {
                    let v: Vec<_> = v.iter().map(|x| x.map(ByteArray::from)).collect();
                    write_values::<ByteArrayType>(&mut column, &v);
                }
                Values::Int32(v) => write_values::<Int32Type>(&mut column, v),
                Values::Int64(v) => write_values::<Int64Type>(&mut column, v),
            }
            column.close().unwrap();
        }
        group.close().unwrap();
        writer.close().unwrap();
    }

    /// Writes one column's values, with definition levels where the schema makes it nullable.
    fn write_values<T: DataType>(column: &mut SerializedColumnWriter<'_>, values: &[Option<T::T>]) {
        let writer = column.typed::<T>();
        let present: Vec<T::T> = values.iter().flatten().cloned().collect();
        let levels: Vec<i16> = values.iter().map(|v| i16::from(v.is_some())).collect();
        let levels = (writer.get_descriptor().max_def_level() > 0).then_some(&levels[..]);
        writer.write_batch(&present, levels, None).unwrap();
    }

    fn read_file(path: &Path, lenient: bool) -> Result<EventLog> {
        crate::read(path, Format::Parquet, ReadOptions { lenient })
    }

    /// The events as their raw ids say them.
    fn raw_events(log: &EventLog) -> Vec<(String, String, i64, EventKind)> {
        let raw = |e: &Event| {
            let (user, item) = log.raw_ids(e).unwrap();
            (user.to_owned(), item.to_owned(), e.ts, e.kind)
        };
        log.events.iter().map(raw).collect()
    }

    /// Asserts that two logs hold the same events, in the same order and with the same ids
    /// (both read from files: ids numbered in order of first appearance).
    fn assert_same_log(back: &EventLog, original: &EventLog, what: &str) {
        assert_eq!(back.events, original.events, "{what}");
        assert_eq!(raw_events(back), raw_events(original), "{what}");
        assert_eq!(back.users.len(), original.users.len(), "{what}");
        assert_eq!(back.items.len(), original.items.len(), "{what}");
    }

    #[test]
    fn a_round_trip_gives_what_the_csv_and_gzip_readers_give() {
        let cfg = SynthConfig {
            users: 40,
            items: 300,
            ..SynthConfig::default()
        };
        let original = synth::generate(&cfg).unwrap();
        assert!(original.events.len() > 3 * 1000, "several row groups below");
        let dir = tempfile::tempdir().unwrap();
        let read_back = |name: &str| {
            let path = dir.path().join(name);
            crate::write(&original, &path).unwrap();
            crate::read(&path, Format::guess(&path), ReadOptions::default()).unwrap()
        };
        let csv = read_back("events.csv");
        assert_eq!(raw_events(&csv), raw_events(&original));
        assert_same_log(&read_back("events.csv.gz"), &csv, "gzip");
        assert_same_log(&read_back("events.parquet"), &csv, "Parquet");
        // Row groups (and batches) that end mid-way through a user's history.
        let path = dir.path().join("small-groups.parquet");
        let mut writer = ParquetWriter::with_row_groups(&path, 1000).unwrap();
        for e in &original.events {
            let (user, item) = original.raw_ids(e).unwrap();
            writer.push(user, item, e.ts, e.kind).unwrap();
        }
        writer.finish().unwrap();
        let file = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        assert!(file.num_row_groups() > 3);
        assert_same_log(
            &read_file(&path, false).unwrap(),
            &csv,
            "row groups of 1000",
        );
    }

    #[test]
    fn columns_are_found_by_name_and_integer_ids_are_their_decimal_text() {
        let dir = tempfile::tempdir().unwrap();
        let (parquet, csv) = (dir.path().join("t.parquet"), dir.path().join("t.csv"));
        let schema = "message t {
          REQUIRED BYTE_ARRAY Kind (STRING);
          REQUIRED INT32 timestamp;
          REQUIRED INT32 ITEM;
          REQUIRED BYTE_ARRAY score (STRING);
          REQUIRED INT64 user;
        }";
        let columns = [
            Values::Text(vec![Some(" Click"), Some("EXPOSURE"), Some("click")]),
            Values::Int32(vec![Some(10), Some(11), Some(-5)]),
            Values::Int32(vec![Some(7), Some(8), Some(7)]),
            Values::Text(vec![Some("a"), Some("b"), Some("c")]),
            Values::Int64(vec![Some(1), Some(2), Some(2)]),
        ];
        std::fs::write(
            &csv,
            "kind,timestamp,item,user\nclick,10,7,1\nexposure,11,8,2\nclick,-5,7,2\n",
        )
        .unwrap();
        let from_csv = crate::read(&csv, Format::Csv, ReadOptions::default()).unwrap();
        for compression in [
            Compression::UNCOMPRESSED,
            Compression::ZSTD(ZstdLevel::default()),
            Compression::LZ4,
        ] {
            write_table(&parquet, schema, &columns, compression);
            let log = read_file(&parquet, false).unwrap();
            assert_same_log(&log, &from_csv, &format!("{compression}"));
        }
    }

    #[test]
    fn a_null_or_bad_value_is_a_malformed_row_numbered_from_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let schema = "message t {
          OPTIONAL BYTE_ARRAY user (STRING);
          OPTIONAL BYTE_ARRAY item (STRING);
          OPTIONAL INT64 timestamp;
          OPTIONAL BYTE_ARRAY kind (STRING);
        }";
        let columns = [
            Values::Text(vec![
                Some("u1"),
                None,
                Some("u1"),
                Some("u2"),
                Some(""),
                Some("u9"),
            ]),
            Values::Text(vec![
                Some("i1"),
                Some("i1"),
                Some("i2"),
                Some("i3"),
                Some("i4"),
                None,
            ]),
            Values::Int64(vec![Some(1), Some(2), None, Some(4), Some(5), Some(6)]),
            Values::Text(vec![
                Some("click"),
                Some("click"),
                Some("click"),
                Some("view"),
                None,
                Some("click"),
            ]),
        ];
        write_table(&path, schema, &columns, Compression::SNAPPY);
        let err = read_file(&path, false).unwrap_err();
        assert!(
            matches!(&err, DataError::Parse { line: 2, reason, .. } if reason == "empty user"),
            "{err}"
        );
        let log = read_file(&path, true).unwrap();
        assert_eq!(log.skipped, 5);
        assert_eq!(log.events.len(), 1);
        assert_eq!(
            (log.users.raw(0), log.items.raw(0)),
            (Some("u1"), Some("i1"))
        );
        // A skipped row leaves no id behind (u9's row lacks its item).
        assert_eq!((log.users.len(), log.items.len()), (1, 1));
        // The rows' reasons, each alone in a file.
        for (row, reason) in [
            (3, "empty timestamp"),
            (4, "kind 'view' is neither 'click' nor 'exposure'"),
            (5, "empty kind"),
            (6, "empty item"),
        ] {
            let keep = |v: &Values| match v {
                Values::Text(v) => Values::Text(vec![v[0], v[row - 1]]),
                Values::Int32(v) => Values::Int32(vec![v[0], v[row - 1]]),
                Values::Int64(v) => Values::Int64(vec![v[0], v[row - 1]]),
            };
            write_table(
                &path,
                schema,
                &columns.each_ref().map(keep),
                Compression::SNAPPY,
            );
            let err = read_file(&path, false).unwrap_err();
            assert!(
                matches!(&err, DataError::Parse { line: 2, reason: r, .. } if r == reason),
                "row {row}: {err}"
            );
        }
    }

    #[test]
    fn a_table_without_the_columns_is_refused_before_any_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let three = [
            Values::Text(vec![Some("u1")]),
            Values::Text(vec![Some("i1")]),
            Values::Int64(vec![Some(1)]),
        ];
        let text_ts = [
            Values::Text(vec![Some("u1")]),
            Values::Text(vec![Some("i1")]),
            Values::Text(vec![Some("1")]),
            Values::Text(vec![Some("click")]),
        ];
        let repeated = [
            Values::Text(vec![Some("u1")]),
            Values::Text(vec![Some("i1")]),
            Values::Int64(vec![Some(1)]),
            Values::Text(vec![Some("click")]),
            Values::Text(vec![Some("u2")]),
        ];
        for (schema, columns, expected) in [
            (
                "message t { REQUIRED BYTE_ARRAY user (STRING); REQUIRED BYTE_ARRAY item (STRING);
                 REQUIRED INT64 timestamp; }",
                &three[..],
                "schema lacks column 'kind' (needs user,item,timestamp,kind)",
            ),
            (
                "message t { REQUIRED BYTE_ARRAY user (STRING); REQUIRED BYTE_ARRAY item (STRING);
                 REQUIRED BYTE_ARRAY timestamp (STRING); REQUIRED BYTE_ARRAY kind (STRING); }",
                &text_ts[..],
                "column 'timestamp' is BYTE_ARRAY; it must be INT64 or INT32",
            ),
            (
                "message t { REQUIRED BYTE_ARRAY user (STRING); REQUIRED BYTE_ARRAY item (STRING);
                 REQUIRED INT64 timestamp; REQUIRED BYTE_ARRAY kind (STRING);
                 REQUIRED BYTE_ARRAY USER (STRING); }",
                &repeated[..],
                "schema repeats column 'user'",
            ),
        ] {
            write_table(&path, schema, columns, Compression::SNAPPY);
            for lenient in [false, true] {
                let err = read_file(&path, lenient).unwrap_err();
                assert!(
                    matches!(&err, DataError::Schema { reason, .. } if reason == expected),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn a_file_that_is_not_parquet_is_refused_with_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.parquet");
        std::fs::write(&path, "user,item,timestamp,kind\nu1,i1,1,click\n").unwrap();
        let err = read_file(&path, true).unwrap_err();
        assert!(matches!(err, DataError::Parquet { .. }), "{err}");
        assert!(err
            .to_string()
            .starts_with(&format!("{}: Parquet: ", path.display())));
        let missing = dir.path().join("missing.parquet");
        assert!(matches!(read_file(&missing, false), Err(DataError::Io(_))));
    }

    #[test]
    fn the_format_is_guessed_from_the_extension() {
        assert_eq!(
            Format::guess(Path::new("x/events.parquet")),
            Format::Parquet
        );
        assert_eq!(Format::guess(Path::new("events.csv.gz")), Format::Csv);
    }
}
