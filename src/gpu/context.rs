//! The GPU: adapter selection, the features and limits it offers, and the device we ask for.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// Choices that tests and callers can force.
#[derive(Debug, Clone)]
pub struct GpuOptions {
    /// Use `shader-f16` kernels when the adapter has the feature.
    pub allow_f16: bool,
    /// Use subgroup kernels when the adapter has the feature.
    pub allow_subgroups: bool,
    /// Pretend the adapter's `max_storage_buffer_binding_size` is at most this (tests use it
    /// to force tensors to be split across bindings).
    pub max_binding_size: Option<u64>,
    /// Use the kernels shaped for CPU emulations (`Some(true)`) or for real GPUs
    /// (`Some(false)`) whatever the adapter is; `None` decides from the adapter. Both are
    /// correct everywhere: tests run the GPU kernels on lavapipe with this.
    pub emulator_kernels: Option<bool>,
    /// Submit each decode step's successor before reading its id back (`None`: on real GPUs,
    /// off on CPU emulations; see `model.rs`).
    pub pipelined_decode: Option<bool>,
    /// Total GPU memory a model may take (weights, KV cache, activations, sampler); `None`: no
    /// total beyond the adapter's per-buffer limits, since neither WebGPU nor wgpu says how
    /// much memory the device has. Checked from the header (`memory_budget.rs`).
    pub max_gpu_bytes: Option<u64>,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            allow_f16: true,
            allow_subgroups: true,
            max_binding_size: None,
            emulator_kernels: None,
            pipelined_decode: None,
            max_gpu_bytes: None,
        }
    }
}

/// Optional features the kernels can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuFeatures {
    pub shader_f16: bool,
    pub subgroups: bool,
}

/// Cheap to clone: wgpu handles are reference-counted.
#[derive(Clone)]
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub features: GpuFeatures,
    pub limits: wgpu::Limits,
    /// Largest buffer range one binding may cover (after any test override).
    pub max_binding_size: u64,
    /// A CPU emulation (lavapipe, SwiftShader): kernels for it avoid workgroup barriers.
    pub is_cpu: bool,
    /// Models on this device pipeline their decode steps (see `GpuOptions::pipelined_decode`).
    pub pipelined_decode: bool,
    /// `GpuOptions::max_gpu_bytes`.
    pub max_gpu_bytes: Option<u64>,
    /// Bytes of every buffer created through [`create_buffer`](Self::create_buffer) on this
    /// device (shared by the clones): what a load really allocated, held to the estimate.
    allocated: Arc<AtomicU64>,
    lost: Arc<Mutex<Option<String>>>,
    /// Told once when the device is lost, whenever that happens (`on_lost`).
    lost_hooks: Arc<Mutex<Vec<LostHook>>>,
    /// Every pipeline compiled on this device and what it cost (`Kernel::new`).
    compiled: Arc<Mutex<Vec<CompiledKernel>>>,
    uncaptured: Arc<Mutex<Option<String>>>,
    /// Destroys the device when the last clone of this context is dropped.
    _owner: Arc<DeviceOwner>,
}

/// The device's owner: dropping the last context destroys the device, which frees every buffer
/// made on it at once (weights, KV cache, activations), instead of leaving them to the
/// garbage collector: in a browser, wgpu drops GPU buffers without `destroy()`, so an unloaded
/// model's video memory stayed held until the page's GC ran. Each engine opens its own device,
/// so nothing else lives on it.
struct DeviceOwner {
    device: wgpu::Device,
    /// Set before this owner's own `destroy()`: that loss is a release, not news for `on_lost`.
    released: Arc<AtomicBool>,
}

impl Drop for DeviceOwner {
    fn drop(&mut self) {
        self.released.store(true, Ordering::SeqCst);
        self.device.destroy();
    }
}

type LostHook = Box<dyn Fn(&str) + Send + Sync>;

/// One pipeline's compilation: its kernel name and the wall time from the shader module's
/// creation to the pipeline's error scope answering (in a browser the GPU process has compiled
/// it by then, so the figure includes the driver's or SwiftShader's work).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CompiledKernel {
    pub name: String,
    pub seconds: f64,
}

