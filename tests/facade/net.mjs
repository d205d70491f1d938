// In-memory fetch and Cache API for Node tests.
export const server = new Map(); // url -> {bytes, status?, headers?, failAfter?, chunk?}
export const stats = { fetches: [], ranges: [], puts: 0, sent: 0 };
export function installFetch() {
  globalThis.fetch = async (url, { signal, headers: asked = {} } = {}) => {
    stats.fetches.push(String(url));
    if (signal?.aborted) throw new DOMException("aborted", "AbortError");
    const entry = server.get(String(url));
    if (!entry) throw new TypeError("Failed to fetch");
    // failAfter: every response breaks at that byte of the file (a dead link); dropEvery: each
    // response breaks after sending that many bytes (a flaky one that resuming gets through);
    // (the first `drops` responses only, when given); ranges: false for a server that ignores
    // Range and sends the whole file again; announce: a Content-Length that lies.
    const { bytes, status = 200, failAfter, chunk = 65536, lengthHeader = true, ranges = true, etag, announce } = entry;
    const dropEvery = (entry.drops ?? Infinity) > 0 ? entry.dropEvery : undefined;
    if (entry.drops !== undefined) entry.drops--;
    let offset = 0;
    let code = status;
    const headers = lengthHeader ? { "content-length": String(announce ?? bytes.length) } : {};
    if (etag) headers.etag = typeof etag === "function" ? etag() : etag;
    const range = /^bytes=(\d+)-$/.exec(asked.range ?? "");
    if (range) stats.ranges.push(Number(range[1]));
    if (range && ranges && status === 200) {
      offset = Number(range[1]);
      if (offset >= bytes.length) return new Response(null, { status: 416, headers: { "content-range": `bytes */${bytes.length}` } });
      code = 206;
      headers["content-range"] = `bytes ${offset}-${bytes.length - 1}/${bytes.length}`;
      headers["content-length"] = String(bytes.length - offset);
    }
    const start = offset;
    const body = new ReadableStream({
      async pull(c) {
        await new Promise((r) => setTimeout(r, 0));
        if (signal?.aborted) { c.error(new DOMException("The operation was aborted.", "AbortError")); return; }
        if (failAfter !== undefined && offset >= failAfter) { c.error(new TypeError("network error")); return; }
        if (dropEvery !== undefined && offset - start >= dropEvery) { c.error(new TypeError("network error")); return; }
        if (offset >= bytes.length) { c.close(); return; }
        const end = Math.min(offset + chunk, bytes.length, dropEvery === undefined ? Infinity : start + dropEvery);
        c.enqueue(bytes.slice(offset, end)); stats.sent += end - offset; offset = end;
      },
    });
    return new Response(status === 204 ? null : body, { status: code, statusText: status === 404 ? "Not Found" : "", headers });
  };
}
export const store = new Map();
export function installCaches({ quota = Infinity } = {}) {
  const cache = {
    async match(req) { const u = typeof req === "string" ? req : req.url; const e = store.get(u); return e && new Response(e.bytes, { headers: e.headers }); },
    async put(req, res) {
      stats.puts++;
      const u = typeof req === "string" ? req : req.url;
      const reader = res.body.getReader(); const parts = []; let n = 0;
      for (;;) { const { done, value } = await reader.read(); if (done) break; parts.push(value); n += value.length;
        if (n > quota) { await reader.cancel(); throw new DOMException("quota", "QuotaExceededError"); } }
      const bytes = new Uint8Array(n); let o = 0; for (const p of parts) { bytes.set(p, o); o += p.length; }
      store.set(u, { bytes, headers: Object.fromEntries(res.headers) });
    },
    async delete(req) { return store.delete(typeof req === "string" ? req : req.url); },
    async keys() { return [...store.keys()].map((u) => new Request(u)); },
  };
  globalThis.caches = { open: async (name) => { if (name !== "llama-wgpu-models-v1") throw new Error("name"); return cache; } };
}
