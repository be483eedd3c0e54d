//! The outbox's file: an SQLite database in WAL mode holding one client's unacknowledged QoS 1/2
//! publishes, owned by one client at a time. Synchronous code, called by the constructor (which
//! opens it) and then only by the outbox's writer thread.
//!
//! Who owns a file: in this process, a registry of the files open here (checked before the file
//! is even read, so that no second descriptor of ours ever closes and drops SQLite's own POSIX
//! locks); across processes, an exclusive `flock` on `<file>-lock`, which the kernel releases
//! when the process dies, however it dies.
//!
//! A file that is not an outbox is refused before anything writes to it: its first 100 bytes must
//! be an SQLite header with umqtt's `application_id` (or the file is new or empty), and the
//! schema's version and table are checked with checkpoints on close turned off, so a refused file
//! (or its WAL) is left exactly as it was.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rumqttc::QoS;
use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};

use crate::lock::lock;

/// `PRAGMA application_id` of an outbox: "umqt".
pub const APPLICATION_ID: i32 = 0x756d_7174;
/// `PRAGMA user_version` of the schema below; a newer one is refused, an older one migrated.
pub const SCHEMA_VERSION: i32 = 1;
/// The highest packet id the outbox uses (rumqttc's in-flight table, `set_inflight(100)`).
pub const MAX_PACKET_ID: u16 = 100;

/// The schema, documented in docs/design.md ("The outbox on disk") for users who open the file.
const SCHEMA: &str = "
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    stored_at INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL CHECK (qos IN (1, 2)),
    retain INTEGER NOT NULL CHECK (retain IN (0, 1)),
    properties BLOB,
    packet_id INTEGER,
    released INTEGER NOT NULL DEFAULT 0 CHECK (released IN (0, 1))
);";
const COLUMNS: &str = "SELECT id, stored_at, topic, payload, qos, retain, properties, packet_id, \
                       released FROM messages LIMIT 0";
const INSERT: &str = "INSERT INTO messages (id, stored_at, topic, payload, qos, retain, \
                      properties) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const DELETE: &str = "DELETE FROM messages WHERE id = ?1";
const SET_PACKET_ID: &str = "UPDATE messages SET packet_id = ?2, released = 0 WHERE id = ?1";
const RELEASE: &str = "UPDATE messages SET released = 1 WHERE id = ?1";
const BODIES: &str =
    "SELECT id, topic, payload, properties FROM messages WHERE id BETWEEN ?1 AND ?2 ORDER BY id";
const SUMMARY: &str = "SELECT id, qos, retain, packet_id, released, octet_length(topic) + \
                       length(payload) + ifnull(length(properties), 0) FROM messages ORDER BY id";
/// Free pages (of 4 KiB) an emptied outbox gives back to the file system.
const SHRINK_ABOVE_PAGES: i64 = 256;

/// Files open as outboxes in this process.
static OPEN_HERE: LazyLock<Mutex<HashSet<PathBuf>>> = LazyLock::new(Mutex::default);

/// `persistence_sync`: when a commit is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: a commit survives the death of the process.
    Normal,
    /// `synchronous=FULL`: each commit is synced, and survives a power loss too.
    Full,
}

/// What a message says, apart from how it is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub topic: String,
    pub payload: Bytes,
    /// MQTT 5 publish properties as encoded on the wire (None under MQTT 3.1.1).
    pub properties: Option<Bytes>,
}

impl Body {
    /// What `persistence_max_bytes` counts: the topic, the payload and the properties.
    pub fn size(&self) -> usize {
        self.topic.len() + self.payload.len() + self.properties.as_ref().map_or(0, Bytes::len)
    }
}

/// A message to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: u64,
    pub qos: QoS,
    pub retain: bool,
    pub body: Body,
}

/// A stored message as the outbox keeps track of it (its body stays on disk until needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub id: u64,
    pub qos: QoS,
    pub retain: bool,
    pub size: usize,
    /// QoS 2: the packet id it was sent with (0: none).
    pub packet_id: u16,
    /// QoS 2: its PUBREC arrived (only the PUBCOMP is missing).
    pub released: bool,
}

