/* OpenBLAS settings every invar executable runs with: blas_env_apply(argv) at the top of main.
 *
 * After each multi-threaded GEMM, OpenBLAS's idle workers spin on sched_yield for 2^28 cycles
 * (about 0.1 s here) before they sleep. invar runs its own two threads between GEMMs (the direct
 * conv path, batch-norm, pooling), and a spinning worker takes one of the two cores from them:
 * in the ops benchmark the 32->32 conv forward that follows a GEMM took 58 ms instead of 37 ms.
 * OPENBLAS_THREAD_TIMEOUT=4 (the smallest: 2^4 cycles) sends the workers to sleep at once, and
 * the GEMMs themselves run as fast (2048^2 sgemm within noise).
 *
 * OpenBLAS reads the variable once, in its library constructor, before main runs; even an
 * executable's .preinit_array is too early for setenv to stick (libc sets up environ after it).
 * So when the variable is unset, main sets it and re-executes itself, once: the second process
 * finds it set and goes on. A value already in the environment is kept, so a user can still
 * choose another. Programs that link libinvar themselves set the variable in their own
 * environment (README, Benchmarks). */
#define _POSIX_C_SOURCE 200809L // setenv
#include <stdlib.h>
#include <unistd.h>

#include "blas_env.h"

void blas_env_apply(char **argv)
{
    if (getenv("OPENBLAS_THREAD_TIMEOUT"))
        return;
    if (setenv("OPENBLAS_THREAD_TIMEOUT", "4", 0) != 0)
        return;
    execv("/proc/self/exe", argv);
    /* no /proc or no exec: carry on with OpenBLAS's default, only slower */
}
