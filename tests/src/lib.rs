//! Shared lab helpers for the end-to-end scenarios.
