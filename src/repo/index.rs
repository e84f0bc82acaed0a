//! Packages and Release files: parsing what is in a repository and writing what goes
//! into it. Pure: text in, text out.
//!
//! A Packages paragraph read from an existing index is kept verbatim (fields parsed
//! with deb822-fast only to be looked at), so republishing never rewrites a package
//! someone else published, not even its whitespace.

use super::version;
use deb822_fast::Paragraph;
use std::borrow::Cow;
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("{what}: not a valid deb822 paragraph: {reason}")]
    Syntax { what: String, reason: String },
    #[error("{what}: the required field `{field}` is missing")]
    MissingField { what: String, field: &'static str },
    #[error("{what}: field `{field}` has an invalid value {value:?}")]
    InvalidField {
        what: String,
        field: &'static str,
        value: String,
    },
}

/// The fields every binary package needs (Debian Policy 5.3) for apt to install it.
pub const REQUIRED_CONTROL_FIELDS: &[&str] = &[
    "Package",
    "Version",
    "Architecture",
    "Maintainer",
    "Description",
];

/// One package in a Packages index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageEntry {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// Path of the .deb relative to the repository root (`pool/main/...`).
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    /// The whole paragraph as it appears in Packages, without a trailing blank line.
    pub paragraph: String,
}

fn parse_paragraph(text: &str, what: &str) -> Result<Paragraph, IndexError> {
    text.parse::<Paragraph>().map_err(|e| IndexError::Syntax {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

fn required<'a>(
    paragraph: &'a Paragraph,
    field: &'static str,
    what: &str,
) -> Result<&'a str, IndexError> {
    paragraph
        .get(field)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| IndexError::MissingField {
            what: what.to_owned(),
            field,
        })
}

