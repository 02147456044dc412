//! What a damaged, planted or full spool does (review findings N2, N3, N12): never a hang, never
//! a start refused by what a crash or a full disk left, every lost event counted.

use super::*;

fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "spool"))
        .collect();
    v.sort();
    v
}

/// N3: ENOSPC (or a power loss) right after a segment was created leaves it without its
/// header (0 or 10 bytes); the next start failed with `File exists` for good.
#[test]
fn a_header_less_segment_never_blocks_a_restart() {
    for len in [0usize, 10, 16] {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("spool");
        drop(Spool::open(&disk(&spool_dir, 1 << 20)).unwrap());
        // The first segment (the name the next start writes) with a bad or missing header.
        let first = spool_dir.join(segment_name(0));
        fs::write(&first, &b"FSNSSPOL\x01\x00XXXXXXXX"[..len]).unwrap();
        let (mut s, rec) = Spool::open(&disk(&spool_dir, 1 << 20)).expect("starts");
        assert_eq!(rec.damage.len(), 1, "{len}: {:?}", rec.damage);
        assert!(rec.damage[0].contains("removed"), "{:?}", rec.damage);
        assert_eq!(s.dropped(), 0);
        fill(&mut s, 0, 3, 10);
        s.sync().unwrap();
        drop(s);
        let (mut s, rec) = Spool::open(&disk(&spool_dir, 1 << 20)).unwrap();
        assert_eq!(rec.pending, 3, "{:?}", rec.damage);
        assert_eq!(read_ids(&mut s, 10).len(), 3);
    }
}

/// A segment whose header is gone but whose frames are there: set aside (for a look), its
/// events counted as lost, the start goes on.
#[test]
fn a_segment_with_a_bad_header_is_set_aside_and_its_events_counted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut s, _) = Spool::open(&disk(dir.path(), 1 << 20)).unwrap();
        fill(&mut s, 0, 5, 50);
        s.sync().unwrap();
    }
    let seg = &segment_paths(dir.path())[0];
    let mut bytes = fs::read(seg).unwrap();
    bytes[0] = b'X';
    fs::write(seg, &bytes).unwrap();
    let (s, rec) = Spool::open(&disk(dir.path(), 1 << 20)).unwrap();
    assert_eq!(rec.lost, 5, "{:?}", rec.damage);
    assert_eq!(s.dropped(), 5);
    assert!(rec.damage[0].contains("set aside"), "{:?}", rec.damage);
    let mut aside = seg.as_os_str().to_owned();
    aside.push(".damaged");
    assert!(Path::new(&aside).exists());
}

/// N12: truncating the last segment lost events with no line and `spool_dropped` 0.
#[test]
fn a_torn_last_segment_is_said_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut s, _) = Spool::open(&disk(dir.path(), 1 << 20)).unwrap();
        fill(&mut s, 0, 40, 100);
        s.sync().unwrap();
    }
    let seg = &segment_paths(dir.path())[0];
    let len = fs::metadata(seg).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(seg)
        .unwrap()
        .set_len(len - 50)
        .unwrap();
    let (mut s, rec) = Spool::open(&disk(dir.path(), 1 << 20)).unwrap();
    assert_eq!(rec.damage.len(), 1, "{:?}", rec.damage);
    assert!(
        rec.damage[0].contains("torn last frame"),
        "{:?}",
        rec.damage
    );
    assert_eq!(rec.lost, 1);
    assert_eq!(s.dropped(), 1);
    assert_eq!(read_ids(&mut s, 100).len(), 39);
}

/// Acknowledged events behind damage are not counted as lost.
#[test]
fn damage_in_acknowledged_events_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut s, _) = Spool::open(&disk(dir.path(), 1 << 20)).unwrap();
        fill(&mut s, 0, 10, 100);
        s.flush().unwrap();
        let all = read_ids(&mut s, 10);
        s.ack(all[7].after).unwrap();
        s.sync().unwrap();
    }
    let seg = &segment_paths(dir.path())[0];
    let mut bytes = fs::read(seg).unwrap();
    bytes[SEGMENT_HEADER_LEN as usize + 20] ^= 1;
    fs::write(seg, &bytes).unwrap();
    let (s, rec) = Spool::open(&disk(dir.path(), 1 << 20)).unwrap();
    assert_eq!(rec.lost, 2, "{:?}", rec.damage);
    assert_eq!(s.dropped(), 2);
}

