//! Uploaded documents, stored once per content under `<data dir>/documents/ab/abcdef…` (the
//! SHA-256 of the bytes). Paths come only from the hash, never from a name a client sent.

use std::io::Write;
use std::path::{Path, PathBuf};

use diesel::prelude::*;
use sha2::{Digest, Sha256};

use super::model::{Actor, Document, RecordInput};
use super::service::{self, RecordError};
use crate::db::{self, DbConn};
use crate::fields::model::FieldType;
use crate::fields::service as fields;
use crate::fields::validate::PhoneCountry;
use crate::schema::documents;

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("{0}")]
    Refused(String),
    #[error("cannot store the document: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Extension, stored content type, and a check of the first bytes.
type FileKind = (&'static str, &'static str, fn(&[u8]) -> bool);

/// Accepted kinds of file.
const KINDS: [FileKind; 10] = [
    ("pdf", "application/pdf", |b| b.starts_with(b"%PDF-")),
    ("png", "image/png", |b| b.starts_with(b"\x89PNG\r\n\x1a\n")),
    ("jpg", "image/jpeg", |b| b.starts_with(&[0xFF, 0xD8, 0xFF])),
    ("jpeg", "image/jpeg", |b| b.starts_with(&[0xFF, 0xD8, 0xFF])),
    ("gif", "image/gif", |b| {
        b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a")
    }),
    ("txt", "text/plain; charset=utf-8", is_text),
    ("csv", "text/csv; charset=utf-8", is_text),
    (
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        is_zip,
    ),
    (
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        is_zip,
    ),
    ("odt", "application/vnd.oasis.opendocument.text", is_zip),
];

fn is_text(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok() && !bytes.contains(&0)
}

fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

pub fn accepted_extensions() -> String {
    KINDS
        .iter()
        .map(|(ext, _, _)| *ext)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The name kept for display and downloads: the last path segment, without control characters.
fn clean_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    if cleaned.trim().is_empty() {
        "document".to_string()
    } else {
        cleaned.trim().to_string()
    }
}

/// Checks the file's type by its extension and its first bytes; returns the content type.
pub fn check_type(filename: &str, bytes: &[u8]) -> Result<&'static str, DocumentError> {
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let Some((_, content_type, looks_right)) = KINDS.iter().find(|(e, _, _)| *e == ext) else {
        return Err(DocumentError::Refused(format!(
            "'{filename}' is not an accepted kind of file: use {}.",
            accepted_extensions()
        )));
    };
    if !looks_right(bytes) {
        return Err(DocumentError::Refused(format!(
            "'{filename}' does not contain what its .{ext} extension says."
        )));
    }
    Ok(content_type)
}

fn blob_path(data_dir: &Path, sha256: &str) -> Option<PathBuf> {
    // Only a 64-character hex digest names a file: nothing else reaches the file system.
    if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Some(data_dir.join("documents").join(&sha256[..2]).join(sha256))
}

/// An upload: the file's name as sent, its bytes, and the size limit.
pub struct Upload<'a> {
    pub filename: &'a str,
    pub bytes: &'a [u8],
    pub max_bytes: usize,
}

/// Stores an upload as the value of document field `key` of a record, with history, in one
/// transaction.
pub fn attach(
    conn: &mut DbConn,
    data_dir: &Path,
    record_id: i64,
    key: &str,
    upload: &Upload,
    actor: &Actor,
    country: PhoneCountry,
) -> Result<Document, DocumentError> {
    let record = service::find(conn, record_id)?.ok_or(RecordError::NotFound)?;
    let defs = fields::list(conn, record.record_kind(), false)?;
    if !defs
        .iter()
        .any(|d| d.key == key && d.ftype() == FieldType::Document)
    {
        return Err(DocumentError::Refused(format!(
            "'{key}' is not a document field."
        )));
    }
    db::write_tx(conn, |conn| {
        let document = store(
            conn,
            data_dir,
            upload.filename,
            upload.bytes,
            upload.max_bytes,
            actor.user_id,
        )?;
        let mut input = RecordInput::default();
        input
            .values
            .insert(key.to_string(), document.id.to_string());
        service::update(conn, record_id, &input, actor, country)?;
        Ok(document)
    })
}

