import { FETCH_FAILED, LlamaWgpuError, abortError } from "./errors.js";
import { bodyLength, fetchModel } from "./fetch.js";

// A model download that survives a dropped connection: when the body stops before its
// Content-Length, the rest is asked for with `Range: bytes=<received>-` after a pause, and the
// caller sees one unbroken sequence of chunks. A server that answers the range request with the
// whole file (no range support) is read again from the start, the bytes already delivered
// skipped. Attempts that deliver nothing new count against RETRIES; one that delivers bytes
// resets the count, so a slow but moving connection is never given up on.
const RETRIES = 4;
const FIRST_PAUSE_MS = 500; // doubled after each attempt that brings nothing: 0.5, 1, 2, 4 s

export class Download {
  #url;
  #signal;
  #response;
  #etag;
  #received = 0;

  // Starts the download: rejects with FETCH_FAILED on a network error or an HTTP error status,
  // before any byte is handed out.
  static async start(url, signal) {
    return new Download(url, signal, await fetchModel(url, signal));
  }

  constructor(url, signal, response) {
    this.#url = url;
    this.#signal = signal;
    this.#response = response;
    this.#etag = response.headers.get("etag");
    // Undefined when unknown (no Content-Length, or a compressed body): such a download cannot
    // be resumed, since ranges count encoded bytes.
    this.size = bodyLength(response);
  }

  get received() {
    return this.#received;
  }

  // Closes the connection when the chunks were never read.
  cancel() {
    if (!this.#response.body?.locked) this.#response.body?.cancel().catch(() => {});
  }

  // The body's bytes, in order, each exactly once, across however many responses it takes.
  // Stopping the iteration early cancels the request.
  async *chunks() {
    let response = this.#response;
    let skip = 0; // bytes a restarted (non-range) response repeats
    let failure = null; // why the last resume request brought no response
    let failures = 0;
    for (;;) {
      const before = this.#received;
      const reader = response?.body?.getReader();
      let finished = !reader;
      try {
        while (reader) {
          const next = await reader.read();
          if (next.done) {
            finished = true;
            break;
          }
          let chunk = next.value;
          if (skip > 0) {
            const dropped = Math.min(skip, chunk.byteLength);
            skip -= dropped;
            chunk = chunk.subarray(dropped);
            if (chunk.byteLength === 0) continue;
          }
          this.#received += chunk.byteLength;
          if (this.size !== undefined && this.#received > this.size) {
            throw this.#failed(`the server sent more than the ${this.size} bytes it announced`);
          }
          yield chunk;
        }
      } catch (error) {
        if (this.#signal?.aborted) throw abortError(this.#signal.reason);
        if (error instanceof LlamaWgpuError) throw error;
        failure = error;
      } finally {
        if (reader && !finished) await reader.cancel().catch(() => {});
        reader?.releaseLock();
      }
      if (!failure && (this.size === undefined || this.#received === this.size)) return;
      failure ??= new Error(`the connection closed after ${this.#received} of ${this.size} bytes`);
      if (this.size === undefined) {
        throw this.#failed(`${failure.message ?? failure} (the size is unknown, so the download cannot resume)`, failure);
      }
      failures = this.#received > before ? 1 : failures + 1;
      if (failures > RETRIES) throw this.#failed(`${failure.message ?? failure}; gave up after ${RETRIES} attempts to resume`, failure);
      await pause(FIRST_PAUSE_MS * 2 ** (failures - 1), this.#signal);
      ({ response, skip, failure } = await this.#resume());
    }
  }

  // The rest of the file from `received` on: a 206 that starts there (the same file, by its
  // ETag when the server gives one), or a 200 with the whole file again.
  async #resume() {
    let response;
    try {
      response = await fetchModel(this.#url, this.#signal, { range: `bytes=${this.#received}-` });
    } catch (error) {
      if (error.status === 416) throw this.#failed("the server has no bytes past those (it announced more than it has)");
      // Still offline, a server error (5xx), or a timeout (408, 429): worth another attempt.
      if (error.code === FETCH_FAILED && !(error.status >= 400 && error.status < 500 && error.status !== 408 && error.status !== 429)) {
        return { response: null, skip: 0, failure: error };
      }
      throw error;
    }
    const etag = response.headers.get("etag");
    if (this.#etag && etag && etag !== this.#etag) {
      response.body?.cancel().catch(() => {});
      throw this.#failed("the file changed on the server while it downloaded (a different ETag)");
    }
    if (response.status === 200) {
      if (bodyLength(response) !== this.size) {
        response.body?.cancel().catch(() => {});
        throw this.#failed(`the file changed on the server while it downloaded (now ${bodyLength(response)} bytes, was ${this.size})`);
      }
      return { response, skip: this.#received, failure: null };
    }
    const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(response.headers.get("content-range") ?? "");
    if (response.status === 206 && range && range[3] !== "*" && Number(range[3]) !== this.size) {
      response.body?.cancel().catch(() => {});
      throw this.#failed(`the server's sizes disagree (its Content-Length said ${this.size} bytes, its Content-Range says ${range[3]})`);
    }
    if (response.status !== 206 || !range || Number(range[1]) !== this.#received) {
      response.body?.cancel().catch(() => {});
      throw this.#failed(`resuming at byte ${this.#received} got HTTP ${response.status} ${response.headers.get("content-range") ?? ""}`.trim());
    }
    return { response, skip: 0, failure: null };
  }

  #failed(reason, cause) {
    const where = this.size === undefined ? `${this.#received} bytes` : `${this.#received} of ${this.size} bytes`;
    return new LlamaWgpuError(FETCH_FAILED, `downloading ${this.#url} failed at ${where}: ${reason}`, cause ? { cause } : undefined);
  }
}

function pause(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal.reason));
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", stop);
    };
    const stop = () => {
      done();
      reject(abortError(signal.reason));
    };
    const timer = setTimeout(() => {
      done();
      resolve();
    }, ms);
    signal?.addEventListener("abort", stop, { once: true });
  });
}
