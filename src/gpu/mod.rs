//! The decoder's GPU side: the device (`context`), the shared kernel machinery (`kernel`), and
//! the typed kernels the model calls.

pub(crate) mod activations;
pub mod context;
pub mod graph;
pub mod kernel;
#[cfg(not(target_arch = "wasm32"))]
pub mod kernel_bench;
pub mod kernels;
pub mod kv_cache;
pub mod loader;
pub mod lora;
pub mod shader;
pub mod weight_types;
pub mod weights;

pub use context::{GpuContext, GpuFeatures, GpuOptions};
