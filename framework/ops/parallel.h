/* Fixed-slice parallel loops for the memory-bound ops (batch-norm, pooling, ...).
 *
 *     static void rows(void *arg, int slice, int64_t lo, int64_t hi) { ... items [lo, hi) ... }
 *     ops_parallel_for(rows, &job, n_items, n_items * floats_per_item);
 *
 * [0, n) is cut into OPS_THREADS slices that depend on n alone, never on the machine or the
 * scheduling, and each slice must write only what its own items own: an op's result is then
 * bitwise the same however (or whether) its slices run side by side. Slice 0 runs on the
 * calling thread; each other slice runs on a thread started for it and joined before the call
 * returns, so nothing sits spinning between ops while OpenBLAS wants the cores (a waiting
 * OpenMP team made the step several times slower on two shared cores). Starting a thread costs
 * tens of microseconds, so loops touching fewer than OPS_PAR_MIN floats stay on the caller.
 */
#ifndef INVAR_OPS_PARALLEL_H
#define INVAR_OPS_PARALLEL_H

#include <stdint.h>

#include "graph_internal.h"

#define OPS_THREADS 2
#define OPS_PAR_MIN ((int64_t)1 << 17)

typedef void (*ops_slice_fn)(void *arg, int slice, int64_t lo, int64_t hi);

/* fn(arg, slice, lo, hi) over the OPS_THREADS slices of [0, n); work is the floats the whole
 * loop touches. Below OPS_PAR_MIN the slices run one after another on the caller, still cut the
 * same way, so a loop that keeps one partial result per slice (conv's dw) sums the same bits. */
GRAPH_HIDDEN void ops_parallel_for(ops_slice_fn fn, void *arg, int64_t n, int64_t work);

/* Test hook: the smallest work that is split (0 restores OPS_PAR_MIN), so tests can run the
 * threaded path on tiny tensors. */
GRAPH_HIDDEN void ops_set_par_min(int64_t work);

#endif
