//! Arbitrary bytes as an Ethernet frame, an IPv6 packet and an ICMPv6 message (see
//! `wire::fuzzing::ndp`): no input may panic, and an NDP, echo or error message that
//! parses emits back into one that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wire::fuzzing::ndp(data);
});
