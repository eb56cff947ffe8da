//! The browser lab (Yew + plotters on `<canvas>`, compiled to wasm, linking `sim-core` directly).
//!
//! Not built yet: this crate exists so the workspace has its real layout. Issue #4 builds it.
