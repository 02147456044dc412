use super::*;
use std::fs::OpenOptions;

fn disk(dir: &Path, max_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        dir: Some(dir.to_path_buf()),
        max_bytes,
    }
}

fn fill(spool: &mut Spool, from: u64, to: u64, size: usize) {
    for i in from..to {
        let payload = vec![b'a' + (i % 26) as u8; size];
        spool
            .append(format!("h/1/1/{i}").as_bytes(), &payload)
            .unwrap();
    }
}

fn read_ids(spool: &mut Spool, max: usize) -> Vec<Outgoing> {
    let mut out = Vec::new();
    while out.len() < max {
        let before = out.len();
        spool.read_next(max - out.len(), &mut out).unwrap();
        if out.len() == before {
            break;
        }
    }
    out
}

fn seq(o: &Outgoing) -> u64 {
    o.id.rsplit('/').next().unwrap().parse().unwrap()
}

#[test]
fn memory_spool_reads_in_order_and_frees_on_ack() {
    let (mut s, rec) = Spool::open(&SpoolConfig {
        dir: None,
        max_bytes: 1 << 20,
    })
    .unwrap();
    assert_eq!(rec.pending, 0);
    fill(&mut s, 0, 100, 50);
    let got = read_ids(&mut s, 1000);
    assert_eq!(
        got.iter().map(seq).collect::<Vec<_>>(),
        (0..100).collect::<Vec<_>>()
    );
    assert_eq!(got[3].payload, vec![b'd'; 50]);
    assert_eq!(s.pending(), 100);
    s.ack(got[59].after).unwrap();
    assert_eq!(s.pending(), 40);
    s.rewind();
    assert_eq!(seq(&read_ids(&mut s, 1)[0]), 60);
}

#[test]
fn unacknowledged_events_survive_a_killed_process() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut s, _) = Spool::open(&disk(dir.path(), 64 << 20)).unwrap();
        fill(&mut s, 0, 1000, 300);
        let got = read_ids(&mut s, 1000);
        s.ack(got[399].after).unwrap();
        s.sync().unwrap();
        fill(&mut s, 1000, 1200, 300);
        s.flush().unwrap();
        // Dropped without sync or close: what a SIGKILL leaves (written, not synced).
        drop(s);
    }
    let (mut s, rec) = Spool::open(&disk(dir.path(), 64 << 20)).unwrap();
    assert_eq!(rec.pending, 800);
    let got = read_ids(&mut s, 10_000);
    assert_eq!(
        got.iter().map(seq).collect::<Vec<_>>(),
        (400..1200).collect::<Vec<_>>()
    );
}

#[test]
fn a_torn_last_frame_is_cut_off_and_the_spool_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut s, _) = Spool::open(&disk(dir.path(), 64 << 20)).unwrap();
        fill(&mut s, 0, 10, 100);
        s.sync().unwrap();
    }
    let seg = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "spool"))
        .unwrap();
    // Half of an eleventh frame, as a crash mid-write leaves it.
    let mut torn = Vec::new();
    frame::encode(&mut torn, b"h/1/1/10", &[b'x'; 100]).unwrap();
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&torn[..torn.len() / 2]).unwrap();
    drop(f);
    let (mut s, rec) = Spool::open(&disk(dir.path(), 64 << 20)).unwrap();
    assert_eq!(rec.torn_bytes, (torn.len() / 2) as u64);
    // Said and counted (N12): the torn frame was an event.
    assert_eq!(rec.damage.len(), 1, "{:?}", rec.damage);
    assert!(
        rec.damage[0].contains("torn last frame"),
        "{:?}",
        rec.damage
    );
    assert_eq!((rec.lost, s.dropped()), (1, 1));
    assert_eq!(rec.pending, 10);
    fill(&mut s, 10, 12, 100);
    s.sync().unwrap();
    drop(s);
    let (mut s, rec) = Spool::open(&disk(dir.path(), 64 << 20)).unwrap();
    assert_eq!(rec.torn_bytes, 0);
    let got = read_ids(&mut s, 100);
    assert_eq!(
        got.iter().map(seq).collect::<Vec<_>>(),
        (0..12).collect::<Vec<_>>()
    );
}

#[test]
fn a_full_spool_drops_its_oldest_events_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let max = 512 << 10;
    let (mut s, _) = Spool::open(&disk(dir.path(), max)).unwrap();
    let n = 4000;
    fill(&mut s, 0, n, 400);
    s.flush().unwrap();
    assert!(s.bytes() <= max, "{} > {max}", s.bytes());
    assert!(s.dropped() > 0);
    assert_eq!(s.dropped() + s.pending(), n);
    let got = read_ids(&mut s, n as usize);
    let first = seq(&got[0]);
    assert_eq!(first, s.dropped(), "the oldest were dropped");
    assert_eq!(
        got.iter().map(seq).collect::<Vec<_>>(),
        (first..n).collect::<Vec<_>>()
    );
    let on_disk: u64 = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(on_disk <= max + (64 << 10), "{on_disk} bytes on disk");
}

#[test]
fn acknowledged_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Spool::open(&disk(dir.path(), 1 << 20)).unwrap();
    fill(&mut s, 0, 2000, 400);
    s.flush().unwrap();
    let segments = |d: &Path| {
        fs::read_dir(d)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "spool")
            })
            .count()
    };
    assert!(segments(dir.path()) > 3);
    let got = read_ids(&mut s, 2000);
    s.ack(got.last().unwrap().after).unwrap();
    assert_eq!(segments(dir.path()), 1);
    assert_eq!(s.pending(), 0);
}

