//! A key and a value anyone may have put under the cluster store's prefix: reading
//! them never panics, and what is taken matches its key.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mgmt::fuzzing::store_keys(data);
});
