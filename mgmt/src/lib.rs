//! The vswitch control plane.
pub mod netns;
