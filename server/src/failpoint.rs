//! Crash points for robustness tests: named places on the paths that make state durable —
//! Raft log append and fsync, apply, snapshot build and install, log purge, compaction —
//! where a test can make this member die (or stall) at exactly that step, to check that a
//! restart from whatever reached the disk loses nothing that was acknowledged.
//!
//! Compiled in only with the `failpoints` cargo feature (the `fail` crate's `fail_point!`
//! is empty without it, and nothing in this file runs): release builds carry none of it.
//! A failpoints build is driven the way etcd's gofail builds are, so one harness drives both:
//! with `GOFAIL_HTTP=127.0.0.1:PORT` in the environment the member serves
//! `PUT /NAME` (body: a term such as `panic`, `sleep(100)`, `1*panic`, `20%panic`),
//! `GET /NAME`, `DELETE /NAME`, and `GET /` (every point, `NAME=TERM` per line, empty
//! when off); `FAILPOINTS=NAME=TERM;...` arms points at start. As in Go, a panic in a
//! failpoints build ends the process (abort, no clean-up), whichever thread it happens on.
//!
//! It is not a general fault-injection framework: network and process faults come from
//! outside (setpoint-jepsen's proxy and signals).

/// Every crash point, in the order a write meets them. Where etcd has a gofail point for the
/// same step it has the same name.
pub const POINTS: &[&str] = &[
    // Raft log: before the entries are written (nothing on disk yet) / written and synced,
    // before openraft hears.
    "raftBeforeSave",
    "raftAfterSave",
    // The vote (term and who it went to) written and synced: a vote granted must survive a
    // crash, or a member could vote twice in one term.
    "raftBeforeSaveVote",
    "raftAfterSaveVote",
    // A follower's log cut back after a conflict with its leader's.
    "raftBeforeTruncate",
    "raftAfterTruncate",
    // Apply: committed entries' state change written to the storage engine (one entry, or a
    // run of puts applied as one write).
    "beforeCommit",
    "afterCommit",
    // A compaction's record (the apply of a Compact request).
    "compactBeforeCommitScheduledCompact",
    "compactAfterCommitScheduledCompact",
    // Physical compaction: one batch of old versions removed / the last one, marked finished.
    "compactBeforeCommitBatch",
    "compactAfterCommitBatch",
    "compactBeforeSetFinishedCompact",
    "compactAfterSetFinishedCompact",
    // Snapshot built and saved (before the log behind it may be purged).
    "raftBeforeSaveSnap",
    "raftAfterSaveSnap",
    // Log purge after a snapshot.
    "raftBeforePurge",
    "raftAfterPurge",
    // A snapshot received from the leader, replacing the state machine.
    "raftBeforeApplySnap",
    "raftAfterApplySnap",
    // The leader sending entries to a follower.
    "raftBeforeLeaderSend",
];

#[cfg(feature = "failpoints")]
pub use enabled::start;

/// Without the `failpoints` feature there is nothing to start.
#[cfg(not(feature = "failpoints"))]
pub async fn start() -> std::io::Result<()> {
    if std::env::var_os("GOFAIL_HTTP").is_some() {
        tracing::warn!("GOFAIL_HTTP is set but this build has no failpoints");
    }
    Ok(())
}

#[cfg(feature = "failpoints")]
mod enabled {
    use super::POINTS;
    use axum::extract::Path;
    use axum::http::StatusCode;
    use axum::routing::get;

    /// Makes panics end the process, arms `FAILPOINTS`, and serves `GOFAIL_HTTP` if set.
    pub async fn start() -> std::io::Result<()> {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            report(info);
            std::process::abort();
        }));
        if let Ok(spec) = std::env::var("FAILPOINTS") {
            for item in spec.split(';').filter(|s| !s.is_empty()) {
                let (name, term) = item.split_once('=').unwrap_or((item, ""));
                configure(name, term).map_err(std::io::Error::other)?;
            }
        }
        let Ok(addr) = std::env::var("GOFAIL_HTTP") else {
            return Ok(());
        };
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        tracing::warn!(%addr, "failpoints build: serving failpoint control");
        let app = axum::Router::new()
            .route("/", get(list))
            .route("/{name}", get(show).put(arm).delete(disarm));
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("failpoint control stopped: {e}");
            }
        });
        Ok(())
    }

    fn configure(name: &str, term: &str) -> Result<(), String> {
        if !POINTS.contains(&name) {
            return Err(format!("unknown failpoint {name:?}"));
        }
        fail::cfg(name, term.trim())
    }

    fn current(name: &str) -> String {
        fail::list()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .unwrap_or_default()
    }

    async fn list() -> String {
        POINTS
            .iter()
            .map(|p| format!("{p}={}\n", current(p)))
            .collect()
    }

    async fn show(Path(name): Path<String>) -> (StatusCode, String) {
        if !POINTS.contains(&name.as_str()) {
            return (
                StatusCode::NOT_FOUND,
                format!("unknown failpoint {name:?}\n"),
            );
        }
        (StatusCode::OK, current(&name))
    }

    async fn arm(Path(name): Path<String>, body: String) -> (StatusCode, String) {
        match configure(&name, &body) {
            Ok(()) => {
                tracing::warn!(failpoint = %name, term = %body.trim(), "failpoint armed");
                (StatusCode::NO_CONTENT, String::new())
            }
            Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
        }
    }

    async fn disarm(Path(name): Path<String>) -> StatusCode {
        if !POINTS.contains(&name.as_str()) {
            return StatusCode::NOT_FOUND;
        }
        fail::remove(&name);
        StatusCode::NO_CONTENT
    }
}

#[cfg(test)]
mod tests {
    use super::POINTS;

    /// Every listed point is placed in the code exactly once, and every placed one is listed
    /// (a renamed or forgotten point would otherwise silently never fire).
    #[test]
    fn every_point_is_placed_once_and_listed() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut placed = Vec::new();
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("read src") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("read source");
                    let marker = ["fail::fail_point!", "(\""].concat();
                    for part in text.split(marker.as_str()).skip(1) {
                        if let Some(end) = part.find('"') {
                            placed.push(part[..end].to_string());
                        }
                    }
                }
            }
        }
        placed.sort();
        let mut listed: Vec<String> = POINTS.iter().map(|p| p.to_string()).collect();
        listed.sort();
        assert_eq!(placed, listed);
    }
}
