//! `Sha256`: a streaming SHA-256 for the facade's `sha256` option. WebCrypto's `digest` takes
//! the whole input at once, and a model is larger than the memory a page may hold, so the
//! digest is taken chunk by chunk here as the bytes go to the engine.

use sha2::Digest;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
pub struct Sha256 {
    hasher: sha2::Sha256,
}

#[wasm_bindgen]
impl Sha256 {
    #[allow(clippy::new_without_default)] // a JS constructor; Default means nothing there
    #[wasm_bindgen(constructor)]
    pub fn new() -> Sha256 {
        Sha256 {
            hasher: sha2::Sha256::new(),
        }
    }

    /// The next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    /// The digest of everything so far, as 64 lowercase hex digits; the hasher is used up.
    pub fn hex(self) -> String {
        self.hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