fn is_hex(value: &str, len: usize) -> bool {
    value.len() == len
        && value
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl PackageEntry {
    /// Makes an entry from a .deb's control file and the facts of the pool file.
    /// `what` names the .deb in errors.
    pub fn from_control(
        control: &str,
        size: u64,
        sha256: &str,
        md5: &str,
        what: &str,
    ) -> Result<Self, IndexError> {
        let paragraph = parse_paragraph(control, what)?;
        for field in REQUIRED_CONTROL_FIELDS {
            required(&paragraph, field, what)?;
        }
        for field in ["Filename", "Size", "MD5sum", "SHA1", "SHA256", "SHA512"] {
            if paragraph.get(field).is_some() {
                return Err(IndexError::InvalidField {
                    what: what.to_owned(),
                    field: "control",
                    value: format!("a .deb's control file must not contain `{field}`"),
                });
            }
        }
        let name = required(&paragraph, "Package", what)?.to_owned();
        super::syntax::check_package_name(&name).map_err(|_| IndexError::InvalidField {
            what: what.to_owned(),
            field: "Package",
            value: name.clone(),
        })?;
        let version = required(&paragraph, "Version", what)?.to_owned();
        super::syntax::DebianVersion::parse(&version).map_err(|_| IndexError::InvalidField {
            what: what.to_owned(),
            field: "Version",
            value: version.clone(),
        })?;
        let architecture = required(&paragraph, "Architecture", what)?.to_owned();
        check_architecture(&architecture).map_err(|_| IndexError::InvalidField {
            what: what.to_owned(),
            field: "Architecture",
            value: architecture.clone(),
        })?;
        let filename = super::layout::pool_key(&name, &version, &architecture);
        let mut text = control.trim_end_matches('\n').to_owned();
        text.push_str(&format!(
            "\nFilename: {filename}\nSize: {size}\nMD5sum: {md5}\nSHA256: {sha256}"
        ));
        Ok(PackageEntry {
            name,
            version,
            architecture,
            filename,
            size,
            sha256: sha256.to_owned(),
            paragraph: text,
        })
    }

    /// The identity of a package in a suite: apt holds one per name, version and architecture.
    pub fn id(&self) -> (&str, &str, &str) {
        (&self.name, &self.version, &self.architecture)
    }

    /// The `Phased-Update-Percentage:` of this entry; `None` means fully released.
    pub fn phase(&self) -> Option<u8> {
        self.paragraph.lines().find_map(|line| {
            let value = line.strip_prefix(PHASE_FIELD)?.strip_prefix(':')?;
            value.trim().parse().ok().filter(|p| *p <= 100)
        })
    }

    /// The entry with its phase set to `percent`; `None` or 100 removes the field, as
    /// apt reads a missing field as 100%.
    pub fn with_phase(&self, percent: Option<u8>) -> PackageEntry {
        let mut lines: Vec<&str> = self
            .paragraph
            .lines()
            .filter(|line| {
                line.strip_prefix(PHASE_FIELD)
                    .is_none_or(|rest| !rest.starts_with(':'))
            })
            .collect();
        let field;
        if let Some(percent) = percent.filter(|p| *p < 100) {
            field = format!("{PHASE_FIELD}: {percent}");
            lines.push(&field);
        }
        PackageEntry {
            paragraph: lines.join("\n"),
            ..self.clone()
        }
    }
}

impl PackageEntry {
    /// Reads one paragraph of an existing Packages file, without its trailing newline;
    /// `what` names it, and is only made for an error (a Packages file has thousands of
    /// paragraphs).
    fn from_paragraph(text: Cow<'_, str>, what: impl Fn() -> String) -> Result<Self, IndexError> {
        let fields = scan_entry_fields(&text).map_err(|reason| IndexError::Syntax {
            what: what(),
            reason,
        })?;
        let field = |index: usize| {
            fields[index]
                .as_deref()
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .ok_or_else(|| IndexError::MissingField {
                    what: what(),
                    field: ENTRY_FIELDS[index],
                })
        };
        let invalid = |index: usize, value: &str| IndexError::InvalidField {
            what: what(),
            field: ENTRY_FIELDS[index],
            value: value.to_owned(),
        };
        let size_text = field(SIZE)?;
        let size = size_text.parse().map_err(|_| invalid(SIZE, size_text))?;
        let sha256 = field(SHA256)?;
        if !is_hex(sha256, 64) {
            return Err(invalid(SHA256, sha256));
        }
        let filename = field(FILENAME)?;
        super::layout::check_key(filename).map_err(|_| invalid(FILENAME, filename))?;
        let entry = PackageEntry {
            name: field(PACKAGE)?.to_owned(),
            version: field(VERSION)?.to_owned(),
            architecture: field(ARCHITECTURE)?.to_owned(),
            filename: filename.to_owned(),
            size,
            sha256: sha256.to_owned(),
            paragraph: String::new(),
        };
        drop(fields);
        Ok(PackageEntry {
            paragraph: text.into_owned(),
            ..entry
        })
    }
}

/// The fields of an index paragraph that [`PackageEntry`] holds, in the order
/// `from_index_paragraph` checks them.
const ENTRY_FIELDS: [&str; 6] = [
    "Size",
    "SHA256",
    "Filename",
    "Package",
    "Version",
    "Architecture",
];
const SIZE: usize = 0;
const SHA256: usize = 1;
const FILENAME: usize = 2;
const PACKAGE: usize = 3;
const VERSION: usize = 4;
const ARCHITECTURE: usize = 5;

/// Which of [`ENTRY_FIELDS`] `name` is, without case; by length first, as most lines
/// of a paragraph are none of them.
fn entry_field(name: &str) -> Option<usize> {
    let index = match name.len() {
        4 => SIZE,
        6 => SHA256,
        7 if name.as_bytes()[0].eq_ignore_ascii_case(&b'P') => PACKAGE,
        7 => VERSION,
        8 => FILENAME,
        12 => ARCHITECTURE,
        _ => return None,
    };
    ENTRY_FIELDS[index]
        .eq_ignore_ascii_case(name)
        .then_some(index)
}

/// Reads the fields an entry needs from one paragraph, line by line, with the rules of
/// the deb822 parser the rest of the crate uses (deb822-fast), so a paragraph is
/// accepted or refused, with the same reason, whichever of the two reads it: a `#` line
/// is a comment, a line that starts with a space or tab continues the field before it
/// (its leading blanks dropped), every other line needs a `:` after a non-empty name,
/// names compare without case and the first of two equal names counts. Only the six
/// fields are kept, and only a continued one is copied.
fn scan_entry_fields(paragraph: &str) -> Result<[Option<Cow<'_, str>>; 6], String> {
    let mut fields: [Option<Cow<'_, str>>; 6] = Default::default();
    let mut lines = paragraph.split('\n');
    // Before the first field: `\r` bytes, empty lines and comments are skipped.
    let mut first = None;
    for line in lines.by_ref() {
        let rest = line.trim_start_matches('\r');
        if !rest.is_empty() && !rest.starts_with('#') {
            first = Some(rest);
            break;
        }
    }
    let Some(first) = first else {
        return Err("Unexpected end-of-file".to_owned());
    };
    let mut any_field = false;
    // The field the last line belongs to, when it is one of ours seen for the first time.
    let mut last: Option<usize> = None;
    for line in std::iter::once(first).chain(lines) {
        match line.as_bytes().first() {
            Some(b'#') => continue,
            Some(b' ' | b'\t') => {
                if !any_field {
                    return Err(format!("Unexpected token: {line}"));
                }
                if let Some(Some(value)) = last.map(|index| fields[index].as_mut()) {
                    let value = value.to_mut();
                    value.push('\n');
                    value.push_str(line.trim_start_matches([' ', '\t']));
                }
            }
            _ => {
                let (name, value) = match line.split_once(':') {
                    Some((name, value)) if !name.is_empty() => (name, value),
                    _ => return Err(format!("Unexpected token: {line}")),
                };
                any_field = true;
                last = entry_field(name).filter(|index| fields[*index].is_none());
                if let Some(index) = last {
                    fields[index] = Some(Cow::Borrowed(value.trim_start_matches([' ', '\t'])));
                }
            }
        }
    }
    Ok(fields)
}

/// apt's phased updates (apt_preferences(5)): the share of machines that take this
/// version now; apt decides per machine from the source package, the version and
/// the machine id.
pub const PHASE_FIELD: &str = "Phased-Update-Percentage";

/// Architecture names as dpkg spells them: lower-case letters, digits and `-`.
pub fn check_architecture(arch: &str) -> Result<(), String> {
    // dpkg's names (`dpkg-architecture -L`): a CPU, optionally behind an ABI/OS
    // prefix. A typo such as "x86" would otherwise create an index nobody reads.
    const CPUS: &[&str] = &[
        "alpha",
        "amd64",
        "arc",
        "arm",
        "arm64",
        "arm64ilp32",
        "armeb",
        "armel",
        "armhf",
        "avr32",
        "hppa",
        "i386",
        "ia64",
        "loong64",
        "m32r",
        "m68k",
        "mips",
        "mips64",
        "mips64el",
        "mips64r6",
        "mips64r6el",
        "mipsel",
        "mipsn32",
        "mipsn32el",
        "mipsn32r6",
        "mipsn32r6el",
        "mipsr6",
        "mipsr6el",
        "nios2",
        "or1k",
        "powerpc",
        "powerpcel",
        "powerpcspe",
        "ppc64",
        "ppc64el",
        "riscv64",
        "s390",
        "s390x",
        "sh3",
        "sh3eb",
        "sh4",
        "sh4eb",
        "sparc",
        "sparc64",
        "tilegx",
        "x32",
    ];
    const PREFIXES: &[&str] = &[
        "aix",
        "darwin",
        "dragonflybsd",
        "freebsd",
        "hurd",
        "kfreebsd",
        "knetbsd",
        "kopensolaris",
        "mint",
        "musl-linux",
        "netbsd",
        "openbsd",
        "solaris",
        "uclibc-linux",
        "uclinux",
    ];
    let cpu = PREFIXES
        .iter()
        .find_map(|prefix| arch.strip_prefix(prefix)?.strip_prefix('-'))
        .unwrap_or(arch);
    if arch == "all" || CPUS.contains(&cpu) {
        Ok(())
    } else {
        Err(format!(
            "{arch:?} is not a Debian architecture name (dpkg-architecture -L lists them; e.g. amd64, arm64, armhf, i386)"
        ))
    }
}

/// Sorts entries the way readers expect: by name, then newest version first, then
/// architecture. The order is part of the file's bytes, so it must be total.
///
/// Each version is parsed once ([`version::sort_key`]), not once per comparison: a
/// merge sorts the whole suite.
pub fn sort_entries(entries: &mut [PackageEntry]) {
    let order: Vec<usize> = {
        // Every key in one buffer: one allocation, not one per entry.
        let mut keys: Vec<u32> = Vec::new();
        let mut ends = Vec::with_capacity(entries.len());
        for entry in entries.iter() {
            version::push_sort_key(&entry.version, &mut keys);
            ends.push(keys.len());
        }
        let mut sortable: Vec<(&str, &[u32], &str, &str, usize)> = entries
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                let start = if index == 0 { 0 } else { ends[index - 1] };
                (
                    entry.name.as_str(),
                    &keys[start..ends[index]],
                    entry.version.as_str(),
                    entry.architecture.as_str(),
                    index,
                )
            })
            .collect();
        // Stable, like the sort it replaces: entries that compare equal keep their order.
        sortable.sort_by(|x, y| {
            x.0.cmp(y.0)
                .then_with(|| y.1.cmp(x.1))
                .then_with(|| y.2.cmp(x.2))
                .then_with(|| x.3.cmp(y.3))
        });
        sortable.into_iter().map(|entry| entry.4).collect()
    };
    // Moved out and back in order; an empty entry holds each place meanwhile (empty
    // strings do not allocate).
    let moved_out = || PackageEntry {
        name: String::new(),
        version: String::new(),
        architecture: String::new(),
        filename: String::new(),
        size: 0,
        sha256: String::new(),
        paragraph: String::new(),
    };
    let mut unsorted: Vec<PackageEntry> = entries
        .iter_mut()
        .map(|entry| std::mem::replace(entry, moved_out()))
        .collect();
    for (slot, index) in entries.iter_mut().zip(order) {
        *slot = std::mem::replace(&mut unsorted[index], moved_out());
    }
}

