//! The vswitch control plane.
