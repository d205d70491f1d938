// The worker entry ("llama-wgpu/worker") exports nothing: it serves createWorkerEngine's protocol.
export {};