/// Renders a Packages file from entries in the order given.
pub fn render_packages<'a>(entries: impl IntoIterator<Item = &'a PackageEntry> + Clone) -> String {
    // Sized first: growing a 4 MB string by doubling copies it twice over.
    let len = entries
        .clone()
        .into_iter()
        .map(|entry| entry.paragraph.len() + 2)
        .sum();
    let mut out = String::with_capacity(len);
    for (index, entry) in entries.into_iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        out.push_str(&entry.paragraph);
        out.push('\n');
    }
    out
}

/// Whether a line separates paragraphs: nothing but whitespace, as `str::trim` sees it.
fn is_blank(line: &str) -> bool {
    match line.as_bytes().first() {
        None => true,
        // Most lines start with a field name: decided without a scan.
        Some(&byte) if byte.is_ascii() && !matches!(byte, b'\t'..=b'\r' | b' ') => false,
        Some(_) => line.trim().is_empty(),
    }
}

/// The paragraphs of a deb822 file, split on blank lines, each as its lines joined by
/// `\n` (a `\r\n` ending counts as `\n`, as in `str::lines`). A paragraph is borrowed
/// from `text` unless it has `\r\n` endings inside.
pub fn paragraphs(text: &str) -> impl Iterator<Item = Cow<'_, str>> {
    let mut rest = text;
    let mut offset = 0;
    std::iter::from_fn(move || {
        // (start, end) of the paragraph in `text`, and whether a line inside ended `\r\n`.
        let mut span: Option<(usize, usize)> = None;
        let mut crlf_inside = false;
        let mut previous_crlf = false;
        while !rest.is_empty() {
            let (raw, next) = match rest.find('\n') {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, ""),
            };
            let ends_crlf = raw.len() < rest.len() && raw.ends_with('\r');
            let line = if ends_crlf {
                &raw[..raw.len() - 1]
            } else {
                raw
            };
            let start = offset;
            offset += rest.len() - next.len();
            rest = next;
            if is_blank(line) {
                if span.is_some() {
                    break;
                }
                continue;
            }
            crlf_inside |= span.is_some() && previous_crlf;
            previous_crlf = ends_crlf;
            let end = start + line.len();
            span = Some(match span {
                Some((first, _)) => (first, end),
                None => (start, end),
            });
        }
        let (start, end) = span?;
        let slice = &text[start..end];
        Some(if crlf_inside {
            let mut pieces = slice.split('\n').peekable();
            let mut joined = String::with_capacity(slice.len());
            while let Some(piece) = pieces.next() {
                if pieces.peek().is_some() {
                    joined.push_str(piece.strip_suffix('\r').unwrap_or(piece));
                    joined.push('\n');
                } else {
                    joined.push_str(piece);
                }
            }
            Cow::Owned(joined)
        } else {
            Cow::Borrowed(slice)
        })
    })
}

