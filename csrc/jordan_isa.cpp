// One instruction-set build of the Jordan kernels (csrc/jordan.h), compiled per ISA next to
// kernels_isa.cpp (same flags, same anonymous-namespace scheme); jordan.cpp picks the build that
// fastrnn.cpp chose for the other kernels.
#include <math.h>

#include <cmath>

#include "isa_build.h"

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