#[cfg(unix)]
#[test]
fn files_are_private_and_symlinks_are_not_followed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let (mut s, _) = Spool::open(&disk(&spool_dir, 1 << 20)).unwrap();
    fill(&mut s, 0, 3, 10);
    s.flush().unwrap();
    let third = read_ids(&mut s, 3)[2].after;
    s.ack(third).unwrap();
    s.sync().unwrap();
    drop(s);
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&spool_dir), 0o700);
    for e in fs::read_dir(&spool_dir).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }

    // A symlink planted where the next segment will be created.
    let other = tempfile::tempdir().unwrap();
    let planted = dir.path().join("planted");
    fs::create_dir(&planted).unwrap();
    let target = other.path().join("victim");
    std::os::unix::fs::symlink(&target, planted.join(segment_name(0))).unwrap();
    assert!(Spool::open(&disk(&planted, 1 << 20)).is_err());
    assert!(!target.exists(), "the symlink was followed");
}

#[test]
fn one_process_per_spool_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (_a, _) = Spool::open(&disk(dir.path(), 1 << 20)).unwrap();
    let err = Spool::open(&disk(dir.path(), 1 << 20)).err().unwrap();
    assert!(err.to_string().contains("in use"), "{err}");
}

#[test]
fn a_damaged_frame_in_an_older_segment_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut s, _) = Spool::open(&disk(dir.path(), 1 << 20)).unwrap();
        fill(&mut s, 0, 600, 400);
        s.sync().unwrap();
    }
    let mut segs: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "spool"))
        .collect();
    segs.sort();
    assert!(segs.len() >= 2);
    let mut bytes = fs::read(&segs[0]).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    fs::write(&segs[0], &bytes).unwrap();
    let (mut s, rec) = Spool::open(&disk(dir.path(), 1 << 20)).unwrap();
    assert_eq!(rec.damage.len(), 1, "{:?}", rec.damage);
    let got = read_ids(&mut s, 1000);
    // Everything read is in order; what followed the damage in that segment is gone.
    assert!(got.windows(2).all(|w| seq(&w[0]) < seq(&w[1])));
    assert_eq!(seq(got.last().unwrap()), 599);
    assert!(got.len() < 600);
    // N12: every event lost is counted (the damaged frame and the intact ones behind it in that
    // segment): read + dropped is all 600.
    assert_eq!(got.len() as u64 + s.dropped(), 600, "{:?}", rec.damage);
    assert_eq!(rec.lost, s.dropped());
    assert!(rec.damage[0].contains(&format!("at least {} unacknowledged events lost", rec.lost)));
}

/// What the publisher does: appends, reads of a few events at a time (as many as were just
/// acknowledged), acknowledgements and rewinds after a failure, in any order. Every read returns
/// the next events in order, whole, once each (until a rewind), from memory and from segment
/// files (small segments, so reads cross them), whatever the read-ahead holds.
mod read_in_steps {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Append { count: u64, size: usize },
        Read { max: usize },
        AckRead,
        Rewind,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u64..40, 1usize..20_000).prop_map(|(count, size)| Op::Append { count, size }),
            (1usize..50).prop_map(|max| Op::Read { max }),
            Just(Op::AckRead),
            Just(Op::Rewind),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        #[cfg_attr(miri, ignore = "file-backed segments")]
        fn reads_return_every_event_in_order(on_disk in any::<bool>(), ops in proptest::collection::vec(op(), 1..60)) {
            let dir = tempfile::tempdir().unwrap();
            // Segments of 1 MiB (1/8 of the spool), so reads cross them; at most 6 MiB appended, so
            // the spool never fills (dropping is tested on its own).
            let config = SpoolConfig { dir: on_disk.then(|| dir.path().to_path_buf()), max_bytes: 8 << 20 };
            let mut bytes = 0usize;
            let (mut s, _) = Spool::open(&config).unwrap();
            let mut appended = 0u64;
            let mut next = 0u64; // the next event a read must return
            let mut acked = 0u64;
            let mut last_read: Option<Cursor> = None;
            let mut sizes = Vec::new();
            for op in ops {
                match op {
                    Op::Append { count, size } => {
                        if bytes + count as usize * size > 6 << 20 {
                            continue;
                        }
                        bytes += count as usize * size;
                        fill(&mut s, appended, appended + count, size);
                        sizes.extend(std::iter::repeat_n(size, count as usize));
                        appended += count;
                        s.flush().unwrap();
                    }
                    Op::Read { max } => {
                        let mut out = Vec::new();
                        let n = s.read_next(max, &mut out).unwrap();
                        prop_assert_eq!(n, out.len());
                        prop_assert!(n <= max);
                        for o in &out {
                            prop_assert_eq!(seq(o), next);
                            prop_assert_eq!(o.payload.len(), sizes[next as usize]);
                            prop_assert_eq!(o.payload[0], b'a' + (next % 26) as u8);
                            next += 1;
                        }
                        // Events are there to read: a read returns at least one.
                        if next < appended {
                            prop_assert!(n > 0);
                        }
                        if let Some(o) = out.last() {
                            last_read = Some(o.after);
                        }
                    }
                    Op::AckRead => {
                        if let Some(c) = last_read {
                            s.ack(c).unwrap();
                            acked = next;
                        }
                    }
                    Op::Rewind => {
                        s.rewind();
                        next = acked;
                        last_read = None;
                    }
                }
                prop_assert_eq!(s.pending(), appended - acked);
            }
        }
    }
}

mod damage;
