/* invar/sweep.h — a sweep's trials: grid × zip × seeds, each as a list of overrides.
 *
 *     const char *args[] = {"optim.lr=0.03,0.1", "train.epochs=2"};  // an axis, a fixed value
 *     struct invar_sweep_plan *plan;
 *     struct invar_error err = {0};
 *     if (invar_sweep_plan_create(&plan, invar_experiment_sweep(e), args, 2, &err) != INVAR_OK)
 *         fail(err.msg);
 *     for (size_t i = 0; i < invar_sweep_plan_count(plan); i++) {
 *         const struct invar_sweep_trial *t = invar_sweep_plan_trial(plan, i);
 *         invar_experiment_load(&te, path, t->overrides, t->n_overrides, reg, &err);
 *         ...
 *     }
 *     invar_sweep_plan_destroy(plan);
 *
 * Order: the grid axes vary slowest, in the order written (the file's, then the command
 * line's), then the zip block (its axes advance together), then the seeds, fastest; so the
 * seeds of one setting run next to each other. A trial's overrides are the fixed command-line
 * values first, then one "key=value" per axis in that order, then "seed=S" when the sweep has
 * seeds. Every override is a valid argument for invar_experiment_load.
 *
 * Command-line arguments: "KEY=V1,V2,..." (commas outside brackets, braces and quotes) adds a
 * grid axis, or replaces the file's grid axis of that key; a plain "KEY=V" is a fixed override
 * and removes a file grid axis of the same key. Zip axes and seeds come only from the file: an
 * argument naming a zip key (or `seed` when the file has seeds) is refused, since it would
 * break the lists that advance together or silently collapse the seeds.
 */
#ifndef INVAR_SWEEP_H
#define INVAR_SWEEP_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Trials a plan may hold: a typo like `seeds: [1..1000]` x a big grid fails fast. */
#define INVAR_SWEEP_MAX_TRIALS 100000

struct invar_sweep_trial {
    const char *const *overrides; /* (n_overrides) "key=value" strings */
    size_t n_overrides;
    int has_seed; /* the sweep has seeds: seed is this trial's */
    int64_t seed;
};

struct invar_sweep_plan;

/* Expands sweep (NULL: no sweep block) crossed with the command-line args. Errors:
 * INVAR_ERR_CONFIG for a malformed argument or one that conflicts with a zip axis or the seeds
 * (the message names the argument), INVAR_ERR_INVALID for more than INVAR_SWEEP_MAX_TRIALS
 * trials, INVAR_ERR_NOMEM. On failure *out is NULL. The plan copies what it needs: sweep and
 * args may be freed afterwards. */
INVAR_API enum invar_status invar_sweep_plan_create(struct invar_sweep_plan **out,
                                                    const struct invar_sweep *sweep,
                                                    const char *const *args, size_t n_args,
                                                    struct invar_error *err);
/* Takes NULL. */
INVAR_API void invar_sweep_plan_destroy(struct invar_sweep_plan *p);

INVAR_API size_t invar_sweep_plan_count(const struct invar_sweep_plan *p);
/* Trial i (< count); valid until the plan is destroyed. */
INVAR_API const struct invar_sweep_trial *invar_sweep_plan_trial(const struct invar_sweep_plan *p,
                                                                 size_t i);
/* The swept keys (grid, then zip; not the seeds), in trial-override order: what a report
 * groups by. Valid until the plan is destroyed. */
INVAR_API size_t invar_sweep_plan_n_axes(const struct invar_sweep_plan *p);
INVAR_API const char *invar_sweep_plan_axis(const struct invar_sweep_plan *p, size_t i);

#ifdef __cplusplus
}
#endif
#endif
