//! Arbitrary bytes, cut into arbitrary reads, through the control socket's line
//! framing: no panic, every complete line within the limit given once and in order,
//! the first line over it refused and nothing after it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mgmt::fuzzing::line_framing(data);
});
