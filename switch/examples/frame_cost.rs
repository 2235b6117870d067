//! A fixed workload through the frame path, for instruction counts with valgrind
//! --tool=callgrind (see ARCHITECTURE.md, "pktgen and the benchmark harness"):
//! N 60-byte unicast and broadcast frames among three MACs, in bursts from alternating
//! ports, through `switch::fuzzing::switch_frames`.
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let macs: [[u8; 6]; 3] = [
        [2, 0x42, 172, 18, 0, 2],
        [2, 0x42, 172, 18, 0, 3],
        [2, 0x42, 172, 18, 0, 4],
    ];
    let mut data = Vec::with_capacity(n * 61);
    for i in 0..n {
        let burst = i / 32;
        let src = macs[burst % 3];
        let dst = if i % 8 == 7 {
            [0xff; 6]
        } else {
            macs[(burst + 1) % 3]
        };
        data.push(10u8); // 60 bytes
        let mut f = [0u8; 60];
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        data.extend_from_slice(&f);
    }
    switch::fuzzing::switch_frames(&data);
}
