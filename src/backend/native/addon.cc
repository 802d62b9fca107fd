// N-API glue: one exported function per kernel of src/backend/contract.ts, same name and argument order, plus
// `info()`, `setThreads(n)`, `setSimd(level)` and `fmaPeakGflops(ms)`.
//
// Written against plain node_api.h (the C API) rather than node-addon-api: the surface is ~20 flat functions taking
// typed arrays and numbers, which the small Args class covers, and it keeps `npm ci` free of a build dependency.
//
// Every call checks, before any kernel runs, that each buffer is a Float32Array (Int32Array for ids, targets, rows,
// positions and branches) long enough for the sizes given, that sizes are non-negative integers and that every index
// points inside what it indexes: the kernels read and write through raw pointers, so a wrong size must become an
// exception here, never an access past a buffer.

#include <node_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

#include "gemm.h"
#include "kernels.h"

namespace {

using tsdpo::i64;

// Thrown by the argument checks and turned into a JS exception at the boundary (see `guarded`).
struct ArgError {
  std::string message;
  bool type;  // TypeError rather than RangeError
};

class Args {
 public:
  Args(napi_env env, napi_callback_info info, const char* fn, size_t want) : env_(env), fn_(fn) {
    size_t argc = kMax;
    napi_get_cb_info(env, info, &argc, argv_, nullptr, nullptr);
    if (argc < want) fail("expected " + std::to_string(want) + " arguments, got " + std::to_string(argc), true);
  }

  // A Float32Array of at least `need` elements, or nullptr for null when nullable. Longer is fine: the model passes
  // views into larger arenas. `length` (optional) receives the element count.
  float* f32(size_t i, const char* name, i64 need, bool nullable = false, i64* length = nullptr) {
    return static_cast<float*>(typed(i, name, napi_float32_array, "Float32Array", need, nullable, length));
  }
  int32_t* i32(size_t i, const char* name, i64 need, bool nullable = false) {
    return static_cast<int32_t*>(typed(i, name, napi_int32_array, "Int32Array", need, nullable, nullptr));
  }
  uint8_t* u8(size_t i, const char* name, i64 need) {
    return static_cast<uint8_t*>(typed(i, name, napi_uint8_array, "Uint8Array", need, false, nullptr));
  }
  i64 size(size_t i, const char* name, i64 min = 0) {
    const double d = number(i, name);
    // 2^40 elements is far beyond any buffer, and keeps every product of two sizes inside int64
    if (!(d >= static_cast<double>(min) && d <= 1099511627776.0 && std::floor(d) == d))
      fail(std::string(name) + " must be an integer >= " + std::to_string(min) + ", got " + fmt(d), false);
    return static_cast<i64>(d);
  }
  double number(size_t i, const char* name) {
    napi_valuetype t;
    napi_typeof(env_, argv_[i], &t);
    if (t != napi_number) fail(std::string(name) + " must be a number", true);
    double d;
    napi_get_value_double(env_, argv_[i], &d);
    return d;
  }
  napi_value value(size_t i) const { return argv_[i]; }
  // Whether argument i was left out (napi_get_cb_info fills missing arguments with undefined).
  bool absent(size_t i) const {
    napi_valuetype t;
    napi_typeof(env_, argv_[i], &t);
    return t == napi_undefined;
  }
  [[noreturn]] void fail(const std::string& what, bool type) {
    throw ArgError{std::string("tsdpo native ") + fn_ + ": " + what, type};
  }

 private:
  static constexpr size_t kMax = 20;
  static std::string fmt(double d) {
    char b[64];
    std::snprintf(b, sizeof b, "%.17g", d);
    return b;
  }
  void* typed(size_t i, const char* name, napi_typedarray_type want, const char* wantName, i64 need, bool nullable,
              i64* lengthOut) {
    napi_valuetype vt;
    napi_typeof(env_, argv_[i], &vt);
    if (nullable && (vt == napi_null || vt == napi_undefined)) return nullptr;
    bool isTyped = false;
    napi_is_typedarray(env_, argv_[i], &isTyped);
    if (!isTyped) fail(std::string(name) + " must be a " + wantName, true);
    napi_typedarray_type type;
    size_t length;
    void* data;
    napi_get_typedarray_info(env_, argv_[i], &type, &length, &data, nullptr, nullptr);
    if (type != want) {
      if (type == napi_float64_array && want == napi_float32_array)
        fail(std::string(name) +
                 " is a Float64Array: the native backend computes in float32 only; run float64 work (such as "
                 "finite-difference checks) on --backend js",
             true);
      fail(std::string(name) + " must be a " + wantName, true);
    }
    if (static_cast<i64>(length) < need)
      fail(std::string(name) + " has " + std::to_string(length) + " elements but the sizes need " +
               std::to_string(need),
           false);
    if (lengthOut) *lengthOut = static_cast<i64>(length);
    return data;
  }

