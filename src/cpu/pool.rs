//! Where the CPU decoders' parallel loops run: rayon's pool natively; in the browser, rayon's
//! pool over Web Workers sharing the module's memory when the package loaded the threaded
//! build (`wasm-threads`, cross-origin isolated pages) and started its workers
//! (`web::start_threads`), else one after another on the calling thread.
//!
//! Each task writes only its own outputs, so a result is the same bits however many threads
//! run it (`tests/cpu_model.rs` checks one thread against many).

#[cfg(all(target_arch = "wasm32", feature = "wasm-threads"))]
static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The browser's worker pool is up: loops may go to rayon from now on.
#[cfg(all(target_arch = "wasm32", feature = "wasm-threads"))]
pub fn mark_started() {
    STARTED.store(true, std::sync::atomic::Ordering::Release);
}

/// Whether loops run on rayon's pool (never before the browser's workers exist: rayon would
/// try to spawn OS threads, which wasm has not).
#[cfg(any(not(target_arch = "wasm32"), feature = "wasm-threads"))]
fn parallel() -> bool {
    #[cfg(not(target_arch = "wasm32"))]
    return true;
    #[cfg(target_arch = "wasm32")]
    return STARTED.load(std::sync::atomic::Ordering::Acquire);
}

/// The least work (multiply-adds) a loop must hold to be split across threads: below it, waking
/// the other threads costs more than it saves. A sleeping rayon worker wakes in microseconds
/// natively, but in a browser (`Atomics.notify` to a Web Worker) in tens to hundreds of them:
/// there only the largest products of a decode step (the LM head) and prefill's are split.
/// Measured in Chromium on the default model: splitting every product made 2-thread decode
/// slower than 1 thread (43 against 59 tok/s).
#[cfg(not(target_arch = "wasm32"))]
const MIN_PARALLEL_WORK: usize = 1 << 16;
#[cfg(all(target_arch = "wasm32", feature = "wasm-threads"))]
const MIN_PARALLEL_WORK: usize = 1 << 22;

/// Threads the CPU decoders split their work over.
pub fn threads() -> usize {
    #[cfg(any(not(target_arch = "wasm32"), feature = "wasm-threads"))]
    if parallel() {
        return rayon::current_num_threads();
    }
    1
}

/// Run `f` on one of the pool's threads, so that the parallel loops inside it are handed out
/// among the pool's threads directly: a caller outside the pool would otherwise hand each loop
/// over and sleep until it ends, a wake-up per loop (about half the time of a decode step).
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    #[cfg(any(not(target_arch = "wasm32"), feature = "wasm-threads"))]
    if parallel() {
        return rayon::scope(|_| f());
    }
    f()
}

/// Run `f` on every task; `work` (multiply-adds in all) decides whether across threads.
pub fn for_each<T: Send>(tasks: Vec<T>, work: usize, f: impl Fn(T) + Send + Sync) {
    #[cfg(all(target_arch = "wasm32", not(feature = "wasm-threads")))]
    let _ = work; // one thread: nothing to decide
    #[cfg(any(not(target_arch = "wasm32"), feature = "wasm-threads"))]
    if parallel() && work >= MIN_PARALLEL_WORK {
        use rayon::prelude::*;
        return tasks.into_par_iter().for_each(f);
    }
    tasks.into_iter().for_each(f)
}

/// Run `f(start, chunk)` on consecutive `size`-element chunks of `out`; `work` as for
/// `for_each`.
pub fn for_each_chunk<E: Send>(
    out: &mut [f32],
    size: usize,
    work: usize,
    f: impl Fn(usize, &mut [f32]) -> Result<(), E> + Send + Sync,
) -> Result<(), E> {
    #[cfg(all(target_arch = "wasm32", not(feature = "wasm-threads")))]
    let _ = work;
    #[cfg(any(not(target_arch = "wasm32"), feature = "wasm-threads"))]
    if parallel() && work >= MIN_PARALLEL_WORK {
        use rayon::prelude::*;
        return out
            .par_chunks_mut(size)
            .enumerate()
            .try_for_each(|(i, chunk)| f(i * size, chunk));
    }
    out.chunks_mut(size)
        .enumerate()
        .try_for_each(|(i, chunk)| f(i * size, chunk))
}
