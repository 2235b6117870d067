//! Arbitrary bytes as queries to the embedded resolver: frame checks, UDP datagrams
//! carrying arbitrary DNS messages, TCP segments into the gateway's TCP stack.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    switch::fuzzing::dns_frames(data);
});