  napi_env env_;
  const char* fn_;
  napi_value argv_[kMax];
};

napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

template <class F>
napi_value guarded(napi_env env, napi_callback_info info, const char* fn, size_t argc, F body) {
  try {
    Args a(env, info, fn, argc);
    body(a);
  } catch (const ArgError& e) {
    if (e.type)
      napi_throw_type_error(env, nullptr, e.message.c_str());
    else
      napi_throw_range_error(env, nullptr, e.message.c_str());
  }
  return undefined(env);
}

// Every ids[n] in 0..V−1; `what` (optional) says what they index, for the message.
void check_ids(Args& a, const int32_t* ids, i64 N, i64 V, const char* name, const char* what = nullptr) {
  for (i64 n = 0; n < N; n++)
    if (ids[n] < 0 || ids[n] >= V)
      a.fail(std::string(name) + "[" + std::to_string(n) + "] = " + std::to_string(ids[n]) + " is outside 0.." +
                 std::to_string(V - 1) + (what ? std::string(" (") + what + ")" : std::string()),
             false);
}

// Products of sizes for the length checks, saturating so that an overflow fails the check instead of wrapping.
i64 mul(i64 a) { return a; }
template <class... Rest>
i64 mul(i64 a, i64 b, Rest... rest) {
  i64 r;
  if (__builtin_mul_overflow(a, b, &r)) return INT64_MAX;
  return mul(r, rest...);
}

struct Heads {
  i64 NH, NKV, HS;
};
Heads heads(Args& a, size_t i) {
  Heads h{a.size(i, "NH", 1), a.size(i + 1, "NKV", 1), a.size(i + 2, "HS", 1)};
  if (h.NH % h.NKV != 0) a.fail("NH must be a multiple of NKV", false);
  return h;
}

// A finite number (scale factors, weight offsets); with nonNegative, also ≥ 0 (soft-caps: 0 means none).
double finite(Args& a, size_t i, const char* name, bool nonNegative = false) {
  const double d = a.number(i, name);
  if (!std::isfinite(d) || (nonNegative && d < 0))
    a.fail(std::string(name) + " must be a finite number" + (nonNegative ? " >= 0 (0: none)" : "") + ", got " +
               std::to_string(d),
           false);
  return d;
}

// ------------------------------------------------------------------------------------------------------------------

napi_value EmbeddingForward(napi_env env, napi_callback_info info) {
  return guarded(env, info, "embeddingForward", 5, [](Args& a) {
    const i64 N = a.size(3, "N"), C = a.size(4, "C", 1);
    i64 tableLen = 0;
    float* out = a.f32(0, "out", mul(N, C));
    int32_t* ids = a.i32(1, "ids", N);
    float* table = a.f32(2, "table", 0, false, &tableLen);
    check_ids(a, ids, N, tableLen / C, "ids");
    tsdpo::embedding_forward(out, ids, table, N, C);
  });
}

napi_value EmbeddingBackward(napi_env env, napi_callback_info info) {
  return guarded(env, info, "embeddingBackward", 5, [](Args& a) {
    const i64 N = a.size(3, "N"), C = a.size(4, "C", 1);
    i64 tableLen = 0;
    float* dtable = a.f32(0, "dtable", 0, false, &tableLen);
    float* dout = a.f32(1, "dout", mul(N, C));
    int32_t* ids = a.i32(2, "ids", N);
    check_ids(a, ids, N, tableLen / C, "ids");
    tsdpo::embedding_backward(dtable, dout, ids, N, C);
  });
}

napi_value RmsnormForward(napi_env env, napi_callback_info info) {
  return guarded(env, info, "rmsnormForward", 8, [](Args& a) {
    const i64 N = a.size(4, "N"), C = a.size(5, "C", 1);
    const double eps = a.number(6, "eps"), offset = finite(a, 7, "offset");
    tsdpo::rmsnorm_forward(a.f32(0, "out", mul(N, C)), a.f32(1, "rstd", N), a.f32(2, "inp", mul(N, C)), a.f32(3, "weight", C),
                           N, C, static_cast<float>(eps), offset);
  });
}

napi_value RmsnormBackward(napi_env env, napi_callback_info info) {
  return guarded(env, info, "rmsnormBackward", 9, [](Args& a) {
    const i64 N = a.size(6, "N"), C = a.size(7, "C", 1);
    const double offset = finite(a, 8, "offset");
    tsdpo::rmsnorm_backward(a.f32(0, "dinp", mul(N, C)), a.f32(1, "dweight", C, true), a.f32(2, "dout", mul(N, C)),
                            a.f32(3, "inp", mul(N, C)), a.f32(4, "weight", C), a.f32(5, "rstd", N), N, C, offset);
  });
}

napi_value LayernormForward(napi_env env, napi_callback_info info) {
  return guarded(env, info, "layernormForward", 9, [](Args& a) {
    const i64 N = a.size(6, "N"), C = a.size(7, "C", 1);
    const double eps = a.number(8, "eps");
    tsdpo::layernorm_forward(a.f32(0, "out", mul(N, C)), a.f32(1, "mean", N), a.f32(2, "rstd", N), a.f32(3, "inp", mul(N, C)),
                             a.f32(4, "weight", C), a.f32(5, "bias", C, true), N, C, static_cast<float>(eps));
  });
}

napi_value LayernormBackward(napi_env env, napi_callback_info info) {
  return guarded(env, info, "layernormBackward", 10, [](Args& a) {
    const i64 N = a.size(8, "N"), C = a.size(9, "C", 1);
    tsdpo::layernorm_backward(a.f32(0, "dinp", mul(N, C)), a.f32(1, "dweight", C, true), a.f32(2, "dbias", C, true),
                              a.f32(3, "dout", mul(N, C)), a.f32(4, "inp", mul(N, C)), a.f32(5, "weight", C),
                              a.f32(6, "mean", N), a.f32(7, "rstd", N), N, C);
  });
}

napi_value MatmulForward(napi_env env, napi_callback_info info) {
  return guarded(env, info, "matmulForward", 7, [](Args& a) {
    const i64 N = a.size(4, "N"), IC = a.size(5, "IC"), OC = a.size(6, "OC");
    tsdpo::matmul_forward(a.f32(0, "out", mul(N, OC)), a.f32(1, "inp", mul(N, IC)), a.f32(2, "weight", mul(OC, IC)),
                          a.f32(3, "bias", OC, true), N, IC, OC);
  });
}

napi_value MatmulBackward(napi_env env, napi_callback_info info) {
  return guarded(env, info, "matmulBackward", 9, [](Args& a) {
    const i64 N = a.size(6, "N"), IC = a.size(7, "IC"), OC = a.size(8, "OC");
    tsdpo::matmul_backward(a.f32(0, "dinp", mul(N, IC), true), a.f32(1, "dweight", mul(OC, IC), true),
                           a.f32(2, "dbias", OC, true), a.f32(3, "dout", mul(N, OC)), a.f32(4, "inp", mul(N, IC)),
                           a.f32(5, "weight", mul(OC, IC)), N, IC, OC);
  });
}

// RD (argument 7) is the rotary width per head (partial RoPE); a caller compiled before it existed passes 7
// arguments, which means the whole head, as it did then.
void rope_call(Args& a, float sign) {
  const i64 N = a.size(4, "N"), H = a.size(5, "H"), HS = a.size(6, "HS", 2);
  if (HS % 2 != 0) a.fail("HS must be even, got " + std::to_string(HS), false);
  const i64 RD = a.absent(7) ? HS : a.size(7, "RD", 2);
  if (RD % 2 != 0 || RD > HS) a.fail("RD must be even and at most HS = " + std::to_string(HS) + ", got " + std::to_string(RD), false);
  i64 cosLen = 0, sinLen = 0;
  float* x = a.f32(0, "x", mul(N, H, HS));
  float* cos = a.f32(1, "cos", 0, false, &cosLen);
  float* sin = a.f32(2, "sin", 0, false, &sinLen);
  int32_t* pos = a.i32(3, "pos", N);
  // the tables are (maxT, RD/2): positions index their rows
  check_ids(a, pos, N, std::min(cosLen, sinLen) / (RD / 2), "pos", "the rows of the cos/sin tables");
  tsdpo::rope(x, cos, sin, pos, N, H, HS, RD, sign);
}

napi_value RopeForward(napi_env env, napi_callback_info info) {
  return guarded(env, info, "ropeForward", 7, [](Args& a) { rope_call(a, 1.0f); });
}

// Per pair RoPE multiplies by m·R(θ) (m: a factor folded into the tables), so its backward multiplies by m·R(−θ).
napi_value RopeBackward(napi_env env, napi_callback_info info) {
  return guarded(env, info, "ropeBackward", 7, [](Args& a) { rope_call(a, -1.0f); });
}

// branch (R,2): each row's [P, S] with 0 ≤ P ≤ S (S ≥ T reads as no branch).
int32_t* branch_arg(Args& a, size_t i, i64 R) {
  int32_t* branch = a.i32(i, "branch", mul(R, 2), true);
  if (branch)
    for (i64 r = 0; r < R; r++) {
      const int32_t P = branch[2 * r], S = branch[2 * r + 1];
      if (P < 0 || P > S)
        a.fail("branch row " + std::to_string(r) + " is [P, S] = [" + std::to_string(P) + ", " + std::to_string(S) +
                   "]; it needs 0 <= P <= S (prompt end, rejected answer start)",
               false);
    }
  return branch;
}

napi_value AttentionForward(napi_env env, napi_callback_info info) {
  return guarded(env, info, "attentionForward", 14, [](Args& a) {
    const i64 R = a.size(6, "R"), T = a.size(7, "T");
    const Heads h = heads(a, 8);
    const i64 window = a.size(11, "window");
    const float scale = static_cast<float>(finite(a, 12, "scale")), softcap = static_cast<float>(finite(a, 13, "softcap", true));
    const i64 nq = mul(R, T, h.NH, h.HS), nkv = mul(R, T, h.NKV, h.HS);
    tsdpo::attention_forward(a.f32(0, "out", nq), a.f32(1, "lse", mul(R, h.NH, T)), a.f32(2, "q", nq),
                             a.f32(3, "k", nkv), a.f32(4, "v", nkv), branch_arg(a, 5, R), R, T, h.NH, h.NKV, h.HS,
                             window, scale, softcap);
  });
}

napi_value AttentionBackward(napi_env env, napi_callback_info info) {
  return guarded(env, info, "attentionBackward", 18, [](Args& a) {
    const i64 R = a.size(10, "R"), T = a.size(11, "T");
    const Heads h = heads(a, 12);
    const i64 window = a.size(15, "window");
    const float scale = static_cast<float>(finite(a, 16, "scale")), softcap = static_cast<float>(finite(a, 17, "softcap", true));
    const i64 nq = mul(R, T, h.NH, h.HS), nkv = mul(R, T, h.NKV, h.HS);
    tsdpo::attention_backward(a.f32(0, "dq", nq), a.f32(1, "dk", nkv), a.f32(2, "dv", nkv), a.f32(3, "dout", nq),
                              a.f32(4, "q", nq), a.f32(5, "k", nkv), a.f32(6, "v", nkv), a.f32(7, "out", nq),
                              a.f32(8, "lse", mul(R, h.NH, T)), branch_arg(a, 9, R), R, T, h.NH, h.NKV, h.HS, window,
                              scale, softcap);
  });
}

napi_value AttentionDecode(napi_env env, napi_callback_info info) {
  return guarded(env, info, "attentionDecode", 12, [](Args& a) {
    const i64 T = a.size(4, "T"), pos0 = a.size(5, "pos0");
    const Heads h = heads(a, 6);
    const i64 window = a.size(9, "window");
    const float scale = static_cast<float>(finite(a, 10, "scale")), softcap = static_cast<float>(finite(a, 11, "softcap", true));
    const i64 nq = mul(T, h.NH, h.HS), cache = mul(pos0 + T, h.NKV, h.HS);
    tsdpo::attention_decode(a.f32(0, "out", nq), a.f32(1, "q", nq), a.f32(2, "kCache", cache),
                            a.f32(3, "vCache", cache), T, pos0, h.NH, h.NKV, h.HS, window, scale, softcap);
  });
}

// A gated activation (SwiGLU, GeGLU): forward(out, gate, up, n) and backward(dgate, dup, dout, gate, up, n).
using GatedForward = void (*)(float*, const float*, const float*, i64);
using GatedBackward = void (*)(float*, float*, const float*, const float*, const float*, i64);

template <GatedForward F>
void gated_forward(Args& a) {
  const i64 n = a.size(3, "n");
  F(a.f32(0, "out", n), a.f32(1, "gate", n), a.f32(2, "up", n), n);
}

template <GatedBackward F>
void gated_backward(Args& a) {
  const i64 n = a.size(5, "n");
  F(a.f32(0, "dgate", n), a.f32(1, "dup", n), a.f32(2, "dout", n), a.f32(3, "gate", n), a.f32(4, "up", n), n);
}

napi_value SwigluForward(napi_env env, napi_callback_info info) {
  return guarded(env, info, "swigluForward", 4, gated_forward<tsdpo::swiglu_forward>);
}

napi_value SwigluBackward(napi_env env, napi_callback_info info) {
  return guarded(env, info, "swigluBackward", 6, gated_backward<tsdpo::swiglu_backward>);
}

napi_value GegluForward(napi_env env, napi_callback_info info) {
  return guarded(env, info, "gegluForward", 4, gated_forward<tsdpo::geglu_forward>);
}

napi_value GegluBackward(napi_env env, napi_callback_info info) {
  return guarded(env, info, "gegluBackward", 6, gated_backward<tsdpo::geglu_backward>);
}

napi_value GeluForward(napi_env env, napi_callback_info info) {
  return guarded(env, info, "geluForward", 3, [](Args& a) {
    const i64 n = a.size(2, "n");
    tsdpo::gelu_forward(a.f32(0, "out", n), a.f32(1, "inp", n), n);
  });
}

napi_value GeluBackward(napi_env env, napi_callback_info info) {
  return guarded(env, info, "geluBackward", 4, [](Args& a) {
    const i64 n = a.size(3, "n");
    tsdpo::gelu_backward(a.f32(0, "dinp", n), a.f32(1, "dout", n), a.f32(2, "inp", n), n);
  });
}

napi_value AddForward(napi_env env, napi_callback_info info) {
  return guarded(env, info, "addForward", 4, [](Args& a) {
    const i64 n = a.size(3, "n");
    tsdpo::add_forward(a.f32(0, "out", n), a.f32(1, "a", n), a.f32(2, "b", n), n);
  });
}

napi_value Accumulate(napi_env env, napi_callback_info info) {
  return guarded(env, info, "accumulate", 3, [](Args& a) {
    const i64 n = a.size(2, "n");
    tsdpo::accumulate(a.f32(0, "dst", n), a.f32(1, "src", n), n);
  });
}

// The LM head's gathered rows. x (N, C) is a view into a larger arena, so N is what its length holds (and, with dx,
// what both hold): rows[m] must index a whole row of it, targets[m] an entry of the vocabulary. dxArg < 0: no dx.
struct HeadRows {
  float* dx;
  float* x;
  int32_t* rows;
  int32_t* targets;
};
HeadRows head_rows(Args& a, int dxArg, int xArg, int rowsArg, int targetsArg, i64 M, i64 C, i64 V) {
  i64 dxLen = 0, xLen = 0;
  HeadRows h{};
  if (dxArg >= 0) h.dx = a.f32(dxArg, "dx", 0, false, &dxLen);
  h.x = a.f32(xArg, "x", 0, false, &xLen);
  h.rows = a.i32(rowsArg, "rows", M);
  h.targets = a.i32(targetsArg, "targets", M);
  if (dxArg >= 0)
    check_ids(a, h.rows, M, std::min(dxLen, xLen) / C, "rows", "the rows of x and dx");
  else
    check_ids(a, h.rows, M, xLen / C, "rows", "the rows of x");
  check_ids(a, h.targets, M, V, "targets");
  return h;
}

// The fused head's outputs, each (M): logp, lse, logitSum and logSumSq (or null) from argument `first` on, and the
// optional entropy (Float32Array) and argmax (Int32Array), null or absent, at `extra` and `extra + 1`, after softcap.
tsdpo::HeadStats head_stats(Args& a, int first, int extra, i64 M) {
  return tsdpo::HeadStats{a.f32(first, "logp", M),         a.f32(first + 1, "lse", M),
                          a.f32(first + 2, "logitSum", M), a.f32(first + 3, "logSumSq", M, true),
                          a.f32(extra, "entropy", M, true), a.i32(extra + 1, "argmax", M, true)};
}

napi_value LmHeadLogprobForward(napi_env env, napi_callback_info info) {
  return guarded(env, info, "lmHeadLogprobForward", 12, [](Args& a) {
    const i64 M = a.size(8, "M"), C = a.size(9, "C", 1), V = a.size(10, "V", 1);
    const HeadRows h = head_rows(a, -1, 4, 5, 6, M, C, V);
    tsdpo::lm_head_logprob_forward(head_stats(a, 0, 12, M), h.x, h.rows, h.targets, a.f32(7, "W", mul(V, C)), M, C, V,
                                   static_cast<float>(finite(a, 11, "softcap", true)));
  });
}

napi_value LmHeadLogprobBackward(napi_env env, napi_callback_info info) {
  return guarded(env, info, "lmHeadLogprobBackward", 12, [](Args& a) {
    const i64 M = a.size(8, "M"), C = a.size(9, "C", 1), V = a.size(10, "V", 1);
    const HeadRows h = head_rows(a, 0, 3, 4, 5, M, C, V);
    tsdpo::lm_head_logprob_backward(h.dx, a.f32(1, "dW", mul(V, C), true), a.f32(2, "dlogp", M), h.x, h.rows, h.targets,
                                    a.f32(6, "W", mul(V, C)), a.f32(7, "lse", M), M, C, V,
                                    static_cast<float>(finite(a, 11, "softcap", true)));
  });
}

napi_value Scale(napi_env env, napi_callback_info info) {
  return guarded(env, info, "scale", 3, [](Args& a) {
    const i64 n = a.size(2, "n");
    tsdpo::scale(a.f32(0, "x", n), a.number(1, "s"), n);
  });
}

napi_value SumSquares(napi_env env, napi_callback_info info) {
  napi_value result = nullptr;
  guarded(env, info, "sumSquares", 2, [&](Args& a) {
    const i64 n = a.size(1, "n");
    napi_create_double(env, tsdpo::sum_squares(a.f32(0, "x", n), n), &result);
  });
  return result ? result : undefined(env);
}

napi_value AdamwStep(napi_env env, napi_callback_info info) {
  return guarded(env, info, "adamwStep", 11, [](Args& a) {
    const i64 n = a.size(4, "n");
    tsdpo::adamw_step(a.f32(0, "params", n), a.f32(1, "grads", n), a.f32(2, "m", n), a.f32(3, "v", n), n,
                      a.number(5, "lr"), a.number(6, "beta1"), a.number(7, "beta2"), a.number(8, "eps"),
                      a.number(9, "weightDecay"), a.number(10, "step"));
  });
}

// ------------------------------------------------------------------------------------------------------------------

napi_value DequantizeRows(napi_env env, napi_callback_info info) {
  return guarded(env, info, "dequantizeRows", 6, [](Args& a) {
    const int type = static_cast<int>(a.size(2, "type"));
    const i64 offset = a.size(3, "srcOffset"), rows = a.size(4, "rows"), cols = a.size(5, "cols");
    const i64 rb = tsdpo::quant_row_bytes(type, cols);
    if (rb == 0)
      throw ArgError{"ggml type " + std::to_string(type) + " with rows of " + std::to_string(cols) +
                         " is not a block format this build reads (or the rows are not whole blocks)",
                     false};
    const uint8_t* src = a.u8(1, "src", offset + mul(rows, rb)) + offset;
    tsdpo::dequantize_rows(a.f32(0, "dst", mul(rows, cols)), src, type, rows, cols);
  });
}

// matmulForwardQuant(out, inp, w, type, wOffset, bias, N, IC, OC) and matmulBackwardQuant(dinp, dout, w, type,
// wOffset, N, IC, OC): the products of src/model/weights.ts with a quantised W, in one call each.
i64 quant_weight_bytes(Args& a, int type, i64 IC, i64 OC) {
  const i64 rb = tsdpo::quant_row_bytes(type, IC);
  if (rb == 0)
    throw ArgError{"ggml type " + std::to_string(type) + " with rows of " + std::to_string(IC) +
                       " is not a block format this build reads (or the rows are not whole blocks)",
                   false};
  return mul(OC, rb);
}

napi_value MatmulForwardQuant(napi_env env, napi_callback_info info) {
  return guarded(env, info, "matmulForwardQuant", 9, [](Args& a) {
    const int type = static_cast<int>(a.size(3, "type"));
    const i64 off = a.size(4, "wOffset"), N = a.size(6, "N"), IC = a.size(7, "IC"), OC = a.size(8, "OC");
    const uint8_t* w = a.u8(2, "w", off + quant_weight_bytes(a, type, IC, OC)) + off;
    tsdpo::matmul_forward_quant(a.f32(0, "out", mul(N, OC)), a.f32(1, "inp", mul(N, IC)), w, type,
                                a.f32(5, "bias", OC, true), N, IC, OC);
  });
}

napi_value MatmulBackwardQuant(napi_env env, napi_callback_info info) {
  return guarded(env, info, "matmulBackwardQuant", 8, [](Args& a) {
    const int type = static_cast<int>(a.size(3, "type"));
    const i64 off = a.size(4, "wOffset"), N = a.size(5, "N"), IC = a.size(6, "IC"), OC = a.size(7, "OC");
    const uint8_t* w = a.u8(2, "w", off + quant_weight_bytes(a, type, IC, OC)) + off;
    tsdpo::matmul_backward_quant(a.f32(0, "dinp", mul(N, IC)), a.f32(1, "dout", mul(N, OC)), w, type, N, IC, OC);
  });
}

// lmHeadLogprobForwardQuant(logp, lse, logitSum, logSumSq, x, rows, targets, w, type, M, C, V, softcap[, entropy, argmax]) and
// lmHeadLogprobBackwardQuant(dx, dlogp, x, rows, targets, w, type, lse, M, C, V, softcap): the fused head with a frozen W
// (V, C) in GGML blocks, as the float ones otherwise (no dW: quantised weights are frozen).
napi_value LmHeadLogprobForwardQuant(napi_env env, napi_callback_info info) {
  return guarded(env, info, "lmHeadLogprobForwardQuant", 13, [](Args& a) {
    const int type = static_cast<int>(a.size(8, "type"));
    const i64 M = a.size(9, "M"), C = a.size(10, "C", 1), V = a.size(11, "V", 1);
    const HeadRows h = head_rows(a, -1, 4, 5, 6, M, C, V);
    const uint8_t* w = a.u8(7, "w", quant_weight_bytes(a, type, C, V));
    tsdpo::lm_head_logprob_forward_quant(head_stats(a, 0, 13, M), h.x, h.rows, h.targets, w, type, M, C, V,
                                         static_cast<float>(finite(a, 12, "softcap", true)));
  });
}

napi_value LmHeadLogprobBackwardQuant(napi_env env, napi_callback_info info) {
  return guarded(env, info, "lmHeadLogprobBackwardQuant", 12, [](Args& a) {
    const int type = static_cast<int>(a.size(6, "type"));
    const i64 M = a.size(8, "M"), C = a.size(9, "C", 1), V = a.size(10, "V", 1);
    const HeadRows h = head_rows(a, 0, 2, 3, 4, M, C, V);
    const uint8_t* w = a.u8(5, "w", quant_weight_bytes(a, type, C, V));
    tsdpo::lm_head_logprob_backward_quant(h.dx, a.f32(1, "dlogp", M), h.x, h.rows, h.targets, w, type, a.f32(7, "lse", M), M, C,
                                          V, static_cast<float>(finite(a, 11, "softcap", true)));
  });
}

napi_value SetThreads(napi_env env, napi_callback_info info) {
  napi_value result = nullptr;
  guarded(env, info, "setThreads", 1, [&](Args& a) {
    const i64 n = a.size(0, "threads", 1);
    napi_create_int32(env, tsdpo::set_threads(static_cast<int>(n > 1024 ? 1024 : n)), &result);
  });
  return result ? result : undefined(env);
}

// The GEMM itself, for its tests and the bench: sgemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc),
// row-major, as gemm.h. Leading dimensions must cover the rows they stride over.
napi_value Sgemm(napi_env env, napi_callback_info info) {
  return guarded(env, info, "sgemm", 13, [&](Args& a) {
    bool transA = false, transB = false;
    napi_get_value_bool(env, a.value(0), &transA);
    napi_get_value_bool(env, a.value(1), &transB);
    const i64 M = a.size(2, "M"), N = a.size(3, "N"), K = a.size(4, "K");
    const float alpha = static_cast<float>(a.number(5, "alpha"));
    const i64 lda = a.size(7, "lda"), ldb = a.size(9, "ldb");
    const float beta = static_cast<float>(a.number(10, "beta"));
    const i64 ldc = a.size(12, "ldc");
    // op(A) is M × K: stored rows × cols = (transA ? K × M : M × K); likewise B (K × N) and C (M × N).
    const i64 aRows = transA ? K : M, aCols = transA ? M : K, bRows = transB ? N : K, bCols = transB ? K : N;
    if (lda < aCols || ldb < bCols || ldc < N) a.fail("a leading dimension is smaller than its matrix's row", false);
    const auto need = [](i64 rows, i64 cols, i64 ld) -> i64 {
      if (rows == 0 || cols == 0) return 0;
      const i64 m = mul(rows - 1, ld);
      return m > INT64_MAX / 2 ? INT64_MAX : m + cols;
    };
    const float* A = a.f32(6, "A", need(aRows, aCols, lda));
    const float* B = a.f32(8, "B", need(bRows, bCols, ldb));
    float* C = a.f32(11, "C", need(M, N, ldc));
    tsdpo::sgemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  });
}

napi_value FmaPeakGflops(napi_env env, napi_callback_info info) {
  napi_value result = nullptr;
  guarded(env, info, "fmaPeakGflops", 1, [&](Args& a) {
    const double ms = a.number(0, "ms");
    if (!(ms > 0 && ms <= 10000)) a.fail("ms must be a number of milliseconds in (0, 10000]", false);
    napi_create_double(env, tsdpo::fma_peak_gflops(ms), &result);
  });
  return result ? result : undefined(env);
}

napi_value SetSimd(napi_env env, napi_callback_info info) {
  napi_value result = nullptr;
  guarded(env, info, "setSimd", 1, [&](Args& a) {
    char level[32] = {0};
    size_t len = 0;
    if (napi_get_value_string_utf8(env, a.value(0), level, sizeof level, &len) != napi_ok)
      a.fail("level must be a string", true);
    napi_get_boolean(env, tsdpo::set_simd(level), &result);
  });
  return result ? result : undefined(env);
}

void set_string(napi_env env, napi_value obj, const char* key, const char* value) {
  napi_value v;
  napi_create_string_utf8(env, value ? value : "", NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, obj, key, v);
}

napi_value Info(napi_env env, napi_callback_info) {
  napi_value obj, v;
  napi_create_object(env, &obj);
  napi_create_int32(env, tsdpo::get_threads(), &v);
  napi_set_named_property(env, obj, "threads", v);
  set_string(env, obj, "threadPool", tsdpo::thread_pool_kind());
  set_string(env, obj, "simd", tsdpo::simd_level());
  set_string(env, obj, "gemm", tsdpo::gemm_describe());
  return obj;
}

napi_value Init(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
#define FN(js, c) {js, nullptr, c, nullptr, nullptr, nullptr, napi_enumerable, nullptr}
      FN("embeddingForward", EmbeddingForward),   FN("embeddingBackward", EmbeddingBackward),
      FN("rmsnormForward", RmsnormForward),       FN("rmsnormBackward", RmsnormBackward),
      FN("layernormForward", LayernormForward),   FN("layernormBackward", LayernormBackward),
      FN("matmulForward", MatmulForward),         FN("matmulBackward", MatmulBackward),
      FN("ropeForward", RopeForward),             FN("ropeBackward", RopeBackward),
      FN("attentionForward", AttentionForward),   FN("attentionBackward", AttentionBackward),
      FN("attentionDecode", AttentionDecode),     FN("swigluForward", SwigluForward),
      FN("swigluBackward", SwigluBackward),       FN("gegluForward", GegluForward),
      FN("gegluBackward", GegluBackward),         FN("geluForward", GeluForward),
      FN("geluBackward", GeluBackward),           FN("addForward", AddForward),
      FN("accumulate", Accumulate),             FN("scale", Scale),
      FN("sumSquares", SumSquares),
      FN("dequantizeRows", DequantizeRows),
      FN("matmulForwardQuant", MatmulForwardQuant),
      FN("matmulBackwardQuant", MatmulBackwardQuant),
      FN("lmHeadLogprobForwardQuant", LmHeadLogprobForwardQuant),
      FN("lmHeadLogprobBackwardQuant", LmHeadLogprobBackwardQuant),
      FN("lmHeadLogprobForward", LmHeadLogprobForward),
      FN("lmHeadLogprobBackward", LmHeadLogprobBackward),
      FN("adamwStep", AdamwStep),                 FN("setThreads", SetThreads),
      FN("setSimd", SetSimd),                     FN("fmaPeakGflops", FmaPeakGflops),
      FN("info", Info),                           FN("sgemm", Sgemm),
#undef FN
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
