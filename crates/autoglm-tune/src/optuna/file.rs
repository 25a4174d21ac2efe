//! Optuna's `JournalFileBackend`: a JSON Lines file that Python Optuna and we append
//! to under the same lock, `{path}.lock` — a symbolic link to the journal
//! (`JournalFileSymlinkLock`, the default) or a file created exclusively
//! (`JournalFileOpenLock`) — taken over when its modification time has not changed
//! for a grace period (30 s by default) and released by renaming it away and
//! unlinking it. Each append is one write of whole lines followed by `fsync`; a read
//! stops at the size the file had when it started and never yields a torn last line.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::pyjson::{PyJson, Separators};

/// How writers exclude each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// `{path}.lock` as a symbolic link to the journal (Optuna's default on every
    /// platform with symbolic links).
    Symlink,
    /// `{path}.lock` created with `O_CREAT | O_EXCL` (Optuna's choice for Windows
    /// and NFS).
    Open,
}

/// A journal file.
#[derive(Debug)]
pub struct JournalFile {
    path: PathBuf,
    lock: LockKind,
    grace: Option<Duration>,
    /// Byte offset of each line number seen (Optuna's `_log_number_offset`).
    offsets: HashMap<u64, u64>,
}

/// A line that is not JSON, with more lines after it (a torn or bad last line is
/// only skipped, and read again next time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 0-based line number (Optuna's log number).
    pub log_number: u64,
    /// What is wrong.
    pub reason: String,
}

impl JournalFile {
    /// The journal at `path` (created empty if missing), locked with Optuna's
    /// default lock and grace period.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn open(path: &Path) -> std::io::Result<JournalFile> {
        Self::with_lock(path, LockKind::Symlink, Some(Duration::from_secs(30)))
    }

    /// As [`JournalFile::open`] with a lock kind and grace period (`None`: a lock is
    /// never taken over).
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn with_lock(
        path: &Path,
        lock: LockKind,
        grace: Option<Duration>,
    ) -> std::io::Result<JournalFile> {
        File::options().append(true).create(true).open(path)?;
        #[cfg(not(unix))]
        let lock = LockKind::Open;
        Ok(JournalFile {
            path: path.to_owned(),
            lock,
            grace,
            offsets: HashMap::from([(0, 0)]),
        })
    }

    /// Another handle on the same file with the same lock settings.
    pub fn reopened(&self) -> JournalFile {
        JournalFile {
            path: self.path.clone(),
            lock: self.lock,
            grace: self.grace,
            offsets: HashMap::from([(0, 0)]),
        }
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lock file's path.
    pub fn lock_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".lock");
        PathBuf::from(p)
    }

    /// The lines from `from` on, as far as the file reached when the read began,
    /// parsed; a line that is not JSON stops the read with [`BadLine`] (after the
    /// lines before it) unless it is the last line, which is left for the next read
    /// (a writer may be writing it).
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn read_logs(&mut self, from: u64) -> std::io::Result<(Vec<PyJson>, Option<BadLine>)> {
        let mut f = File::open(&self.path)?;
        let mut remaining = f.metadata()?.len() as i64;
        let start = match self.offsets.get(&from) {
            Some(&off) => {
                f.seek(SeekFrom::Start(off))?;
                remaining -= off as i64;
                from
            }
            None => 0,
        };
        let mut r = BufReader::new(f);
        let mut logs = Vec::new();
        let mut pending: Option<BadLine> = None;
        let mut line = Vec::new();
        let mut n = start;
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            remaining -= line.len() as i64;
            if remaining < 0 {
                break;
            }
            if let Some(bad) = pending.take() {
                return Ok((logs, Some(bad)));
            }
            if line.last() != Some(&b'\n') {
                pending = Some(BadLine {
                    log_number: n,
                    reason: "a line without its newline (torn)".into(),
                });
                n += 1;
                continue;
            }
            let at = self.offsets[&n];
            self.offsets.entry(n + 1).or_insert(at + line.len() as u64);
            if n >= from {
                match std::str::from_utf8(&line)
                    .map_err(|e| e.to_string())
                    .and_then(PyJson::parse)
                {
                    Ok(v) => logs.push(v),
                    Err(reason) => {
                        self.offsets.remove(&(n + 1));
                        pending = Some(BadLine {
                            log_number: n,
                            reason,
                        });
                    }
                }
            }
            n += 1;
        }
        Ok((logs, None))
    }

    /// Appends `logs`, one compact line each, in one write followed by `fsync`, under
    /// the lock.
    ///
    /// # Errors
    /// The lock cannot be taken or the file cannot be written.
    pub fn append_logs(&self, logs: &[PyJson]) -> std::io::Result<()> {
        let mut bytes = String::new();
        for log in logs {
            log.write(&mut bytes, Separators::Compact);
            bytes.push('\n');
        }
        let _guard = self.acquire()?;
        let mut f = File::options().append(true).open(&self.path)?;
        f.write_all(bytes.as_bytes())?;
        f.flush()?;
        f.sync_all()
    }

    /// Takes the lock, waiting with exponential backoff (1 ms doubling to 1 s) and
    /// taking over a lock whose modification time stood still for the grace period.
    fn acquire(&self) -> std::io::Result<LockGuard> {
        let lock = self.lock_path();
        let mut sleep = Duration::from_millis(1);
        let mut last_mtime: Option<SystemTime> = None;
        let mut last_update = Instant::now();
        loop {
            match self.try_lock(&lock) {
                Ok(()) => return Ok(LockGuard { lock }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            if let Some(grace) = self.grace {
                // The link is followed: for a symbolic-link lock this is the
                // journal's time, for an open lock the lock file's own.
                let Ok(mtime) = std::fs::metadata(&lock).and_then(|m| m.modified()) else {
                    continue;
                };
                if last_mtime != Some(mtime) {
                    last_mtime = Some(mtime);
                    last_update = Instant::now();
                }
                if last_update.elapsed() > grace {
                    // Stale: its holder is gone. Only one of several takers succeeds.
                    if release(&lock).is_err() {
                        continue;
                    }
                    sleep = Duration::from_millis(1);
                    continue;
                }
            }
            std::thread::sleep(sleep);
            sleep = (sleep * 2).min(Duration::from_secs(1));
        }
    }

    fn try_lock(&self, lock: &Path) -> std::io::Result<()> {
        match self.lock {
            #[cfg(unix)]
            LockKind::Symlink => std::os::unix::fs::symlink(&self.path, lock),
            _ => File::options()
                .write(true)
                .create_new(true)
                .open(lock)
                .map(drop),
        }
    }
}

/// Releases the lock when dropped.
struct LockGuard {
    lock: PathBuf,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // A lock taken over meanwhile is someone else's now: nothing to do.
        let _ = release(&self.lock);
    }
}

