/* One row times a weight matrix, fp32, for decoding at batch 1 on x86 CPUs with AVX2 and FMA (kiln.model.gemv).
 *
 * y[o] = sum_i W[o, i] * x[i] (+ b[o]) with W row-major (out, in), as nn.Linear stores it. Decoding one sequence
 * streams every weight from memory once per token, so the speed is the rate W is read at: four rows at a time,
 * each row's 16 floats a step in two accumulators (eight independent FMA chains), and the rows split between
 * OpenMP threads in blocks of four. On a 2-core AVX2 EPYC this read gpt2's linear layers at ~19 GB/s where MKL's
 * sgemv read ~10 and oneDNN's packed path ~14 (kiln/model/gemv.py has the measurement).
 *
 * Built with AVX-512 (-mavx512f, where the CPU has it), the file also has `kiln_rows`: one to eight rows (a small
 * decoding batch) against the same weights, each weight read once for all of them; gemv.py sends one row there
 * too on such CPUs, where it read faster than the loop below. Built with AVX512-BF16 as well (-mavx512bf16, where the
 * CPU has it), it has `kiln_rows_bf16`: the same for bfloat16 weights and inputs, half the bytes a token. */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(s);
}

static float dot_tail(const float *w, const float *x, ptrdiff_t from, ptrdiff_t n) {
    float s = 0.f;
    for (ptrdiff_t i = from; i < n; i++) s += w[i] * x[i];
    return s;
}

static void rows(const float *W, const float *x, const float *b, float *y, ptrdiff_t n, ptrdiff_t r0, ptrdiff_t r1) {
    ptrdiff_t o = r0, n8 = n / 8 * 8, n16 = n / 16 * 16;
    for (; o + 4 <= r1; o += 4) {
        const float *w0 = W + o * n, *w1 = w0 + n, *w2 = w1 + n, *w3 = w2 + n;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0;
        ptrdiff_t i = 0;
        for (; i < n16; i += 16) {
            __m256 xa = _mm256_loadu_ps(x + i), xb = _mm256_loadu_ps(x + i + 8);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i), xa, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + i), xa, a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + i), xa, a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + i), xa, a3);
            c0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i + 8), xb, c0);
            c1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + i + 8), xb, c1);
            c2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + i + 8), xb, c2);
            c3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + i + 8), xb, c3);
        }
        for (; i < n8; i += 8) {
            __m256 xa = _mm256_loadu_ps(x + i);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i), xa, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + i), xa, a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + i), xa, a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + i), xa, a3);
        }
        y[o] = hsum(_mm256_add_ps(a0, c0)) + dot_tail(w0, x, n8, n) + (b ? b[o] : 0.f);
        y[o + 1] = hsum(_mm256_add_ps(a1, c1)) + dot_tail(w1, x, n8, n) + (b ? b[o + 1] : 0.f);
        y[o + 2] = hsum(_mm256_add_ps(a2, c2)) + dot_tail(w2, x, n8, n) + (b ? b[o + 2] : 0.f);
        y[o + 3] = hsum(_mm256_add_ps(a3, c3)) + dot_tail(w3, x, n8, n) + (b ? b[o + 3] : 0.f);
    }
    for (; o < r1; o++) {
        const float *w0 = W + o * n;
        __m256 a0 = _mm256_setzero_ps();
        for (ptrdiff_t i = 0; i < n8; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i), _mm256_loadu_ps(x + i), a0);
        y[o] = hsum(a0) + dot_tail(w0, x, n8, n) + (b ? b[o] : 0.f);
    }
}

/* b may be NULL. Threads split the rows in blocks of four (one thread: no parallel region at all). */
void kiln_gemv(const float *W, const float *x, const float *b, float *y, ptrdiff_t out, ptrdiff_t n, int threads) {
    if (threads <= 1 || out < 64) {
        rows(W, x, b, y, n, 0, out);
        return;
    }
    ptrdiff_t blocks = (out + 3) / 4;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int t = 0; t < threads; t++) {
        ptrdiff_t r0 = blocks * t / threads * 4, r1 = blocks * (t + 1) / threads * 4;
        rows(W, x, b, y, n, r0, r1 < out ? r1 : out);
    }
}

