//! Locks: the workspace lock (one run at a time), the exec lock (`hudd exec` shared, `hudd gc` exclusive), and a
//! lock per key (two processes never compute one entry at once).

use std::fs::{self, File};

use super::*;

/// Held while a run uses the workspace; released when dropped (or when the process dies).
pub struct WorkspaceLock {
    _file: File,
}

impl Store {
    /// Takes the workspace lock, waiting (with a message through `waiting`) while another run holds it.
    pub fn lock(&self, waiting: impl FnOnce(&str)) -> Result<WorkspaceLock, StoreError> {
        let path = self.root.join("lock");
        let file =
            File::options().create(true).truncate(false).write(true).read(true).open(&path).map_err(io_err(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(self.root.join("lock.pid")).unwrap_or_default();
                let holder = holder.trim();
                waiting(&format!(
                    "another hudd run holds this workspace ({}); waiting for it to finish",
                    if holder.is_empty() { "pid unknown".to_string() } else { format!("pid {holder}") }
                ));
                file.lock().map_err(io_err(&path))?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(StoreError::Io { path, source: e }),
        }
        let _ = fs::write(self.root.join("lock.pid"), std::process::id().to_string());
        Ok(WorkspaceLock { _file: file })
    }

    /// The workspace's exec lock, waiting (with a message through `waiting`) while it is held the other way. Held
    /// (shared) by `hudd exec` while it runs a stage, which takes no workspace lock (a Slurm follower holds
    /// that); `hudd gc` takes it exclusively, so it never removes the working folder of a stage that is running.
    pub fn lock_exec(&self, exclusive: bool, waiting: impl FnOnce(&str)) -> Result<WorkspaceLock, StoreError> {
        let path = self.root.join("exec.lock");
        let file =
            File::options().create(true).truncate(false).write(true).read(true).open(&path).map_err(io_err(&path))?;
        let tried = if exclusive { file.try_lock() } else { file.try_lock_shared() };
        match tried {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                waiting(if exclusive {
                    "a stage runs through `hudd exec` in this workspace; waiting for it to finish"
                } else {
                    "`hudd gc` is cleaning this workspace's store; waiting for it to finish"
                });
                if exclusive { file.lock() } else { file.lock_shared() }.map_err(io_err(&path))?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(StoreError::Io { path, source: e }),
        }
        Ok(WorkspaceLock { _file: file })
    }

    /// A per-key lock, so that two processes never compute the same entry at once.
    pub fn lock_key(&self, key: &str) -> Result<WorkspaceLock, StoreError> {
        let path = self.shared.join("locks").join(key);
        let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
        file.lock().map_err(io_err(&path))?;
        Ok(WorkspaceLock { _file: file })
    }
}
