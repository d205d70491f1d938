// The first (key, id) of a workgroup's `b`s in the CPU's order, for every invocation (in
// sample_keys.wgsl and sample_pick.wgsl): GROUPS invocations reduce WG / GROUPS each, then all
// reduce the GROUPS results (two barriers, no loop around them).
var<workgroup> bests: array<vec2<u32>, WG>;
var<workgroup> group_bests: array<vec2<u32>, GROUPS>;

fn workgroup_best(lid: u32, b: vec2<u32>) -> vec2<u32> {
    bests[lid] = b;
    workgroupBarrier();
    if (lid < GROUPS) {
        var g = vec2<u32>(0u, NO_ID);
        for (var j = lid * (WG / GROUPS); j < (lid + 1u) * (WG / GROUPS); j++) {
            if (before(bests[j], g)) { g = bests[j]; }
        }
        group_bests[lid] = g;
    }
    workgroupBarrier();
    var top = vec2<u32>(0u, NO_ID);
    for (var j = 0u; j < GROUPS; j++) {
        if (before(group_bests[j], top)) { top = group_bests[j]; }
    }
    return top;
}
