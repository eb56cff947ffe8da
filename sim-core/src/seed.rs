//! The seed article audited (being built).
