//! The .deb file format: reading and re-writing .deb files (ar archives of
//! debian-binary, control.tar.*, data.tar.* and optional _gpg* signature members),
//! their control file, and the debsigs signature over them. Building a .deb is
//! `crate::package`'s (through cargo-deb); what names and versions may be is
//! `crate::repo::syntax`'s.
//!
//! The ar container is parsed and written here rather than with the `ar` crate: its
//! reader slices a GNU name table with an index taken from the file and allocates
//! whatever size a header claims, so a crafted or damaged file can panic or exhaust
//! memory, and every .deb we read may come from outside. The format dpkg uses is the
//! plain "common" ar variant (16-byte space-padded names, no trailing '/'), which is
//! a few lines to read and write, and writing it ourselves keeps the output
//! byte-identical to what dpkg-deb writes for the members we copy.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Something wrong with a .deb file, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum DebFileError {
    #[error("cannot read {}: {cause}", origin.display())]
    Io {
        origin: PathBuf,
        cause: std::io::Error,
    },

    #[error(
        "{} is not a Debian package: it does not start with the ar archive signature \
         \"!<arch>\" (is it really a .deb file?)",
        origin.display()
    )]
    NotAnArArchive { origin: PathBuf },

    #[error(
        "{} is not a Debian 2.x binary package: its debian-binary member contains {found:?} \
         instead of a version like \"2.0\"",
        origin.display()
    )]
    BadDebianBinary { origin: PathBuf, found: String },

    #[error(
        "{} is not a complete Debian package: it has no {member} member (rebuild it with \
         dpkg-deb or cargo speedy)",
        origin.display()
    )]
    MissingMember {
        origin: PathBuf,
        member: &'static str,
    },

    #[error(
        "{} has an unexpected member {member:?} where {expected} was expected; a .deb holds \
         debian-binary, control.tar.*, data.tar.* and optionally _gpg* signatures, in that order",
        origin.display()
    )]
    UnexpectedMember {
        origin: PathBuf,
        member: String,
        expected: &'static str,
    },

    #[error(
        "{}: member {member:?} uses a compression this tool does not read; rebuild the package \
         with dpkg-deb -Zxz, -Zgzip, -Zzstd or -Znone",
        origin.display()
    )]
    UnsupportedCompression { origin: PathBuf, member: String },

    #[error(
        "{}: the control archive has no ./control file, so this is not a valid Debian package",
        origin.display()
    )]
    MissingControlFile { origin: PathBuf },

    #[error("{} is damaged or truncated: {reason}", origin.display())]
    Corrupt { origin: PathBuf, reason: String },
}

/// One member of the ar archive, with the header fields that are copied when the
/// package is rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebMember {
    name: String,
    data: Vec<u8>,
    mtime: u64,
    uid: u32,
    gid: u32,
    mode: u32,
}

impl DebMember {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    pub fn mtime(&self) -> u64 {
        self.mtime
    }
    pub fn uid(&self) -> u32 {
        self.uid
    }
    pub fn gid(&self) -> u32 {
        self.gid
    }
    pub fn mode(&self) -> u32 {
        self.mode
    }
}

/// A parsed and validated .deb: members\[0\] is debian-binary, \[1\] control.tar.*,
/// \[2\] data.tar.*, and any further ones are `_gpg*` signatures.
#[derive(Debug, Clone)]
pub struct DebFile {
    origin: PathBuf,
    members: Vec<DebMember>,
}

const AR_MAGIC: &[u8] = b"!<arch>\n";
const AR_HEADER_LEN: usize = 60;
const DEBIAN_BINARY: &str = "debian-binary";
const ORIGIN_SIGNATURE: &str = "_gpgorigin";
const CONTROL_INDEX: usize = 1;
const DATA_INDEX: usize = 2;

/// dpkg 1.21 reads these for control.tar (bzip2 and lzma only ever existed for data).
const CONTROL_SUFFIXES: &[&str] = &["", ".gz", ".xz", ".zst"];
/// We never decompress data.tar, only copy and sign its bytes, so every compression
/// dpkg can install is accepted.
const DATA_SUFFIXES: &[&str] = &["", ".gz", ".xz", ".zst", ".bz2", ".lzma"];

/// A control file larger than this is not a control file; the cap keeps a
/// decompression bomb in a hostile package from filling memory.
const MAX_CONTROL_FILE: u64 = 16 * 1024 * 1024;

impl DebFile {
    /// Parses and validates a .deb held in memory; `origin` is only used in errors.
    pub fn parse(bytes: &[u8], origin: &Path) -> Result<Self, DebFileError> {
        let members = parse_ar(bytes, origin)?;
        validate_members(&members, origin)?;
        Ok(DebFile {
            origin: origin.to_path_buf(),
            members,
        })
    }

    pub fn read(path: &Path) -> Result<Self, DebFileError> {
        let bytes = std::fs::read(path).map_err(|source| DebFileError::Io {
            origin: path.to_path_buf(),
            cause: source,
        })?;
        Self::parse(&bytes, path)
    }

    /// The file this package was read from (or the name given to [`DebFile::parse`]).
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// The ar members in archive order.
    pub fn members(&self) -> &[DebMember] {
        &self.members
    }

    /// The text of ./control inside control.tar.*.
    pub fn control_text(&self) -> Result<String, DebFileError> {
        control_text_of(&self.members[CONTROL_INDEX], &self.origin)
    }

    /// The bytes debsigs signs for `_gpgorigin`.
    pub fn signed_payload(&self) -> Vec<u8> {
        let parts = &self.members[..=DATA_INDEX];
        let mut payload = Vec::with_capacity(parts.iter().map(|m| m.data.len()).sum());
        for member in parts {
            payload.extend_from_slice(&member.data);
        }
        payload
    }

