//! Writes that a crash, a kill or a full disk cannot tear: everything is written beside its
//! target first, flushed to disk, then renamed into place. A reader sees the old version or the
//! new one, never a mix, and the old version survives any failure before the rename.
//!
//! Depends on nothing else in the crate; everything that saves (artifacts, exports, the
//! built-in model, the run store) goes through here.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes`.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = parent_of(path);
    std::fs::create_dir_all(parent)
        .with_context(|| format!("{}: cannot create", parent.display()))?;
    let mut tmp = builder(&format!(".{}.writing-", file_name(path)), 0o666)
        .tempfile_in(parent)
        .with_context(|| format!("{}: cannot write beside it", path.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("{}: cannot write", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("{}: cannot write", path.display()))?;
    sync_dir(parent);
    Ok(())
}

/// Replaces the folder `dir` with one holding `files` (name, contents). Files already in `dir`
/// that are not among `files` are kept (copied into the new folder), so a user's notes next to
/// a prompt survive a re-save.
///
/// A folder cannot be renamed over a non-empty one, so the swap is two renames: the old folder
/// steps aside, the new one takes its place, then the old one is removed. Between the two a
/// reader finds no folder (an error naming it), never a torn one; if the second rename fails the
/// old folder is put back.
pub fn write_folder(dir: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    let parent = parent_of(dir);
    std::fs::create_dir_all(parent)
        .with_context(|| format!("{}: cannot create", parent.display()))?;
    if dir.exists() && !dir.is_dir() {
        bail!(
            "{} exists and is not a folder; choose another output path",
            dir.display()
        );
    }
    let name = file_name(dir);
    let fresh = builder(&format!(".{name}.writing-"), 0o777)
        .tempdir_in(parent)
        .with_context(|| format!("{}: cannot write beside it", dir.display()))?;
    for (file, bytes) in files {
        let p = fresh.path().join(file);
        let mut f = std::fs::File::create(&p)
            .with_context(|| format!("{}: cannot write", dir.join(file).display()))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("{}: cannot write", dir.join(file).display()))?;
    }
    if !dir.exists() {
        std::fs::rename(fresh.path(), dir)
            .with_context(|| format!("{}: cannot write", dir.display()))?;
        // The folder now lives at `dir`; the TempDir must not delete it.
        let _ = fresh.keep();
        sync_dir(parent);
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let keep = entry.file_name();
        if files.iter().any(|(f, _)| keep == *f) {
            continue;
        }
        let to = fresh.path().join(&keep);
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &to)?;
        } else {
            std::fs::copy(entry.path(), &to)
                .with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    let old = tempfile::Builder::new()
        .prefix(&format!(".{name}.old-"))
        .tempdir_in(parent)
        .with_context(|| format!("{}: cannot write beside it", dir.display()))?;
    // `old` is only a unique name: the old folder moves onto it.
    let old_path = old.keep();
    std::fs::remove_dir(&old_path)?;
    std::fs::rename(dir, &old_path)
        .with_context(|| format!("{}: cannot replace", dir.display()))?;
    if let Err(e) = std::fs::rename(fresh.path(), dir) {
        let _ = std::fs::rename(&old_path, dir);
        return Err(e).with_context(|| format!("{}: cannot replace", dir.display()));
    }
    let _ = fresh.keep();
    sync_dir(parent);
    let _ = std::fs::remove_dir_all(&old_path);
    Ok(())
}

/// The previous version of the folder `dir` that a [`write_folder`] killed between its two
/// renames left aside (`.NAME.old-XXXXXX` beside it), when `dir` itself is gone. Nothing reads
/// it on its own: an error about the missing folder names it, so the user can rename it back.
pub fn left_aside(dir: &Path) -> Option<std::path::PathBuf> {
    if dir.exists() {
        return None;
    }
    let prefix = format!(".{}.old-", file_name(dir));
    let mut found: Vec<_> = std::fs::read_dir(parent_of(dir))
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    found.pop()
}

/// A temporary file or folder with the permissions a plain `File::create` or `create_dir` would
/// give (less the umask): tempfile's default is owner-only, which would make a saved prompt
/// unreadable to the user's colleagues.
fn builder(prefix: &str, _mode: u32) -> tempfile::Builder<'_, 'static> {
    let mut b = tempfile::Builder::new();
    b.prefix(prefix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(_mode));
    }
    b
}

/// Held while a process writes an output folder: an OS lock on a hidden file beside it, so two
/// processes cannot write one folder. The OS releases it when the process ends, even by a kill,
/// so a crash never leaves a stale lock behind.
#[derive(Debug)]
pub struct OutputLock {
    _file: std::fs::File,
}

/// Claims `dir` as a fresh output folder before any work is done: refuses a file in the way, a
/// folder that already holds anything (unless `overwrite`), a parent that cannot be written,
/// and a folder another process is writing.
pub fn claim_output(dir: &Path, overwrite: bool) -> Result<OutputLock> {
    if dir.exists() {
        if !dir.is_dir() {
            bail!(
                "{} exists and is not a folder; choose another output path",
                dir.display()
            );
        }
        let held = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .count();
        if held > 0 && !overwrite {
            bail!(
                "{} already holds {held} file(s); pass --overwrite to replace what gradprompt writes there, or choose another folder",
                dir.display()
            );
        }
    }
    let parent = parent_of(dir);
    std::fs::create_dir_all(parent)
        .with_context(|| format!("{}: cannot create", parent.display()))?;
    let lock_path = parent.join(format!(".{}.lock", file_name(dir)));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("{}: cannot write here", parent.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(OutputLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another gradprompt process is writing {}; wait for it or choose another folder",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("{}: cannot lock", lock_path.display()))
        }
    }
}

