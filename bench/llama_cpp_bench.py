#!/usr/bin/env python3
"""llama.cpp natively on the same GGUF, with the same prompt and generation lengths as
`llama-wgpu bench` (optional: `LLAMA_WGPU_BENCH_LLAMA_CPP=1 ./build.sh bench`; needs PyPI's
llama-cpp-python, which builds llama.cpp from source). Prints one JSON object in the shape of
`llama-wgpu bench --json`, plus "engine": "llama.cpp".

Prefill: the prompt evaluated in one call (llama.cpp batches it). Decode: greedy tokens one
eval at a time, the argmax of the last logits chosen in Python (cheap next to a forward pass).
"""
import argparse
import json
import os
import statistics
import time

import numpy as np
from llama_cpp import Llama


def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--gen-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    a = p.parse_args()

    start = time.perf_counter()
    # n_batch = n_ctx: the whole prompt in one batch, and llama-cpp-python sizes its logits
    # table by n_batch when logits_all is off (the last row of each eval is all it keeps).
    n_ctx = a.prompt_tokens + a.gen_tokens + 8
    llm = Llama(model_path=a.model, n_ctx=n_ctx, n_batch=n_ctx, n_threads=a.threads,
                logits_all=False, verbose=False)
    load_s = time.perf_counter() - start

    # The same kind of prompt as `llama-wgpu bench`: ordinary prose, repeated and cut.
    unit = llm.tokenize(b"The quick brown fox jumps over the lazy dog while the river runs past "
                        b"the old mill. ", add_bos=False)
    prompt = (unit * (a.prompt_tokens // len(unit) + 1))[: a.prompt_tokens]

    prefill, decode, ttft = [], [], []
    for _ in range(a.repeats):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        t1 = time.perf_counter()
        prefill.append(len(prompt) / (t1 - t0))
        ttft.append(t1 - t0)
        for _ in range(a.gen_tokens - 1):
            llm.eval([token])
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        decode.append((a.gen_tokens - 1) / (time.perf_counter() - t1))

    print(json.dumps({
        "engine": "llama.cpp",
        "adapter": f"llama.cpp CPU ({a.threads} threads)",
        "prompt_tokens": a.prompt_tokens,
        "gen_tokens": a.gen_tokens,
        "repeats": a.repeats,
        "prefill_tokens_per_s": spread(prefill),
        "decode_tokens_per_s": spread(decode),
        "load_s": load_s,
        "ttft_s": statistics.median(ttft),
    }))


if __name__ == "__main__":
    main()
