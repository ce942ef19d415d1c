// SIMD vectors and the activation functions, for one instruction-set build.
//
// Included only from kernels_isa.cpp, inside an anonymous namespace, so each ISA build gets its own
// copies (no ODR clash between the AVX-512, AVX2 and baseline objects). Vectors are GCC/Clang vector
// extensions of FASTRNN_VEC_BYTES bytes; the compiler lowers them to the widest registers the build allows.
//
// Activations are branch-free approximations within 2 ulp (exp and the exp-based sigmoid and tanh in the
// style of Cephes; the AVX-512 tanh from a table of polynomials), so they vectorise and give the same bits
// wherever they run on one build. NaN propagates; large |x| saturates cleanly.

#ifndef FASTRNN_VEC_BYTES
#error "FASTRNN_VEC_BYTES must be defined by the build (16, 32 or 64)"
#endif

// Accumulator vectors the micro-kernels (recurrent_gemm.h, row_dot.h) keep in registers: 24 of AVX-512's
// 32, 12 of AVX2's (and SSE2's) 16; the rest hold the operands. With 24 the AVX2 build spilled them to the
// stack at every k (Zen 3, 1 thread, K = 512: 6 rows x 4 vectors ran at 37-41 GF/s, 3 x 4 at 67-75,
// OpenBLAS's sgemm at 61-81).
constexpr int kAccumulators = FASTRNN_VEC_BYTES == 64 ? 24 : 12;

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

// n valid lanes (1..lanes); the rest read as zero and are never written (AVX-512: one masked load or
// store, which touches no memory past the n lanes; elsewhere lane by lane).
template <typename T> inline vec_t<T> load_n(const T *p, int n) {
    if (n == Simd<T>::lanes) return load(p);
#if defined(__AVX512F__) && FASTRNN_VEC_BYTES == 64
    if constexpr (sizeof(T) == 4) return (vec_t<T>)_mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
    else return (vec_t<T>)_mm512_maskz_loadu_pd((__mmask8)((1u << n) - 1), p);
#else
    vec_t<T> v = {};
    for (int i = 0; i < n; ++i) v[i] = p[i];
    return v;
#endif
}
template <typename T> inline void store_n(T *p, vec_t<T> v, int n) {
    if (n == Simd<T>::lanes) { store(p, v); return; }
#if defined(__AVX512F__) && FASTRNN_VEC_BYTES == 64
    if constexpr (sizeof(T) == 4) _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), (__m512)v);
    else _mm512_mask_storeu_pd(p, (__mmask8)((1u << n) - 1), (__m512d)v);
#else
    for (int i = 0; i < n; ++i) p[i] = v[i];
#endif
}

