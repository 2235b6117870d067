//! Arbitrary bytes through the frame path: classification, learning, the gateway's
//! ARP and ICMP parsers, flooding.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    switch::fuzzing::switch_frames(data);
});
