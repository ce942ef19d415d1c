// SIMD vectors and the activation functions, for one instruction-set build.
//
// Included only from kernels_isa.cpp, inside an anonymous namespace, so each ISA build gets its own
// copies (no ODR clash between the AVX-512, AVX2 and baseline objects). Vectors are GCC/Clang vector
// extensions of FASTRNN_VEC_BYTES bytes; the compiler lowers them to the widest registers the build allows.
//
// Activations are branch-free Cephes-style approximations (about 1-2 ulp), so they vectorise and
// give the same bits wherever they run on one build. NaN propagates; large |x| saturates cleanly.

#ifndef FASTRNN_VEC_BYTES
#error "FASTRNN_VEC_BYTES must be defined by the build (16, 32 or 64)"
#endif

template <typename T> struct Simd;

template <> struct Simd<float> {
    static constexpr int lanes = FASTRNN_VEC_BYTES / 4;
    typedef float vec __attribute__((vector_size(FASTRNN_VEC_BYTES)));
    typedef int32_t ivec __attribute__((vector_size(FASTRNN_VEC_BYTES)));
    typedef uint32_t uvec __attribute__((vector_size(FASTRNN_VEC_BYTES)));
};
template <> struct Simd<double> {
    static constexpr int lanes = FASTRNN_VEC_BYTES / 8;
    typedef double vec __attribute__((vector_size(FASTRNN_VEC_BYTES)));
    typedef int64_t ivec __attribute__((vector_size(FASTRNN_VEC_BYTES)));
    typedef uint64_t uvec __attribute__((vector_size(FASTRNN_VEC_BYTES)));
};

template <typename T> using vec_t = typename Simd<T>::vec;

template <typename T> inline vec_t<T> splat(T s) { return s - vec_t<T>{}; }  // s - 0 folds to a broadcast

template <typename T> inline vec_t<T> load(const T *p) {
    vec_t<T> v;
    __builtin_memcpy(&v, p, sizeof(v));
    return v;
}
template <typename T> inline void store(T *p, vec_t<T> v) { __builtin_memcpy(p, &v, sizeof(v)); }

// n valid lanes (1..lanes); the rest read as zero and are never written.
template <typename T> inline vec_t<T> load_n(const T *p, int n) {
    if (n == Simd<T>::lanes) return load(p);
    vec_t<T> v = {};
    for (int i = 0; i < n; ++i) v[i] = p[i];
    return v;
}
template <typename T> inline void store_n(T *p, vec_t<T> v, int n) {
    if (n == Simd<T>::lanes) { store(p, v); return; }
    for (int i = 0; i < n; ++i) p[i] = v[i];
}

// Clamp to [lo, hi]; NaN passes through (every comparison with NaN is false).
template <typename V> inline V vclamp(V x, V lo, V hi) {
    x = x > hi ? hi : x;
    return x < lo ? lo : x;
}