    pub fn origin_signature(&self) -> Option<&[u8]> {
        self.members
            .iter()
            .find(|m| m.name == ORIGIN_SIGNATURE)
            .map(|m| m.data.as_slice())
    }

    /// The package re-written with `signature` as its only `_gpgorigin`. Other `_gpg*`
    /// members (e.g. a maintainer signature) are kept: they sign the same payload,
    /// which does not change.
    pub fn with_origin_signature(&self, signature: &[u8]) -> Vec<u8> {
        let debian_binary = &self.members[0];
        let signature_member = DebMember {
            name: ORIGIN_SIGNATURE.to_string(),
            data: signature.to_vec(),
            mtime: debian_binary.mtime,
            uid: debian_binary.uid,
            gid: debian_binary.gid,
            mode: 0o100644,
        };
        let members: Vec<&DebMember> = self
            .members
            .iter()
            .filter(|m| m.name != ORIGIN_SIGNATURE)
            .chain(std::iter::once(&signature_member))
            .collect();
        write_ar(&members)
    }
}

/// The text of ./control inside the control.tar.* `member` of the package at `origin`.
fn control_text_of(member: &DebMember, origin: &Path) -> Result<String, DebFileError> {
    let corrupt = |what: String| DebFileError::Corrupt {
        origin: origin.to_path_buf(),
        reason: format!("cannot read member {:?}: {what}", member.name),
    };
    let reader = decompressor(&member.name, &member.data, origin)?;
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| corrupt(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
        let is_control = {
            let path = entry.path_bytes();
            let path: &[u8] = &path;
            path == b"./control" || path == b"control"
        };
        if !is_control {
            continue;
        }
        if !entry.header().entry_type().is_file() {
            return Err(corrupt("./control is not a regular file".into()));
        }
        let mut text = Vec::new();
        (&mut entry)
            .take(MAX_CONTROL_FILE + 1)
            .read_to_end(&mut text)
            .map_err(|e| corrupt(e.to_string()))?;
        if text.len() as u64 > MAX_CONTROL_FILE {
            return Err(corrupt(format!(
                "./control is larger than {MAX_CONTROL_FILE} bytes"
            )));
        }
        return String::from_utf8(text).map_err(|_| corrupt("./control is not valid UTF-8".into()));
    }
    Err(DebFileError::MissingControlFile {
        origin: origin.to_path_buf(),
    })
}

/// The largest debian-binary member read ("2.0\n" is four bytes).
const MAX_DEBIAN_BINARY: u64 = 4096;
/// The largest control.tar.* read into memory: control archives hold a few scripts
/// and lists, so anything near this is not a package we built or want.
const MAX_CONTROL_MEMBER: u64 = 32 * 1024 * 1024;
/// The largest `_gpg*` signature member read (an OpenPGP signature is under 1 KiB).
const MAX_SIGNATURE_MEMBER: u64 = 1024 * 1024;

/// A .deb read from disk in one pass without holding it in memory: its member
/// layout, control file, size and hashes. Only debian-binary, control.tar.* and
/// signatures are read into memory; data.tar.* is hashed as it streams by, so memory
/// stays flat whatever the package's size
/// (docs/ARCHITECTURE.md, "Publishing at the cost of what changed").
#[derive(Debug, Clone)]
pub struct ScannedDeb {
    origin: PathBuf,
    /// Each member with where its data is in the file; data.tar's `data` is empty.
    members: Vec<MemberAt>,
    control_text: String,
    size: u64,
    sha256: String,
    md5: String,
}

/// A member of a scanned .deb and where its data lies in the file.
#[derive(Debug, Clone)]
struct MemberAt {
    member: DebMember,
    offset: u64,
    size: u64,
}

/// Hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    sha256: sha2::Sha256,
    md5: md5::Md5,
    count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.sha256.update(&buf[..n]);
        self.md5.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

