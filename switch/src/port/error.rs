//! Why a port could not be opened: the one error the backends' `open` (and `create`)
//! return, wrapping what the kernel or the AF_XDP ring library refused.

use std::io;

use super::Backend;

/// Opening a port failed: on which backend and interface, and why. The source is the
/// step that failed and the kernel's answer (`bind the AF_XDP socket on veth0: EBUSY
/// (Device or resource busy)`), whose kind and errno callers can still match on.
#[derive(Debug, thiserror::Error)]
#[error("{backend} port {iface}: {source}")]
pub struct PortError {
    pub backend: Backend,
    pub iface: String,
    #[source]
    pub source: io::Error,
}

impl PortError {
    pub(crate) fn new(backend: Backend, iface: &str, source: io::Error) -> PortError {
        PortError {
            backend,
            iface: iface.to_string(),
            source,
        }
    }

    /// The kind of the kernel's answer (`InvalidInput` for a name it cannot take).
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }

    /// The errno, when the kernel refused.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// For callers that speak `io::Error` (pktgen's backends): the kind is kept.
impl From<PortError> for io::Error {
    fn from(e: PortError) -> io::Error {
        io::Error::new(e.kind(), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_port_and_keeps_the_kernels_answer() {
        let busy = || io::Error::from_raw_os_error(libc::EBUSY);
        let e = PortError::new(Backend::AfXdp, "veth0", busy());
        assert_eq!(e.raw_os_error(), Some(libc::EBUSY));
        assert_eq!(e.kind(), busy().kind());
        assert!(e.to_string().starts_with("af_xdp port veth0: "), "{e}");
        assert!(
            std::error::Error::source(&e).is_some(),
            "the cause is the source"
        );
        let io: io::Error = e.into();
        assert_eq!(io.kind(), busy().kind(), "the kind survives the conversion");
    }
}
