// Gradients of sum_k grad_k dist(query[rows_k], table[ents_k]) over (query, candidate) pairs
// sorted by entity (vlkge.models.backbones.native builds and calls this; kernels.py explains
// the pairs). The pairs are cut into one contiguous part per thread at entity boundaries, so
// each thread owns its entities' rows of the table's gradient and writes them without
// atomics; each part adds its queries' gradients into a private [B, D] buffer, summed by the
// caller. The modulus distance's gradient row is written from one loop over the complex
// coordinates, each modulus computed once for its real and imaginary halves.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

// d/dq of sum_j |q_j - t_j| over complex coordinates (halves [0, h) and [h, 2h)), times g
template <typename T>
inline void modulus_pair(const T* __restrict__ q, const T* __restrict__ t, T* __restrict__ gq,
                         T* __restrict__ gt, T g, int64_t h) {
  for (int64_t j = 0; j < h; ++j) {
    const T re = q[j] - t[j], im = q[j + h] - t[j + h];
    // the floor keeps the gradient finite where two points coincide (as kernels._modulus_grad)
    const T s = g / std::sqrt(std::max(re * re + im * im, T(1e-18)));
    const T a = re * s, b = im * s;
    gq[j] += a;
    gq[j + h] += b;
    gt[j] -= a;
    gt[j + h] -= b;
  }
}

// d/dq of sum_j |q_j - t_j| (L1), times g; sign(0) = 0 as torch.sign
template <typename T>
inline void l1_pair(const T* __restrict__ q, const T* __restrict__ t, T* __restrict__ gq,
                    T* __restrict__ gt, T g, int64_t d) {
  for (int64_t j = 0; j < d; ++j) {
    const T diff = q[j] - t[j];
    const T a = g * (T(diff > 0) - T(diff < 0));
    gq[j] += a;
    gt[j] -= a;
  }
}

template <typename T>
void part(bool modulus, const T* q, const T* t, const int64_t* rows, const int64_t* ents,
          const T* g, int64_t p0, int64_t p1, int64_t e0, int64_t e1, int64_t B, int64_t D,
          T* gq, T* gt) {
  std::memset(gt + e0 * D, 0, sizeof(T) * (e1 - e0) * D);
  std::memset(gq, 0, sizeof(T) * B * D);
  for (int64_t k = p0; k < p1; ++k) {
    const int64_t r = rows[k] * D, e = ents[k] * D;
    if (modulus)
      modulus_pair(q + r, t + e, gq + r, gt + e, g[k], D / 2);
    else
      l1_pair(q + r, t + e, gq + r, gt + e, g[k], D);
  }
}

template <typename T>
void pair_grads(bool modulus, const T* q, const T* t, const int64_t* rows, const int64_t* ents,
                const T* g, int64_t P, int64_t B, int64_t E, int64_t D, int64_t parts,
                T* gq_parts, T* gt) {
  // part i: pairs [bound[i], bound[i + 1]), entities [first[i], first[i + 1])
  std::vector<int64_t> bound(parts + 1, P), first(parts + 1, E);
  bound[0] = 0;
  first[0] = 0;
  for (int64_t i = 1; i < parts; ++i) {
    int64_t p = std::max(bound[i - 1], P * i / parts);
    while (p > 0 && p < P && ents[p] == ents[p - 1]) ++p;  // an entity stays in one part
    bound[i] = p;
    first[i] = p < P ? std::max(first[i - 1], ents[p]) : E;
  }
  // torch's own OpenMP threads (the process has loaded its libgomp): no second pool of
  // threads spinning against the first
#pragma omp parallel for num_threads(parts) schedule(static, 1)
  for (int64_t i = 0; i < parts; ++i)
    part<T>(modulus, q, t, rows, ents, g, bound[i], bound[i + 1], first[i], first[i + 1], B, D,
            gq_parts + i * B * D, gt);
}

}  // namespace

extern "C" {

void pair_grads_f32(int32_t modulus, const float* q, const float* t, const int64_t* rows,
                    const int64_t* ents, const float* g, int64_t P, int64_t B, int64_t E,
                    int64_t D, int64_t parts, float* gq_parts, float* gt) {
  pair_grads<float>(modulus != 0, q, t, rows, ents, g, P, B, E, D, parts, gq_parts, gt);
}

void pair_grads_f64(int32_t modulus, const double* q, const double* t, const int64_t* rows,
                    const int64_t* ents, const double* g, int64_t P, int64_t B, int64_t E,
                    int64_t D, int64_t parts, double* gq_parts, double* gt) {
  pair_grads<double>(modulus != 0, q, t, rows, ents, g, P, B, E, D, parts, gq_parts, gt);
}
}
