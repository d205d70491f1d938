// dst = src, one vec4<u32> per invocation: the practical memory-bandwidth ceiling the kernel
// benchmark (src/gpu/kernel_bench.rs) compares every matvec against. Large arrays take a 2-D
// grid of workgroups of WG invocations (kernel_bench.rs: `COPY_WORKGROUP`).

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size({{WG}})
fn main(
    @builtin(global_invocation_id) id: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = id.y * groups.x * {{WG}}u + id.x;
    if (i < arrayLength(&src)) {
        dst[i] = src[i];
    }
}
