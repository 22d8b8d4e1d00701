//! Multi-process stress test.
