// A small program against the package's types, compiled by `tsc --noEmit --strict` in
// ./build.sh test (never run): it uses each part of the API the way the README shows, so a d.ts
// that drifts from the documented shapes fails the build. The @ts-expect-error lines check that
// the wrong shapes (the old snake_case result names among them) are refused.
import {
  createEngine,
  createWorkerEngine,
  hasWebGPU,
  listCachedModels,
  LlamaWgpuError,
  type Adapter,
  type ChatCompletion,
  type ChatCompletionChunk,
  type CreateEmbeddingResponse,
  type EngineStats,
  type FinishReason,
  type GenerationResult,
  type LogprobEntry,
  type Tool,
} from "llama-wgpu";

export async function main(): Promise<string[]> {
  const lines: string[] = [];
  const engine = await createEngine({
    model: "/models/default.gguf",
    device: (await hasWebGPU()) ? "auto" : "cpu",
    contextLength: 2048,
    maxGpuBytes: 1_200_000_000,
    onProgress: ({ phase, loaded, total, cacheError }) => lines.push(`${phase} ${loaded}/${total ?? "?"}${cacheError ? ` (${cacheError})` : ""}`),
    onDeviceLost: (error) => lines.push(`${error.code}: ${error.message}`),
  });

  // generate(): text pieces, then the GenerationResult as the iterator's return value.
  const controller = new AbortController();
  const it = engine.generate("Once upon a time", { maxTokens: 32, temperature: 0, stop: ["\n"], logitBias: { "2": -100 }, signal: controller.signal });
  let next = await it.next();
  let text = "";
  while (!next.done) {
    text += next.value;
    next = await it.next();
  }
  const result: GenerationResult = next.value;
  const finish: "stop" | "length" = result.finishReason;
  lines.push(`${text} (${finish}, ${result.promptTokens} + ${result.completionTokens} tokens, ${result.cachedPromptTokens} cached)`);
  lines.push(`${result.prefillTokensPerS.toFixed(1)} / ${result.decodeTokensPerS.toFixed(1)} tok/s, first after ${result.timeToFirstTokenS} s (${result.prefillS} + ${result.decodeS} s)`);
  lines.push(`${result.text.length} chars, ${result.toolCalls.length} calls`);
  // @ts-expect-error the result is camelCase
  void result.finish_reason;
  for await (const piece of engine.generate("Hi", { responseFormat: { type: "regex", regex: "[a-z]+" } })) lines.push(piece);
  const entries: LogprobEntry[] = result.logprobs;
  for (const e of entries) lines.push(`${e.token} ${e.logprob} [${e.bytes.join(",")}] ${e.top_logprobs.map((t) => `${t.token}:${t.logprob}`).join(" ")}`);
  const withLogprobs = engine.generate("Hi", { maxTokens: 2, logprobs: true, topLogprobs: 5 });
  for await (const piece of withLogprobs) lines.push(piece);

  // An aborted generation throws an AbortError with code "ABORTED".
  try {
    controller.abort();
    for await (const piece of engine.generate("x", { signal: controller.signal })) lines.push(piece);
  } catch (error) {
    if (error instanceof LlamaWgpuError && error.code === "ABORTED" && error.name === "AbortError") lines.push("aborted");
    else throw error;
  }

  // chat.completions.create: OpenAI's objects, snake_case.
  const schema = { type: "object", properties: { name: { type: "string" }, age: { type: "integer" } }, required: ["name", "age"] };
  const reply: ChatCompletion = await engine.chat.completions.create({
    messages: [{ role: "system", content: "Reply in JSON." }, { role: "user", content: "Alice, 30" }],
    max_tokens: 64,
    temperature: 0,
    response_format: { type: "json_schema", json_schema: { name: "person", schema, strict: true } },
  });
  const choice = reply.choices[0];
  if (choice) lines.push(`${choice.message.content ?? ""} ${choice.finish_reason} ${reply.usage.prompt_tokens_details.cached_tokens}`);
  const scored = await engine.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], logprobs: true, top_logprobs: 3 });
  for (const e of scored.choices[0]?.logprobs?.content ?? []) lines.push(`${e.token} ${Math.exp(e.logprob)}`);

  const tools: Tool[] = [{ type: "function", function: { name: "get_weather", description: "Weather in a city", parameters: { type: "object", properties: { city: { type: "string" } } } } }];
  const stream: AsyncGenerator<ChatCompletionChunk, void, undefined> = await engine.chat.completions.create({
    messages: [{ role: "user", content: [{ type: "text", text: "Weather in Paris?" }] }],
    stream: true,
    tools,
    tool_choice: "auto",
    parallel_tool_calls: false,
    model: "ignored: OpenAI parameters are accepted",
  });
  for await (const chunk of stream) {
    const delta = chunk.choices[0]?.delta;
    for (const call of delta?.tool_calls ?? []) lines.push(`${call.index}: ${call.function.name}(${call.function.arguments})`);
    if (delta?.content) lines.push(delta.content);
    if (chunk.usage) lines.push(`${chunk.usage.total_tokens} tokens`);
  }

  // stats(): ours, camelCase; the last generation's figures or null.
  const stats: EngineStats = engine.stats();
  const last: FinishReason | null = stats.finishReason;
  lines.push(`${stats.device} (${stats.deviceReason}) ${stats.adapter} f16 ${stats.features.shaderF16}: ${stats.model.name ?? stats.model.architecture}, ${stats.model.nParams} params`);
  lines.push(`${stats.decodeTokensPerS ?? "-"} tok/s, ${stats.completionTokens ?? 0} tokens, ${last ?? "no generation"}, ${stats.loadSeconds} s`);
  if (stats.contextReduced) lines.push(`context ${stats.contextLength} of ${stats.contextReduced.requested}: ${stats.contextReduced.reason}`);
  // @ts-expect-error stats are camelCase
  void stats.decode_tokens_per_s;

  // Errors: one class, branch on code.
  try {
    // @ts-expect-error generate() options are camelCase (unknown keys are INVALID_ARGUMENT)
    engine.generate("x", { max_tokens: 5 });
  } catch (error) {
    if (error instanceof LlamaWgpuError && error.code === "INVALID_ARGUMENT") lines.push(error.message);
  }
  lines.push(String(await engine.countTokens("hello")));
  if (engine.stats().state === "lost") await engine.reload({ onProgress: (e) => lines.push(e.phase) });
  await engine.resetChat();
  await engine.unload();

  const worker = await createWorkerEngine({ model: new Uint8Array(8), device: "cpu", threads: 2, cache: false });
  await worker.unload();
  for (const { url, bytes } of await listCachedModels()) lines.push(`${url} ${bytes}`);
  // embeddings.create: OpenAI's list of unit vectors; base64 gives strings.
  const vectors: CreateEmbeddingResponse = await engine.embeddings.create({ input: ["a note", "another"], dimensions: 256 });
  const first: number[] = vectors.data[0].embedding;
  lines.push(`${vectors.model} ${first.length} ${vectors.usage.prompt_tokens} ${vectors.data[1].index}`);
  const packed = await engine.embeddings.create({ input: [[1, 2, 3]], encoding_format: "base64" });
  const bytes: string = packed.data[0].embedding;
  lines.push(bytes);
  // @ts-expect-error encoding_format is "float" or "base64"
  await engine.embeddings.create({ input: "x", encoding_format: "binary" });
  // @ts-expect-error OpenAI's snake_case, not camelCase
  await engine.embeddings.create({ input: "x", encodingFormat: "base64" });
  // LoRA adapters: load (applied at once), switch, unload.
  const adapter: Adapter = await engine.loadAdapter("/adapters/style.gguf", { scale: 0.5, onProgress: (e) => lines.push(e.phase) });
  lines.push(`${adapter.name ?? ""} rank ${adapter.rank} alpha ${adapter.alpha} ${adapter.tensors} ${adapter.bytes}`);
  await engine.setAdapters([{ adapter, scale: 1 }, { adapter }]);
  const active: { adapter: Adapter; scale: number }[] = engine.adapters();
  lines.push(String(active.length));
  await engine.setAdapters([]);
  await engine.unloadAdapter(adapter);
  // @ts-expect-error the scale is a number
  await engine.loadAdapter("/a.gguf", { scale: "1" });
  return lines;
}
