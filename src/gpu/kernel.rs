//! The machinery every kernel shares: a compute pipeline compiled from a [`ShaderSource`]
//! (`shader.rs`: substitutions and declared features) with its bind-group layout, bind groups
//! built from a list of buffers, and reading a buffer back. Kernel-specific code (which
//! buffers, how many workgroups) lives in `kernels/`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};
use crate::gpu::GpuContext;

pub use crate::gpu::shader::{ShaderFeature, ShaderSource};

/// A compiled compute pipeline and the layout of its bind group 0.
pub struct Kernel {
    pub name: String,
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

impl Kernel {
    /// Compile `source` (entry point `main`). Compilation errors come back as `Error::Gpu`
    /// naming the kernel, not as a panic from the uncaptured-error handler.
    pub async fn new(ctx: &GpuContext, name: &str, source: ShaderSource) -> Result<Kernel> {
        let started = web_time::Instant::now();
        let wgsl = source.finish(name, &ctx.features)?;
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = ctx
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(wgsl.into()),
            });
        let pipeline = ctx
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(e) = scope.pop().await {
            return Err(Error::Gpu(format!("kernel {name} failed to compile: {e}")));
        }
        ctx.record_compile(name, started.elapsed().as_secs_f64());
        let layout = pipeline.get_bind_group_layout(0);
        Ok(Kernel {
            name: name.to_string(),
            pipeline,
            layout,
        })
    }

    /// A bind group with `bindings[i]` at `@binding(i)`.
    pub fn bind(&self, ctx: &GpuContext, bindings: &[wgpu::BufferBinding<'_>]) -> wgpu::BindGroup {
        let numbered: Vec<_> = (0u32..).zip(bindings.iter().cloned()).collect();
        self.bind_at(ctx, &numbered)
    }

    /// A bind group from `(binding index, buffer range)` pairs (where the indices have gaps).
    pub fn bind_at(
        &self,
        ctx: &GpuContext,
        bindings: &[(u32, wgpu::BufferBinding<'_>)],
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = bindings
            .iter()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: *i,
                resource: wgpu::BindingResource::Buffer(b.clone()),
            })
            .collect();
        ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&self.name),
            layout: &self.layout,
            entries: &entries,
        })
    }

    /// A dispatch bound once (at load) and recorded every step.
    pub fn op(
        &self,
        ctx: &GpuContext,
        bindings: &[wgpu::BufferBinding<'_>],
        workgroups: [u32; 3],
    ) -> Op {
        let numbered: Vec<_> = (0u32..).zip(bindings.iter().cloned()).collect();
        self.op_at(ctx, &numbered, workgroups)
    }

    /// [`Kernel::op`] with explicit binding indices.
    pub fn op_at(
        &self,
        ctx: &GpuContext,
        bindings: &[(u32, wgpu::BufferBinding<'_>)],
        workgroups: [u32; 3],
    ) -> Op {
        Op {
            name: self.name.clone(),
            pipeline: self.pipeline.clone(),
            bind_group: self.bind_at(ctx, bindings),
            workgroups,
            when: When::Always,
        }
    }

    /// Record one dispatch into an open compute pass.
    pub fn dispatch(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        bind_group: &wgpu::BindGroup,
        workgroups: [u32; 3],
    ) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, bind_group, &[]);
        pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
    }
}

/// One dispatch with everything bound: what the model records, in order, into a step's pass.
#[derive(Debug, Clone)]
pub struct Op {
    pub name: String,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
    /// Which decode steps record it.
    pub when: When,
}

/// Which decode steps record an op, by the keys their token sees (`pos + 1`): ops are bound
/// once at load, and attention has two forms, one for short contexts without a combine pass
/// (`attention.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    KeysAtMost(usize),
    KeysAbove(usize),
}

impl Op {
    /// The op, recorded only in the steps `when` says.
    pub fn when(self, when: When) -> Op {
        Op { when, ..self }
    }