#ifdef __AVX512F__
/* Y[j, o] = sum_i W[o, i] * X[j, i] (+ b[o]) for j < m <= 8: each step reads 16 floats of two weight rows and
 * multiplies them into all m input rows, 2m accumulators of AVX-512's 32 registers. On a first-generation Zen
 * (AVX2 in 128-bit halves) the same idea was bound by its multiply-adds and gained nothing over oneDNN, so it is
 * built for AVX-512 CPUs only, where a 16-float FMA is one instruction.
 *
 * With 8 rows a step's multiply-adds take about as long as its weights take to arrive, and the two did not overlap:
 * on a 2-core Xeon (gpt2's 49 linear layers, 8 rows) 34 ms without a prefetch, 21-22 ms with the weights asked
 * into L2 16 KB ahead (oneDNN packed: 25-28 ms); 8 KB and 32 KB ahead, or into L1, were no better. */
#define PREFETCH 4096 /* floats ahead; past a row's end it is the next row's start, and a prefetch never faults */

/* Lane k of the result is the sum of v[k]'s 16 lanes, for 16 vectors at once: a transpose-and-add tree of 15 adds
 * and 30 shuffles where 16 separate horizontal sums take about 8 instructions each, half of them adds competing
 * with the multiply-adds. With 8 input rows and two weight rows a step, rows_m ends every step with 16 sums, and at
 * gpt2's 768 inputs a step has only 48 x 16 multiply-adds, so the sums were a tenth of its instructions. On a 2-core
 * Xeon (AMX; 2026-12-06), gpt2's 49 linear layers in decoding order at 8 rows, best of 9, three runs in turns with
 * the separate sums: 24.2 / 26.5 / 26.5 ms against 24.8 / 27.0 / 27.5 (2-4%); bf16 8 rows 17.3 against 17.5. */
