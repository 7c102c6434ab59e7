//! Reading import files: UTF-8 (with or without BOM) or Windows-1252, delimited by `,` `;` or
//! tab, with quoted fields that may hold line breaks. Streams: memory does not grow with the file.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use encoding_rs::{Decoder, Encoding, UTF_8, WINDOWS_1252};

const SAMPLE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    Utf8,
    Utf8Bom,
    Windows1252,
}

impl TextEncoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Utf8 => "utf-8",
            Self::Utf8Bom => "utf-8-bom",
            Self::Windows1252 => "windows-1252",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Utf8 => "UTF-8",
            Self::Utf8Bom => "UTF-8 with BOM",
            Self::Windows1252 => "Windows-1252",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Some(Self::Utf8),
            "utf-8-bom" => Some(Self::Utf8Bom),
            "windows-1252" | "cp1252" | "latin1" => Some(Self::Windows1252),
            _ => None,
        }
    }

    fn encoding(self) -> &'static Encoding {
        match self {
            Self::Utf8 | Self::Utf8Bom => UTF_8,
            Self::Windows1252 => WINDOWS_1252,
        }
    }
}

/// How a file is read: detected from its first bytes, or chosen by a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFormat {
    pub encoding: TextEncoding,
    pub delimiter: u8,
}

impl FileFormat {
    pub fn delimiter_label(&self) -> &'static str {
        match self.delimiter {
            b';' => "semicolon (;)",
            b'\t' => "tab",
            _ => "comma (,)",
        }
    }

    pub fn delimiter_str(&self) -> &'static str {
        match self.delimiter {
            b';' => ";",
            b'\t' => "tab",
            _ => ",",
        }
    }

    pub fn parse_delimiter(value: &str) -> Option<u8> {
        match value {
            "," | "comma" => Some(b','),
            ";" | "semicolon" => Some(b';'),
            "tab" | "\t" => Some(b'\t'),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read the file: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Csv(String),
    #[error("This is not a text file: byte {offset} is a NUL byte, which CSV files never hold (a zip, a spreadsheet or a UTF-16 export?). Save it as CSV (UTF-8) and upload it again.")]
    NotText { offset: usize },
}

impl From<csv::Error> for FileError {
    fn from(e: csv::Error) -> Self {
        let line = e
            .position()
            .map(|p| format!("line {}: ", p.line()))
            .unwrap_or_default();
        match e.into_kind() {
            csv::ErrorKind::Io(io) if io.kind() == io::ErrorKind::InvalidData => {
                FileError::Csv(format!("{line}{io}"))
            }
            kind => FileError::Csv(format!("{line}{}", describe_csv_error(kind))),
        }
    }
}

fn describe_csv_error(kind: csv::ErrorKind) -> String {
    match kind {
        csv::ErrorKind::Utf8 { err, .. } => {
            format!("the text is not valid UTF-8 ({err}); choose Windows-1252")
        }
        csv::ErrorKind::Io(io) => io.to_string(),
        other => format!("{other:?}"),
    }
}

/// Guesses the encoding (BOM, then UTF-8 validity, else Windows-1252) and the delimiter (the
/// most frequent of `,` `;` tab on the first line, outside quotes).
pub fn detect(sample: &[u8]) -> FileFormat {
    let encoding = if sample.starts_with(&[0xEF, 0xBB, 0xBF]) {
        TextEncoding::Utf8Bom
    } else {
        match std::str::from_utf8(sample) {
            Ok(_) => TextEncoding::Utf8,
            // A sample may end inside a character: only a real error counts.
            Err(e) if e.error_len().is_none() => TextEncoding::Utf8,
            Err(_) => TextEncoding::Windows1252,
        }
    };
    let (text, _) = encoding.encoding().decode_without_bom_handling(sample);
    let mut counts = [(b',', 0usize), (b';', 0), (b'\t', 0)];
    let mut quoted = false;
    for c in text.bytes() {
        match c {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            _ if !quoted => {
                if let Some(entry) = counts.iter_mut().find(|(d, _)| *d == c) {
                    entry.1 += 1;
                }
            }
            _ => {}
        }
    }
    let delimiter = counts
        .iter()
        .max_by_key(|(_, n)| *n)
        .filter(|(_, n)| *n > 0)
        .map(|(d, _)| *d)
        .unwrap_or(b',');
    FileFormat {
        encoding,
        delimiter,
    }
}

/// A file that reads as UTF-8 except for some bytes: a person chooses how to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodingDoubt {
    /// The line of the first byte that is not UTF-8, and that byte.
    pub line: u64,
    pub byte: u8,
    /// How many such bytes the file has.
    pub invalid: u64,
}