/// Changes written in one transaction (one commit).
#[derive(Debug, Default)]
pub struct Changes {
    pub inserts: Vec<NewMessage>,
    pub deletes: Vec<u64>,
    /// A QoS 2 message's packet id, before its PUBLISH leaves (0: none, the session is gone).
    pub packet_ids: Vec<(u64, u16)>,
    /// QoS 2 messages whose PUBREC arrived, before their PUBREL leaves.
    pub releases: Vec<u64>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.inserts.is_empty()
            && self.deletes.is_empty()
            && self.packet_ids.is_empty()
            && self.releases.is_empty()
    }
}

/// The claim on a file in this process, given up when the store is dropped.
struct Claim(PathBuf);

impl Drop for Claim {
    fn drop(&mut self) {
        lock(&OPEN_HERE).remove(&self.0);
    }
}

/// An open outbox file. Dropping it closes the database, then gives up the lock.
pub struct Store {
    connection: Connection,
    _lock: File,
    _claim: Claim,
}

impl Store {
    /// Opens (or creates) the outbox at `path` and returns it with what it holds, in order.
    /// The error names the file and says what is wrong with it.
    pub fn open(path: &Path, durability: Durability) -> Result<(Store, Vec<Summary>), String> {
        let path = canonical(path)?;
        let shown = path.display();
        let claim = claim(&path)?;
        let existing = inspect(&path)?;
        // Files this opening makes (the database if new, its WAL, index and lock file) go again
        // if it fails; dropped after the connection, which must be closed first.
        let mut made = Made::before(&path);
        let lock = lock_file(&path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(&path, flags)
            .map_err(|e| format!("persistence: cannot open {shown}: {e}"))?;
        let summaries = if existing {
            check(&connection).map_err(|e| format!("persistence: {shown} {e}"))?
        } else {
            create(&connection)
                .map_err(|e| format!("persistence: cannot create an outbox in {shown}: {e}"))?;
            Vec::new()
        };
        prepare(&connection, durability)
            .map_err(|e| format!("persistence: cannot use {shown}: {e}"))?;
        made.keep();
        let store = Store {
            connection,
            _lock: lock,
            _claim: claim,
        };
        Ok((store, summaries))
    }

    /// Writes `changes` in one transaction.
    pub fn write(&mut self, changes: &Changes) -> rusqlite::Result<()> {
        // Immediate: the write lock is taken (or waited for) before anything is read.
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !changes.inserts.is_empty() {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as i64);
            let mut insert = transaction.prepare_cached(INSERT)?;
            for message in &changes.inserts {
                let body = &message.body;
                insert.execute(params![
                    message.id as i64,
                    now,
                    body.topic,
                    &body.payload[..],
                    message.qos as u8,
                    message.retain,
                    body.properties.as_deref(),
                ])?;
            }
        }
        if !changes.deletes.is_empty() {
            let mut delete = transaction.prepare_cached(DELETE)?;
            for id in &changes.deletes {
                delete.execute([*id as i64])?;
            }
        }
        if !changes.packet_ids.is_empty() {
            let mut set = transaction.prepare_cached(SET_PACKET_ID)?;
            for (id, packet_id) in &changes.packet_ids {
                let packet_id = (*packet_id != 0).then_some(*packet_id);
                set.execute(params![*id as i64, packet_id])?;
            }
        }
        if !changes.releases.is_empty() {
            let mut release = transaction.prepare_cached(RELEASE)?;
            for id in &changes.releases {
                release.execute([*id as i64])?;
            }
        }
        transaction.commit()
    }

