// One instruction-set build of the Jordan kernels (csrc/jordan.h), compiled per ISA next to
// kernels_isa.cpp (same flags, same anonymous-namespace scheme); jordan.cpp picks the build that
// fastrnn.cpp chose for the other kernels.
#include <math.h>
#include <stdint.h>
#include <sched.h>
#include <stdlib.h>

#include <cmath>
#include <type_traits>

#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "fastrnn.h"

#ifndef FASTRNN_ISA
#error "FASTRNN_ISA must name the build (avx512, avx2, baseline)"
#endif
#define FASTRNN_CONCAT2(a, b) a##b
#define FASTRNN_CONCAT(a, b) FASTRNN_CONCAT2(a, b)
#define FASTRNN_ENTRY(name) FASTRNN_CONCAT(name, FASTRNN_CONCAT(_, FASTRNN_ISA))

namespace {
#include "simd.h"
#include "blas.h"
#include "loop_support.h"
#include "jordan.h"
}  // namespace

extern "C" int FASTRNN_ENTRY(fastrnn_jordan_forward)(const fastrnn_jordan_forward_args *a) {
    if (a->dtype == FASTRNN_FLOAT64)
        return a->relu ? jordan_forward<double, true>(*a) : jordan_forward<double, false>(*a);
    return a->relu ? jordan_forward<float, true>(*a) : jordan_forward<float, false>(*a);
}

extern "C" int FASTRNN_ENTRY(fastrnn_jordan_backward)(const fastrnn_jordan_backward_args *a) {
    if (a->dtype == FASTRNN_FLOAT64)
        return a->relu ? jordan_backward<double, true>(*a) : jordan_backward<double, false>(*a);
    return a->relu ? jordan_backward<float, true>(*a) : jordan_backward<float, false>(*a);
}
