// Browser globals the facade expects, for Node.
globalThis.navigator ??= {};
Object.defineProperty(globalThis, "navigator", { value: { gpu: { requestAdapter: async () => (globalThis.__noGpuAdapter ? null : {}) } }, configurable: true, writable: true });
export function gguf(size, magic = "GGUF") {
  const b = new Uint8Array(size);
  b.set([...magic].map((c) => c.charCodeAt(0)));
  for (let i = 4; i < size; i++) b[i] = i & 255;
  return b;
}
export async function collect(it) { const out = []; for await (const x of it) out.push(x); return out; }
