//! The on-disk format of a segment and the file operations on segments.
//!
//! A segment file is named by the offset of its first record (`<offset>.seg`) and
//! holds records `[u32 length][u32 CRC-32C][payload]` (little-endian, length at least
//! 1). The CRC covers the length and the payload and continues the CRC of the record
//! before it; the first record's continues a CRC of the segment's base offset. A record
//! therefore checks only at its own place in its own segment, which is what lets
//! segment files be reused: the first record that does not check (a zero length in
//! unwritten space, an older segment's bytes, a torn write) ends the segment.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::Shared;

pub(super) const HEADER_BYTES: u64 = 8;
pub(super) const SEGMENT_SUFFIX: &str = ".seg";
pub(super) const SPARE_SUFFIX: &str = ".spare";
/// Committed segments kept for reuse instead of deleted.
pub const MAX_SPARES: usize = 2;
/// Segments are deleted by cutting this much off at a time, then unlinking.
const DELETE_STEP: u64 = 4 << 20;

/// A segment file and the offset of its first record.
#[derive(Debug, Clone)]
pub(super) struct Segment {
    pub base: u64,
    pub path: PathBuf,
}

/// The CRC the first record of the segment starting at `base` continues.
pub(super) fn chain_seed(base: u64) -> u32 {
    crc32c::crc32c(&base.to_le_bytes())
}

/// The CRC of a record of `payload` after a record whose CRC was `previous`.
pub(super) fn chained_crc(previous: u32, payload: &[u8]) -> u32 {
    let with_length = crc32c::crc32c_append(previous, &(payload.len() as u32).to_le_bytes());
    crc32c::crc32c_append(with_length, payload)
}

pub(super) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}{SEGMENT_SUFFIX}"))
}

pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Allocates `file`'s blocks up to `len` (growing it to `len`), so writes below `len`
/// change neither its size nor its allocation. Where the file system cannot, the file
/// only grows.
pub(super) fn preallocate(file: &File, len: u64) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => return Ok(()),
            Err(e) if e == rustix::io::Errno::OPNOTSUPP => {}
            Err(e) => return Err(e.into()),
        }
    }
    if file.metadata()?.len() < len {
        file.set_len(len)?;
    }
    Ok(())
}

/// Starts the segment file for `base`: a spare renamed, else a new file, allocated at
/// `len` and durable with its name.
pub(super) fn start_segment(shared: &Shared, base: u64) -> std::io::Result<(File, PathBuf)> {
    let dir = &shared.config.dir;
    let len = shared.config.segment_bytes;
    let path = segment_path(dir, base);
    let spare = shared.spares.lock().pop();
    let file = match spare {
        Some(spare) => {
            fs::rename(&spare, &path)?;
            let file = OpenOptions::new().write(true).open(&path)?;
            if file.metadata()?.len() > len {
                file.set_len(len)?;
            }
            file
        }
        None => OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?,
    };
    preallocate(&file, len)?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok((file, path))
}

/// Deletes `path` a few megabytes at a time.
pub(super) fn delete_gradually(path: &Path) -> std::io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    let mut len = file.metadata()?.len();
    while len > DELETE_STEP {
        len -= DELETE_STEP;
        file.set_len(len)?;
    }
    drop(file);
    fs::remove_file(path)
}

/// Reads one record at the reader's position, whose CRC must continue `chain` (then
/// `chain` becomes its CRC): `Ok(None)` at a clean end (the end of the file, or a zero
/// length in a segment's unwritten space), `Err` with the reason at a record that does
/// not check.
pub(super) fn read_record(
    reader: &mut impl Read,
    max: usize,
    chain: &mut u32,
) -> Result<Option<Vec<u8>>, String> {
    let mut header = [0u8; HEADER_BYTES as usize];
    let mut filled = 0;
    while filled < header.len() {
        match reader.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err("torn record header".into()),
            Ok(n) => filled += n,
            Err(e) => return Err(e.to_string()),
        }
    }
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len == 0 {
        return Ok(None);
    }
    if len > max {
        return Err(format!("record length {len} exceeds {max}"));
    }
    let mut payload = vec![0u8; len];
    reader
        .read_exact(&mut payload)
        .map_err(|_| "torn record payload".to_string())?;
    if chained_crc(*chain, &payload) != crc {
        return Err("checksum mismatch".into());
    }
    *chain = crc;
    Ok(Some(payload))
}

/// Where a committed segment starting at `base` waits for reuse.
pub(super) fn spare_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}{SPARE_SUFFIX}"))
}