// exp(x): x = n ln2 + r, |r| <= ln2/2, exp(r) by polynomial, times 2^n. n is the rounded product
// x * log2(e) rounded to nearest-even: one instruction on AVX2 and AVX-512 (which give the same bits),
// the 1.5 * 2^23 trick elsewhere. The AVX-512 build also clamps with min/max and scales by 2^n with one
// scalef, the same bits as the compare-and-select clamp and the exponent-bit scaling. A cell is a chain of
// these (LSTM: three sigmoids and a tanh, then tanh(c)), and the shorter chain made the LSTM cell about
// 13% faster (39 -> 34 ns a vector). (Rounding the exact product instead, as the 1.5 * 2^23 trick does when
// the compiler fuses it into an FMA, moved 29 of the 2^32 float inputs of exp by 1 ulp.)
inline Simd<float>::vec vexp(Simd<float>::vec x) {
    typedef Simd<float>::vec V;
#if defined(__AVX512F__) && FASTRNN_VEC_BYTES == 64
    // (min/max return their second operand for NaN, which keeps it)
    x = (V)_mm512_max_ps(_mm512_set1_ps(-87.3365447504019f), _mm512_min_ps(_mm512_set1_ps(88.3762626647949f), (__m512)x));
    const V n = (V)_mm512_roundscale_ps((__m512)(x * 1.44269504088896341f), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#elif defined(__AVX__) && FASTRNN_VEC_BYTES == 32
    x = (V)_mm256_max_ps(_mm256_set1_ps(-87.3365447504019f), _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), (__m256)x));
    const V n = (V)_mm256_round_ps((__m256)(x * 1.44269504088896341f), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#else
    x = vclamp(x, splat(-87.3365447504019f), splat(88.3762626647949f));
    const V n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
#endif
    V r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    V z = r * r;
    V p = splat(1.9875691500E-4f);
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * z + r + 1.0f;
#if defined(__AVX512F__) && FASTRNN_VEC_BYTES == 64
    return (V)_mm512_scalef_ps((__m512)p, (__m512)n);
#else
    typedef Simd<float>::uvec U;
    U biased = (U)(n + (127.0f + 8388608.0f)) - 0x4B000000u;  // the integer n + 127 out of the mantissa
    return p * (V)(biased << 23);
#endif
}

inline Simd<double>::vec vexp(Simd<double>::vec x) {
    typedef Simd<double>::vec V;
    typedef Simd<double>::uvec U;
    x = vclamp(x, splat(-708.0), splat(709.0));
    V n = (x * 1.4426950408889634073599 + 6755399441055744.0) - 6755399441055744.0;  // 1.5 * 2^52
    V r = x - n * 6.93145751953125E-1;
    r = r - n * 1.42860682030941723212E-6;
    V rr = r * r;
    V px = ((1.26177193074810590878E-4 * rr + 3.02994407707441961300E-2) * rr + 9.99999999999999999910E-1) * r;
    V qx = ((3.00198505138664455042E-6 * rr + 2.52448340349684104192E-3) * rr + 2.27265548208155028766E-1) * rr
           + 2.00000000000000000009E0;
    V e = 1.0 + 2.0 * (px / (qx - px));
    U biased = (U)(n + (1023.0 + 4503599627370496.0)) - 0x4330000000000000ull;
    return e * (V)(biased << 52);
}

template <typename V> inline V vsigmoid(V x) { return 1 / (1 + vexp(-x)); }

// tanh: an odd polynomial near zero (keeps relative accuracy there), 1 - 2/(e^{2|x|}+1) elsewhere.
inline Simd<float>::vec vtanh(Simd<float>::vec x) {
    typedef Simd<float>::vec V;
    V ax = x < 0 ? -x : x;
    V z = x * x;
    V small = ((((-5.70498872745E-3f * z + 2.06390887954E-2f) * z - 5.37397155531E-2f) * z + 1.33314422036E-1f) * z
               - 3.33332819422E-1f) * z * x + x;
    V big = 1.0f - 2.0f / (vexp(ax + ax) + 1.0f);
    big = x < 0 ? -big : big;
    return ax < 0.625f ? small : big;
}

inline Simd<double>::vec vtanh(Simd<double>::vec x) {
    typedef Simd<double>::vec V;
    V ax = x < 0 ? -x : x;
    V s = x * x;
    V p = (-9.64399179425052238628E-1 * s - 9.92877231001918586564E1) * s - 1.61468768441708447952E3;
    V q = ((s + 1.12811678491632931402E2) * s + 2.23548839060100448583E3) * s + 4.84406305325125486048E3;
    V small = x * s * (p / q) + x;
    V big = 1.0 - 2.0 / (vexp(ax + ax) + 1.0);
    big = x < 0 ? -big : big;
    return ax < 0.625 ? small : big;
}

template <typename V> inline V vrelu(V x) { return x < 0 ? V{} : x; }
