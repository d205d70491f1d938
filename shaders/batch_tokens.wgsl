// The batch kernels (matmul, embedding gather) are bound once, at load, for a capacity of
// params.n_tokens tokens; the tokens of each step come from the step uniform, so a prefill
// batch of any size (or a decode step's one token) reuses the same ops.

struct Step { pos: u32, n_tokens: u32, sample_step: u32, pad: u32 }
@group(0) @binding(5) var<uniform> step: Step;

fn batch_tokens() -> u32 {
    return min(step.n_tokens, params.n_tokens);
}