/// Optuna's release: rename the lock to a unique name, then unlink that, so that of
/// several concurrent releases exactly one succeeds.
fn release(lock: &Path) -> std::io::Result<()> {
    let mut renamed = lock.as_os_str().to_owned();
    renamed.push(format!("{}.rename", unique()));
    std::fs::rename(lock, &renamed)?;
    std::fs::remove_file(&renamed)
}

/// A name no other process or thread picks at the same time.
pub(crate) fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{nanos:x}-{:x}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_waits_and_a_bad_middle_line_stops_the_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.log");
        let mut j = JournalFile::open(&path).unwrap();
        let a = PyJson::parse(r#"{"op_code":0,"x":NaN}"#).unwrap();
        j.append_logs(&[a.clone(), a.clone()]).unwrap();
        assert!(!j.lock_path().exists());
        // A torn third line: two logs now, the third once it is complete.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(br#"{"op_code":"#)
            .unwrap();
        let (logs, bad) = j.read_logs(0).unwrap();
        assert_eq!((logs.len(), bad), (2, None));
        let (logs, _) = j.read_logs(3).unwrap();
        assert!(logs.is_empty());
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"1}\n{\"op_code\":2}\n")
            .unwrap();
        let (logs, bad) = j.read_logs(2).unwrap();
        assert_eq!(bad, None);
        assert_eq!(logs.len(), 2);
        assert_eq!(logs[0].get("op_code"), Some(&PyJson::Int(1)));
        // A bad line with a line after it is an error, after the lines before it.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"not json\n{\"op_code\":3}\n")
            .unwrap();
        let (logs, bad) = j.read_logs(4).unwrap();
        assert!(logs.is_empty());
        assert_eq!(bad.unwrap().log_number, 4);
    }

    #[test]
    fn a_stale_lock_is_taken_over_after_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.log");
        for kind in [LockKind::Symlink, LockKind::Open] {
            let j = JournalFile::with_lock(&path, kind, Some(Duration::from_millis(300))).unwrap();
            // A holder that died: the lock stays.
            j.try_lock(&j.lock_path()).unwrap();
            let t = Instant::now();
            j.append_logs(&[PyJson::Dict(vec![("k".into(), PyJson::Int(1))])])
                .unwrap();
            assert!(t.elapsed() >= Duration::from_millis(300), "{kind:?}");
            assert!(!j.lock_path().exists());
        }
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"k\":1}\n{\"k\":1}\n"
        );
    }
}