impl GpuContext {
    /// Pick the high-performance adapter and open a device with the limits it offers.
    pub async fn new(options: &GpuOptions) -> Result<GpuContext> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                Error::WebGpuUnavailable(format!(
                    "no GPU adapter ({e}); a browser needs WebGPU (Chrome/Edge 113+, or \
                     --enable-unsafe-webgpu), a native build needs a Vulkan, Metal or DX12 driver"
                ))
            })?;
        let info = adapter.get_info();
        let offered = adapter.features();
        let shader_f16 = options.allow_f16 && offered.contains(wgpu::Features::SHADER_F16);
        let subgroups = options.allow_subgroups && offered.contains(wgpu::Features::SUBGROUP);
        let mut required_features = wgpu::Features::empty();
        if shader_f16 {
            required_features |= wgpu::Features::SHADER_F16;
        }
        if subgroups {
            required_features |= wgpu::Features::SUBGROUP;
        }
        // Ask for everything the adapter offers: model buffers want the largest bindings.
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("llama-wgpu"),
                required_features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::WebGpuUnavailable(format!("the adapter refused a device: {e}")))?;

        let lost = Arc::new(Mutex::new(None));
        let lost_hooks: Arc<Mutex<Vec<LostHook>>> = Arc::default();
        let released = Arc::new(AtomicBool::new(false));
        let (lost_cb, hooks_cb, released_cb) = (lost.clone(), lost_hooks.clone(), released.clone());
        device.set_device_lost_callback(move |reason, message| {
            let reason = format!("{reason:?}: {message}");
            if let Ok(mut l) = lost_cb.lock() {
                *l = Some(reason.clone());
            }
            if !released_cb.load(Ordering::SeqCst) {
                let hooks = hooks_cb.lock().map(|mut h| std::mem::take(&mut *h));
                hooks
                    .unwrap_or_default()
                    .iter()
                    .for_each(|hook| hook(&reason));
            }
        });
        let uncaptured = Arc::new(Mutex::new(None));
        let uncaptured_cb = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut u) = uncaptured_cb.lock() {
                u.get_or_insert_with(|| e.to_string());
            }
        }));

        let max_binding_size = options
            .max_binding_size
            .unwrap_or(u64::MAX)
            .min(limits.max_storage_buffer_binding_size as u64)
            .min(limits.max_buffer_size);
        let is_cpu = options
            .emulator_kernels
            .unwrap_or_else(|| is_cpu_adapter(&info));
        // Arc like the rest of the context, which natively crosses threads; in wasm the handles
        // are not Send, but there the context never leaves the page's (or worker's) thread.
        #[allow(clippy::arc_with_non_send_sync)]
        let owner = Arc::new(DeviceOwner {
            device: device.clone(),
            released,
        });
        Ok(GpuContext {
            _owner: owner,
            pipelined_decode: options.pipelined_decode.unwrap_or(!is_cpu),
            max_gpu_bytes: options.max_gpu_bytes,
            allocated: Arc::new(AtomicU64::new(0)),
            is_cpu,
            device,
            queue,
            info,
            features: GpuFeatures {
                shader_f16,
                subgroups,
            },
            limits,
            max_binding_size,
            lost,
            lost_hooks,
            compiled: Arc::default(),
            uncaptured,
        })
    }

    /// Call `hook(reason)` once if the device is lost (a driver reset, a backgrounded mobile
    /// tab, `destroy()` by someone else) while this context lives, even between calls; not for
    /// the release when the last clone is dropped. Already lost: called at once.
    pub fn on_lost(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        // Hooks locked first: a loss recorded after the check below waits for this lock and
        // then finds the hook (the callback records the loss before it takes the hooks).
        let Ok(mut hooks) = self.lost_hooks.lock() else {
            return;
        };
        match self.lost.lock().ok().and_then(|l| l.clone()) {
            Some(reason) => {
                drop(hooks);
                hook(&reason)
            }
            None => hooks.push(Box::new(hook)),
        }
    }

    /// Create a buffer, counting its bytes. Every buffer of the crate is made here.
    pub fn create_buffer(&self, desc: &wgpu::BufferDescriptor) -> wgpu::Buffer {
        self.allocated.fetch_add(desc.size, Ordering::Relaxed);
        self.device.create_buffer(desc)
    }

    /// Record a pipeline's compile time (`Kernel::new` calls this).
    pub fn record_compile(&self, name: &str, seconds: f64) {
        if let Ok(mut c) = self.compiled.lock() {
            c.push(CompiledKernel {
                name: name.to_string(),
                seconds,
            });
        }
    }

    /// Every pipeline compiled on this device so far, in order, with its compile time.
    pub fn compiled_kernels(&self) -> Vec<CompiledKernel> {
        self.compiled.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Bytes of all the buffers created on this device so far (freed ones included).
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    /// Whether the adapter is a software rasterizer (SwiftShader, lavapipe, llvmpipe, a
    /// browser's fallback adapter), whatever kernels `GpuOptions` forced.
    pub fn is_software(&self) -> bool {
        is_cpu_adapter(&self.info)
    }

    /// Blocking constructor for native callers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(options: &GpuOptions) -> Result<GpuContext> {
        pollster::block_on(Self::new(options))
    }

    /// A one-line description: adapter name, backend, features.
    pub fn describe(&self) -> String {
        // Browsers keep the adapter's name to themselves; say what is known instead.
        let name = match (self.info.name.trim(), self.info.device_type) {
            ("", wgpu::DeviceType::Cpu) => "WebGPU fallback adapter",
            ("", _) => "WebGPU adapter",
            (name, _) => name,
        };
        format!(
            "{} ({:?}, {:?}{}{})",
            name,
            self.info.backend,
            self.info.device_type,
            if self.features.shader_f16 {
                ", shader-f16"
            } else {
                ""
            },
            if self.features.subgroups {
                ", subgroups"
            } else {
                ""
            },
        )
    }

    /// The largest subgroup the adapter may run (4 to 128; 128 when it does not say).
    pub fn subgroup_max_size(&self) -> u64 {
        match self.info.subgroup_max_size {
            0 => 128,
            n => (n as u64).clamp(4, 128),
        }
    }

    /// Whether the device has been lost (or destroyed).
    pub fn is_lost(&self) -> bool {
        self.lost.lock().map_or(true, |l| l.is_some())
    }

    /// An error if the device was lost or a GPU call failed since the last check.
    pub fn check(&self) -> Result<()> {
        if let Some(reason) = self.lost.lock().ok().and_then(|l| l.clone()) {
            return Err(Error::DeviceLost(reason));
        }
        if let Some(e) = self.uncaptured.lock().ok().and_then(|mut u| u.take()) {
            return Err(Error::Gpu(e));
        }
        Ok(())
    }
}

/// CPU emulations (lavapipe, SwiftShader) want the one-invocation-per-row kernels. Native
/// drivers report the device type; in a browser only `isFallbackAdapter` reaches wgpu, and
/// Chrome's SwiftShader is not always flagged as one, so the adapter's name is checked too.
fn is_cpu_adapter(info: &wgpu::AdapterInfo) -> bool {
    let name = info.name.to_ascii_lowercase();
    info.device_type == wgpu::DeviceType::Cpu
        || ["swiftshader", "llvmpipe", "lavapipe"]
            .iter()
            .any(|n| name.contains(n))
}
