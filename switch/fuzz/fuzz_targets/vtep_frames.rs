//! Arbitrary bytes through the VTEP (see `switch::fuzzing::vtep_frames`): uplink frames,
//! decapsulated inner frames entering an overlay network, frames for the tunnel.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    switch::fuzzing::vtep_frames(data);
});
