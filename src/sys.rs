//! Facts about the host the journal records and lookups the providers need: the node name,
//! Python's `platform.platform()` string, and `shutil.which`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The host name (`platform.node()`).
pub fn node() -> String {
    read_proc("/proc/sys/kernel/hostname")
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default()
}

/// A string shaped like Python's `platform.platform()`:
/// `Linux-6.1.0-18-amd64-x86_64-with-glibc2.36`.
pub fn platform() -> String {
    let system = match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "Darwin",
        other => other,
    };
    let release = read_proc("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut out = format!("{system}-{release}-{}", std::env::consts::ARCH);
    if let Some(glibc) = glibc_version() {
        out.push_str("-with-glibc");
        out.push_str(&glibc);
    }
    out
}

fn read_proc(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn glibc_version() -> Option<String> {
    // SAFETY: gnu_get_libc_version takes no arguments and returns a pointer to a static,
    // NUL-terminated string owned by glibc for the life of the process.
    let ptr = unsafe { libc::gnu_get_libc_version() };
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-null, NUL-terminated and static, as above.
    let version = unsafe { std::ffi::CStr::from_ptr(ptr) };
    version.to_str().ok().map(str::to_owned)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn glibc_version() -> Option<String> {
    None
}

/// Expands a leading `~` to `$HOME`, as Python's `os.path.expanduser`.
pub fn expand_user(path: &str) -> PathBuf {
    if let Some(rest) = path.strip_prefix('~')
        && (rest.is_empty() || rest.starts_with('/'))
        && let Ok(home) = std::env::var("HOME")
    {
        return PathBuf::from(format!("{home}{rest}"));
    }
    PathBuf::from(path)
}

/// Python's `shutil.which`: a path containing `/` is checked as is, a bare name is searched on
/// `PATH`; the result must be an executable file.
pub fn which(command: &str) -> Option<PathBuf> {
    let candidate = expand_user(command);
    if command.contains('/') {
        return is_executable(&candidate).then_some(candidate);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/bin:/usr/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(command))
        .find(|p| is_executable(p))
}

/// Whether `path` is a file with an execute bit.
pub fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_finds_commands_on_path() {
        assert!(which("sh").is_some());
        assert!(which("/bin/sh").is_some());
        assert!(which("definitely-not-a-command-xyz").is_none());
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("not-executable");
        std::fs::write(&plain, "x").unwrap();
        assert!(which(plain.to_str().unwrap()).is_none());
    }

    #[test]
    fn platform_looks_like_pythons() {
        let p = platform();
        assert!(p.starts_with("Linux-"), "{p}");
        assert!(p.contains(std::env::consts::ARCH));
    }
}
