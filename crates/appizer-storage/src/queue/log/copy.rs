//! Copying a log directory while the log is in use (backups): the committed offset,
//! then each segment that still holds records. A segment whose records are all
//! committed may be deleted, or renamed to a spare and reused, while it is read; such a
//! copy is left out, as its records are in event files by then. The copy of the last
//! segment ends where its records were written so far; what follows (unwritten space,
//! a record being written) is cut off at open, as after a crash.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::recovery::OFFSET_FILE;
use super::segment::SEGMENT_SUFFIX;
use crate::queue::QueueError;

/// The names of the files a copy of the log in `dir` needs, in the order to read them:
/// the committed offset (if any), then the segments by first offset.
pub fn files_to_copy(dir: &Path) -> Result<Vec<String>, QueueError> {
    let mut segments: Vec<(u64, String)> = Vec::new();
    let mut offset = None;
    for entry in std::fs::read_dir(dir)? {
        let Ok(name) = entry?.file_name().into_string() else {
            continue;
        };
        if name == OFFSET_FILE {
            offset = Some(name);
        } else if let Some(base) = name
            .strip_suffix(SEGMENT_SUFFIX)
            .and_then(|b| b.parse::<u64>().ok())
        {
            segments.push((base, name));
        }
    }
    segments.sort();
    Ok(offset
        .into_iter()
        .chain(segments.into_iter().map(|(_, name)| name))
        .collect())
}

/// The file `name` of the log in `dir` as a copy needs it, or `None` if it is gone or
/// was renamed (a committed segment) while it was read.
pub fn read_for_copy(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, QueueError> {
    let path = dir.join(name);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    if name == OFFSET_FILE {
        // Replaced whole (written beside, then renamed): any version read is whole.
        return Ok(Some(bytes));
    }
    use std::os::unix::fs::MetadataExt;
    let read = file.metadata()?.ino();
    match std::fs::metadata(&path) {
        Ok(now) if now.ino() == read => Ok(Some(bytes)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}
