//! Issue 27 end to end: the driver's callbacks (set-information, cleanup, prepare-MDL-write,
//! FSCTL) against the Filter Manager simulator's models of them, over several seeds and thread
//! counts. The simulator checks every record against the operation that caused it
//! (`DELIVERY_MISMATCH`: the old and new names of a rename or link, the name a write reports
//! after a rename through its handle, REPLACE_EXISTING, POSIX_DELETE, a clone's range,
//! MDL_WRITE), that a delete is reported only for the cleanup whose delete stood
//! (`DELETE_CANCELLED_REPORTED`, `DELETE_NOT_HAPPENED`, `DELETE_WHEN_ASKED`), that nothing arrives
//! twice (`DELIVERY_DUPLICATE`: an MDL write's IRP completion), and the Driver Verifier-style
//! rules of each callback (IRQL of FltGetDestinationFileNameInformation and
//! FltQueryInformationFile, synchronized post-operations). Here: across seeds, every change
//! arrives once, nothing fails, and every hostile buffer is counted in the driver's health.

use fsense_fltsim::{ConsumerMode, SimConfig};

#[test]
fn every_change_arrives_once_across_seeds_and_hostile_buffers_are_counted() {
    let mut changes = 0;
    let mut hostile = 0;
    for (seed, threads) in [(1, 1), (2, 2), (3, 4), (27, 3)] {
        let config = SimConfig {
            events: 3000,
            threads,
            queue_capacity: 16_384,
            consumer: ConsumerMode::Normal,
            seed,
        };
        let r = fsense_fltsim::run(&config, &mut |_| {});
        assert_eq!(r.failures(), Vec::<String>::new(), "seed {seed}: {r:#?}");
        assert_eq!(r.changes_unwatched, 0, "seed {seed}");
        if r.dropped == 0 {
            assert_eq!(r.changes_missing, 0, "seed {seed}: {r:#?}");
        }
        assert!(
            r.buffers_rejected >= r.hostile_buffers_watched,
            "seed {seed}: {r:#?}"
        );
        // The last health the consumer saw (protocol 4) says the same.
        let health = r.health.expect("a health arrived");
        assert_eq!(health.protocol_version, fsense_proto::PROTOCOL_VERSION);
        assert!(health.buffers_rejected >= r.hostile_buffers_watched);
        assert_eq!(
            health.withheld_old_protocol, 0,
            "a current consumer misses nothing"
        );
        changes += r.changes_expected;
        hostile += r.hostile_buffers_watched;
    }
    assert!(
        changes >= 200,
        "the plans hold renames, links, deletes, clones: {changes}"
    );
    assert!(hostile > 0, "the plans hold hostile buffers");
    println!("{changes} changes, {hostile} hostile buffers, all accounted for");
}
