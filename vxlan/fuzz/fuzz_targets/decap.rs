//! Arbitrary bytes as a frame from the uplink (see `vxlan::fuzzing::decap`): no input
//! may panic, an accepted frame's inner slice lies inside the input, and re-encapsulating
//! it yields a frame that decapsulates to the same contents.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vxlan::fuzzing::decap(data);
});
