/* Tensor metadata helpers; tensors never own memory. */
#include <stdio.h>
#include <string.h>

#include "invar/tensor.h"

void invar_tensor_wrap(struct invar_tensor *t, float *data, int ndim, const int64_t *shape)
{
    INVAR_ASSERT(ndim >= 1 && ndim <= INVAR_MAX_DIMS);
    memset(t, 0, sizeof *t);
    t->data = data;
    t->ndim = ndim;
    for (int i = 0; i < INVAR_MAX_DIMS; i++)
        t->shape[i] = i < ndim ? shape[i] : 1;
    int64_t s = 1;
    for (int i = INVAR_MAX_DIMS - 1; i >= 0; i--) {
        t->stride[i] = s;
        s *= t->shape[i];
    }
    t->numel = s;
}

int invar_tensor_is_contiguous(const struct invar_tensor *t)
{
    int64_t s = 1;
    for (int i = INVAR_MAX_DIMS - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s)
            return 0;
        s *= t->shape[i];
    }
    return 1;
}

int invar_tensor_same_shape(const struct invar_tensor *a, const struct invar_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return 0;
    return 1;
}

const char *invar_tensor_shape_str(const struct invar_tensor *t, char *buf, size_t n)
{
    size_t off = 0;
    if (n == 0)
        return buf;
    buf[0] = '\0';
    for (int i = 0; i < t->ndim && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, "%s%lld", i ? ", " : "(",
                                (long long)t->shape[i]);
    if (off < n)
        snprintf(buf + off, n - off, ")");
    return buf;
}
