//! The engine's LoRA adapters: held by id once read and checked against the model, and the
//! active set (ids and scales), combined into one `LoraStack` for the backend whenever it
//! changes. Changing it drops the conversation cache: its keys and values were computed with
//! the old weights.

use super::Engine;
use crate::error::{Error, Result};
use crate::lora::{check, Adapter, LoraStack};

/// Adapters held, and the active set.
#[derive(Default)]
pub(super) struct Adapters {
    held: Vec<(u32, Adapter)>,
    next_id: u32,
    active: Vec<(u32, f32)>,
}

impl Engine {
    /// Keep `adapter` for this model and return its id; it is not applied until it is in
    /// [`set_adapters_async`](Self::set_adapters_async)'s set. An adapter for another base
    /// (architecture or a tensor's shape) is `MODEL_INVALID` naming the tensor.
    pub fn add_adapter(&mut self, adapter: Adapter) -> Result<u32> {
        check(&self.config, &adapter)?;
        let a = &mut self.adapters;
        let id = a.next_id;
        a.next_id += 1;
        a.held.push((id, adapter));
        Ok(id)
    }

    /// The adapter kept under `id`.
    pub fn adapter(&self, id: u32) -> Option<&Adapter> {
        let held = &self.adapters.held;
        held.iter().find(|(i, _)| *i == id).map(|(_, a)| a)
    }

    /// The active adapters and their scales, in the order they were set.
    pub fn active_adapters(&self) -> &[(u32, f32)] {
        &self.adapters.active
    }

    /// Make `active` (adapter ids with their scales; empty: none) the adapters every later
    /// generation and embedding runs with. Scales are llama.cpp's: the update is `scale *
    /// alpha / rank * B A` (`scale * B A` without alpha); 0 leaves an adapter out, negative
    /// ones subtract it. If the backend cannot take the set (GPU memory), no adapter stays
    /// active and the error is returned.
    pub async fn set_adapters_async(&mut self, active: &[(u32, f32)]) -> Result<()> {
        for (i, &(id, scale)) in active.iter().enumerate() {
            if self.adapter(id).is_none() {
                return Err(Error::InvalidArgument(format!("no adapter has id {id}")));
            }
            if !scale.is_finite() {
                return Err(Error::InvalidArgument(format!(
                    "the scale of adapter {id} is {scale}, not a finite number"
                )));
            }
            if active[..i].iter().any(|&(other, _)| other == id) {
                return Err(Error::InvalidArgument(format!(
                    "adapter {id} is listed twice"
                )));
            }
        }
        let adapters: Vec<(&Adapter, f32)> = active
            .iter()
            .filter_map(|&(id, scale)| Some((self.adapter(id)?, scale)))
            .collect();
        let stack = LoraStack::build(&self.config, &adapters)?;
        self.session.reset();
        self.adapters.active.clear();
        if let Err(e) = self.session.backend.set_lora(stack).await {
            // Whatever the backend managed, leave it without adapters.
            let _ = self.session.backend.set_lora(None).await;
            return Err(e);
        }
        self.adapters.active = active.to_vec();
        Ok(())
    }

    /// [`set_adapters_async`](Self::set_adapters_async), blocking.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn set_adapters(&mut self, active: &[(u32, f32)]) -> Result<()> {
        pollster::block_on(self.set_adapters_async(active))
    }

    /// Drop the adapter kept under `id` (taken out of the active set first, if it is in it).
    pub async fn remove_adapter_async(&mut self, id: u32) -> Result<()> {
        if self.adapter(id).is_none() {
            return Err(Error::InvalidArgument(format!("no adapter has id {id}")));
        }
        if self.adapters.active.iter().any(|&(a, _)| a == id) {
            let active = self.adapters.active.iter().copied();
            let rest: Vec<(u32, f32)> = active.filter(|&(a, _)| a != id).collect();
            self.set_adapters_async(&rest).await?;
        }
        self.adapters.held.retain(|(i, _)| *i != id);
        Ok(())
    }
}
