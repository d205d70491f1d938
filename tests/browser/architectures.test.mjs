// The other architectures in the demo (www/, so through the npm package) in headless Chromium,
// on the GPU path (`?device=gpu`: WebGPU on SwiftShader, which device "auto" would leave for the
// CPU engine since it is a fallback adapter):
// Qwen2.5-Coder-0.5B-Instruct (qwen2: QKV biases, its own Jinja chat template) and Gemma-3-270M
// (gemma3: q/k norms, post-norms, GELU, sliding windows, no chat template of its own), both
// Q4_K_M as people download them. Each loads by URL, completes a raw prompt and answers a chat
// message greedily; the text must be what the native CLI's f32 CPU reference (`--device reference`)
// writes for the same prompt and the same messages (the demo's system prompt included), and the
// model panel must name the architecture and the chat format used.
//
//   node --test tests/browser/architectures.test.mjs
//
// Needs pkg/ built (./build.sh build), the native CLI built (cargo build --release), the two
// models and playwright-core in $LLAMA_WGPU_CACHE (./build.sh setup), and /usr/bin/chromium.
//
// Why exact text: both sides compute in f32 from the same quantized weights (the GPU kernels
// do; the CPU engine quantizes activations, so this argument is not made for it here); they differ only in
// summation order and SwiftShader's exp/rsqrt (logits within ~4e-3 natively, tests/
// real_arch_models.rs), while the greedy choices here win by far more. A wrong weight, norm or
// template changes the text within a token or two. The continuation is kept short (8 tokens)
// so that a near-tie late in a long continuation cannot decide the test.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { CACHE, CLI, launchBrowser, missingPrerequisites, nativeGreedy, startServer, stepRunner } from "./helpers.mjs";

const MINUTE = 60_000;
const TOKENS = 8;
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
const reference = (model, args) => nativeGreedy({ model, device: "reference", maxTokens: TOKENS, args });

describe("every architecture in the demo, through the package, in Chromium", { timeout: 20 * MINUTE }, () => {
  let server;
  const browser = {};
  const step = stepRunner(browser, "architectures");
  const tid = (id) => `[data-testid="${id}"]`;

  before(async () => {
    if (missing.length) throw new Error(`missing prerequisites:\n  ${missing.join("\n  ")}`);
    server = await startServer(MODELS.map((m) => ["--serve", `/models/${m.file}=${m.path}`]).flat());
    Object.assign(browser, await launchBrowser());
  });

  after(async () => {
    await browser.close?.();
    await server?.stop();
  });

  // The demo's counters (body data-*), which it bumps when a load or a generation ends.
  const counter = (name) => browser.page.evaluate((n) => Number(document.body.dataset[n] || 0), name);
  // `fresh`: the action opens a new page, whose counters start at 0.
  const afterNext = async (name, action, { fresh = false } = {}) => {
    const before = fresh ? 0 : await counter(name);
    await action();
    await browser.page.waitForFunction(([n, v]) => Number(document.body.dataset[n] || 0) > v, [name, before], { timeout: 5 * MINUTE, polling: 250 });
    const error = browser.page.locator(tid("error-box"));
    if (await error.isVisible()) throw new Error(`the demo showed an error: ${await error.innerText()}`);
  };
  const settings = async () => {
    const page = browser.page;
    await page.fill(tid("temperature"), "0");
    await page.fill(tid("max-tokens"), String(TOKENS));
    await page.fill(tid("seed"), "");
  };

  for (const m of MODELS) {
    it(`${m.name}: ${m.file} completes and chats in the demo as the CPU reference does`, { timeout: 10 * MINUTE }, () =>
      step(m.name, async () => {
        const page = browser.page;
        await afterNext("loads", () => page.goto(`${server.url}?device=gpu&model=${encodeURIComponent(`/models/${m.file}`)}`), {
          fresh: true,
        });
        const info = await page.locator(tid("model-info")).innerText();
        assert.match(await page.locator(tid("model-engine")).innerText(), /^GPU \(/, info);
        assert.match(info, new RegExp(`Architecture\\s+${m.name}`), info);
        assert.match(info, m.template, info);

        await page.click(tid("mode-completion"));
        await settings();
        await page.fill(tid("completion-prompt"), m.prompt);
        await afterNext("generations", () => page.click(tid("completion-generate")));
        const raw = await page.locator(tid("completion-output")).textContent();

        await page.click(tid("mode-chat"));
        await settings();
        const system = await page.locator(tid("system-prompt")).inputValue();
        await page.fill(tid("chat-input"), m.chat);
        await afterNext("generations", () => page.press(tid("chat-input"), "Enter"));
        // The reply's text as the model wrote it: the bubble shows it rendered as markdown and
        // keeps the source in data-markdown (www/markdown.js).
        const bubble = page.locator(tid("msg-assistant")).last().locator(".msg-text");
        const chat = (await bubble.getAttribute("data-markdown")) ?? (await bubble.textContent());
        console.log(`${m.name}: raw ${JSON.stringify(raw)}, chat ${JSON.stringify(chat)}`);

        const wantRaw = await reference(m.path, ["--prompt", m.prompt]);
        const wantChat = await reference(m.path, ["--chat", m.chat, ...(system.trim() ? ["--system", system.trim()] : [])]);
        assert.ok(wantRaw.length > 0 && wantChat.length > 0, "the CPU reference wrote text");
        assert.equal(raw, wantRaw, `${m.name}: the completion differs from the CPU reference`);
        assert.equal(chat, wantChat, `${m.name}: the chat reply differs from the CPU reference`);
      }),
    );
  }
});
