// The other architectures through the npm package in headless Chromium (WebGPU on SwiftShader):
// Qwen2.5-Coder-0.5B-Instruct (qwen2: QKV biases, its own Jinja chat template) and Gemma-3-270M
// (gemma3: q/k norms, post-norms, GELU, sliding windows, no chat template of its own), both
// Q4_K_M as people download them. Each generates greedily from a raw prompt and from a chat
// message; the text must be what the native CLI's f32 CPU reference (`--device cpu`) writes for
// the same prompt and chat message.
//
//   node --test tests/browser/architectures.test.mjs
//
// Needs pkg/ built (./build.sh build), the native CLI built (cargo build --release), the two
// models and playwright-core in $LLAMA_WGPU_CACHE (./build.sh setup), and /usr/bin/chromium.
//
// Why exact text: both sides compute in f32 from the same quantized weights; they differ only in
// summation order and SwiftShader's exp/rsqrt (logits within ~4e-3 natively, tests/
// real_arch_models.rs), while the greedy choices here win by far more. A wrong weight, norm or
// template changes the text within a token or two. The continuation is kept short (8 tokens)
// so that a near-tie late in a long continuation cannot decide the test.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { CACHE, REPO, launchBrowser, missingPrerequisites, startServer, stepRunner } from "./helpers.mjs";

const MINUTE = 60_000;
const TOKENS = 8;
const CLI = path.join(process.env.CARGO_TARGET_DIR || path.join(CACHE, "target"), "release", "llama-wgpu");
const MODELS = [
  // template: how ModelInfo.chatTemplate must describe the chat format used.
  { name: "qwen2", file: "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf", prompt: "def fibonacci(n):", chat: "Name a prime number.", template: /model's own/i },
  { name: "gemma3", file: "gemma-3-270m.Q4_K_M.gguf", prompt: "The capital of France is", chat: "What colour is the sky?", template: /built-in `gemma`/ },
].map((m) => ({ ...m, path: path.join(CACHE, "models", m.file) }));

const missing = [
  ...missingPrerequisites({ model: false }),
  ...(fs.existsSync(CLI) ? [] : [`${CLI} (cargo build --release)`]),
  ...MODELS.filter((m) => !fs.existsSync(m.path)).map((m) => `${m.path} (run ./build.sh setup)`),
];
if (missing.length) console.error(`missing prerequisites, every test will fail:\n  ${missing.join("\n  ")}`);

// The CPU reference's greedy output: `generate --json` on the f32 decoder.
function reference(model, args) {
  return new Promise((resolve, reject) => {
    const all = ["generate", "--model", model, "--device", "cpu", "--temperature", "0", "--max-tokens", String(TOKENS), "--json", ...args];
    execFile(CLI, all, { timeout: 5 * MINUTE, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${CLI} ${all.join(" ")}: ${err.message}\n${stderr}`));
      resolve(JSON.parse(stdout).text);
    });
  });
}

describe("every architecture through the package in Chromium", { timeout: 20 * MINUTE }, () => {
  let server;
  const browser = {};
  const step = stepRunner(browser, "architectures");

  before(async () => {
    if (missing.length) throw new Error(`missing prerequisites:\n  ${missing.join("\n  ")}`);
    server = await startServer(MODELS.map((m) => ["--serve", `/models/${m.file}=${m.path}`]).flat());
    Object.assign(browser, await launchBrowser());
    // Any page of the server gives the origin the package is imported from.
    await browser.page.goto(new URL("/pkg/index.js", server.url).href);
  });

  after(async () => {
    await browser.close?.();
    await server?.stop();
  });

  for (const m of MODELS) {
    it(`${m.name}: ${m.file} generates and chats as the CPU reference does`, { timeout: 8 * MINUTE }, () =>
      step(m.name, async () => {
        const [wantRaw, wantChat] = [await reference(m.path, ["--prompt", m.prompt]), await reference(m.path, ["--chat", m.chat])];
        const got = await browser.page.evaluate(
          async ({ url, prompt, chat, tokens }) => {
            const { createEngine } = await import("/pkg/index.js");
            const engine = await createEngine({ model: url });
            try {
              let raw = "";
              for await (const piece of engine.generate(prompt, { maxTokens: tokens, temperature: 0 })) raw += piece;
              await engine.resetChat();
              const reply = await engine.chat.completions.create({
                messages: [{ role: "user", content: chat }],
                max_tokens: tokens,
                temperature: 0,
              });
              return { raw, chat: reply.choices[0].message.content, info: engine.stats().model };
            } finally {
              await engine.unload();
            }
          },
          { url: `/models/${m.file}`, prompt: m.prompt, chat: m.chat, tokens: TOKENS },
        );
        console.log(`${m.name}: raw ${JSON.stringify(got.raw)}, chat ${JSON.stringify(got.chat)}`);
        assert.equal(got.info.architecture, m.name);
        assert.match(got.info.chatTemplate, m.template);
        assert.ok(wantRaw.length > 0 && wantChat.length > 0, "the CPU reference wrote text");
        assert.equal(got.raw, wantRaw, `${m.name}: the raw continuation differs from the CPU reference`);
        assert.equal(got.chat, wantChat, `${m.name}: the chat reply differs from the CPU reference`);
      }),
    );
  }
});