    /// Whether a step whose token sees `keys` keys records it.
    pub fn wanted(&self, keys: usize) -> bool {
        match self.when {
            When::Always => true,
            When::KeysAtMost(n) => keys <= n,
            When::KeysAbove(n) => keys > n,
        }
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// Record `ops` in order into one compute pass of a new encoder and submit it.
pub fn submit_ops(ctx: &GpuContext, ops: &[&Op]) {
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        for op in ops {
            op.record(&mut pass);
        }
    }
    ctx.queue.submit([encoder.finish()]);
}

/// A whole buffer as a binding.
pub fn whole(buffer: &wgpu::Buffer) -> wgpu::BufferBinding<'_> {
    wgpu::BufferBinding {
        buffer,
        offset: 0,
        size: None,
    }
}

/// A byte range of a buffer as a binding.
pub fn range(buffer: &wgpu::Buffer, offset: u64, size: u64) -> wgpu::BufferBinding<'_> {
    wgpu::BufferBinding {
        buffer,
        offset,
        size: std::num::NonZeroU64::new(size),
    }
}

/// Bytes [`storage_buffer`] allocates for `size`: bindings need a non-zero size that is a
/// multiple of 4.
pub fn storage_bytes(size: u64) -> u64 {
    size.max(4).div_ceil(4) * 4
}

/// A storage buffer (read/write from shaders, copy source and destination).
pub fn storage_buffer(ctx: &GpuContext, label: &str, size: u64) -> wgpu::Buffer {
    ctx.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: storage_bytes(size),
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// Bytes [`uniform_buffer`] allocates for a value of `size` bytes (uniforms are whole 16-byte
/// rows).
pub fn uniform_bytes(size: u64) -> u64 {
    size.max(16).div_ceil(16) * 16
}

/// A small uniform buffer holding `value` (kernel parameters).
pub fn uniform_buffer<T: bytemuck::Pod>(ctx: &GpuContext, label: &str, value: &T) -> wgpu::Buffer {
    let bytes = bytemuck::bytes_of(value);
    let buffer = ctx.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: uniform_bytes(bytes.len() as u64),
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    ctx.queue.write_buffer(&buffer, 0, bytes);
    buffer
}

/// A buffer the CPU can map for reading, sized for `size` bytes.
pub fn readback_buffer(ctx: &GpuContext, label: &str, size: u64) -> wgpu::Buffer {
    ctx.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: size.max(4).div_ceil(4) * 4,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Map `staging` (a MAP_READ buffer already filled by a submitted copy) and return its first
/// `len` bytes. Async because on the web mapping completes on the event loop; native callers
/// poll the device while waiting.
pub async fn read_mapped(ctx: &GpuContext, staging: &wgpu::Buffer, len: u64) -> Result<Vec<u8>> {
    read_mapped_after(ctx, staging, len, None).await
}

/// [`read_mapped`] where the copy into `staging` was part of submission `after`: natively the
/// wait ends when that submission is done, not when everything submitted since is (the decode
/// loop keeps the next step in flight while it reads this one).
pub async fn read_mapped_after(
    ctx: &GpuContext,
    staging: &wgpu::Buffer,
    len: u64,
    after: Option<wgpu::SubmissionIndex>,
) -> Result<Vec<u8>> {
    let slice = staging.slice(..len.max(4).div_ceil(4) * 4);
    let (sender, receiver) = oneshot();
    slice.map_async(wgpu::MapMode::Read, move |r| sender.send(r));
    #[cfg(not(target_arch = "wasm32"))]
    {
        let wait = |submission_index| {
            ctx.device
                .poll(wgpu::PollType::Wait {
                    submission_index,
                    timeout: None,
                })
                .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))
        };
        wait(after)?;
        // Not mapped once its submission is done: a GPU error (an invalid submit never
        // completes the mapping), or another thread polling the same device has taken the
        // callback and not yet run it (callbacks run in whichever thread polls, after its
        // poll has let go of the device). Wait for everything, then give such a callback a
        // bounded time; never block forever.
        if !receiver.is_ready() {
            ctx.check()?;
            wait(None)?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while !receiver.is_ready() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(1));
                wait(None)?;
            }
            if !receiver.is_ready() {
                ctx.check()?;
                return Err(Error::Gpu(
                    "a buffer mapping did not complete after the GPU went idle".into(),
                ));
            }
        }
    }
    #[cfg(target_arch = "wasm32")]
    let _ = after;
    let mapped = receiver.await;
    // A lost device rejects the mapping before its `lost` promise resolves (Chrome answers it
    // from the GPU process, some milliseconds later): wait for it a bounded time, so the call
    // ends with DEVICE_LOST rather than a mapping error.
    #[cfg(target_arch = "wasm32")]
    if mapped.is_err() {
        let deadline = web_time::Instant::now() + std::time::Duration::from_millis(500);
        while !ctx.is_lost() && web_time::Instant::now() < deadline {
            crate::web::next_task().await;
        }
    }
    ctx.check()?;
    mapped.map_err(|e| Error::Gpu(format!("mapping a buffer for reading: {e}")))?;
    let bytes = {
        let view = slice
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("reading a mapped buffer: {e}")))?;
        view[..len as usize].to_vec()
    };
    staging.unmap();
    Ok(bytes)
}