impl std::fmt::Display for EncodingDoubt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Line {} has a byte that is not UTF-8 (0x{:02X}), though the rest of the file is \
             UTF-8 ({} such byte(s) in all). Read as UTF-8, the rows with such a byte are \
             refused and the others imported; read as Windows-1252, every accented letter of \
             the file would come out wrong (\"Zoé\" as \"ZoÃ©\").",
            self.line, self.byte, self.invalid
        )
    }
}

/// The format as the first 64 KB show it, refusing a file that is not text. Enough where a
/// person has chosen the encoding, or only the header is read.
pub fn sniff_file(path: &Path) -> Result<FileFormat, FileError> {
    let mut sample = Vec::with_capacity(SAMPLE_BYTES);
    File::open(path)?
        .take(SAMPLE_BYTES as u64)
        .read_to_end(&mut sample)?;
    if let Some(offset) = sample.iter().position(|&b| b == 0) {
        return Err(FileError::NotText { offset });
    }
    Ok(detect(&sample))
}

/// Detects the format from the first 64 KB and the encoding from the whole file: a file is
/// UTF-8 if all of it is; Windows-1252 if it has bytes that are not UTF-8 and no UTF-8
/// character beyond ASCII; otherwise UTF-8, with a doubt for a person to settle.
pub fn detect_file(path: &Path) -> Result<(FileFormat, Option<EncodingDoubt>), FileError> {
    let mut format = sniff_file(path)?;
    let evidence = Utf8Evidence::of(File::open(path)?)?;
    let doubt = match evidence.first_invalid {
        None => None,
        Some(_) if !evidence.beyond_ascii && format.encoding != TextEncoding::Utf8Bom => {
            format.encoding = TextEncoding::Windows1252;
            None
        }
        Some((line, byte)) => {
            if format.encoding == TextEncoding::Windows1252 {
                format.encoding = TextEncoding::Utf8;
            }
            Some(EncodingDoubt {
                line,
                byte,
                invalid: evidence.invalid,
            })
        }
    };
    Ok((format, doubt))
}

/// What a whole file says about UTF-8: characters beyond ASCII, bytes that are not UTF-8.
#[derive(Default)]
struct Utf8Evidence {
    beyond_ascii: bool,
    invalid: u64,
    first_invalid: Option<(u64, u8)>,
}

impl Utf8Evidence {
    fn of(mut input: impl Read) -> io::Result<Self> {
        let mut evidence = Utf8Evidence::default();
        let mut line = 1u64;
        let mut buffer = vec![0u8; 64 * 1024];
        // Bytes of a character cut by the end of the previous read.
        let mut carried = 0usize;
        loop {
            let n = input.read(&mut buffer[carried..])?;
            let end = carried + n;
            let at_eof = n == 0;
            let mut rest = &buffer[..end];
            let mut keep = 0;
            loop {
                match std::str::from_utf8(rest) {
                    Ok(text) => {
                        evidence.note_valid(text.as_bytes(), &mut line);
                        break;
                    }
                    Err(e) => {
                        let (valid, bad) = rest.split_at(e.valid_up_to());
                        evidence.note_valid(valid, &mut line);
                        match e.error_len() {
                            None if !at_eof => {
                                keep = bad.len();
                                break;
                            }
                            error_len => {
                                let len = error_len.unwrap_or(bad.len());
                                evidence.invalid += len as u64;
                                evidence.first_invalid.get_or_insert((line, bad[0]));
                                line += bad[..len].iter().filter(|&&b| b == b'\n').count() as u64;
                                rest = &bad[len..];
                            }
                        }
                    }
                }
            }
            if at_eof {
                return Ok(evidence);
            }
            buffer.copy_within(end - keep..end, 0);
            carried = keep;
        }
    }