/// Takes the OS lock on the file `path` (created if missing, its contents kept) without
/// waiting: `Ok(None)` when another process holds it. The same kind of lock as
/// [`claim_output`]'s, for a lock file the caller names (the workbench's runs folder).
pub fn try_lock(path: &Path) -> Result<Option<OutputLock>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("{}: cannot write here", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(OutputLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("{}: cannot lock", path.display()))
        }
    }
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into())
}

/// Makes a rename durable. Best effort: not every file system can sync a directory.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::{write_file, write_folder};
    use std::fs;

    #[test]
    fn a_new_folder_holds_exactly_the_files_and_nothing_is_left_beside_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("prompt");
        write_folder(&dir, &[("a.json", b"{}"), ("b.bin", b"\x01\x02")]).unwrap();
        assert_eq!(fs::read(dir.join("a.json")).unwrap(), b"{}");
        assert_eq!(fs::read(dir.join("b.bin")).unwrap(), b"\x01\x02");
        let names: Vec<_> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["prompt"]);
    }

    #[test]
    fn a_rewrite_replaces_the_files_and_keeps_the_users_others() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("prompt");
        write_folder(&dir, &[("a.json", b"old")]).unwrap();
        fs::write(dir.join("NOTES.md"), "mine").unwrap();
        write_folder(&dir, &[("a.json", b"new")]).unwrap();
        assert_eq!(fs::read(dir.join("a.json")).unwrap(), b"new");
        assert_eq!(fs::read_to_string(dir.join("NOTES.md")).unwrap(), "mine");
        assert_eq!(
            fs::read_dir(root.path()).unwrap().count(),
            1,
            "no temporary folder left"
        );
    }

    #[test]
    fn a_failed_write_leaves_the_previous_version_whole() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("prompt");
        write_folder(&dir, &[("a.json", b"old"), ("b.bin", b"old")]).unwrap();
        // A file that cannot be created inside the fresh folder fails the write midway.
        let e = write_folder(&dir, &[("a.json", b"new"), ("no/such/dir", b"x")]).unwrap_err();
        assert!(format!("{e:#}").contains("no/such/dir"), "{e:#}");
        assert_eq!(fs::read(dir.join("a.json")).unwrap(), b"old");
        assert_eq!(fs::read(dir.join("b.bin")).unwrap(), b"old");
        assert_eq!(
            fs::read_dir(root.path()).unwrap().count(),
            1,
            "no temporary folder left"
        );
    }

    #[test]
    fn a_file_in_the_way_of_a_folder_is_an_error_naming_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("prompt");
        fs::write(&dir, "a file").unwrap();
        let e = write_folder(&dir, &[("a.json", b"{}")]).unwrap_err();
        assert!(format!("{e:#}").contains("not a folder"), "{e:#}");
        assert_eq!(fs::read_to_string(&dir).unwrap(), "a file");
    }

    #[cfg(unix)]
    #[test]
    fn saved_files_get_the_usual_permissions_not_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("prompt");
        write_folder(&dir, &[("a.json", b"{}")]).unwrap();
        write_file(&root.path().join("run.json"), b"{}").unwrap();
        let plain_dir = root.path().join("plain");
        fs::create_dir(&plain_dir).unwrap();
        fs::write(plain_dir.join("a.json"), "{}").unwrap();
        let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), mode(&plain_dir));
        assert_eq!(mode(&dir.join("a.json")), mode(&plain_dir.join("a.json")));
        assert_eq!(
            mode(&root.path().join("run.json")),
            mode(&plain_dir.join("a.json"))
        );
    }

    #[test]
    fn an_output_folder_with_files_is_refused_unless_overwriting() {
        use super::claim_output;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("out");
        drop(claim_output(&dir, false).unwrap()); // absent: fine
        fs::create_dir(&dir).unwrap();
        drop(claim_output(&dir, false).unwrap()); // empty: fine
        fs::write(dir.join("manifest.json"), "{}").unwrap();
        let e = format!("{:#}", claim_output(&dir, false).unwrap_err());
        assert!(e.contains("--overwrite") && e.contains("out"), "{e}");
        drop(claim_output(&dir, true).unwrap());
        assert_eq!(fs::read_to_string(dir.join("manifest.json")).unwrap(), "{}");
    }

    #[test]
    fn a_second_writer_of_one_folder_is_refused_while_the_first_holds_it() {
        use super::claim_output;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("out");
        let first = claim_output(&dir, false).unwrap();
        let e = format!("{:#}", claim_output(&dir, false).unwrap_err());
        assert!(e.contains("another gradprompt process"), "{e}");
        drop(first);
        claim_output(&dir, false).unwrap();
    }

    #[test]
    fn a_folder_left_aside_by_a_killed_swap_is_found_only_while_the_folder_is_gone() {
        use super::left_aside;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("prompt");
        fs::create_dir(root.path().join(".prompt.writing-abc")).unwrap();
        assert_eq!(
            left_aside(&dir),
            None,
            "a folder being written is no old version"
        );
        let old = root.path().join(".prompt.old-x1Y2z3");
        fs::create_dir(&old).unwrap();
        assert_eq!(left_aside(&dir), Some(old.clone()));
        fs::create_dir(&dir).unwrap();
        assert_eq!(left_aside(&dir), None);
        assert_eq!(left_aside(&root.path().join("other")), None);
    }

    #[test]
    fn a_file_is_replaced_whole() {
        let root = tempfile::tempdir().unwrap();
        let p = root.path().join("run.json");
        write_file(&p, b"one").unwrap();
        write_file(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1);
    }
}
