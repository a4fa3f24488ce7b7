/* invar/invar.h — the whole public SDK in one include. */
#ifndef INVAR_INVAR_H
#define INVAR_INVAR_H

#include "arena.h"
#include "core.h"
#include "data.h"
#include "graph.h"
#include "kmeans.h"
#include "optim.h"
#include "params.h"
#include "plugin.h"
#include "registry.h"
#include "rng.h"
#include "store.h"
#include "tensor.h"
#include "train.h"

#endif
