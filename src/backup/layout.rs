//! Where backups live in the bucket, and how they are named.
//!
//! Under the environment's `backups.prefix` (default `<env>/`):
//!
//! - `backups/<id>.dump`: the pg_dump custom-format archive;
//! - `backups/<id>.json`: its [`Manifest`](super::manifest::Manifest),
//!   written last, also for a failed backup (which has no dump);
//! - `drills/<id>/<drill-id>.json`: one [`DrillRecord`](super::manifest::DrillRecord) per drill;
//! - `restores/<restore-id>.json`: one record per finished restore.
//!
//! A backup id is its start time in UTC and its trigger, then four hex
//! digits against collisions: `20261206T112233Z-manual-3fa9`. Ids sort by time.

use k8s_openapi::jiff::Timestamp;

use super::manifest::Trigger;

/// The keys of one environment's backups in its bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The key prefix: empty, or ending in `/`.
    pub prefix: String,
}

impl Layout {
    /// The prefix every manifest and dump key starts with.
    pub fn backups(&self) -> String {
        format!("{}backups/", self.prefix)
    }

    /// The dump of backup `id`.
    pub fn dump(&self, id: &str) -> String {
        format!("{}backups/{id}.dump", self.prefix)
    }

    /// The manifest of backup `id`.
    pub fn manifest(&self, id: &str) -> String {
        format!("{}backups/{id}.json", self.prefix)
    }

    /// The prefix of backup `id`'s drill records.
    pub fn drills(&self, id: &str) -> String {
        format!("{}drills/{id}/", self.prefix)
    }

    /// One drill record of backup `id`.
    pub fn drill(&self, id: &str, drill_id: &str) -> String {
        format!("{}drills/{id}/{drill_id}.json", self.prefix)
    }

    /// One restore record.
    pub fn restore(&self, restore_id: &str) -> String {
        format!("{}restores/{restore_id}.json", self.prefix)
    }
}

/// A new backup id for a backup started at `at` by `trigger`.
pub fn new_id(at: Timestamp, trigger: Trigger) -> String {
    let suffix: u16 = rand::random();
    format!("{}-{}-{suffix:04x}", compact_time(at), trigger.as_str())
}

/// `at` as `YYYYMMDDTHHMMSSZ`, the time part of ids.
pub fn compact_time(at: Timestamp) -> String {
    at.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// Whether `id` has the shape of a backup id; the message names the
/// problem otherwise.
pub fn check_id(id: &str) -> Result<(), String> {
    let mut parts = id.splitn(3, '-');
    let (Some(time), Some(rest)) = (parts.next(), parts.next()) else {
        return Err(format!("{id:?} is not a backup id"));
    };
    let time_ok = time.len() == 16
        && time.as_bytes()[8] == b'T'
        && time.ends_with('Z')
        && time[..8]
            .bytes()
            .chain(time[9..15].bytes())
            .all(|b| b.is_ascii_digit());
    let tail = parts.next().unwrap_or("");
    let trigger_and_suffix = format!("{rest}-{tail}");
    let ok = time_ok
        && id.len() <= 64
        && trigger_and_suffix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not a backup id (they look like 20261206T112233Z-manual-3fa9)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sit_under_the_prefix() {
        let layout = Layout {
            prefix: "staging/".into(),
        };
        assert_eq!(layout.dump("X"), "staging/backups/X.dump");
        assert_eq!(layout.manifest("X"), "staging/backups/X.json");
        assert_eq!(layout.drill("X", "D"), "staging/drills/X/D.json");
    }

    #[test]
    fn new_ids_are_well_formed_and_sort_by_time() {
        let early = new_id("2026-12-06T11:22:33Z".parse().unwrap(), Trigger::Manual);
        let late = new_id("2026-12-06T11:22:34Z".parse().unwrap(), Trigger::Schedule);
        assert!(early.starts_with("20261206T112233Z-manual-"), "{early}");
        check_id(&early).unwrap();
        check_id(&late).unwrap();
        assert!(early < late);
        assert!(check_id("latest; rm -rf /").is_err());
        assert!(check_id("../x").is_err());
    }
}