/// Stores the bytes (once per content) and records the document.
pub fn store(
    conn: &mut DbConn,
    data_dir: &Path,
    filename: &str,
    bytes: &[u8],
    max_bytes: usize,
    uploaded_by: Option<i64>,
) -> Result<Document, DocumentError> {
    let filename = clean_filename(filename);
    if bytes.is_empty() {
        return Err(DocumentError::Refused(format!("'{filename}' is empty.")));
    }
    if bytes.len() > max_bytes {
        return Err(DocumentError::Refused(format!(
            "'{filename}' is larger than the {} MB limit.",
            max_bytes / (1024 * 1024)
        )));
    }
    let content_type = check_type(&filename, bytes)?;
    let sha256 = hex::encode(Sha256::digest(bytes));
    let path =
        blob_path(data_dir, &sha256).ok_or_else(|| DocumentError::Refused("bad digest".into()))?;
    if !path.exists() {
        let dir = path.parent().unwrap_or(data_dir);
        crate::config::create_private_dir(dir)?;
        // Write aside, then rename: a crash never leaves a half-written blob under its hash.
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(bytes)?;
        tmp.persist(&path).map_err(|e| e.error)?;
    }
    let id: i64 = diesel::insert_into(documents::table)
        .values((
            documents::sha256.eq(&sha256),
            documents::filename.eq(&filename),
            documents::content_type.eq(content_type),
            documents::size.eq(i64::try_from(bytes.len()).unwrap_or(i64::MAX)),
            documents::uploaded_by.eq(uploaded_by),
            documents::created_at.eq(db::now()),
        ))
        .returning(documents::id)
        .get_result(conn)?;
    find(conn, id)?.ok_or(DocumentError::Db(diesel::result::Error::NotFound))
}

pub fn find(conn: &mut DbConn, id: i64) -> QueryResult<Option<Document>> {
    documents::table
        .find(id)
        .select(Document::as_select())
        .first(conn)
        .optional()
}

/// Documents by id, in one query.
pub fn find_many(
    conn: &mut DbConn,
    ids: &[i64],
) -> QueryResult<std::collections::HashMap<i64, Document>> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    Ok(documents::table
        .filter(documents::id.eq_any(ids))
        .select(Document::as_select())
        .load(conn)?
        .into_iter()
        .map(|d| (d.id, d))
        .collect())
}

/// The stored file of a document.
pub fn file_of(data_dir: &Path, document: &Document) -> Option<PathBuf> {
    blob_path(data_dir, &document.sha256).filter(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_checked_by_extension_and_content() {
        assert_eq!(
            check_type("a.pdf", b"%PDF-1.7 ...").unwrap(),
            "application/pdf"
        );
        assert!(check_type("a.pdf", b"<html>").is_err());
        assert!(check_type("a.exe", b"MZ").is_err());
        assert!(check_type("notes.txt", b"hello\x00").is_err());
        assert!(check_type("notes.TXT", b"hello").is_ok());
    }

    #[test]
    fn names_and_digests_cannot_reach_outside_the_store() {
        assert_eq!(clean_filename("../../etc/passwd"), "passwd");
        assert_eq!(clean_filename("C:\\x\\y.pdf"), "y.pdf");
        assert_eq!(clean_filename(""), "document");
        assert!(blob_path(Path::new("/d"), "../../etc/passwd").is_none());
        let digest = "a".repeat(64);
        assert_eq!(
            blob_path(Path::new("/d"), &digest),
            Some(PathBuf::from(format!("/d/documents/aa/{digest}")))
        );
    }
}
