//! The driver-image checker on arbitrary bytes: findings or an error, never a panic.
#![no_main]

use fsense_pkgcheck::image::{ImageRules, check};
use fsense_pkgcheck::{checksum, image};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = check(
        data,
        ImageRules {
            require_signature: true,
            floor: fsense_pkgcheck::imports::DECLARED_FLOOR,
        },
    );
    let _ = image::has_signature(data);
    let mut copy = data.to_vec();
    if let Ok((_, new)) = checksum::fix(&mut copy) {
        // A fixed image's stored checksum is the computed one.
        assert_eq!(checksum::stored(&copy), Ok(new));
        assert_eq!(checksum::compute(&copy), Ok(new));
    }
});
