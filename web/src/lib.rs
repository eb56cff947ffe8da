//! The browser lab: Yew + plotters on `<canvas>`, compiled to wasm, linking `sim-core` directly
//! (the simulation runs in the page; no server round trip).
//!
//! Layout: pure logic that is tested natively and in the browser — [`url_state`] (the scenario
//! in the URL), [`controls`] (the slider table and which validation error belongs to which
//! control), [`chart_data`] (what the charts draw, from a trace), [`measured`] (the server API's
//! JSON and the measured-vs-simulated overlays), [`tour`] — and the view: [`charts`] (plotters),
//! [`app`] (the page), [`seed_panel`], [`measured_panel`].
//!
//! Build with `cargo xtask build-web` (wasm32 release + wasm-bindgen + wasm-opt into `web/dist`);
//! `cargo xtask lab` serves it with `rtmp-lab serve`.

pub mod app;
pub mod chart_data;
pub mod charts;
pub mod controls;
pub mod measured;
pub mod measured_panel;
pub mod seed_panel;
pub mod tour;
pub mod url_state;

/// Entry point: mounts the app on `#lab`. Does nothing on a page without one (the
/// wasm-bindgen-test harness loads this module too).
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    let Some(root) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id("lab"))
    else {
        return;
    };
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&format!("rtmp-lab panicked: {info}").into());
    }));
    yew::Renderer::<app::App>::with_root(root).render();
}
