//! The native command line: generate, chat, tokenize, embed, inspect, bench, quantize.

#[cfg(not(target_arch = "wasm32"))]
mod args;
#[cfg(not(target_arch = "wasm32"))]
mod bench;
#[cfg(not(target_arch = "wasm32"))]
mod commands;

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    if let Err(e) = commands::run() {
        eprintln!("error [{}]: {e}", e.code());
        std::process::exit(1);
    }
}
