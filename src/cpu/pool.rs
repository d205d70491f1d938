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

/// Run `f` on every task.
pub fn for_each<T: Send>(tasks: Vec<T>, f: impl Fn(T) + Send + Sync) {
    #[cfg(any(not(target_arch = "wasm32"), feature = "wasm-threads"))]
    if parallel() {
        use rayon::prelude::*;
        return tasks.into_par_iter().for_each(f);
    }
    tasks.into_iter().for_each(f)
}

/// Run `f(start, chunk)` on consecutive `size`-element chunks of `out`.
pub fn for_each_chunk<E: Send>(
    out: &mut [f32],
    size: usize,
    f: impl Fn(usize, &mut [f32]) -> Result<(), E> + Send + Sync,
) -> Result<(), E> {
    #[cfg(any(not(target_arch = "wasm32"), feature = "wasm-threads"))]
    if parallel() {
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
