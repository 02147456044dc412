//! Fleet documents from the network (issue 29): health documents and rollout records. Neither
//! parser may panic; what parses is consistent (bucket of its host, rings increasing, admission
//! within 0..=100) and re-encodes to a document that parses to the same value; the agent's
//! record follower never accepts a record that is not newer.
#![no_main]

use fsense_content::fleet::protocol::{
    RecordFollower, parse_health, parse_rollout, ring_bucket, valid_host_id,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = parse_health(data) {
        assert!(valid_host_id(&doc.host));
        assert_eq!(doc.bucket, ring_bucket(&doc.host));
        let again = doc.to_bytes();
        assert_eq!(parse_health(&again).unwrap(), doc);
    }
    if let Ok(record) = parse_rollout(data) {
        assert!((record.ring as usize) < record.rings.len());
        assert!(record.rings.windows(2).all(|w| w[0] < w[1]));
        assert!(record.admit_below <= 100);
        let again = record.to_bytes();
        assert_eq!(parse_rollout(&again).unwrap(), record);
        let mut follower = RecordFollower::default();
        assert!(follower.offer(data, 0).is_some());
        assert!(follower.offer(data, 0).is_none(), "a replay is ignored");
        assert_eq!(follower.ignored, 1);
    }
});
