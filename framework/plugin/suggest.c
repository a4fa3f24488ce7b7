/* Edit distance for "did you mean `epochs`?" on plugin names and parameter keys. */
#include <stdint.h>
#include <string.h>

#include "plugin_internal.h"

static size_t min3(size_t a, size_t b, size_t c)
{
    size_t m = a < b ? a : b;
    return m < c ? m : c;
}

size_t suggest_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la >= SUGGEST_NAME_MAX || lb >= SUGGEST_NAME_MAX)
        return SIZE_MAX;
    /* Three rolling rows: the transposition step looks two rows back. */
    size_t rows[3][SUGGEST_NAME_MAX + 1];
    size_t *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            cur[j] = min3(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                prev2[j - 2] + 1 < cur[j])
                cur[j] = prev2[j - 2] + 1;
        }
        size_t *t = prev2;
        prev2 = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

void suggest_init(struct suggest *s, const char *query)
{
    s->query = query;
    s->best = NULL;
    s->best_d = SIZE_MAX;
}

void suggest_offer(struct suggest *s, const char *candidate)
{
    if (!candidate || !s->query)
        return;
    size_t d = suggest_distance(s->query, candidate);
    /* Ties keep the first candidate, so the answer follows table order. */
    if (d < s->best_d) {
        s->best = candidate;
        s->best_d = d;
    }
}

const char *suggest_result(const struct suggest *s)
{
    if (!s->best)
        return NULL;
    /* One edit per three or four letters is a typo; more is a different word ("lr" is not a
     * typo of "wd"). */
    size_t len = strlen(s->query);
    size_t limit = len <= 4 ? 1 : len <= 8 ? 2 : 3;
    return s->best_d <= limit ? s->best : NULL;
}
