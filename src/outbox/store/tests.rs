//! The outbox file: what it keeps across reopening, who may open it, and the files it refuses
//! (left byte for byte as they were).

use super::*;
use crate::test_support::Folder;

fn message(id: u64, qos: QoS, topic: &str, payload: &[u8]) -> NewMessage {
    NewMessage {
        id,
        qos,
        retain: id.is_multiple_of(2),
        body: Body {
            topic: topic.into(),
            payload: Bytes::copy_from_slice(payload),
            properties: None,
        },
    }
}

/// A new outbox at `path` with `count` messages of `size` bytes, checkpointed into the file.
fn filled(path: &Path, count: u64, size: usize) -> Store {
    let (mut store, _) = open(path);
    let inserts = (1..=count)
        .map(|id| message(id, QoS::AtLeastOnce, "t", &vec![7u8; size]))
        .collect();
    let changes = Changes {
        inserts,
        ..Changes::default()
    };
    store.write(&changes).expect("written");
    store
        .connection
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("checkpointed");
    store
}

fn open(path: &Path) -> (Store, Vec<Summary>) {
    Store::open(path, Durability::Normal).expect("the outbox opens")
}

fn refusal(path: &Path) -> String {
    match Store::open(path, Durability::Normal) {
        Ok(_) => panic!("{} was opened as an outbox", path.display()),
        Err(reason) => reason,
    }
}

/// The file's bytes and modification time, to show that a refused file was not touched.
fn fingerprint(path: &Path) -> (Vec<u8>, SystemTime) {
    let bytes = std::fs::read(path).expect("readable");
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("a modification time");
    (bytes, modified)
}

#[test]
fn what_is_written_is_there_after_reopening_in_order() {
    let folder = Folder::new();
    let path = folder.file("outbox.sqlite");
    let (mut store, stored) = open(&path);
    assert!(stored.is_empty());
    let changes = Changes {
        inserts: vec![
            message(1, QoS::AtLeastOnce, "a/1", b"one"),
            message(2, QoS::ExactlyOnce, "a/2", b"two!"),
            message(3, QoS::AtLeastOnce, "a/3", b""),
        ],
        ..Changes::default()
    };
    store.write(&changes).expect("written");
    let changes = Changes {
        deletes: vec![3],
        packet_ids: vec![(2, 7)],
        releases: vec![2],
        ..Changes::default()
    };
    store.write(&changes).expect("written");
    drop(store);

    let (store, stored) = open(&path);
    let summary = |id, qos, retain, size, packet_id, released| Summary {
        id,
        qos,
        retain,
        size,
        packet_id,
        released,
    };
    assert_eq!(
        stored,
        [
            summary(1, QoS::AtLeastOnce, false, 6, 0, false),
            summary(2, QoS::ExactlyOnce, true, 7, 7, true),
        ]
    );
    let bodies = store.bodies(1, 2).expect("read");
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[1].0, 2);
    assert_eq!(bodies[1].1.topic, "a/2");
    assert_eq!(&bodies[1].1.payload[..], b"two!");
}

#[test]
fn a_cleared_packet_id_is_no_packet_id() {
    let folder = Folder::new();
    let path = folder.file("outbox.sqlite");
    let (mut store, _) = open(&path);
    let changes = Changes {
        inserts: vec![message(1, QoS::ExactlyOnce, "t", b"x")],
        packet_ids: vec![(1, 9)],
        releases: vec![1],
        ..Changes::default()
    };
    store.write(&changes).expect("written");
    let clear = Changes {
        packet_ids: vec![(1, 0)],
        ..Changes::default()
    };
    store.write(&clear).expect("written");
    drop(store);
    let (_, stored) = open(&path);
    assert_eq!((stored[0].packet_id, stored[0].released), (0, false));
}