    fn note_valid(&mut self, bytes: &[u8], line: &mut u64) {
        self.beyond_ascii |= !bytes.is_ascii();
        *line += bytes.iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

/// Decodes any supported encoding to UTF-8 as the CSV reader asks for bytes.
pub struct DecodingReader<R> {
    inner: R,
    decoder: Decoder,
    input: Vec<u8>,
    output: Vec<u8>,
    position: usize,
    finished: bool,
}

impl<R: Read> DecodingReader<R> {
    pub fn new(inner: R, encoding: TextEncoding) -> Self {
        Self {
            inner,
            decoder: encoding.encoding().new_decoder_with_bom_removal(),
            input: vec![0; 16 * 1024],
            output: Vec::new(),
            position: 0,
            finished: false,
        }
    }
}

impl<R: Read> Read for DecodingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.position >= self.output.len() {
            if self.finished {
                return Ok(0);
            }
            let n = self.inner.read(&mut self.input)?;
            let last = n == 0;
            let capacity = self.decoder.max_utf8_buffer_length(n).unwrap_or(n * 3 + 16);
            self.output.clear();
            self.output.resize(capacity, 0);
            self.position = 0;
            // A byte that is not UTF-8 becomes U+FFFD, and its row is refused (`plan`).
            let (_, _, written, _) =
                self.decoder
                    .decode_to_utf8(&self.input[..n], &mut self.output, last);
            self.output.truncate(written);
            self.finished = last;
        }
        let n = (self.output.len() - self.position).min(buf.len());
        buf[..n].copy_from_slice(&self.output[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

pub type CsvReader = csv::Reader<DecodingReader<File>>;

/// A file's header row, each name trimmed.
pub fn headers(reader: &mut CsvReader) -> Result<Vec<String>, FileError> {
    Ok(reader
        .headers()?
        .iter()
        .map(|h| h.trim().to_string())
        .collect())
}

/// A CSV reader over the whole file; rows of another length are reported by the caller.
pub fn open(path: &Path, format: FileFormat) -> Result<CsvReader, FileError> {
    let file = File::open(path)?;
    Ok(csv::ReaderBuilder::new()
        .delimiter(format.delimiter)
        .flexible(true)
        .has_headers(true)
        .from_reader(DecodingReader::new(file, format.encoding)))
}

/// The header and the first `rows` records, for a preview.
pub fn preview(
    path: &Path,
    format: FileFormat,
    rows: usize,
) -> Result<(Vec<String>, Vec<Vec<String>>), FileError> {
    let mut reader = open(path, format)?;
    let headers = reader
        .headers()?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut out = Vec::new();
    for record in reader.records().take(rows) {
        out.push(record?.iter().map(str::to_string).collect());
    }
    Ok((headers, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8]) -> (FileFormat, Vec<Vec<String>>) {
        let format = detect(bytes);
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(format.delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(DecodingReader::new(bytes, format.encoding));
        let rows = reader
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect();
        (format, rows)
    }

    #[test]
    fn encodings_and_delimiters_are_detected() {
        let (f, rows) = read_all(b"\xEF\xBB\xBFId,Name\r\n1,Z\xC3\xA9lie\r\n");
        assert_eq!((f.encoding, f.delimiter), (TextEncoding::Utf8Bom, b','));
        assert_eq!(rows[0], ["Id", "Name"]);
        assert_eq!(rows[1], ["1", "Zélie"]);

        let (f, rows) = read_all(b"Id;Name;City\n1;Z\xE9lie;S\xE8te\n");
        assert_eq!((f.encoding, f.delimiter), (TextEncoding::Windows1252, b';'));
        assert_eq!(rows[1], ["1", "Zélie", "Sète"]);

        let (f, rows) = read_all(b"Id\tName\n1\t\"Multi\nline; name, with commas\"\n");
        assert_eq!((f.encoding, f.delimiter), (TextEncoding::Utf8, b'\t'));
        assert_eq!(rows[1], ["1", "Multi\nline; name, with commas"]);

        // Delimiters inside quotes do not count.
        let (f, _) = read_all(b"\"a;b;c\",x\n");
        assert_eq!(f.delimiter, b',');
    }

    #[test]
    fn the_whole_file_decides_the_encoding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        // UTF-8 throughout, with one stray byte far past the first 64 KB: a doubt, on its line.
        let mut bytes = "Id,Name\n1,Zoé\n".as_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(b"2,abc\n".as_slice(), 20_000).flatten());
        bytes.extend_from_slice(b"3,caf\xE9\n4,Zo\xC3\xA9\n");
        std::fs::write(&path, &bytes).unwrap();
        let (format, doubt) = detect_file(&path).unwrap();
        assert_eq!(format.encoding, TextEncoding::Utf8);
        let doubt = doubt.expect("a doubt");
        assert_eq!((doubt.line, doubt.byte, doubt.invalid), (20_003, 0xE9, 1));
        assert!(doubt
            .to_string()
            .starts_with("Line 20003 has a byte that is not UTF-8 (0xE9)"));
        // Read as UTF-8, the stray byte is a replacement character, not an error.
        let rows: Vec<Vec<String>> = csv::ReaderBuilder::new()
            .from_reader(DecodingReader::new(bytes.as_slice(), TextEncoding::Utf8))
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect();
        assert_eq!(rows[20_001], ["3", "caf\u{FFFD}"]);
        assert_eq!(rows[20_002], ["4", "Zoé"]);

        // No UTF-8 beyond ASCII anywhere: Windows-1252, no doubt.
        std::fs::write(&path, b"Id,Name\n1,Z\xE9lie\n").unwrap();
        let (format, doubt) = detect_file(&path).unwrap();
        assert_eq!((format.encoding, doubt), (TextEncoding::Windows1252, None));
        // A character cut by a read boundary is still UTF-8.
        let mut long = vec![b'a'; 64 * 1024 - 1];
        long.extend_from_slice("é\n".as_bytes());
        std::fs::write(&path, &long).unwrap();
        assert_eq!(
            detect_file(&path).unwrap(),
            (
                FileFormat {
                    encoding: TextEncoding::Utf8,
                    delimiter: b','
                },
                None
            )
        );
    }
}
