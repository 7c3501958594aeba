//! Files a user hands `hudd` (a model, its external data, an image), read as hostile input: regular files only (a
//! named pipe blocks a reader forever, `/dev/zero` never ends), opened without blocking and checked on the open
//! handle, so a path swapped for a pipe between a check and the read cannot hang it, and never more bytes than a
//! bound the caller states.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What a path is when it is not a regular file: `a named pipe`, `a device`, `a socket`, `a folder`.
pub fn kind_of(file_type: std::fs::FileType) -> Option<&'static str> {
    if file_type.is_file() {
        None
    } else if file_type.is_dir() {
        Some("a folder")
    } else if file_type.is_fifo() {
        Some("a named pipe")
    } else if file_type.is_char_device() || file_type.is_block_device() {
        Some("a device")
    } else if file_type.is_socket() {
        Some("a socket")
    } else {
        Some("a special file")
    }
}

/// Opens a regular file for reading and returns it with its size; anything else is an `InvalidInput` error saying
/// what the path is. The open does not block (a pipe with no writer would), and the type is read from the handle.
pub fn open(path: &Path) -> io::Result<(File, u64)> {
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let meta = file.metadata()?;
    if let Some(what) = kind_of(meta.file_type()) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("it is {what}, not a regular file")));
    }
    Ok((file, meta.len()))
}

/// The whole of a regular file of at most `max` bytes; a larger one is refused with its size and the bound.
pub fn read(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let (file, size) = open(path)?;
    if size > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it holds {size} bytes, more than the {max} hudd reads from such a file"),
        ));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // `take` holds the read to the size seen, should the file grow while it is read.
    file.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// `length` bytes from byte `offset` of a regular file; the file must hold them all.
pub fn read_at(path: &Path, offset: u64, length: u64) -> io::Result<Vec<u8>> {
    let (mut file, size) = open(path)?;
    let end = offset.checked_add(length).filter(|&end| end <= size).ok_or_else(|| {
        io::Error::new(io::ErrorKind::UnexpectedEof, format!("it holds {size} bytes, not {length} from byte {offset}"))
    })?;
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = vec![0; (end - offset) as usize];
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// What a folder walk finds at a path it does not enter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A regular file, or a link to one.
    File,
    /// A link that leads nowhere (dangling, or a loop of links), with where it points.
    Broken(PathBuf),
    /// A named pipe, a device or a socket (`a named pipe`): named, never opened.
    Special(&'static str),
    /// A link to a folder outside the walk's root, with where it points: named, never entered, so a link to a
    /// system folder or `/proc` costs nothing and reads nothing.
    Outside(PathBuf),
}

/// Everything under `dir`, recursively, sorted by path: files (links to files followed), broken links, special
/// files, and links to folders outside `root` (which holds `dir`). Sub-folders and links to folders inside `root`
/// are entered, each folder once however many links lead to it. What a stage reads of a folder and what its key
/// hashes are both this list, so the key covers exactly what the stage can read.
pub fn walk(dir: &Path, root: &Path) -> io::Result<Vec<(PathBuf, Found)>> {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::canonicalize(root)?;
    let meta = std::fs::metadata(dir)?;
    let mut seen = std::collections::BTreeSet::from([(meta.dev(), meta.ino())]);
    let mut found = Vec::new();
    walk_into(dir, &root, &mut seen, &mut found)?;
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

fn walk_into(
    dir: &Path,
    root: &Path,
    seen: &mut std::collections::BTreeSet<(u64, u64)>,
    found: &mut Vec<(PathBuf, Found)>,
) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // In name order, so which of two paths to one folder is walked (the first) does not depend on the file system.
    let mut entries = std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<io::Result<Vec<_>>>()?;
    entries.sort();
    for path in entries {
        let link = std::fs::symlink_metadata(&path)?.file_type().is_symlink();
        match std::fs::metadata(&path) {
            Err(_) if link => found.push((path.clone(), Found::Broken(std::fs::read_link(&path).unwrap_or_default()))),
            Err(e) => return Err(e),
            Ok(meta) if meta.is_dir() => {
                let target = if link { std::fs::canonicalize(&path)? } else { path.clone() };
                if link && !target.starts_with(root) {
                    found.push((path, Found::Outside(target)));
                } else if seen.insert((meta.dev(), meta.ino())) {
                    walk_into(&path, root, seen, found)?;
                }
            }
            Ok(meta) => match kind_of(meta.file_type()) {
                None => found.push((path, Found::File)),
                Some(what) => found.push((path, Found::Special(what))),
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_pipe_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read(&fifo, 10).unwrap_err();
        assert!(e.to_string().contains("a named pipe"), "{e}");
    }

    #[test]
    fn a_device_and_a_folder_are_refused_by_name() {
        assert!(read(Path::new("/dev/zero"), 10).unwrap_err().to_string().contains("a device"));
        assert!(read(Path::new("/"), 10).unwrap_err().to_string().contains("a folder"));
    }

    #[test]
    fn a_walk_enters_sub_folders_and_links_inside_its_root_and_names_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("a/deep")).unwrap();
        std::fs::write(root.join("a/deep/x.png"), b"x").unwrap();
        std::fs::write(root.join("a/y.png"), b"y").unwrap();
        std::os::unix::fs::symlink(root.join("a/deep"), root.join("inside")).unwrap();
        std::os::unix::fs::symlink("/usr", root.join("system")).unwrap();
        std::os::unix::fs::symlink(root.join("gone"), root.join("dangling")).unwrap();
        std::os::unix::fs::symlink(&root, root.join("a/back")).unwrap();
        let c = std::ffi::CString::new(root.join("a/pipe").to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let found = walk(&root, &root).unwrap();
        let rel: Vec<(String, Found)> = found
            .into_iter()
            .map(|(p, f)| (p.strip_prefix(&root).unwrap().to_string_lossy().into_owned(), f))
            .collect();
        assert_eq!(
            rel,
            vec![
                ("a/deep/x.png".to_string(), Found::File),
                ("a/pipe".to_string(), Found::Special("a named pipe")),
                ("a/y.png".to_string(), Found::File),
                ("dangling".to_string(), Found::Broken(root.join("gone"))),
                ("system".to_string(), Found::Outside(PathBuf::from("/usr"))),
            ],
            "the link `inside` leads to a folder already walked, `a/back` to the root"
        );
    }

    #[test]
    fn sizes_beyond_the_bound_or_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"0123456789").unwrap();
        assert_eq!(read(&f, 10).unwrap(), b"0123456789");
        assert!(read(&f, 9).unwrap_err().to_string().contains("10 bytes, more than the 9"));
        assert_eq!(read_at(&f, 2, 3).unwrap(), b"234");
        assert!(read_at(&f, 8, 3).unwrap_err().to_string().contains("not 3 from byte 8"));
        assert!(read_at(&f, u64::MAX, 3).is_err());
    }
}
