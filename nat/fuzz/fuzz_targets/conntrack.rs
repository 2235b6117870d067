//! Arbitrary bytes as a script of outbound / inbound / expire / list / IPv6-address
//! steps against a small dual-stack NAT (see `nat::fuzzing::conntrack`): IPv4 and IPv6
//! packets alike, no input may panic, a packet that is not translated is left
//! unchanged, and translation never breaks a valid checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nat::fuzzing::conntrack(data);
});