#[test]
fn one_client_at_a_time_and_the_next_once_it_is_closed() {
    let folder = Folder::new();
    let path = folder.file("outbox.sqlite");
    let (store, _) = open(&path);
    let reason = refusal(&path);
    assert!(reason.contains("in use by another client"), "{reason}");
    // Another name of the same file is the same outbox.
    let other_name = folder.file(".").join("outbox.sqlite");
    assert!(refusal(&other_name).contains("in use"));
    drop(store);
    open(&path);
}

#[test]
fn an_empty_file_becomes_an_outbox() {
    let folder = Folder::new();
    let path = folder.file("empty.sqlite");
    std::fs::write(&path, b"").expect("written");
    let (mut store, stored) = open(&path);
    assert!(stored.is_empty());
    let changes = Changes {
        inserts: vec![message(1, QoS::AtLeastOnce, "t", b"x")],
        ..Changes::default()
    };
    store.write(&changes).expect("written");
}

#[test]
fn files_that_are_not_outboxes_are_refused_and_left_untouched() {
    let folder = Folder::new();
    let garbage = folder.file("garbage.sqlite");
    std::fs::write(&garbage, vec![0x5a; 4096]).expect("written");
    let short = folder.file("short.sqlite");
    std::fs::write(&short, b"SQLite format 3\0").expect("written");
    let foreign = folder.file("foreign.sqlite");
    {
        let connection = Connection::open(&foreign).expect("created");
        connection
            .execute_batch("CREATE TABLE readings (value REAL); INSERT INTO readings VALUES (1.5);")
            .expect("written");
    }
    let cases = [
        (&garbage, "not an SQLite database"),
        (&short, "too short"),
        (&foreign, "another application"),
    ];
    for (path, why) in cases {
        let before = fingerprint(path);
        let reason = refusal(path);
        assert!(reason.contains(why), "{reason}");
        assert!(reason.contains("left untouched"), "{reason}");
        assert!(
            fingerprint(path) == before,
            "{} was changed",
            path.display()
        );
        let mut lock = path.as_os_str().to_owned();
        lock.push("-lock");
        assert!(
            !Path::new(&lock).exists(),
            "a lock file beside {}",
            path.display()
        );
    }
    let folder_path = folder.file("a-folder");
    std::fs::create_dir(&folder_path).expect("created");
    assert!(refusal(&folder_path).contains("folder"));
    assert!(refusal(&folder.file("missing/outbox.sqlite")).contains("folder"));
}

#[test]
fn a_damaged_or_newer_outbox_is_refused_and_left_untouched() {
    let folder = Folder::new();
    let damaged = folder.file("damaged.sqlite");
    drop(filled(&damaged, 200, 500));
    // Garbage over the pages after the first two (the schema stays readable).
    let mut bytes = std::fs::read(&damaged).expect("read");
    assert!(bytes.len() > 3 * 4096);
    bytes[2 * 4096..3 * 4096].fill(0xff);
    std::fs::write(&damaged, &bytes).expect("written");

    let newer = folder.file("newer.sqlite");
    drop(open(&newer));
    {
        let connection = Connection::open(&newer).expect("opened");
        connection
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("written");
        connection
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .expect("checkpointed");
    }
    for (path, why) in [(&damaged, "damaged"), (&newer, "schema 2")] {
        let before = fingerprint(path);
        let reason = refusal(path);
        assert!(reason.contains(why), "{reason}");
        assert!(
            fingerprint(path) == before,
            "{} was changed",
            path.display()
        );
    }
}

#[test]
fn an_emptied_outbox_gives_its_space_back() {
    let folder = Folder::new();
    let path = folder.file("outbox.sqlite");
    let mut store = filled(&path, 2000, 1000);
    let full = std::fs::metadata(&path).expect("there").len();
    let changes = Changes {
        deletes: (1..=2000).collect(),
        ..Changes::default()
    };
    store.write(&changes).expect("written");
    store.shrink().expect("shrunk");
    let emptied = std::fs::metadata(&path).expect("there").len();
    assert!(emptied * 10 < full, "{full} bytes, then {emptied}");
}