// a * b + c, rounded once wherever the build has FMA (x86: AVX2 and AVX-512; elsewhere __FP_FAST_FMA),
// else a product and a sum. Explicit, for code whose bits must not depend on where the compiler chooses to
// fuse (row_dot.h: one output computed by different instantiations must come out the same).
inline Simd<float>::vec vfma(Simd<float>::vec a, Simd<float>::vec b, Simd<float>::vec c) {
#if defined(__AVX512F__) && FASTRNN_VEC_BYTES == 64
    return (Simd<float>::vec)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif defined(__FMA__) && FASTRNN_VEC_BYTES == 32
    return (Simd<float>::vec)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#elif defined(__FP_FAST_FMAF)
    for (int i = 0; i < Simd<float>::lanes; ++i) c[i] = __builtin_fmaf(a[i], b[i], c[i]);
    return c;
#else
    const Simd<float>::vec product = a * b;  // (no FMA in this build: nothing to fuse)
    return product + c;
#endif
}
inline Simd<double>::vec vfma(Simd<double>::vec a, Simd<double>::vec b, Simd<double>::vec c) {
#if defined(__AVX512F__) && FASTRNN_VEC_BYTES == 64
    return (Simd<double>::vec)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
#elif defined(__FMA__) && FASTRNN_VEC_BYTES == 32
    return (Simd<double>::vec)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
#elif defined(__FP_FAST_FMA)
    for (int i = 0; i < Simd<double>::lanes; ++i) c[i] = __builtin_fma(a[i], b[i], c[i]);
    return c;
#else
    const Simd<double>::vec product = a * b;
    return product + c;
#endif
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

#if defined(__AVX512F__) && FASTRNN_VEC_BYTES == 64
// tanh, AVX-512: a table of 32 polynomials in |x| (tools/tanh_table.py fits and prints it). On interval
// i = trunc(|x| / 0.3), u = |x| - centre_i and tanh(|x|) ~ c0 + c1 u + ... + c6 u^6 (interval 0: u plus
// the polynomial, so tiny x give x; intervals 30 and 31, from |x| = 9, clamped to 9.5: the constant 1). Each
// coefficient comes from one two-register permute (the shuffle unit, beside the FMA units), so a tanh is 8
// permutes and 7 multiply-adds with no exp and no division: the LSTM cell (two tanh and three sigmoids) went
// from 34 to about 25 ns a vector. Over all 2^32 floats it is within 0.83 ulp of float64 (the exp form
// below: 1.33), and it steps back by one ulp at 3 inputs, near 1 (the exp form: none). The AVX2 build keeps
// the exp form: its permutes reach 8 entries, and 32 would cost 4 of them and 3 blends a coefficient.
alignas(64) static const float kTanhTable[8][32] = {
    {// centre
     0.0f, 0.449912935f, 0.750143766f, 1.04967964f,
     1.35030544f, 1.64973426f, 1.94989824f, 2.24957728f,
     2.54935765f, 2.84929466f, 3.14977384f, 3.44935775f,
     3.75070643f, 4.04965591f, 4.3514123f, 4.65169954f,
     4.95014811f, 5.24996996f, 5.5481081f, 5.84872961f,
     6.14911842f, 6.44893026f, 6.7500186f, 7.05190754f,
     7.34809256f, 7.64809275f, 7.95190716f, 8.2538147f,
     8.55381489f, 8.84618568f, 9.14999962f, 9.44999981f},
    {// c0
     0.0f, 0.421827435f, 0.635234714f, 0.781681776f,
     0.874125361f, 0.928821146f, 0.960311472f, 0.978007734f,
     0.987864912f, 0.993321002f, 0.996332467f, 0.997983873f,
     0.998896003f, 0.999392688f, 0.999667823f, 0.999817789f,
     0.999899685f, 0.999944925f, 0.999969661f, 0.99998337f,
     0.99999088f, 0.999994993f, 0.999997258f, 0.99999851f,
     0.999999166f, 0.999999523f, 0.999999762f, 0.999999881f,
     0.99999994f, 0.99999994f, 1.0f, 1.0f},
    {// c1
     0.0f, 0.822061658f, 0.596476912f, 0.388973594f,
     0.235904843f, 0.137291268f, 0.0778018758f, 0.0435008742f,
     0.0241229162f, 0.0133133885f, 0.00732161617f, 0.00402818946f,
     0.00220677559f, 0.00121425465f, 0.000664243067f, 0.000364389591f,
     0.000200619164f, 0.000110146349f, 6.06766152e-05f, 3.32591226e-05f,
     1.82389413e-05f, 1.00135521e-05f, 5.48361731e-06f, 2.99658677e-06f,
     1.65707081e-06f, 9.06166576e-07f, 4.93972152e-07f, 2.65391719e-07f,
     1.4366249e-07f, 7.66524622e-08f, 0.0f, 0.0f},
    {// c2
     -2.54845008e-06f, -0.3467682f, -0.378902882f, -0.304053605f,
     -0.206210405f, -0.127519041f, -0.0747140348f, -0.0425441898f,
     -0.0238301829f, -0.0132244676f, -0.00729476335f, -0.00402005715f,
     -0.00220433972f, -0.00121351646f, -0.000664030609f, -0.000364322768f,
     -0.000200595328f, -0.000110139743f, -6.06775902e-05f, -3.32610325e-05f,
     -1.82398653e-05f, -1.0012267e-05f, -5.48263824e-06f, -9.63498132e-06f,
     2.39035307e-06f, 1.53082547e-05f, -7.44860336e-06f, -1.1478015e-05f,
     -1.0308484e-05f, 1.24388798e-05f, 0.0f, 0.0f},
    {// c3
     -0.333210468f, -0.127754509f, 0.041857224f, 0.108015247f,
     0.10162095f, 0.0726798326f, 0.0458151624f, 0.0271082874f,
     0.0154999951f, 0.00869830139f, 0.00482744118f, 0.00266922847f,
     0.00146630476f, 0.000808025943f, 0.0004423871f, 0.000242792958f,
     0.000133705049f, 7.34185742e-05f, 4.04470011e-05f, 2.21713435e-05f,
     1.21587209e-05f, 6.67558788e-06f, 3.65569235e-06f, 2.98508826e-06f,
     1.70706971e-06f, 3.01765294e-06f, 1.36412666e-06f, 3.51458425e-06f,
     3.12125962e-06f, 3.78097229e-06f, 0.0f, 0.0f},
    {// c4
     -0.00193295476f, 0.169479758f, 0.0997211784f, 0.0169211756f,
     -0.0200916864f, -0.0249999054f, -0.019092191f, -0.012330723f,
     -0.00736853713f, -0.00423209276f, -0.00237818272f, -0.00132502255f,
     -0.000729894731f, -0.000403096084f, -0.000219938884f, -0.000121351033f,
     -6.72520982e-05f, -3.67614812e-05f, -1.99017031e-05f, -1.08018321e-05f,
     -5.95872825e-06f, -3.48105527e-06f, -1.94094264e-06f, 0.000757501984f,
     -0.000463225908f, -0.00185383088f, 0.000794475316f, 0.00124140654f,
     0.00112542696f, -0.00138717308f, 0.0f, 0.0f},
    {// c5
     0.146736741f, -0.00970759336f, -0.0631912053f, -0.0405829325f,
     -0.0112597989f, 0.00193734735f, 0.00475793704f, 0.00398655422f,
     0.00265192101f, 0.00160420197f, 0.000925789529f, 0.000522002811f,
     0.000290330121f, 0.000160869924f, 8.82877794e-05f, 4.85778583e-05f,
     2.67995347e-05f, 1.47098544e-05f, 8.12561484e-06f, 4.46048807e-06f,
     2.4489143e-06f, 1.3379979e-06f, 7.33638956e-07f, -6.51778901e-05f,
     -3.97847507e-05f, -0.000160172727f, -6.86596832e-05f, -0.000213483698f,
     -0.000193530577f, -0.000238597131f, 0.0f, 0.0f},
    {// c6
     -0.0430517122f, -0.0594777837f, -0.0017222506f, 0.0190777034f,
     0.011827413f, 0.0036508562f, 0.000127934662f, -0.000731678272f,
     -0.000688771834f, -0.000472836487f, -0.000289296877f, -0.000134759321f,
     -9.54270872e-05f, -5.15224856e-05f, -5.74778132e-05f, -1.50554097e-05f,
     3.48478557e-06f, -3.19829292e-06f, -1.18524904e-05f, -9.68424047e-06f,
     -4.24417931e-06f, 3.71347141e-06f, 3.07738014e-06f, -0.021887809f,
     0.01335108f, 0.0534865931f, -0.0229307488f, -0.0351158716f,
     -0.0318340808f, 0.0392358825f, 0.0f, 0.0f},
};

inline Simd<float>::vec vtanh(Simd<float>::vec x) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    __m512 ax = _mm512_andnot_ps(sign, (__m512)x);
    ax = _mm512_min_ps(_mm512_set1_ps(9.5f), ax);  // (min returns its second operand for NaN, which keeps it)
    const __m512i interval = _mm512_cvttps_epi32(_mm512_mul_ps(ax, _mm512_set1_ps(1.0f / 0.3f)));
    auto coefficient = [&](int j) {  // kTanhTable[j][interval]: 32 entries in two registers
        return _mm512_permutex2var_ps(_mm512_load_ps(kTanhTable[j]), interval, _mm512_load_ps(kTanhTable[j] + 16));
    };
    const __m512 u = _mm512_sub_ps(ax, coefficient(0));  // exact: |x| and the centre are within 2x of each other
    __m512 p = coefficient(7);
    for (int j = 6; j >= 2; --j) p = _mm512_fmadd_ps(p, u, coefficient(j));
    // c0 + u p. Interval 0 has c0 = c1 = 0 and adds u itself: max(c0, u) is u there and c0 elsewhere
    // (c0 > 0.42 > |u|). With c1 = 1 instead, 1 + u p was rounded, and tanh stepped back by an ulp at 127
    // floats near 0.25.
    p = _mm512_fmadd_ps(p, u, _mm512_max_ps(coefficient(1), u));
    return (Simd<float>::vec)_mm512_or_ps(p, _mm512_and_ps((__m512)x, sign));
}
#else
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
#endif

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
