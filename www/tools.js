// The demo's "Tools" setting: two example functions the model may call, run here in the page, and
// their results sent back as `role: "tool"` messages (OpenAI's round trip). A calculator that
// parses arithmetic itself (no eval) and a clock.

export const DEMO_TOOLS = [
  {
    type: "function",
    function: {
      name: "calculate",
      description: "Evaluate an arithmetic expression with + - * / ^ and parentheses, e.g. (17 + 25) * 3",
      parameters: {
        type: "object",
        properties: { expression: { type: "string", maxLength: 80 } },
        required: ["expression"],
      },
    },
  },
  {
    type: "function",
    function: {
      name: "current_time",
      description: "The current local date and time",
      parameters: { type: "object", properties: {} },
    },
  },
];

// Rounds of calls answered in one chat turn before the model must reply in text.
const MAX_ROUNDS = 3;

// One chat turn, streamed: text through onText, and when the reply is tool calls, each is run
// here, shown through onToolCalls, and the model asked again with the results. Resolves to the
// messages the rounds of calls added (assistant calls and tool results), to keep in the history.
export async function chatTurn(engine, request, { onText, onUsage, onFinish, onToolCalls }) {
  const added = [];
  for (let round = 0; ; round++) {
    const calls = [];
    let text = "";
    let finish = null;
    for await (const chunk of await engine.chat.completions.create(request)) {
      const delta = chunk?.choices?.[0]?.delta;
      if (delta?.content) {
        text += delta.content;
        onText(delta.content);
      }
      for (const { index, ...call } of delta?.tool_calls ?? []) calls[index] = call;
      if (chunk?.usage) onUsage(chunk.usage);
      finish = chunk?.choices?.[0]?.finish_reason ?? finish;
    }
    onFinish(finish);
    if (finish !== "tool_calls" || round === MAX_ROUNDS) return { added };
    const results = calls.map(runToolCall);
    onToolCalls(calls, results);
    const turn = [{ role: "assistant", content: text || null, tool_calls: calls }, ...results];
    added.push(...turn);
    request = { ...request, messages: [...request.messages, ...turn] };
  }
}

// A note per call for the reply's bubble: the call and what it returned.
export function toolCallNotes(calls, results) {
  return calls.map((call, i) => {
    const note = document.createElement("div");
    note.className = "msg-note";
    note.dataset.testid = "tool-call";
    note.textContent = `${call.function.name}(${call.function.arguments}) → ${results[i].content}`;
    return note;
  });
}

// Run one call; the result is the tool message's content (JSON text, an error included: the
// model reads it and can say what went wrong).
export function runToolCall(call) {
  let result;
  try {
    const args = JSON.parse(call.function.arguments || "{}");
    if (call.function.name === "calculate") result = { value: calculate(String(args.expression ?? "")) };
    else if (call.function.name === "current_time") result = { time: new Date().toString() };
    else result = { error: `no function ${call.function.name}` };
  } catch (e) {
    result = { error: e.message };
  }
  return { role: "tool", tool_call_id: call.id, name: call.function.name, content: JSON.stringify(result) };
}

// Recursive descent over + - * / ^, unary minus and parentheses.
export function calculate(text) {
  const tokens = text.match(/\d+(?:\.\d+)?|[-+*/^()]|\S/g) ?? [];
  let i = 0;
  const peek = () => tokens[i];
  const take = (t) => (tokens[i] === t ? (i++, true) : false);
  const primary = () => {
    if (take("-")) return -primary();
    if (take("(")) {
      const v = sum();
      if (!take(")")) throw new Error("missing )");
      return v;
    }
    const t = tokens[i++];
    if (t === undefined || !/^\d/.test(t)) throw new Error(`unexpected ${t ?? "end"}`);
    return Number(t);
  };
  const power = () => {
    const base = primary();
    return take("^") ? base ** power() : base;
  };
  const product = () => {
    let v = power();
    for (;;) {
      if (take("*")) v *= power();
      else if (take("/")) v /= power();
      else return v;
    }
  };
  const sum = () => {
    let v = product();
    for (;;) {
      if (take("+")) v += product();
      else if (take("-")) v -= product();
      else return v;
    }
  };
  const value = sum();
  if (peek() !== undefined) throw new Error(`unexpected ${peek()}`);
  return value;
}
