// In-memory fetch and Cache API for Node tests.
export const server = new Map(); // url -> {bytes, status?, headers?, failAfter?, chunk?}
export const stats = { fetches: [], puts: 0 };
export function installFetch() {
  globalThis.fetch = async (url, { signal } = {}) => {
    stats.fetches.push(String(url));
    if (signal?.aborted) throw new DOMException("aborted", "AbortError");
    const entry = server.get(String(url));
    if (!entry) throw new TypeError("Failed to fetch");
    const { bytes, status = 200, failAfter, chunk = 65536, lengthHeader = true } = entry;
    let offset = 0;
    const body = new ReadableStream({
      async pull(c) {
        await new Promise((r) => setTimeout(r, 0));
        if (signal?.aborted) { c.error(new DOMException("The operation was aborted.", "AbortError")); return; }
        if (failAfter !== undefined && offset >= failAfter) { c.error(new TypeError("network error")); return; }
        if (offset >= bytes.length) { c.close(); return; }
        c.enqueue(bytes.slice(offset, offset + chunk)); offset += chunk;
      },
    });
    const headers = lengthHeader ? { "content-length": String(bytes.length) } : {};
    return new Response(status === 204 ? null : body, { status, statusText: status === 404 ? "Not Found" : "", headers });
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