    /// The bodies of the stored messages with ids from `first` to `last`, in order.
    pub fn bodies(&self, first: u64, last: u64) -> rusqlite::Result<Vec<(u64, Body)>> {
        let mut select = self.connection.prepare_cached(BODIES)?;
        let rows = select.query_map([first as i64, last as i64], |row| {
            let id: i64 = row.get(0)?;
            let body = Body {
                topic: row.get(1)?,
                payload: Bytes::from(row.get::<_, Vec<u8>>(2)?),
                properties: row.get::<_, Option<Vec<u8>>>(3)?.map(Bytes::from),
            };
            Ok((id as u64, body))
        })?;
        rows.collect()
    }

    /// Gives the space of an emptied outbox back to the file system (SQLite keeps freed pages
    /// otherwise): after a long outage the file would stay at its largest.
    pub fn shrink(&mut self) -> rusqlite::Result<()> {
        let free: i64 = self
            .connection
            .pragma_query_value(None, "freelist_count", |row| row.get(0))?;
        if free > SHRINK_ABOVE_PAGES {
            // Each step of the pragma frees one page.
            let mut vacuum = self.connection.prepare("PRAGMA incremental_vacuum")?;
            let mut steps = vacuum.query([])?;
            while steps.next()?.is_some() {}
            self.connection
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        Ok(())
    }
}

/// The files beside (and of) an outbox that did not exist before it was opened: removed if the
/// opening fails, so that a refused file is left as it was found.
struct Made(Vec<PathBuf>);

impl Made {
    fn before(path: &Path) -> Made {
        let beside = ["", "-wal", "-shm", "-lock"].map(|suffix| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        });
        Made(beside.into_iter().filter(|file| !file.exists()).collect())
    }

    fn keep(&mut self) {
        self.0.clear();
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        for file in &self.0 {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// The file's absolute path with links resolved, so that two names of one file are one outbox.
fn canonical(path: &Path) -> Result<PathBuf, String> {
    let shown = path.display();
    if path.as_os_str().is_empty() {
        return Err("persistence must not be an empty path".into());
    }
    match std::fs::canonicalize(path) {
        Ok(resolved) => Ok(resolved),
        Err(error) if error.kind() == ErrorKind::NotFound => {
            let name = path
                .file_name()
                .ok_or_else(|| format!("persistence: {shown} names no file"))?;
            let folder = match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            let folder = std::fs::canonicalize(folder)
                .map_err(|e| format!("persistence: the folder of {shown} cannot be used: {e}"))?;
            Ok(folder.join(name))
        }
        Err(error) => Err(format!("persistence: {shown} cannot be used: {error}")),
    }
}

/// Claims `path` for this process's one client, before anything opens the file.
fn claim(path: &Path) -> Result<Claim, String> {
    if !lock(&OPEN_HERE).insert(path.to_owned()) {
        return Err(format!(
            "persistence: {} is in use by another client in this process: an outbox belongs to \
             one client (give each client its own file)",
            path.display()
        ));
    }
    Ok(Claim(path.to_owned()))
}

/// Whether `path` holds an outbox (true), or is new or empty (false); an error for anything else.
/// Reads the header only.
fn inspect(path: &Path) -> Result<bool, String> {
    let shown = path.display();
    let not_an_outbox = |what: &str| {
        format!(
            "persistence: {shown} is not an outbox ({what}); it was left untouched: give a new \
             file's path"
        )
    };
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(format!("persistence: cannot read {shown}: {error}")),
    };
    let metadata = file
        .metadata()
        .map_err(|e| format!("persistence: cannot read {shown}: {e}"))?;
    if metadata.is_dir() {
        return Err(not_an_outbox("it is a folder"));
    }
    if metadata.len() == 0 {
        return Ok(false);
    }
    let mut header = [0u8; 100];
    let read = file.read(&mut header);
    match read {
        Ok(100) => {}
        Ok(_) => return Err(not_an_outbox("too short for an SQLite database")),
        Err(error) => return Err(format!("persistence: cannot read {shown}: {error}")),
    }
    if &header[..16] != b"SQLite format 3\0" {
        return Err(not_an_outbox("not an SQLite database"));
    }
    let id = i32::from_be_bytes([header[68], header[69], header[70], header[71]]);
    if id != APPLICATION_ID {
        return Err(not_an_outbox(&format!(
            "an SQLite database of another application: application_id {id:#x}"
        )));
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("persistence: cannot write {shown}: {e}"))?;
    Ok(true)
}

/// Takes the exclusive lock on `<path>-lock` (created if need be), or says who holds it.
fn lock_file(path: &Path) -> Result<File, String> {
    let mut name = path.as_os_str().to_owned();
    name.push("-lock");
    let lock_path = PathBuf::from(name);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| format!("persistence: cannot create {}: {e}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "another process".to_owned(),
                pid => format!("process {pid}"),
            };
            return Err(format!(
                "persistence: {} is in use by another client ({holder} holds {}): an outbox \
                 belongs to one client at a time",
                path.display(),
                lock_path.display()
            ));
        }
        Err(std::fs::TryLockError::Error(error)) => {
            return Err(format!(
                "persistence: cannot lock {}: {error}",
                lock_path.display()
            ))
        }
    }
    // Who holds it, for the message above; the lock does not depend on it.
    if file.set_len(0).is_ok() {
        let _ = writeln!(file, "{}", std::process::id());
    }
    Ok(file)
}

