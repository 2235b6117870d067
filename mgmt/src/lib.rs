//! The vswitch control plane.
pub mod ethtool;
pub mod link;
pub mod netns;
