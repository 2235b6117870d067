//! Arbitrary bytes as a control-socket request line: decoding must answer every input
//! with a typed call or a rejection, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mgmt::rpc::decode(data);
});
