//! Arbitrary frames through port security: never a panic, never a frame from another
//! MAC, another IPv4 address or with a VLAN tag let through.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    switch::fuzzing::port_guard(data);
});
