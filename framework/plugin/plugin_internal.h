/* Shared inside the plugin module only; hidden from libinvar's exports. */
#ifndef INVAR_PLUGIN_INTERNAL_H
#define INVAR_PLUGIN_INTERNAL_H

#include <stddef.h>

/* Optimal-string-alignment (restricted Damerau) distance: insertions, deletions,
 * substitutions and transpositions of neighbours each cost 1. SIZE_MAX for names longer than
 * SUGGEST_NAME_MAX, which are never typos of a short key. */
#define SUGGEST_NAME_MAX 128
size_t suggest_distance(const char *a, const char *b);

/* Tracks the best candidate for a "did you mean" over a sequence of names. */
struct suggest {
    const char *query;
    const char *best;
    size_t best_d;
};

void suggest_init(struct suggest *s, const char *query);
void suggest_offer(struct suggest *s, const char *candidate);
/* The best candidate if it is close enough to be a plausible typo, else NULL. */
const char *suggest_result(const struct suggest *s);

#endif
