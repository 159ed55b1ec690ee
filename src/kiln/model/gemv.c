/* One row times a weight matrix, fp32, for decoding at batch 1 on x86 CPUs with AVX2 and FMA (kiln.model.gemv).
 *
 * y[o] = sum_i W[o, i] * x[i] (+ b[o]) with W row-major (out, in), as nn.Linear stores it. Decoding one sequence
 * streams every weight from memory once per token, so the speed is the rate W is read at: four rows at a time,
 * each row's 16 floats a step in two accumulators (eight independent FMA chains), and the rows split between
 * OpenMP threads in blocks of four. On a 2-core AVX2 EPYC this read gpt2's linear layers at ~19 GB/s where MKL's
 * sgemv read ~10 and oneDNN's packed path ~14 (kiln/model/gemv.py has the measurement). */
#include <immintrin.h>
#include <stddef.h>

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