/// Resolves once everything submitted so far has run (natively by polling the device, on the
/// web when the queue says so), with any GPU error raised meanwhile.
pub async fn wait_idle(ctx: &GpuContext) -> Result<()> {
    #[cfg(not(target_arch = "wasm32"))]
    ctx.device
        .poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: None,
        })
        .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
    #[cfg(target_arch = "wasm32")]
    {
        let (sender, receiver) = oneshot();
        ctx.queue.on_submitted_work_done(move || sender.send(()));
        receiver.await;
    }
    ctx.check()
}

/// Copy `len` bytes from `buffer` at `offset` to the CPU (tests, logits on request).
pub async fn read_buffer(
    ctx: &GpuContext,
    buffer: &wgpu::Buffer,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>> {
    let staging = readback_buffer(ctx, "readback", len);
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, len.div_ceil(4) * 4);
    ctx.queue.submit([encoder.finish()]);
    read_mapped(ctx, &staging, len).await
}

/// `read_buffer` as f32 values.
pub async fn read_f32(
    ctx: &GpuContext,
    buffer: &wgpu::Buffer,
    offset: u64,
    n: usize,
) -> Result<Vec<f32>> {
    let bytes = read_buffer(ctx, buffer, offset, n as u64 * 4).await?;
    Ok(bytemuck::pod_collect_to_vec(&bytes))
}

/// A single-value channel whose receiver is a future (map callbacks run on another thread
/// natively and on the event loop on the web).
fn oneshot<T>() -> (OneshotSender<T>, OneshotReceiver<T>) {
    let shared = Arc::new(Mutex::new((None, None)));
    (OneshotSender(shared.clone()), OneshotReceiver(shared))
}

type Slot<T> = Arc<Mutex<(Option<T>, Option<Waker>)>>;

struct OneshotSender<T>(Slot<T>);
struct OneshotReceiver<T>(Slot<T>);

impl<T> OneshotSender<T> {
    fn send(self, value: T) {
        if let Ok(mut slot) = self.0.lock() {
            slot.0 = Some(value);
            if let Some(w) = slot.1.take() {
                w.wake();
            }
        }
    }
}

impl<T> OneshotReceiver<T> {
    #[cfg(not(target_arch = "wasm32"))]
    fn is_ready(&self) -> bool {
        match self.0.lock() {
            Ok(s) => s.0.is_some(),
            Err(p) => p.into_inner().0.is_some(),
        }
    }
}

impl<T> Future for OneshotReceiver<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut slot = match self.0.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        match slot.0.take() {
            Some(v) => Poll::Ready(v),
            None => {
                slot.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
