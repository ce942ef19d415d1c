// What every per-ISA translation unit (kernels_isa.cpp, jordan_isa.cpp) includes before its anonymous
// namespace: the system headers the kernels use and the naming of its entry points. CMake compiles
// each such file once per ISA with its own FASTRNN_ISA name, vector width and flags.
#ifndef FASTRNN_ISA_BUILD_H
#define FASTRNN_ISA_BUILD_H

#include <stdint.h>
#include <sched.h>
#include <stdlib.h>

#include <type_traits>
#include <utility>  // row_dot.h: integer_sequence for the butterfly's shuffle masks
#if defined(__AVX__)
#include <immintrin.h>  // simd.h: exp's rounding and scaling, the AVX-512 tanh's table, masked tails
#endif

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
#define FASTRNN_ENTRY(name) FASTRNN_CONCAT(name, FASTRNN_CONCAT(_, FASTRNN_ISA))  // name_avx512 etc.

#endif
