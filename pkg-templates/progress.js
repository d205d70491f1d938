// Fetch bodies arrive in pieces of a few KiB: a progress event for each would be tens of thousands
// of calls (and worker messages) for a large model. One per MiB, plus the first and last of each
// phase, is smooth enough for any progress bar.
const STEP_BYTES = 1024 * 1024;

export function throttledProgress(onProgress) {
  if (!onProgress) return () => {};
  let phase = null;
  let reported = 0;
  return (event, force = false) => {
    const samePhase = event.phase === phase;
    if (event.cacheError !== undefined) {
      onProgress({ ...event });
      return;
    }
    if (samePhase && event.loaded === reported) return;
    const last = event.total !== undefined && event.loaded >= event.total;
    if (!force && !last && samePhase && event.loaded - reported < STEP_BYTES) return;
    phase = event.phase;
    reported = event.loaded;
    onProgress({ phase: event.phase, loaded: event.loaded, total: event.total });
  };
}