impl ScannedDeb {
    /// Reads, validates and hashes the .deb at `path` in one pass.
    pub fn scan(path: &Path) -> Result<Self, DebFileError> {
        let io = |source: std::io::Error| DebFileError::Io {
            origin: path.to_path_buf(),
            cause: source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let total = file.metadata().map_err(io)?.len();
        Self::scan_from(
            std::io::BufReader::with_capacity(256 * 1024, file),
            total,
            path,
        )
    }

    /// Scans the `total` bytes of a .deb from `reader`; `origin` names it in errors
    /// and is where [`ScannedDeb::signed_payload`] reads from later.
    fn scan_from(reader: impl Read, total: u64, path: &Path) -> Result<Self, DebFileError> {
        use sha2::Digest;
        let io = |source: std::io::Error| DebFileError::Io {
            origin: path.to_path_buf(),
            cause: source,
        };
        let mut reader = HashingReader {
            inner: reader,
            sha256: sha2::Sha256::new(),
            md5: md5::Md5::new(),
            count: 0,
        };
        let members = scan_ar(&mut reader, total, path, |index, name| {
            if index == 0 {
                Some(MAX_DEBIAN_BINARY)
            } else if index == CONTROL_INDEX && name.starts_with("control.tar") {
                Some(MAX_CONTROL_MEMBER)
            } else if name.starts_with("_gpg") {
                Some(MAX_SIGNATURE_MEMBER)
            } else {
                None
            }
        })?;
        // Whatever follows the last member (nothing, in a well-formed file) is part
        // of the bytes apt checks, so it is hashed too.
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(io)?;
        let plain: Vec<DebMember> = members.iter().map(|m| m.member.clone()).collect();
        validate_members(&plain, path)?;
        let control_text = control_text_of(&plain[CONTROL_INDEX], path)?;
        Ok(ScannedDeb {
            origin: path.to_path_buf(),
            members,
            control_text,
            size: reader.count,
            sha256: format!("{:x}", reader.sha256.finalize()),
            md5: format!("{:x}", reader.md5.finalize()),
        })
    }

    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// The text of ./control.
    pub fn control_text(&self) -> &str {
        &self.control_text
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// SHA-256 of the whole file, lowercase hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// MD5 of the whole file, lowercase hex (apt's `MD5sum` field).
    pub fn md5(&self) -> &str {
        &self.md5
    }

    pub fn origin_signature(&self) -> Option<&[u8]> {
        self.members
            .iter()
            .find(|m| m.member.name == ORIGIN_SIGNATURE)
            .map(|m| m.member.data.as_slice())
    }

    /// The bytes debsigs signs for `_gpgorigin`, read from the file as they are
    /// consumed.
    pub fn signed_payload(&self) -> Result<impl Read, DebFileError> {
        let file = std::fs::File::open(&self.origin).map_err(|source| DebFileError::Io {
            origin: self.origin.clone(),
            cause: source,
        })?;
        Ok(FileRanges {
            file: std::io::BufReader::with_capacity(256 * 1024, file),
            ranges: self.members[..=DATA_INDEX]
                .iter()
                .map(|m| (m.offset, m.size))
                .collect(),
            remaining: 0,
        })
    }

    /// Writes the package to `destination` with `signature` as its only `_gpgorigin`,
    /// copying the other members from the file, never holding them; written to a
    /// temporary file beside `destination` and renamed, so a crash leaves the old
    /// file or the new one. Other `_gpg*` members are kept: they sign the same payload.
    pub fn write_with_origin_signature(
        &self,
        signature: &[u8],
        destination: &Path,
    ) -> Result<(), DebFileError> {
        use std::io::{Seek, Write};
        let io = |origin: &Path| {
            let origin = origin.to_path_buf();
            move |source: std::io::Error| DebFileError::Io {
                origin: origin.clone(),
                cause: source,
            }
        };
        let mut source = std::fs::File::open(&self.origin).map_err(io(&self.origin))?;
        let directory = destination.parent().unwrap_or(Path::new("."));
        let mut temporary = tempfile::NamedTempFile::new_in(directory).map_err(io(destination))?;
        {
            let mut out = std::io::BufWriter::with_capacity(256 * 1024, temporary.as_file_mut());
            out.write_all(AR_MAGIC).map_err(io(destination))?;
            for MemberAt {
                member,
                offset,
                size,
            } in &self.members
            {
                if member.name == ORIGIN_SIGNATURE {
                    continue;
                }
                let size = *size;
                let header = ar_header(
                    &member.name,
                    member.mtime,
                    member.uid,
                    member.gid,
                    member.mode,
                    size,
                );
                out.write_all(header.as_bytes()).map_err(io(destination))?;
                source
                    .seek(std::io::SeekFrom::Start(*offset))
                    .map_err(io(&self.origin))?;
                let copied = std::io::copy(&mut (&mut source).take(size), &mut out)
                    .map_err(io(destination))?;
                if copied != size {
                    return Err(DebFileError::Corrupt {
                        origin: self.origin.clone(),
                        reason: "the file changed while it was being signed".into(),
                    });
                }
                if size % 2 == 1 {
                    out.write_all(b"\n").map_err(io(destination))?;
                }
            }
            let first = &self.members[0].member;
            let header = ar_header(
                ORIGIN_SIGNATURE,
                first.mtime,
                first.uid,
                first.gid,
                0o100644,
                signature.len() as u64,
            );
            out.write_all(header.as_bytes()).map_err(io(destination))?;
            out.write_all(signature).map_err(io(destination))?;
            if signature.len() % 2 == 1 {
                out.write_all(b"\n").map_err(io(destination))?;
            }
            out.flush().map_err(io(destination))?;
        }
        temporary.as_file().sync_all().map_err(io(destination))?;
        temporary
            .persist(destination)
            .map_err(|e| io(destination)(e.error))?;
        Ok(())
    }
}

/// Reads a list of (offset, length) ranges of a file, one after the other.
struct FileRanges {
    file: std::io::BufReader<std::fs::File>,
    ranges: std::collections::VecDeque<(u64, u64)>,
    remaining: u64,
}

impl Read for FileRanges {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::Seek;
        while self.remaining == 0 {
            let Some((offset, length)) = self.ranges.pop_front() else {
                return Ok(0);
            };
            self.file.seek(std::io::SeekFrom::Start(offset))?;
            self.remaining = length;
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the package file changed while it was being read",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn normalized_fingerprint(fingerprint: &str) -> String {
    fingerprint
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase()
}

/// debsig-verify names the policy and keyring directories after the signature's
/// long key ID, the last 16 hex digits of the fingerprint.
fn debsig_key_id(fingerprint: &str) -> String {
    let fingerprint = normalized_fingerprint(fingerprint);
    let start = fingerprint.len().saturating_sub(16);
    fingerprint.get(start..).unwrap_or_default().to_string()
}

fn xml_attribute(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            // A raw newline in an attribute is normalised to a space by XML parsers;
            // make that explicit rather than surprising.
            '\n' | '\r' | '\t' => escaped.push(' '),
            // Other control characters are not allowed in XML at all.
            c if c.is_control() => {}
            c => escaped.push(c),
        }
    }
    escaped
}

/// The debsig-verify policy for packages signed with the repository key
/// `fingerprint` (40 hex digits).
///
/// Every id is the full fingerprint, as in Debian's own generic.pol example:
/// debsig-verify 0.28 compares it exactly with the signing key, so a different key
/// that happens to share the long key ID (which only names the directory) is
/// rejected.
pub fn debsig_policy(fingerprint: &str, origin_name: &str) -> String {
    let fingerprint = normalized_fingerprint(fingerprint);
    let name = xml_attribute(origin_name);
    format!(
        r#"<?xml version="1.0"?>
<!DOCTYPE Policy SYSTEM "https://www.debian.org/debsig/1.0/policy.dtd">
<Policy xmlns="https://www.debian.org/debsig/1.0/">

  <Origin Name="{name}" id="{fingerprint}" Description="Packages signed by the {name} repository key"/>

  <Selection>
    <Required Type="origin" File="debsig.gpg" id="{fingerprint}"/>
  </Selection>

  <Verification MinOptional="0">
    <Required Type="origin" File="debsig.gpg" id="{fingerprint}"/>
  </Verification>

</Policy>
"#
    )
}

/// Where the policy and keyring for `fingerprint` go, relative to debsig-verify's
/// policies directory (/etc/debsig/policies) and keyrings directory
/// (/usr/share/debsig/keyrings).
pub fn debsig_paths(fingerprint: &str) -> (String, String) {
    let key_id = debsig_key_id(fingerprint);
    (
        format!("{key_id}/speedy.pol"),
        format!("{key_id}/debsig.gpg"),
    )
}

fn member_suffix<'a>(name: &'a str, stem: &str) -> Option<&'a str> {
    name.strip_prefix(stem)
        .filter(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// Signature member names are written back verbatim into a 16-byte field, so only
/// names that fit it unambiguously are accepted.
fn is_signature_name(name: &str) -> bool {
    name.starts_with("_gpg")
        && name.len() <= 16
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn validate_members(members: &[DebMember], origin: &Path) -> Result<(), DebFileError> {
    let unexpected = |member: &DebMember, expected: &'static str| DebFileError::UnexpectedMember {
        origin: origin.to_path_buf(),
        member: member.name.clone(),
        expected,
    };
    let missing = |member: &'static str| DebFileError::MissingMember {
        origin: origin.to_path_buf(),
        member,
    };

    let debian_binary = members.first().ok_or_else(|| missing(DEBIAN_BINARY))?;
    if debian_binary.name != DEBIAN_BINARY {
        return Err(unexpected(debian_binary, "debian-binary"));
    }
    if !is_supported_format_version(&debian_binary.data) {
        let shown = &debian_binary.data[..debian_binary.data.len().min(40)];
        return Err(DebFileError::BadDebianBinary {
            origin: origin.to_path_buf(),
            found: String::from_utf8_lossy(shown).into_owned(),
        });
    }

    let stages: [(&str, &'static str, &[&str]); 2] = [
        ("control.tar", "control.tar.*", CONTROL_SUFFIXES),
        ("data.tar", "data.tar.*", DATA_SUFFIXES),
    ];
    for (index, (stem, label, suffixes)) in stages.into_iter().enumerate() {
        let member = members.get(index + 1).ok_or_else(|| missing(label))?;
        match member_suffix(&member.name, stem) {
            Some(suffix) if suffixes.contains(&suffix) => {}
            Some(_) => {
                return Err(DebFileError::UnsupportedCompression {
                    origin: origin.to_path_buf(),
                    member: member.name.clone(),
                })
            }
            // control.tar absent but data.tar present: say which one is missing
            // rather than calling data.tar unexpected.
            None if index == 0 && member_suffix(&member.name, "data.tar").is_some() => {
                return Err(missing(label))
            }
            None => return Err(unexpected(member, label)),
        }
    }

    let mut seen: Vec<&str> = Vec::new();
    for member in &members[DATA_INDEX + 1..] {
        if !is_signature_name(&member.name) {
            return Err(unexpected(
                member,
                "a _gpg* signature member (or the end of the archive)",
            ));
        }
        if seen.contains(&member.name.as_str()) {
            return Err(DebFileError::Corrupt {
                origin: origin.to_path_buf(),
                reason: format!(
                    "the signature member {:?} appears more than once, so it is unclear which one counts",
                    member.name
                ),
            });
        }
        seen.push(&member.name);
    }
    Ok(())
}

/// dpkg accepts any 2.x format; "2.0\n" is all it has ever written.
fn is_supported_format_version(data: &[u8]) -> bool {
    let Some(rest) = data.strip_prefix(b"2.") else {
        return false;
    };
    let Some(minor) = rest.strip_suffix(b"\n") else {
        return false;
    };
    !minor.is_empty() && minor.iter().all(u8::is_ascii_digit)
}

/// A numeric ar header field: digits in `radix`, left-aligned, space-padded. An
/// all-blank field reads as 0, as some ar writers leave owner and group blank.
fn parse_field(field: &[u8], radix: u32) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?.trim_end_matches(' ');
    if text.is_empty() {
        return Some(0);
    }
    if !text.bytes().all(|b| (b as char).is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(text, radix).ok()
}

fn parse_ar(bytes: &[u8], origin: &Path) -> Result<Vec<DebMember>, DebFileError> {
    let mut reader = bytes;
    let scanned = scan_ar(&mut reader, bytes.len() as u64, origin, |_, _| {
        Some(u64::MAX)
    })?;
    Ok(scanned.into_iter().map(|m| m.member).collect())
}

/// Reads an ar archive of `total` bytes from `reader` front to back, once. Members for
/// which `keep(index, name)` gives a cap are read into memory (a larger one is an
/// error); the others are skipped, their `data` left empty, so a multi-gigabyte
/// data.tar is never held. Returns each member with where its data lies.
fn scan_ar(
    reader: &mut impl Read,
    total: u64,
    origin: &Path,
    keep: impl Fn(usize, &str) -> Option<u64>,
) -> Result<Vec<MemberAt>, DebFileError> {
    let corrupt = |reason: String| DebFileError::Corrupt {
        origin: origin.to_path_buf(),
        reason,
    };
    let io = |source: std::io::Error| DebFileError::Io {
        origin: origin.to_path_buf(),
        cause: source,
    };
    let mut magic = [0u8; AR_MAGIC.len()];
    let magic_len = read_up_to(reader, &mut magic).map_err(io)?;
    if magic_len < AR_MAGIC.len() || magic != AR_MAGIC {
        return Err(DebFileError::NotAnArArchive {
            origin: origin.to_path_buf(),
        });
    }
    let mut members = Vec::new();
    let mut pos = AR_MAGIC.len() as u64;
    while pos < total {
        let mut header = [0u8; AR_HEADER_LEN];
        let got = read_up_to(reader, &mut header).map_err(io)?;
        if got < AR_HEADER_LEN {
            return Err(corrupt(format!(
                "the archive ends in the middle of a member header at byte {pos}"
            )));
        }
        if &header[58..60] != b"`\n" {
            return Err(corrupt(format!(
                "the member header at byte {pos} has no end marker"
            )));
        }
        let raw_name = std::str::from_utf8(&header[..16])
            .map_err(|_| corrupt(format!("the member name at byte {pos} is not text")))?;
        // dpkg accepts both the plain "name" and the GNU "name/" spelling.
        let name = raw_name.trim_end_matches(' ');
        let name = name.strip_suffix('/').unwrap_or(name);
        let field = |range: std::ops::Range<usize>, radix: u32, what: &str| {
            parse_field(&header[range], radix).ok_or_else(|| {
                corrupt(format!(
                    "the {what} field of member {name:?} at byte {pos} is not a number"
                ))
            })
        };
        let mtime = field(16..28, 10, "timestamp")?;
        let uid = field(28..34, 10, "owner")?;
        let gid = field(34..40, 10, "group")?;
        let mode = field(40..48, 8, "mode")?;
        let size = field(48..58, 10, "size")?;
        let start = pos + AR_HEADER_LEN as u64;
        let end = start
            .checked_add(size)
            .filter(|&end| end <= total)
            .ok_or_else(|| {
                corrupt(format!(
                    "member {name:?} claims {size} bytes but the file ends {} bytes after its header \
                     (the file was probably cut short while copying or downloading)",
                    total - start
                ))
            })?;
        let data = match keep(members.len(), name) {
            Some(cap) if size > cap => {
                return Err(corrupt(format!(
                    "member {name:?} is {size} bytes, more than the {cap} such a member can be"
                )))
            }
            Some(_) => {
                let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                reader.take(size).read_to_end(&mut data).map_err(io)?;
                data
            }
            None => {
                std::io::copy(&mut reader.take(size), &mut std::io::sink()).map_err(io)?;
                Vec::new()
            }
        };
        if data.len() as u64 != size && keep(members.len(), name).is_some() {
            return Err(corrupt(format!("member {name:?} ends early")));
        }
        members.push(MemberAt {
            member: DebMember {
                name: name.to_string(),
                data,
                mtime,
                // Both fields are at most six decimal digits, so they always fit.
                uid: u32::try_from(uid).unwrap_or(u32::MAX),
                gid: u32::try_from(gid).unwrap_or(u32::MAX),
                mode: u32::try_from(mode).unwrap_or(u32::MAX),
            },
            offset: start,
            size,
        });
        pos = end;
        if size % 2 == 1 && pos < total {
            let mut padding = [0u8; 1];
            reader.read_exact(&mut padding).map_err(io)?;
            // Some writers omit the padding after the last member; dpkg copes.
            if padding[0] != b'\n' {
                return Err(corrupt(format!(
                    "member {name:?} is not followed by the ar padding byte"
                )));
            }
            pos += 1;
        }
    }
    Ok(members)
}

/// A .deb from its compressed control and data archives (`control.tar.xz`,
/// `data.tar.xz`), every member dated `mtime`: how the keyring package is made.
pub fn assemble(control_tar_xz: &[u8], data_tar_xz: &[u8], mtime: u64) -> Vec<u8> {
    let member = |name: &str, data: &[u8]| DebMember {
        name: name.to_owned(),
        data: data.to_vec(),
        mtime,
        uid: 0,
        gid: 0,
        mode: 0o100644,
    };
    let members = [
        member(DEBIAN_BINARY, b"2.0\n"),
        member("control.tar.xz", control_tar_xz),
        member("data.tar.xz", data_tar_xz),
    ];
    write_ar(&members.iter().collect::<Vec<_>>())
}

/// Fills `buf` as far as the reader goes; fewer bytes only at its end.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The 60-byte ar header of a member; `write_ar` and the streaming rewrite share it.
fn ar_header(name: &str, mtime: u64, uid: u32, gid: u32, mode: u32, size: u64) -> String {
    // Names are validated to fit 16 bytes without spaces; the numeric fields were
    // read from fields of these same widths, and a signature is far smaller than
    // 10^10 bytes, so the layout never overflows a field.
    format!("{name:<16}{mtime:<12}{uid:<6}{gid:<6}{mode:<8o}{size:<10}`\n")
}

fn write_ar(members: &[&DebMember]) -> Vec<u8> {
    let total: usize = members
        .iter()
        .map(|m| AR_HEADER_LEN + m.data.len() + m.data.len() % 2)
        .sum();
    let mut out = Vec::with_capacity(AR_MAGIC.len() + total);
    out.extend_from_slice(AR_MAGIC);
    for member in members {
        let header = ar_header(
            &member.name,
            member.mtime,
            member.uid,
            member.gid,
            member.mode,
            member.data.len() as u64,
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&member.data);
        if member.data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

fn decompressor<'a>(
    name: &str,
    data: &'a [u8],
    origin: &Path,
) -> Result<Box<dyn Read + 'a>, DebFileError> {
    let reader: Box<dyn Read + 'a> = match member_suffix(name, "control.tar")
        .or_else(|| member_suffix(name, "data.tar"))
    {
        Some("") => Box::new(data),
        Some(".gz") => Box::new(flate2::read::GzDecoder::new(data)),
        Some(".xz") => Box::new(xz2::read::XzDecoder::new(data)),
        Some(".zst") => Box::new(ruzstd::decoding::StreamingDecoder::new(data).map_err(|e| {
            DebFileError::Corrupt {
                origin: origin.to_path_buf(),
                reason: format!("cannot read member {name:?}: {e}"),
            }
        })?),
        _ => {
            return Err(DebFileError::UnsupportedCompression {
                origin: origin.to_path_buf(),
                member: name.to_string(),
            })
        }
    };
    Ok(reader)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const CONTROL: &str = "Package: speedy-probe\nVersion: 1.2.3\nArchitecture: all\n\
Maintainer: Speedy Test <test@speedy.example>\nDescription: a tiny package for debfile tests\n";

    /// Runs a real tool (dpkg-deb, ar), which must be installed: a missing tool fails
    /// the test instead of skipping it.
    fn run(cmd: &mut Command) -> Vec<u8> {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?} (install it; .ci/deps does): {e}"));
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Builds a tiny package with dpkg-deb using compression `z` ("xz", "gzip",
    /// "none", "zstd"; bookworm's dpkg-deb 1.21 builds all four).
    fn build_deb(dir: &Path, z: &str) -> PathBuf {
        let root = dir.join(format!("root-{z}"));
        std::fs::create_dir_all(root.join("DEBIAN")).expect("mkdir");
        std::fs::create_dir_all(root.join("usr/share/speedy-probe")).expect("mkdir");
        std::fs::write(root.join("DEBIAN/control"), CONTROL).expect("write control");
        std::fs::write(root.join("usr/share/speedy-probe/hello.txt"), "hello\n").expect("write");
        let deb = dir.join(format!("probe-{z}.deb"));
        run(Command::new("dpkg-deb")
            .env("SOURCE_DATE_EPOCH", "1795000000")
            .arg("--root-owner-group")
            .arg(format!("-Z{z}"))
            .arg("--build")
            .arg(&root)
            .arg(&deb));
        deb
    }

    fn ar_list(path: &Path) -> Vec<String> {
        String::from_utf8(run(Command::new("ar").arg("t").arg(path)))
            .expect("utf-8")
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// A hand-made ar archive, for shapes dpkg-deb refuses to build.
    fn ar_bytes(members: &[(&str, &[u8])]) -> Vec<u8> {
        let members: Vec<DebMember> = members
            .iter()
            .map(|(name, data)| DebMember {
                name: name.to_string(),
                data: data.to_vec(),
                mtime: 1795000000,
                uid: 0,
                gid: 0,
                mode: 0o100644,
            })
            .collect();
        write_ar(&members.iter().collect::<Vec<_>>())
    }

    fn tar_with(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            builder
                .append_data(&mut header, name, *data)
                .expect("tar append");
        }
        builder.into_inner().expect("tar finish")
    }

    fn origin() -> &'static Path {
        Path::new("test.deb")
    }

    fn check_real_deb(dir: &Path, z: &str) {
        let path = build_deb(dir, z);
        let (ctl, data) = match z {
            "xz" => ("control.tar.xz", "data.tar.xz"),
            "gzip" => ("control.tar.gz", "data.tar.gz"),
            "zstd" => ("control.tar.zst", "data.tar.zst"),
            _ => ("control.tar", "data.tar"),
        };
        assert_eq!(ar_list(&path), ["debian-binary", ctl, data]);
        let original = std::fs::read(&path).expect("read deb");
        let deb = DebFile::read(&path).expect("parse a dpkg-deb package");
        assert_eq!(deb.origin(), path);
        assert_eq!(deb.control_text().expect("control"), CONTROL);
        assert_eq!(deb.origin_signature(), None);

        let expected_payload =
            run(Command::new("ar")
                .arg("p")
                .arg(&path)
                .args(["debian-binary", ctl, data]));
        assert_eq!(deb.signed_payload(), expected_payload);

        let signed = deb.with_origin_signature(b"sig");
        assert_eq!(deb.with_origin_signature(b"sig"), signed, "deterministic");

        // The streaming reader agrees with the in-memory one, byte for byte.
        let scanned = ScannedDeb::scan(&path).expect("scan");
        assert_eq!(scanned.control_text(), CONTROL);
        assert_eq!(scanned.size(), original.len() as u64);
        {
            use sha2::Digest;
            assert_eq!(
                scanned.sha256(),
                format!("{:x}", sha2::Sha256::digest(&original))
            );
            assert_eq!(scanned.md5(), format!("{:x}", md5::Md5::digest(&original)));
        }
        let mut streamed_payload = Vec::new();
        scanned
            .signed_payload()
            .expect("payload")
            .read_to_end(&mut streamed_payload)
            .expect("read payload");
        assert_eq!(streamed_payload, expected_payload);
        let streamed_path = dir.join(format!("streamed-{z}.deb"));
        scanned
            .write_with_origin_signature(b"sig", &streamed_path)
            .expect("rewrite");
        assert_eq!(std::fs::read(&streamed_path).expect("read"), signed);
        let rescanned = ScannedDeb::scan(&streamed_path).expect("scan signed");
        assert_eq!(rescanned.origin_signature(), Some(&b"sig"[..]));
        rescanned
            .write_with_origin_signature(b"other", &streamed_path)
            .expect("re-sign in place");
        assert_eq!(
            std::fs::read(&streamed_path).expect("read"),
            DebFile::parse(&signed, origin())
                .expect("parse")
                .with_origin_signature(b"other")
        );
        // The members dpkg wrote are copied byte for byte, headers included.
        assert_eq!(&signed[..original.len()], &original[..]);

        let reparsed = DebFile::parse(&signed, origin()).expect("parse signed");
        assert_eq!(reparsed.origin_signature(), Some(&b"sig"[..]));
        assert_eq!(reparsed.signed_payload(), expected_payload);
        assert_eq!(reparsed.control_text().expect("control"), CONTROL);
        let sig_member = &reparsed.members()[3];
        let first = &reparsed.members()[0];
        assert_eq!(
            (
                sig_member.mtime(),
                sig_member.uid(),
                sig_member.gid(),
                sig_member.mode()
            ),
            (first.mtime(), first.uid(), first.gid(), 0o100644)
        );

        let signed_path = dir.join(format!("signed-{z}.deb"));
        std::fs::write(&signed_path, &signed).expect("write");
        assert_eq!(
            ar_list(&signed_path),
            ["debian-binary", ctl, data, "_gpgorigin"]
        );
        assert_eq!(
            run(Command::new("ar")
                .arg("p")
                .arg(&signed_path)
                .arg("_gpgorigin")),
            b"sig"
        );
        let info = run(Command::new("dpkg-deb").arg("--info").arg(&signed_path));
        assert!(String::from_utf8_lossy(&info).contains("Package: speedy-probe"));
        let contents = run(Command::new("dpkg-deb").arg("--contents").arg(&signed_path));
        assert!(String::from_utf8_lossy(&contents).contains("./usr/share/speedy-probe/hello.txt"));

        // Re-signing replaces the signature (odd length, to exercise padding).
        let resigned = reparsed.with_origin_signature(b"other");
        let resigned_deb = DebFile::parse(&resigned, origin()).expect("parse re-signed");
        assert_eq!(resigned_deb.origin_signature(), Some(&b"other"[..]));
        assert_eq!(resigned_deb.members().len(), 4);
        assert_eq!(resigned_deb.signed_payload(), expected_payload);
        let resigned_path = dir.join(format!("resigned-{z}.deb"));
        std::fs::write(&resigned_path, &resigned).expect("write");
        assert_eq!(
            ar_list(&resigned_path),
            ["debian-binary", ctl, data, "_gpgorigin"]
        );
        run(Command::new("dpkg-deb").arg("--info").arg(&resigned_path));
        run(Command::new("dpkg-deb")
            .arg("--contents")
            .arg(&resigned_path));
    }

    #[test]
    fn real_debs_round_trip_with_every_compression() {
        let dir = tempfile::tempdir().expect("tempdir");
        for z in ["xz", "gzip", "none", "zstd"] {
            check_real_deb(dir.path(), z);
        }
    }

    #[test]
    fn other_gpg_members_are_kept_and_gnu_names_are_read() {
        let control = tar_with(&[("./control", CONTROL.as_bytes())]);
        let mut bytes = ar_bytes(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &control),
            ("data.tar", &tar_with(&[])),
            ("_gpgmaint", b"m"),
            ("_gpgorigin", b"old"),
        ]);
        // GNU ar spells names "debian-binary/"; dpkg reads both.
        let at = AR_MAGIC.len() + "debian-binary".len();
        bytes[at] = b'/';
        let deb = DebFile::parse(&bytes, origin()).expect("parse");
        assert_eq!(deb.members()[0].name(), "debian-binary");
        assert_eq!(deb.origin_signature(), Some(&b"old"[..]));
        let signed = DebFile::parse(&deb.with_origin_signature(b"new"), origin()).expect("parse");
        let names: Vec<&str> = signed.members().iter().map(DebMember::name).collect();
        assert_eq!(
            names,
            [
                "debian-binary",
                "control.tar",
                "data.tar",
                "_gpgmaint",
                "_gpgorigin"
            ]
        );
        assert_eq!(signed.origin_signature(), Some(&b"new"[..]));
    }

    #[test]
    fn control_may_be_named_without_dot_slash() {
        let control = tar_with(&[("md5sums", b"x"), ("control", CONTROL.as_bytes())]);
        let bytes = ar_bytes(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &control),
            ("data.tar", &tar_with(&[])),
        ]);
        let deb = DebFile::parse(&bytes, origin()).expect("parse");
        assert_eq!(deb.control_text().expect("control"), CONTROL);
    }

    #[test]
    fn bad_inputs_give_the_right_errors() {
        let control = tar_with(&[("./control", CONTROL.as_bytes())]);
        let data = tar_with(&[]);
        let parse = |bytes: &[u8]| DebFile::parse(bytes, origin());

        let err = parse(b"PK\x03\x04 this is a zip").unwrap_err();
        assert!(matches!(err, DebFileError::NotAnArArchive { .. }), "{err}");
        assert!(err.to_string().contains("test.deb"), "{err}");
        assert!(matches!(
            parse(b"").unwrap_err(),
            DebFileError::NotAnArArchive { .. }
        ));

        let err = parse(AR_MAGIC).unwrap_err();
        assert!(
            matches!(
                err,
                DebFileError::MissingMember {
                    member: "debian-binary",
                    ..
                }
            ),
            "{err}"
        );

        let err = parse(&ar_bytes(&[
            ("debian-binary", b"3.0\n"),
            ("control.tar", &control),
            ("data.tar", &data),
        ]))
        .unwrap_err();
        assert!(
            matches!(&err, DebFileError::BadDebianBinary { found, .. } if found == "3.0\n"),
            "{err}"
        );
        for bad in [&b"2.0"[..], b"2.\n", b"2.0\nextra\n", b"20\n"] {
            let err = parse(&ar_bytes(&[
                ("debian-binary", bad),
                ("control.tar", &control),
                ("data.tar", &data),
            ]))
            .unwrap_err();
            assert!(
                matches!(err, DebFileError::BadDebianBinary { .. }),
                "{bad:?}: {err}"
            );
        }

        let err = parse(&ar_bytes(&[("control.tar", &control), ("data.tar", &data)])).unwrap_err();
        assert!(
            matches!(&err, DebFileError::UnexpectedMember { member, .. } if member == "control.tar"),
            "{err}"
        );

        let err = parse(&ar_bytes(&[
            ("debian-binary", b"2.0\n"),
            ("data.tar", &data),
        ]))
        .unwrap_err();
        assert!(
            matches!(
                err,
                DebFileError::MissingMember {
                    member: "control.tar.*",
                    ..
                }
            ),
            "{err}"
        );

        let err = parse(&ar_bytes(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &control),
        ]))
        .unwrap_err();
        assert!(
            matches!(
                err,
                DebFileError::MissingMember {
                    member: "data.tar.*",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("data.tar"), "{err}");

        let err = parse(&ar_bytes(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &control),
            ("extra", b"x"),
            ("data.tar", &data),
        ]))
        .unwrap_err();
        assert!(
            matches!(&err, DebFileError::UnexpectedMember { member, .. } if member == "extra"),
            "{err}"
        );

        let err = parse(&ar_bytes(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &control),
            ("data.tar", &data),
            ("notes.txt", b"x"),
        ]))
        .unwrap_err();
        assert!(
            matches!(&err, DebFileError::UnexpectedMember { member, .. } if member == "notes.txt"),
            "{err}"
        );

        let err = parse(&ar_bytes(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &control),
            ("data.tar", &data),
            ("_gpgorigin", b"a"),
            ("_gpgorigin", b"b"),
        ]))
        .unwrap_err();
        assert!(matches!(err, DebFileError::Corrupt { .. }), "{err}");

        for (ctl, dat) in [
            ("control.tar.bz2", "data.tar"),
            ("control.tar", "data.tar.lz4"),
        ] {
            let err = parse(&ar_bytes(&[
                ("debian-binary", b"2.0\n"),
                (ctl, &control),
                (dat, &data),
            ]))
            .unwrap_err();
            assert!(
                matches!(err, DebFileError::UnsupportedCompression { .. }),
                "{err}"
            );
        }
        // Data is only copied, never unpacked, so every compression dpkg installs is fine.
        parse(&ar_bytes(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &control),
            ("data.tar.bz2", b"BZh"),
        ]))
        .expect("data.tar.bz2 is accepted");

        let full = ar_bytes(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &control),
            ("data.tar", &data),
        ]);
        let err = parse(&full[..full.len() - 100]).unwrap_err();
        assert!(matches!(err, DebFileError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("cut short"), "{err}");

        let no_control = parse(&ar_bytes(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &tar_with(&[("./md5sums", b"")])),
            ("data.tar", &data),
        ]))
        .expect("structure is fine");
        let err = no_control.control_text().unwrap_err();
        assert!(
            matches!(err, DebFileError::MissingControlFile { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("test.deb"), "{err}");

        let garbage_control = parse(&ar_bytes(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.xz", b"not xz at all"),
            ("data.tar", &data),
        ]))
        .expect("structure is fine");
        let err = garbage_control.control_text().unwrap_err();
        assert!(matches!(err, DebFileError::Corrupt { .. }), "{err}");

        let err = DebFile::read(Path::new("/nonexistent/speedy.deb")).unwrap_err();
        assert!(matches!(err, DebFileError::Io { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/speedy.deb"), "{err}");
    }

    /// Every operation on a damaged file must return, never panic; with `streaming`,
    /// the streaming reader must accept exactly what the in-memory one does.
    fn exercise(bytes: &[u8], streaming: bool) -> bool {
        let parsed = DebFile::parse(bytes, origin());
        if streaming {
            let scanned = ScannedDeb::scan_from(bytes, bytes.len() as u64, origin());
            let accepted = parsed.as_ref().is_ok_and(|deb| deb.control_text().is_ok());
            assert_eq!(scanned.is_ok(), accepted, "{:?}", scanned.err());
        }
        match parsed {
            Ok(deb) => {
                let _ = deb.control_text();
                let _ = deb.signed_payload();
                let signed = deb.with_origin_signature(b"sig");
                assert!(DebFile::parse(&signed, origin()).is_ok());
                true
            }
            Err(err) => {
                assert!(err.to_string().contains("test.deb"), "{err}");
                false
            }
        }
    }

    #[test]
    fn truncated_and_bit_flipped_debs_never_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        for z in ["xz", "gzip", "none", "zstd"] {
            let path = build_deb(dir.path(), z);
            let unsigned = std::fs::read(&path).expect("read");
            let signed = DebFile::read(&path)
                .expect("parse")
                .with_origin_signature(b"signature!");
            for original in [unsigned.clone(), signed] {
                for len in 0..original.len() {
                    let ok = exercise(&original[..len], len < 4096 || len % 16 == 0);
                    // Only a final padding byte may be missing, and cutting the
                    // signature off a signed package leaves a valid unsigned one.
                    let allowed = [original.len() - 1, unsigned.len(), unsigned.len() - 1];
                    assert!(
                        !ok || allowed.contains(&len),
                        "{z}: truncated to {len} parsed"
                    );
                }
                // -Znone packages are ~20 KiB of tar blocks: sample them sparsely.
                let step = (original.len() / 2000).max(1);
                for at in (0..original.len()).step_by(step) {
                    for bit in [0x01, 0x10, 0x80] {
                        let mut flipped = original.clone();
                        flipped[at] ^= bit;
                        // Both readers share the header parser: a sample of the flips
                        // compares them.
                        exercise(&flipped, at % 7 == 0);
                    }
                }
            }
        }
    }

    #[test]
    fn policy_and_paths() {
        let fpr = "0123456789ABCDEF0123456789ABCDEF01234567";
        let policy = debsig_policy(&fpr.to_lowercase(), "Speedy <ops> & co");
        assert!(policy.starts_with("<?xml version=\"1.0\"?>\n"));
        assert!(policy.contains(&format!(
            "<Origin Name=\"Speedy &lt;ops&gt; &amp; co\" id=\"{fpr}\""
        )));
        let required = format!("<Required Type=\"origin\" File=\"debsig.gpg\" id=\"{fpr}\"/>");
        assert_eq!(policy.matches(&required).count(), 2, "{policy}");
        assert_eq!(
            debsig_paths(&fpr.to_lowercase()),
            (
                "89ABCDEF01234567/speedy.pol".to_string(),
                "89ABCDEF01234567/debsig.gpg".to_string()
            )
        );
    }
}
