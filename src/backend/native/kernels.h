// The native kernels of src/backend/contract.ts on float32: same names, argument order and shape letters as the
// TypeScript reference (src/backend/js/kernels.ts). Sizes are int64 so that products like N·V never overflow;
// the N-API layer (addon.cc) has already checked every buffer against the sizes before any of these run.
#pragma once
#include <cstdint>

namespace tsdpo {

using i64 = int64_t;

// Threads for the kernels and the GEMM (the addon's one pool, parallel.h). Returns the count set.
int set_threads(int n);
int get_threads();
// "openmp" or "std::thread".
const char* thread_pool_kind();
// The instruction set of the vector loops in use: "avx512", "avx2" or "portable" (the widest the CPU supports, unless
// set_simd chose another). set_simd returns false, changing nothing, for a level this CPU cannot run.
const char* simd_level();
bool set_simd(const char* level);

void embedding_forward(float* out, const int32_t* ids, const float* table, i64 N, i64 C);
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, i64 N, i64 C);

// y = x · rstd · (offset + weight): offset 0 (Llama) or 1 (Gemma).
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, i64 N, i64 C, float eps,
                     double offset);
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, i64 N, i64 C, double offset);

// LayerNorm with bias (bias may be nullptr): y = (x − mean) · rstd · weight + bias, the biased variance; mean and rstd
// saved. Backward: dweight and dbias may be nullptr.
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       i64 N, i64 C, float eps);
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, i64 N, i64 C);

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, i64 N, i64 IC, i64 OC);
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, i64 N, i64 IC, i64 OC);

// sign +1 rotates (forward), −1 rotates back (backward). Row n is at position pos[n].
void rope(float* x, const float* cos, const float* sin, const int32_t* pos, i64 N, i64 H, i64 HS, i64 RD, float sign);

// branch (R,2) or nullptr: [P, S] per row, as attentionVisible in src/backend/js/mask.ts. Scores are scale·q·k, then
// softcap·tanh(s/softcap) when softcap > 0.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const int32_t* branch,
                       i64 R, i64 T, i64 NH, i64 NKV, i64 HS, i64 window, float scale, float softcap);
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const int32_t* branch, i64 R, i64 T,
                        i64 NH, i64 NKV, i64 HS, i64 window, float scale, float softcap);
void attention_decode(float* out, const float* q, const float* kCache, const float* vCache, i64 T, i64 pos0,
                      i64 NH, i64 NKV, i64 HS, i64 window, float scale, float softcap);

void swiglu_forward(float* out, const float* gate, const float* up, i64 n);
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, i64 n);
// out = gelu_tanh(gate) · up (out may alias gate or up)
void geglu_forward(float* out, const float* gate, const float* up, i64 n);
void geglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, i64 n);

// out = gelu_tanh(inp) (out may alias inp), the same bits as geglu_forward with up = 1
void gelu_forward(float* out, const float* inp, i64 n);
void gelu_backward(float* dinp, const float* dout, const float* inp, i64 n);

void add_forward(float* out, const float* a, const float* b, i64 n);
void accumulate(float* dst, const float* src, i64 n);
void scale(float* x, double s, i64 n);
double sum_squares(const float* x, i64 n);

// The fused LM head's per-row outputs, each (M); logSumSq, entropy and argmax may be nullptr (not wanted).
struct HeadStats {
  float* logp;       // log softmax(z)[target]
  float* lse;        // logsumexp(z)
  float* logitSum;   // Σ z
  float* logSumSq;   // log Σ softmax(z)², WPO's weights
  float* entropy;    // H(softmax(z)), TRL's `entropy`
  int32_t* argmax;   // the first index of max z, for `mean_token_accuracy`
};

// The LM head fused with log-softmax and gather over rows[0..M) of x; dW may be nullptr. softcap > 0 caps the logits
// (softcap·tanh(z/softcap)) before everything else.
void lm_head_logprob_forward(const HeadStats& out, const float* x, const int32_t* rows, const int32_t* targets,
                             const float* W, i64 M, i64 C, i64 V, float softcap);
void lm_head_logprob_backward(float* dx, float* dW, const float* dlogp, const float* x, const int32_t* rows,
                              const int32_t* targets, const float* W, const float* lse, i64 M, i64 C, i64 V,
                              float softcap);

// dst (rows, cols) = rows of a matrix stored in GGML blocks of ggml type `type` (quant.inc), starting at src.
// False when the type is not one quant.inc knows. cols must be a whole number of blocks (the caller checks).
bool dequantize_rows(float* dst, const uint8_t* src, int type, i64 rows, i64 cols);
// Bytes of one row of `cols` elements of `type` (0: unknown type, or cols not a whole number of blocks).
i64 quant_row_bytes(int type, i64 cols);
// matmul_forward / the dinp half of matmul_backward with W (OC, IC) stored in GGML blocks of `type`.
void matmul_forward_quant(float* out, const float* inp, const uint8_t* w, int type, const float* bias, i64 N, i64 IC,
                          i64 OC);
void matmul_backward_quant(float* dinp, const float* dout, const uint8_t* w, int type, i64 N, i64 IC, i64 OC);
// The fused LM head with W (V, C) stored in GGML blocks of `type` (frozen: no dW). Same bits as the float head on the
// dequantised W: the GEMM dequantises inside its packing.
void lm_head_logprob_forward_quant(const HeadStats& out, const float* x, const int32_t* rows, const int32_t* targets,
                                   const uint8_t* W, int type, i64 M, i64 C, i64 V, float softcap);
void lm_head_logprob_backward_quant(float* dx, const float* dlogp, const float* x, const int32_t* rows,
                                    const int32_t* targets, const uint8_t* W, int type, const float* lse, i64 M, i64 C,
                                    i64 V, float softcap);

void adamw_step(float* params, const float* grads, float* m, float* v, i64 n, double lr, double beta1, double beta2,
                double eps, double weightDecay, double step);

// This machine's float32 FMA throughput in GFLOP/s, summed over g_threads threads that each run a register-only
// FMA loop of the selected instruction set for about `ms` milliseconds (the bench compares GEMM against it).
double fma_peak_gflops(double ms);

}  // namespace tsdpo