/// Parses a Packages file; `what` names it in errors.
///
/// It is read on every publish, so the text is cut at blank lines into a piece per
/// core and the pieces are read at once; paragraphs never span a blank line, so the
/// entries are the same. An error is reported as a reading in one go reports it (the
/// first paragraph at fault, numbered in the whole file): the file is read again
/// to find it, which only a refused file pays.
pub fn parse_packages(text: &str, what: &str) -> Result<Vec<PackageEntry>, IndexError> {
    let jobs = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let pieces = cut_at_blank_lines(text, jobs);
    if pieces.len() <= 1 {
        return parse_paragraphs(text, what);
    }
    let parsed = crate::parallel::map(&pieces, pieces.len(), |piece| {
        parse_paragraphs(piece, what).ok()
    });
    match parsed.into_iter().collect::<Option<Vec<_>>>() {
        Some(pieces) => Ok(pieces.into_iter().flatten().collect()),
        None => parse_paragraphs(text, what),
    }
}

/// Below this a file is read in one piece: a thread costs more than it saves.
const PARALLEL_PARSE_BYTES: usize = 256 * 1024;

/// `text` in at most `pieces` pieces, each cut at the start of a blank line.
fn cut_at_blank_lines(text: &str, pieces: usize) -> Vec<&str> {
    if text.len() < PARALLEL_PARSE_BYTES || pieces <= 1 {
        return vec![text];
    }
    let mut cuts = vec![0];
    for piece in 1..pieces {
        let from = (text.len() / pieces * piece).max(*cuts.last().unwrap_or(&0));
        // From the start of the next line, the first blank line.
        // Bytes, not `str`: `from` may fall inside a character.
        let Some(newline) = text.as_bytes()[from..].iter().position(|&b| b == b'\n') else {
            break;
        };
        let mut at = from + newline + 1;
        while at < text.len() {
            let line_end = text[at..].find('\n').map_or(text.len(), |end| at + end);
            let line = &text[at..line_end];
            if line_end < text.len() && is_blank(line.strip_suffix('\r').unwrap_or(line)) {
                cuts.push(at);
                break;
            }
            at = line_end + 1;
        }
    }
    cuts.push(text.len());
    cuts.dedup();
    cuts.windows(2).map(|cut| &text[cut[0]..cut[1]]).collect()
}

fn parse_paragraphs(text: &str, what: &str) -> Result<Vec<PackageEntry>, IndexError> {
    paragraphs(text)
        .enumerate()
        .map(|(index, paragraph)| {
            PackageEntry::from_paragraph(paragraph, || format!("{what}, paragraph {}", index + 1))
        })
        .collect()
}

/// One file listed in a Release file, relative to `dists/<suite>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// The Release file of a suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub origin: String,
    pub label: String,
    pub suite: String,
    pub codename: String,
    /// Already formatted (RFC 2822, UTC), as apt reads it.
    pub date: String,
    pub valid_until: Option<String>,
    pub architectures: Vec<String>,
    pub components: Vec<String>,
    pub description: Option<String>,
    pub acquire_by_hash: bool,
    pub files: Vec<ReleaseFile>,
}

