//! The native command line: generate, chat, tokenize, embed, inspect, bench, quantize.

#[cfg(not(target_arch = "wasm32"))]
mod args;
#[cfg(not(target_arch = "wasm32"))]
mod bench;
#[cfg(not(target_arch = "wasm32"))]
mod commands;
#[cfg(not(target_arch = "wasm32"))]
mod interrupt;

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    interrupt::install();
    let result = commands::run();
    if interrupt::interrupted() {
        // What was generated is on stdout already; the load or generation stopped on purpose,
        // so its error (if it ended in one) is not news.
        eprintln!("[interrupted]");
        std::process::exit(interrupt::EXIT_INTERRUPTED);
    }
    if let Err(e) = result {
        eprintln!("error [{}]: {e}", e.code());
        std::process::exit(1);
    }
}