/// Checks an existing outbox without writing to it and returns what it holds.
fn check(connection: &Connection) -> Result<Vec<Summary>, String> {
    // A refused file, and its WAL, stay exactly as they were: no checkpoint when it is closed.
    connection
        .set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(|e| format!("cannot be read: {e}"))?;
    let damaged = |e: rusqlite::Error| format!("is damaged or unreadable: {e}");
    let id: i32 = connection
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .map_err(damaged)?;
    if id != APPLICATION_ID {
        return Err(format!(
            "is not an outbox (application_id {id:#x}); it was left untouched"
        ));
    }
    let version: i32 = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(damaged)?;
    if version != SCHEMA_VERSION {
        return Err(format!(
            "holds an outbox of schema {version}, which this umqtt (schema {SCHEMA_VERSION}) \
             cannot read; it was left untouched"
        ));
    }
    connection.prepare(COLUMNS).map_err(damaged)?;
    let summaries = summaries(connection).map_err(damaged)?;
    connection
        .set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)
        .map_err(|e| format!("cannot be read: {e}"))?;
    Ok(summaries)
}

fn summaries(connection: &Connection) -> rusqlite::Result<Vec<Summary>> {
    let mut select = connection.prepare(SUMMARY)?;
    let rows = select.query_map([], |row| {
        let id: i64 = row.get(0)?;
        let qos: u8 = row.get(1)?;
        let packet_id: Option<i64> = row.get(3)?;
        let size: i64 = row.get(5)?;
        Ok(Summary {
            id: id as u64,
            qos: if qos == 2 {
                QoS::ExactlyOnce
            } else {
                QoS::AtLeastOnce
            },
            retain: row.get(2)?,
            size: size as usize,
            packet_id: packet_id
                .filter(|id| (1..=i64::from(MAX_PACKET_ID)).contains(id))
                .map_or(0, |id| id as u16),
            released: row.get(4)?,
        })
    })?;
    rows.collect()
}

/// Makes a new outbox: the schema in one transaction, written straight to the file (so its
/// header names it an outbox from the first commit on), then WAL mode.
fn create(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(&format!(
        "PRAGMA auto_vacuum = INCREMENTAL;
         BEGIN;
         PRAGMA application_id = {APPLICATION_ID};
         PRAGMA user_version = {SCHEMA_VERSION};
         {SCHEMA}
         COMMIT;"
    ))
}

fn prepare(connection: &Connection, durability: Durability) -> Result<(), String> {
    let synchronous = match durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    let mode: String = connection
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(|e| e.to_string())?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("SQLite refused WAL mode (journal_mode {mode})"));
    }
    connection
        .pragma_update(None, "synchronous", synchronous)
        .map_err(|e| e.to_string())?;
    // A reader (the sqlite3 shell) may hold a lock for a moment; writes wait for it.
    connection
        .busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
