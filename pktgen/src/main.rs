//! pktgen: the lab packet generator and sink (issue 3 builds it out).
fn main() {
    eprintln!("pktgen: not built yet (see issue 3)");
    std::process::exit(1);
}
