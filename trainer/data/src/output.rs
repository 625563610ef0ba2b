//! The files a command leaves behind: JSON documents (pretty-printed, ending in a newline, so
//! they diff well under version control) and text reports, with errors that name the file.

use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::{FileError, JsonError};

/// Writes `value` to `path` as pretty-printed JSON with a final newline; `what` names the
/// document in a serialisation error.
pub fn write_json(path: &Path, what: &str, value: &impl Serialize) -> Result<()> {
    let json = serde_json::to_string_pretty(value).map_err(JsonError::of(what))?;
    write_text(path, &(json + "\n"))
}

/// Writes `text` to `path`.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| FileError::new(path, e).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataError;

    #[test]
    fn json_is_pretty_ends_in_a_newline_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc.json");
        write_json(&path, "a document", &serde_json::json!({"a": [1, 2]})).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\n  \"a\": [\n    1,\n    2\n  ]\n}\n"
        );
        let missing = dir.path().join("no/such/dir/doc.json");
        let err = write_json(&missing, "a document", &1).unwrap_err();
        assert!(
            matches!(&err, DataError::Io(e) if e.path == missing),
            "{err}"
        );
        // A map with non-string keys has no JSON form.
        let map = std::collections::BTreeMap::from([((1, 2), 3)]);
        let err = write_json(&path, "a pair map", &map).unwrap_err();
        assert!(err.to_string().starts_with("JSON of a pair map: "), "{err}");
    }
}
