// y[r] = dot(W row r, x) on adapters with subgroups: one subgroup computes a group of ROWS rows,
// its invocations taking neighbouring units (coalesced weight loads; each x unit serves ROWS
// rows), and its partial sums meet in one subgroupAdd: no workgroup memory, no barrier.
//
// WGSL says nothing of how a workgroup's invocations are laid out in subgroups, nor fixes the
// subgroup size (4 to 128, and it may differ between dispatches on some GPUs). So nothing here
// derives a row from local_invocation_index: each subgroup's first invocation takes the next
// slot from a workgroup counter, and the subgroup computes row group (workgroup, slot). A
// workgroup thus covers WORKGROUP / subgroup_size row groups; the host sizes the dispatch for
// the adapter's largest subgroup size (the fewest row groups per workgroup), and workgroups
// past the rows (when the subgroups are smaller) return at once.

const WORKGROUP: u32 = {{WORKGROUP}}u;
const ROWS: u32 = {{ROWS}}u;

var<workgroup> next_slot: atomic<u32>;

@compute @workgroup_size(WORKGROUP)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) lanes: u32,
) {
    var claimed = 0u;
    if (lane == 0u) {
        claimed = atomicAdd(&next_slot, 1u);
    }
    let slot = subgroupBroadcastFirst(claimed);
    let first = ((wg.y * groups.x + wg.x) * (WORKGROUP / lanes) + slot) * ROWS;
    let p = row_group_partial(first, lane, lanes);
    // Outside every branch: all invocations of the subgroup take part.
    let total = finish(subgroupAdd(p.acc), subgroupAdd(p.ss));
    if (lane == 0u) {
        write_rows(first, total);
    }
}