/// N2: a FIFO at a segment's name hung the start forever (opened O_RDWR, read to EOF).
#[cfg(target_os = "linux")]
#[test]
fn a_fifo_in_the_spool_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join(segment_name(0));
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    let err = Spool::open(&disk(dir.path(), 1 << 20)).err().unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        err.to_string().contains(&fifo.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

/// N2: another account that can write in the spool directory (or created it) forges, deletes
/// or blocks events: such a directory is refused, named.
#[cfg(unix)]
#[test]
fn a_spool_directory_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("pub");
    fs::create_dir(&spool_dir).unwrap();
    fs::set_permissions(&spool_dir, fs::Permissions::from_mode(0o777)).unwrap();
    let err = Spool::open(&disk(&spool_dir, 1 << 20)).err().unwrap();
    assert!(err.to_string().contains("writable by other users"), "{err}");
    assert!(
        err.to_string().contains(&spool_dir.display().to_string()),
        "{err}"
    );
    // A symbolic link as the spool directory, to a private one.
    let real = dir.path().join("real");
    fs::create_dir(&real).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let err = Spool::open(&disk(&link, 1 << 20)).err().unwrap();
    assert!(err.to_string().contains("symbolic link"), "{err}");
}

/// N2, as root: files of another account in the spool (a planted segment, a lock) are refused.
#[cfg(target_os = "linux")]
#[test]
fn files_of_another_account_in_the_spool_are_refused() {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("*** SKIPPED files_of_another_account_in_the_spool_are_refused: needs root ***");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut s, _) = Spool::open(&disk(dir.path(), 1 << 20)).unwrap();
        fill(&mut s, 0, 2, 10);
        s.sync().unwrap();
    }
    let seg = &segment_paths(dir.path())[0];
    std::os::unix::fs::chown(seg, Some(65534), Some(65534)).unwrap();
    let err = Spool::open(&disk(dir.path(), 1 << 20)).err().unwrap();
    assert!(err.to_string().contains("another account"), "{err}");
}

/// N3: a write that fails (here: the segment's handle cannot write, as a full disk refuses)
/// loses only the unwritten events, counted; the segment is cut back to its last whole frame
/// and the spool takes events again once writing works.
#[test]
fn a_failed_write_counts_what_it_lost_and_the_spool_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Spool::open(&disk(dir.path(), 1 << 20)).unwrap();
    fill(&mut s, 0, 5, 100);
    s.flush().unwrap();
    let seg = segment_paths(dir.path())[0].clone();
    let Some(Segment {
        store: Store::File { file, .. },
        ..
    }) = s.segments.back_mut()
    else {
        panic!("no file segment");
    };
    let writable = std::mem::replace(file, File::open(&seg).unwrap());
    fill(&mut s, 5, 8, 100);
    assert!(s.flush().is_err());
    assert_eq!(s.dropped(), 3);
    assert_eq!(s.pending(), 5);
    let Some(Segment {
        store: Store::File { file, .. },
        ..
    }) = s.segments.back_mut()
    else {
        panic!("no file segment");
    };
    *file = writable;
    fill(&mut s, 8, 10, 100);
    s.sync().unwrap();
    let got: Vec<u64> = read_ids(&mut s, 20).iter().map(seq).collect();
    assert_eq!(got, [0, 1, 2, 3, 4, 8, 9]);
    drop(s);
    let (mut s, rec) = Spool::open(&disk(dir.path(), 1 << 20)).unwrap();
    assert!(rec.damage.is_empty(), "{:?}", rec.damage);
    assert_eq!(
        read_ids(&mut s, 20).iter().map(seq).collect::<Vec<_>>(),
        got
    );
}

/// A failed write of a single event larger than a write chunk counted it twice (found with a
/// full tmpfs: 82 events too many in spool_dropped); every event is counted once.
#[test]
fn a_failed_write_of_one_large_event_counts_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Spool::open(&disk(dir.path(), 64 << 20)).unwrap();
    fill(&mut s, 0, 2, 100);
    s.flush().unwrap();
    let seg = segment_paths(dir.path())[0].clone();
    let Some(Segment {
        store: Store::File { file, .. },
        ..
    }) = s.segments.back_mut()
    else {
        panic!("no file segment");
    };
    *file = File::open(&seg).unwrap();
    assert!(s.append(b"h/1/1/2", &vec![b'x'; WRITE_CHUNK]).is_err());
    assert!(s.append(b"h/1/1/3", &[b'y'; 10]).is_ok());
    assert!(s.flush().is_err());
    assert_eq!((s.pending(), s.dropped()), (2, 2));
}
