import { abortError } from "./errors.js";

// A WasmEngine runs one call at a time (a second rejects with ENGINE_BUSY), so every call goes
// through this queue: calls run in the order they were made, never interleaved.
export class Mutex {
  #tail = Promise.resolve();

  // Runs `task` after every earlier task has settled. While the task is still waiting its turn,
  // aborting `signal` rejects at once and the task is skipped; once it runs, stopping is the
  // task's own business (a generation stops at the next token).
  run(task, signal) {
    let started = false;
    const turn = this.#tail.then(() => {
      started = true;
      if (signal?.aborted) throw abortError(signal.reason);
      return task();
    });
    this.#tail = turn.then(
      () => {},
      () => {},
    );
    if (!signal) return turn;
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        if (!started) reject(abortError(signal.reason));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      turn.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    });
  }
}