impl Release {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut field = |name: &str, value: &str| out.push_str(&format!("{name}: {value}\n"));
        field("Origin", &self.origin);
        field("Label", &self.label);
        field("Suite", &self.suite);
        field("Codename", &self.codename);
        field("Date", &self.date);
        if let Some(valid_until) = &self.valid_until {
            field("Valid-Until", valid_until);
        }
        field("Architectures", &self.architectures.join(" "));
        field("Components", &self.components.join(" "));
        if let Some(description) = &self.description {
            field("Description", description);
        }
        if self.acquire_by_hash {
            field("Acquire-By-Hash", "yes");
        }
        out.push_str("SHA256:\n");
        let width = self
            .files
            .iter()
            .map(|f| f.size.to_string().len())
            .max()
            .unwrap_or(1);
        for file in &self.files {
            out.push_str(&format!(
                " {} {:>width$} {}\n",
                file.sha256, file.size, file.path
            ));
        }
        out
    }

    /// Parses the text of a Release file (the signed part of InRelease).
    pub fn parse(text: &str, what: &str) -> Result<Self, IndexError> {
        let paragraph = parse_paragraph(text, what)?;
        let get = |name: &'static str| required(&paragraph, name, what).map(str::to_owned);
        let optional = |name: &str| {
            paragraph
                .get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let list = |name: &'static str| -> Result<Vec<String>, IndexError> {
            Ok(get(name)?.split_whitespace().map(str::to_owned).collect())
        };
        let mut files = Vec::new();
        let checksums = paragraph.get("SHA256").ok_or(IndexError::MissingField {
            what: what.to_owned(),
            field: "SHA256",
        })?;
        for line in checksums.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let invalid = || IndexError::InvalidField {
                what: what.to_owned(),
                field: "SHA256",
                value: line.to_owned(),
            };
            let [sha256, size, path] = parts.as_slice() else {
                return Err(invalid());
            };
            if !is_hex(sha256, 64) {
                return Err(invalid());
            }
            files.push(ReleaseFile {
                path: (*path).to_owned(),
                size: size.parse().map_err(|_| invalid())?,
                sha256: (*sha256).to_owned(),
            });
        }
        Ok(Release {
            origin: optional("Origin").unwrap_or_default(),
            label: optional("Label").unwrap_or_default(),
            suite: get("Suite")?,
            codename: optional("Codename").unwrap_or_default(),
            date: get("Date")?,
            valid_until: optional("Valid-Until"),
            architectures: list("Architectures")?,
            components: list("Components")?,
            description: optional("Description"),
            acquire_by_hash: optional("Acquire-By-Hash")
                .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            files,
        })
    }

    pub fn file(&self, path: &str) -> Option<&ReleaseFile> {
        self.files.iter().find(|f| f.path == path)
    }

    /// The architectures that have a Packages index listed.
    pub fn index_architectures(&self) -> BTreeSet<String> {
        self.files
            .iter()
            .filter_map(|f| f.path.strip_prefix("main/binary-"))
            .filter_map(|rest| rest.strip_suffix("/Packages"))
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every architecture dpkg knows is accepted; typos are not.
    #[test]
    fn architectures_are_dpkgs() {
        let output = std::process::Command::new("dpkg-architecture")
            .arg("-L")
            .output()
            .expect("dpkg-architecture is installed (apt-get install dpkg-dev)");
        let known = String::from_utf8(output.stdout).expect("utf-8");
        assert!(known.lines().count() > 100, "{known}");
        for arch in known.lines() {
            assert_eq!(check_architecture(arch), Ok(()), "{arch}");
        }
        for typo in [
            "x86",
            "AMD64",
            "amd-64",
            "x86_64",
            "aarch64",
            "linux-amd64",
            "",
        ] {
            assert!(check_architecture(typo).is_err(), "{typo:?}");
        }
    }

    const CONTROL: &str = "Package: speedy-app\nVersion: 1.4.0-1\nArchitecture: amd64\nMaintainer: Speedy Team <ops@speedy.example>\nDepends: libc6 (>= 2.34)\nDescription: Speedy web application server\n It runs as a service.\n .\n   verbatim   indented line\n";
    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn entry(name: &str, version: &str) -> PackageEntry {
        let control = CONTROL
            .replace("speedy-app", name)
            .replace("1.4.0-1", version);
        PackageEntry::from_control(
            &control,
            42,
            SHA,
            "d41d8cd98f00b204e9800998ecf8427e",
            "test.deb",
        )
        .unwrap()
    }

    /// The parser before issue 23: each paragraph copied out, then read with
    /// deb822-fast. The scanner must accept and refuse exactly what it did.
    mod deb822_oracle {
        use super::super::*;

        fn from_index_paragraph(text: &str, what: &str) -> Result<PackageEntry, IndexError> {
            let paragraph = parse_paragraph(text, what)?;
            let field = |name: &'static str| required(&paragraph, name, what).map(str::to_owned);
            let size_text = field("Size")?;
            let size = size_text.parse().map_err(|_| IndexError::InvalidField {
                what: what.to_owned(),
                field: "Size",
                value: size_text.clone(),
            })?;
            let sha256 = field("SHA256")?;
            if !is_hex(&sha256, 64) {
                return Err(IndexError::InvalidField {
                    what: what.to_owned(),
                    field: "SHA256",
                    value: sha256,
                });
            }
            let filename = field("Filename")?;
            super::super::super::layout::check_key(&filename).map_err(|_| {
                IndexError::InvalidField {
                    what: what.to_owned(),
                    field: "Filename",
                    value: filename.clone(),
                }
            })?;
            Ok(PackageEntry {
                name: field("Package")?,
                version: field("Version")?,
                architecture: field("Architecture")?,
                filename,
                size,
                sha256,
                paragraph: text.trim_end_matches('\n').to_owned(),
            })
        }

        fn split_paragraphs(text: &str) -> Vec<String> {
            let mut paragraphs = Vec::new();
            let mut current = String::new();
            for line in text.lines() {
                if line.trim().is_empty() {
                    if !current.is_empty() {
                        paragraphs.push(std::mem::take(&mut current));
                    }
                } else {
                    current.push_str(line);
                    current.push('\n');
                }
            }
            if !current.is_empty() {
                paragraphs.push(current);
            }
            paragraphs
        }

        pub fn parse_packages(text: &str, what: &str) -> Result<Vec<PackageEntry>, IndexError> {
            split_paragraphs(text)
                .iter()
                .enumerate()
                .map(|(index, p)| {
                    from_index_paragraph(p, &format!("{what}, paragraph {}", index + 1))
                })
                .collect()
        }
    }

    fn same_as_oracle(text: &str) -> Result<Vec<PackageEntry>, IndexError> {
        let new = parse_packages(text, "Packages");
        assert_eq!(
            new,
            deb822_oracle::parse_packages(text, "Packages"),
            "{text:?}"
        );
        new
    }

    const GOOD: &str = "Package: speedy-app\nVersion: 1.4.0-1\nArchitecture: amd64\nMaintainer: Speedy Team <ops@speedy.example>\nDescription: Speedy web application server\n It runs as a service.\n .\n   verbatim   indented line\nFilename: pool/main/s/speedy-app/speedy-app_1.4.0-1_amd64.deb\nSize: 42\nMD5sum: d41d8cd98f00b204e9800998ecf8427e\nSHA256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n";

    /// Hand-picked inputs, good and bad: the same entries or the same error (variant,
    /// paragraph, field and message) as the deb822-fast parser.
    #[test]
    fn the_scanner_reads_what_deb822_fast_read() {
        let two = format!("{GOOD}\n{}", GOOD.replace("1.4.0-1", "1.5.0-1"));
        let accepted = [
            GOOD.to_owned(),
            two.clone(),
            two.replace('\n', "\r\n"),
            format!("\n\n# a comment\n{GOOD}\n \t \n\u{a0}\n{GOOD}"),
            GOOD.trim_end().to_owned(),
            format!("{}\r", GOOD.trim_end()),
            GOOD.replace("Size: 42", "size:42"),
            GOOD.replace("Size: 42", "SIZE:\t 42 "),
            GOOD.replace("Size: 42", "Size: +42"),
            GOOD.replace("Size: 42", "Size:\n 42"),
            GOOD.replace("SHA256: ", "SHA256: \n "),
            GOOD.replace("Size: 42", "Size: 42\nSize: lots"),
            GOOD.replace("Size: 42", "Size: 42\n# Size: lots"),
            GOOD.replace("Size: 42", "# a comment inside\nSize: 42"),
            GOOD.replace("Package: ", "#c\n\r\rPackage: "),
            GOOD.replace("Version: 1.4.0-1", "Version: 1.4.0-1\n\tcontinued"),
            GOOD.replace("Maintainer:", "X-Odd name\u{e9}:"),
        ];
        for text in &accepted {
            let entries = same_as_oracle(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert!(!entries.is_empty());
        }
        let crlf = same_as_oracle(&two.replace('\n', "\r\n")).unwrap();
        assert!(!crlf[1].paragraph.contains('\r'), "{:?}", crlf[1].paragraph);
        let refused = [
            format!("{GOOD}\n{}", GOOD.replace("Size: 42\n", "")),
            GOOD.replace("Size: 42", "Size: lots"),
            GOOD.replace("Size: 42", "Size: -1"),
            GOOD.replace("Size: 42", "Size: 4 2"),
            GOOD.replace("Size: 42", "Size: 4\n 2"),
            GOOD.replace("Size: 42", "Size:"),
            GOOD.replace("Size: 42", "Size :42"),
            GOOD.replace("Size: 42", "Size:\nSize: 42"),
            GOOD.replace("SHA256: 0123", "SHA256: ABCD"),
            GOOD.replace("SHA256: 0123", "SHA256: 123"),
            GOOD.replace("Filename: pool/main", "Filename: ../../etc"),
            GOOD.replace("Filename: pool/main", "Filename: /pool/main"),
            GOOD.replace("Package: speedy-app\n", ""),
            GOOD.replace("Version: 1.4.0-1\n", "Version: \u{a0}\n"),
            GOOD.replace("Architecture: amd64\n", ""),
            GOOD.replace("Maintainer:", "Maintainer"),
            GOOD.replace("Maintainer:", ": Maintainer"),
            GOOD.replace("Package:", " Package:"),
            GOOD.replace("Package:", "\r\tPackage:"),
            "Package: x\n Size: 1\n".to_owned(),
            "# only a comment\n".to_owned(),
            format!("{GOOD}\n#c\n\n{GOOD}"),
        ];
        for text in &refused {
            let error = same_as_oracle(text).expect_err(text);
            assert!(
                error.to_string().starts_with("Packages, paragraph "),
                "{error}"
            );
        }
        assert_eq!(same_as_oracle("").unwrap(), vec![]);
        assert_eq!(same_as_oracle("\n \n\r\n").unwrap(), vec![]);
    }

    /// Random documents built from the pieces a Packages file can go wrong with.
    #[test]
    fn the_scanner_agrees_with_deb822_fast_on_random_documents() {
        use rand::{Rng, SeedableRng};
        const LINES: &[&str] = &[
            "Package: p",
            "package:p",
            "PACKAGE: \tq ",
            "Version: 1.0-1",
            "Version:",
            "Architecture: amd64",
            "Architecture: all",
            "Filename: pool/main/p/p/p_1.0-1_amd64.deb",
            "Filename: ../x",
            "Size: 7",
            "Size: +7",
            "Size: x",
            "Size : 7",
            "SHA256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "SHA256: 0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "Description: d",
            " continued",
            "\t.",
            " 7",
            "  # not a comment",
            "# a comment",
            "\r# a comment",
            "\rSize: 7",
            "no colon",
            ": no name",
            "X-\u{e9}t\u{e9}: v",
            "",
            " ",
            "\t",
            "\u{a0}",
            "\u{2003} \u{3000}",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        let mut accepted = 0;
        for _ in 0..20_000 {
            // A few good paragraphs, some of their lines replaced and some added.
            let mut text = String::new();
            for _ in 0..rng.gen_range(0..4) {
                for good in GOOD.lines().chain([""]) {
                    let mut lines = vec![good];
                    if rng.gen_bool(0.1) {
                        lines[0] = LINES[rng.gen_range(0..LINES.len())];
                    }
                    if rng.gen_bool(0.1) {
                        lines.push(LINES[rng.gen_range(0..LINES.len())]);
                    }
                    for line in lines {
                        text.push_str(line);
                        text.push_str(match rng.gen_range(0..12) {
                            0 => "\r\n",
                            1 => "\r",
                            _ => "\n",
                        });
                    }
                }
            }
            if rng.gen_bool(0.3) {
                text.pop();
            }
            accepted += usize::from(same_as_oracle(&text).is_ok_and(|e| !e.is_empty()));
        }
        // Not only refusals: the pieces make whole entries often enough.
        assert!(accepted > 1_000, "{accepted}");
    }

    /// The sort with a key per version orders as the comparator it replaced, equal
    /// ids (which only a hand-made list has) included: stable, like it.
    #[test]
    fn sorting_with_version_keys_equals_sorting_with_compare() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        let versions = [
            "1.0-1",
            "1.00-1",
            "1.10-1",
            "1.9-1",
            "1:0.1-1",
            "2.0~rc1-1",
            "2.0",
            "2.0-0",
            "0",
            "",
        ];
        for _ in 0..2_000 {
            let mut entries: Vec<PackageEntry> = (0..rng.gen_range(0..30))
                .map(|n| PackageEntry {
                    name: ["pa", "pb"][rng.gen_range(0..2)].into(),
                    version: versions[rng.gen_range(0..versions.len())].into(),
                    architecture: ["amd64", "all"][rng.gen_range(0..2)].into(),
                    filename: String::new(),
                    size: n,
                    sha256: String::new(),
                    paragraph: n.to_string(),
                })
                .collect();
            let mut expected = entries.clone();
            expected.sort_by(|a, b| {
                a.name
                    .cmp(&b.name)
                    .then_with(|| version::compare(&b.version, &a.version))
                    .then_with(|| b.version.cmp(&a.version))
                    .then_with(|| a.architecture.cmp(&b.architecture))
            });
            sort_entries(&mut entries);
            assert_eq!(entries, expected);
        }
    }

    /// A file large enough to be read in pieces at once: the same entries, and the
    /// same first error, numbered in the whole file, wherever it is.
    #[test]
    fn a_file_read_in_pieces_reads_as_in_one_go() {
        let paragraphs: Vec<String> = (0..1_500)
            .map(|n| GOOD.replace("1.4.0-1", &format!("1.{n}-1")))
            .collect();
        let text = paragraphs.join("\n");
        assert!(text.len() > 2 * PARALLEL_PARSE_BYTES);
        assert!(cut_at_blank_lines(&text, 2).len() == 2);
        assert!(cut_at_blank_lines(&text, 3).concat() == text);
        // Cuts that fall inside a character move on to the next line.
        let wide = text.replace("It runs as a service.", &"\u{e9}\u{20ac}".repeat(40));
        for pieces in 2..=9 {
            let cut = cut_at_blank_lines(&wide, pieces);
            assert!(cut.len() == pieces && cut.concat() == wide, "{pieces}");
        }
        assert_eq!(same_as_oracle(&wide).unwrap().len(), 1_500);
        assert_eq!(same_as_oracle(&text).unwrap().len(), 1_500);
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(same_as_oracle(&crlf).unwrap().len(), 1_500);
        let spaced = paragraphs.join(" \t\n\n\u{a0}\n");
        assert_eq!(same_as_oracle(&spaced).unwrap().len(), 1_500);
        for at in [3, 900, 1_200, 1_499] {
            let mut broken = paragraphs.clone();
            broken[at] = broken[at].replace("Size: 42", "Size: lots");
            broken[1_300] = broken[1_300].replace("SHA256: 0", "SHA256: X");
            let error = same_as_oracle(&broken.join("\n")).unwrap_err();
            let expected = if at < 1_300 { at + 1 } else { 1_301 };
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("Packages, paragraph {expected}:")),
                "{error}"
            );
        }
    }

    #[test]
    fn packages_round_trip_is_byte_exact() {
        let mut entries = vec![
            entry("speedy-app", "1.4.0-1"),
            entry("speedy-app", "1.10.0-1"),
            entry("speedy-jobs", "1.4.0-1"),
        ];
        sort_entries(&mut entries);
        assert_eq!(entries[0].version, "1.10.0-1", "newest first");
        let text = render_packages(&entries);
        let parsed = parse_packages(&text, "Packages").unwrap();
        assert_eq!(parsed, entries);
        assert_eq!(render_packages(&parsed), text);
        assert!(
            text.contains("\n   verbatim   indented line\n"),
            "verbatim lines survive:\n{text}"
        );
        assert!(text.contains("Filename: pool/main/s/speedy-app/speedy-app_1.4.0-1_amd64.deb\nSize: 42\nMD5sum: d41d8cd98f00b204e9800998ecf8427e\nSHA256: "));
    }

    #[test]
    fn control_without_required_fields_is_refused() {
        for field in REQUIRED_CONTROL_FIELDS {
            let control: String = CONTROL
                .lines()
                .filter(|l| {
                    !(l.starts_with(&format!("{field}:"))
                        || (field == &"Description" && l.starts_with(' ')))
                })
                .map(|l| format!("{l}\n"))
                .collect();
            let error = PackageEntry::from_control(&control, 1, SHA, "", "broken.deb").unwrap_err();
            assert_eq!(
                error,
                IndexError::MissingField {
                    what: "broken.deb".into(),
                    field
                },
                "{field}"
            );
        }
        let bad = CONTROL.replace("Version: 1.4.0-1", "Version: one");
        assert!(matches!(
            PackageEntry::from_control(&bad, 1, SHA, "", "b.deb"),
            Err(IndexError::InvalidField {
                field: "Version",
                ..
            })
        ));
        let bad = CONTROL.replace("Package: speedy-app", "Package: Speedy App");
        assert!(PackageEntry::from_control(&bad, 1, SHA, "", "b.deb").is_err());
    }

    #[test]
    fn index_paragraphs_are_checked() {
        let good = render_packages(&[entry("speedy-app", "1.4.0-1")]);
        for (from, to) in [
            ("Size: 42", "Size: lots"),
            (SHA, "XYZ"),
            ("Filename: pool/main", "Filename: ../../etc"),
        ] {
            let bad = good.replace(from, to);
            assert!(parse_packages(&bad, "Packages").is_err(), "{to}");
        }
        assert!(parse_packages("Package: x\n Size: 1\n", "Packages").is_err());
    }

    fn release() -> Release {
        Release {
            origin: "Speedy".into(),
            label: "Speedy".into(),
            suite: "dev".into(),
            codename: "dev".into(),
            date: "Sat, 28 Nov 2026 16:48:03 UTC".into(),
            valid_until: None,
            architectures: vec!["amd64".into()],
            components: vec!["main".into()],
            description: Some("Speedy services".into()),
            acquire_by_hash: true,
            files: vec![
                ReleaseFile {
                    path: "main/binary-amd64/Packages".into(),
                    size: 1234,
                    sha256: SHA.into(),
                },
                ReleaseFile {
                    path: "main/binary-amd64/Packages.gz".into(),
                    size: 56,
                    sha256: SHA.into(),
                },
            ],
        }
    }

    #[test]
    fn release_round_trip() {
        let r = release();
        let text = r.render();
        assert!(text.contains("Acquire-By-Hash: yes\n"));
        assert!(text.contains(&format!("SHA256:\n {SHA} 1234 main/binary-amd64/Packages\n {SHA}   56 main/binary-amd64/Packages.gz\n")), "{text}");
        assert_eq!(Release::parse(&text, "Release").unwrap(), r);
        assert_eq!(
            r.index_architectures().into_iter().collect::<Vec<_>>(),
            ["amd64"]
        );
    }

    #[test]
    fn release_parse_errors() {
        let text = release().render();
        assert!(Release::parse(&text.replace("Suite: dev\n", ""), "R").is_err());
        assert!(Release::parse(&text.replace(" 1234 ", " x "), "R").is_err());
        assert!(Release::parse(&text.replace("SHA256:", "MD5Sum:"), "R").is_err());
    }
}