static inline __attribute__((always_inline)) __m512 sum16(const __m512 *v) {
    __m512 t[8], u[4], w[2];
    for (int k = 0; k < 8; k++) /* per 128-bit lane: v[2k] and v[2k+1] interleaved, pairs of lanes added */
        t[k] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * k], v[2 * k + 1]), _mm512_unpackhi_ps(v[2 * k], v[2 * k + 1]));
    for (int k = 0; k < 4; k++) { /* per 128-bit lane: the four vectors' partial sums, in order */
        const __m512d a = _mm512_castps_pd(t[2 * k]), b = _mm512_castps_pd(t[2 * k + 1]);
        u[k] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
    for (int k = 0; k < 2; k++) /* the 128-bit lanes added in pairs */
        w[k] = _mm512_add_ps(_mm512_shuffle_f32x4(u[2 * k], u[2 * k + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(u[2 * k], u[2 * k + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_ps(_mm512_shuffle_f32x4(w[0], w[1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(w[0], w[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

/* The sums of a step's accumulators (a[j]: weight row o, c[j]: row o + 1, input rows j < m) plus the bias, as
 * out[2j] and out[2j + 1]: by sum16 from four input rows on, where it takes fewer instructions. */
static inline __attribute__((always_inline)) void step_sums(const __m512 *a, const __m512 *c, float b0, float b1,
                                                            float *out, const int m) {
    if (m < 4) {
        for (int j = 0; j < m; j++) {
            out[2 * j] = _mm512_reduce_add_ps(a[j]) + b0;
            out[2 * j + 1] = _mm512_reduce_add_ps(c[j]) + b1;
        }
        return;
    }
    __m512 v[16];
    for (int j = 0; j < 8; j++) {
        v[2 * j] = j < m ? a[j] : _mm512_setzero_ps();
        v[2 * j + 1] = j < m ? c[j] : _mm512_setzero_ps();
    }
    const __m512 bias = _mm512_castpd_ps(_mm512_set1_pd(_mm_cvtsd_f64(_mm_castps_pd(_mm_set_ps(0.f, 0.f, b1, b0)))));
    _mm512_storeu_ps(out, _mm512_add_ps(sum16(v), bias));
}
static inline __attribute__((always_inline)) void rows_m(const float *W, const float *X, const float *b, float *Y,
                                                         ptrdiff_t out, ptrdiff_t n, ptrdiff_t r0, ptrdiff_t r1,
                                                         const int m) {
    const ptrdiff_t n16 = n / 16 * 16;
    const __mmask16 tail = (__mmask16)((1u << (n - n16)) - 1u);
    for (ptrdiff_t o = r0; o < r1; o += 2) {
        const int two = o + 1 < r1; /* an odd last row is multiplied twice, its copy not stored */
        const float *w0 = W + o * n, *w1 = two ? w0 + n : w0;
        __m512 a[8], c[8];
        for (int j = 0; j < m; j++) a[j] = c[j] = _mm512_setzero_ps();
        for (ptrdiff_t i = 0; i < n16; i += 16) {
            _mm_prefetch((const char *)(w0 + i + PREFETCH), _MM_HINT_T1);
            _mm_prefetch((const char *)(w1 + i + PREFETCH), _MM_HINT_T1);
            const __m512 u = _mm512_loadu_ps(w0 + i), v = _mm512_loadu_ps(w1 + i);
            for (int j = 0; j < m; j++) {
                const __m512 x = _mm512_loadu_ps(X + j * n + i);
                a[j] = _mm512_fmadd_ps(u, x, a[j]);
                c[j] = _mm512_fmadd_ps(v, x, c[j]);
            }
        }
        if (tail) {
            const __m512 u = _mm512_maskz_loadu_ps(tail, w0 + n16), v = _mm512_maskz_loadu_ps(tail, w1 + n16);
            for (int j = 0; j < m; j++) {
                const __m512 x = _mm512_maskz_loadu_ps(tail, X + j * n + n16);
                a[j] = _mm512_fmadd_ps(u, x, a[j]);
                c[j] = _mm512_fmadd_ps(v, x, c[j]);
            }
        }
        float s[16];
        step_sums(a, c, b ? b[o] : 0.f, b && two ? b[o + 1] : 0.f, s, m);
        for (int j = 0; j < m; j++) {
            Y[j * out + o] = s[2 * j];
            if (two) Y[j * out + o + 1] = s[2 * j + 1];
        }
    }
}

/* m as a constant in each case: the loops over j unroll and the accumulators stay in registers. */
#define WITH_CONSTANT_M(kernel, ...)                                                                                 \
    switch (m) {                                                                                                     \
    case 1: kernel(__VA_ARGS__, 1); break;                                                                           \
    case 2: kernel(__VA_ARGS__, 2); break;                                                                           \
    case 3: kernel(__VA_ARGS__, 3); break;                                                                           \
    case 4: kernel(__VA_ARGS__, 4); break;                                                                           \
    case 5: kernel(__VA_ARGS__, 5); break;                                                                           \
    case 6: kernel(__VA_ARGS__, 6); break;                                                                           \
    case 7: kernel(__VA_ARGS__, 7); break;                                                                           \
    default: kernel(__VA_ARGS__, 8); break;                                                                          \
    }

/* One thread's share, weight rows [r0, r1), for m input rows; the pointers are typed by the kernel behind it. */
typedef void (*rows_fn)(const void *W, const void *X, const void *b, void *Y, ptrdiff_t out, ptrdiff_t n,
                        ptrdiff_t r0, ptrdiff_t r1, int m);

static void rows_of(const void *W, const void *X, const void *b, void *Y, ptrdiff_t out, ptrdiff_t n, ptrdiff_t r0,
                    ptrdiff_t r1, int m) {
    WITH_CONSTANT_M(rows_m, (const float *)W, (const float *)X, (const float *)b, (float *)Y, out, n, r0, r1)
}

/* Threads split the weight rows in pairs (one thread or a small layer: no parallel region at all). */
static void split_pairs(rows_fn f, const void *W, const void *X, const void *b, void *Y, ptrdiff_t m, ptrdiff_t out,
                        ptrdiff_t n, int threads) {
    if (threads <= 1 || out < 64) {
        f(W, X, b, Y, out, n, 0, out, (int)m);
        return;
    }
    ptrdiff_t pairs = (out + 1) / 2;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int t = 0; t < threads; t++) {
        ptrdiff_t r0 = pairs * t / threads * 2, r1 = pairs * (t + 1) / threads * 2;
        f(W, X, b, Y, out, n, r0, r1 < out ? r1 : out, (int)m);
    }
}

/* X is (m, n), Y (m, out), both row-major; 1 <= m <= 8; b may be NULL. */
void kiln_rows(const float *W, const float *X, const float *b, float *Y, ptrdiff_t m, ptrdiff_t out, ptrdiff_t n,
               int threads) {
    split_pairs(rows_of, W, X, b, Y, m, out, n, threads);
}
#endif

#if defined(__AVX512F__) && defined(__AVX512BF16__)
/* bfloat16 weights and inputs, fp32 sums, one bf16 rounding at the end: what oneDNN's bf16 linear computes, with
 * the same two-rows-a-step, all-inputs-at-once shape as rows_m. VDPBF16PS multiplies 32 bf16 pairs into 16 fp32
 * sums in one instruction, so the weight is read as stored (out, in) with no repacking. On a 2-core Zen 4 EPYC
 * (AVX512-BF16, no AMX; 2026-12-06), gpt2's 49 linear layers in decoding order, best of 7: one row 7.3-7.7 ms
 * against oneDNN's packed bf16 9.9 (and kiln_rows on fp32 weights 14.8); eight rows 8.5-8.8 ms against 10.6.
 * Prefetching 8, 16 or 32 KB ahead measured the same; 16 KB as in rows_m. */
#define PREFETCH_BF16 8192 /* bf16 values ahead: 16 KB */

static inline uint16_t to_bf16(float f) { /* round to nearest even, as PyTorch converts; NaN stays NaN */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline __attribute__((always_inline)) void rows_bf16_m(const uint16_t *W, const uint16_t *X,
                                                              const uint16_t *b, uint16_t *Y, ptrdiff_t out,
                                                              ptrdiff_t n, ptrdiff_t r0, ptrdiff_t r1, const int m) {
    const ptrdiff_t n32 = n / 32 * 32;
    const __mmask32 tail = (__mmask32)(n > n32 ? (1ull << (n - n32)) - 1ull : 0ull);
    for (ptrdiff_t o = r0; o < r1; o += 2) {
        const int two = o + 1 < r1; /* an odd last row is multiplied twice, its copy not stored */
        const uint16_t *w0 = W + o * n, *w1 = two ? w0 + n : w0;
        __m512 a[8], c[8];
        for (int j = 0; j < m; j++) a[j] = c[j] = _mm512_setzero_ps();
        for (ptrdiff_t i = 0; i < n32; i += 32) {
            _mm_prefetch((const char *)(w0 + i + PREFETCH_BF16), _MM_HINT_T1);
            _mm_prefetch((const char *)(w1 + i + PREFETCH_BF16), _MM_HINT_T1);
            const __m512bh u = (__m512bh)_mm512_loadu_si512(w0 + i), v = (__m512bh)_mm512_loadu_si512(w1 + i);
            for (int j = 0; j < m; j++) {
                const __m512bh x = (__m512bh)_mm512_loadu_si512(X + j * n + i);
                a[j] = _mm512_dpbf16_ps(a[j], u, x);
                c[j] = _mm512_dpbf16_ps(c[j], v, x);
            }
        }
        if (tail) { /* masked-off values load as zero, and 0 x 0 adds nothing */
            const __m512bh u = (__m512bh)_mm512_maskz_loadu_epi16(tail, w0 + n32);
            const __m512bh v = (__m512bh)_mm512_maskz_loadu_epi16(tail, w1 + n32);
            for (int j = 0; j < m; j++) {
                const __m512bh x = (__m512bh)_mm512_maskz_loadu_epi16(tail, X + j * n + n32);
                a[j] = _mm512_dpbf16_ps(a[j], u, x);
                c[j] = _mm512_dpbf16_ps(c[j], v, x);
            }
        }
        float s[16];
        step_sums(a, c, b ? from_bf16(b[o]) : 0.f, b && two ? from_bf16(b[o + 1]) : 0.f, s, m);
        for (int j = 0; j < m; j++) {
            Y[j * out + o] = to_bf16(s[2 * j]);
            if (two) Y[j * out + o + 1] = to_bf16(s[2 * j + 1]);
        }
    }
}

static void rows_bf16_of(const void *W, const void *X, const void *b, void *Y, ptrdiff_t out, ptrdiff_t n,
                         ptrdiff_t r0, ptrdiff_t r1, int m) {
    WITH_CONSTANT_M(rows_bf16_m, (const uint16_t *)W, (const uint16_t *)X, (const uint16_t *)b, (uint16_t *)Y, out,
                    n, r0, r1)
}

/* As kiln_rows, on bfloat16 (raw 16-bit) W, X, b and Y. */
void kiln_rows_bf16(const uint16_t *W, const uint16_t *X, const uint16_t *b, uint16_t *Y, ptrdiff_t m, ptrdiff_t out,
                    ptrdiff_t n, int threads) {
    split_pairs(rows_bf16_of, W, X, b, Y, m, out, n, threads);
}
#endif
