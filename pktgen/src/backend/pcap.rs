//! `--pcap FILE`: the frames a run would send, written as a classic pcap file
//! (Ethernet link type) that tcpdump and tshark read.

use super::FrameOut;
use pcap_file::pcap::{PcapPacket, PcapWriter};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use switch::port::Burst;

pub struct PcapOut {
    /// Taken by `flush`, which ends the file.
    writer: Option<PcapWriter<BufWriter<File>>>,
    path: String,
}

impl PcapOut {
    pub fn create(path: &Path) -> io::Result<Self> {
        let shown = path.display().to_string();
        let file = File::create(path)
            .map_err(|e| io::Error::new(e.kind(), format!("create pcap file {shown}: {e}")))?;
        let writer = PcapWriter::new(BufWriter::new(file))
            .map_err(|e| io::Error::other(format!("write the pcap header to {shown}: {e}")))?;
        Ok(PcapOut {
            writer: Some(writer),
            path: shown,
        })
    }
}

impl FrameOut for PcapOut {
    fn send(&mut self, burst: &Burst) -> io::Result<usize> {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let Some(writer) = self.writer.as_mut() else {
            return Err(io::Error::other(format!("{} is already closed", self.path)));
        };
        for frame in burst.iter() {
            let pkt = PcapPacket::new(ts, frame.len() as u32, frame);
            writer
                .write_packet(&pkt)
                .map_err(|e| io::Error::other(format!("write to {}: {e}", self.path)))?;
        }
        Ok(burst.len())
    }

    fn flush(&mut self, _deadline: Instant) -> io::Result<bool> {
        if let Some(writer) = self.writer.take() {
            writer
                .into_writer()
                .flush()
                .map_err(|e| io::Error::new(e.kind(), format!("write to {}: {e}", self.path)))?;
        }
        Ok(true)
    }
}
