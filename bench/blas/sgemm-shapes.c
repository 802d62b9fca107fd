// Single-precision GEMM throughput at the matrix products of one tsdpo DPO step, for one or more BLAS libraries.
//
//   sgemm-shapes REPS WARMUP LABEL:cblas|dnnl:LIBRARY.so [LABEL:cblas|dnnl:LIBRARY.so ...]
//
// Each library is opened with dlopen (RTLD_LOCAL), so one binary measures OpenBLAS, BLIS and oneDNN without being
// linked to any of them, and libraries exporting the same cblas_sgemm do not bind to each other's symbols. With
// several libraries, every product is timed on each of them in turn before the next product (A, B, C, A, B, C, ...,
// the first library rotating with the repetition), so machine noise falls on all of them alike and each repetition
// gives paired samples; each library has its own operands, so none inherits another's warm cache. Threads come from
// the environment (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, ...), as they do for the addon; see run.sh.
//
// Every product is row-major, in tsdpo's layouts (src/backend/native/kernels.cc, matmul_forward / matmul_backward,
// and the fused LM head, which is the same three products per vocabulary tile of 4096 rows of W):
//   fwd   out  = inp · Wᵀ      M = rows, N = OC, K = IC   (A no-trans, B trans, beta 0)
//   dinp  dinp += dout · W     M = rows, N = IC, K = OC   (no-trans, no-trans, beta 1)
//   dW    dW  += doutᵀ · inp   M = OC,  N = IC, K = rows  (A trans, B no-trans, beta 1)
//
// Output, one line per timed call (tab-separated, read by summarise.mjs):
//   sample LABEL MODEL SHAPE OP M N K PER_STEP REP SECONDS
// PER_STEP is how many times a DPO step runs this product (for the step-weighted mix), REP the repetition (calls of
// one REP on different libraries ran back to back). Lines starting with # describe the libraries as loaded.

#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// The reference CBLAS enum values (fixed by the CBLAS standard, the same in OpenBLAS's and BLIS's cblas.h).
enum { kRowMajor = 101, kNoTrans = 111, kTrans = 112 };
// Both Debian builds measured here use 32-bit integers in their BLAS interfaces (libopenblas0, libblis4).
typedef void (*CblasSgemm)(int order, int transA, int transB, int M, int N, int K, float alpha, const float* A,
                           int lda, const float* B, int ldb, float beta, float* C, int ldc);
// oneDNN's dnnl_sgemm: row-major, transposes as 'N' / 'T', 64-bit dimensions, returns a status (0 = success).
typedef int (*DnnlSgemm)(char transA, char transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                         int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

typedef struct {
  CblasSgemm cblas;
  DnnlSgemm dnnl;
} Blas;

static void die(const char* what, const char* detail) {
  fprintf(stderr, "sgemm-shapes: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  exit(1);
}

static void sgemm(const Blas* b, bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
                  const float* B, int ldb, float beta, float* C, int ldc) {
  if (b->cblas) {
    b->cblas(kRowMajor, transA ? kTrans : kNoTrans, transB ? kTrans : kNoTrans, M, N, K, alpha, A, lda, B, ldb, beta,
             C, ldc);
  } else if (b->dnnl(transA ? 'T' : 'N', transB ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) != 0) {
    die("dnnl_sgemm failed", NULL);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The products

typedef enum { kFwd, kDinp, kDweight, kOps } Op;
static const char* const kOpName[kOps] = {"fwd", "dinp", "dW"};

// One weight shape (OC, IC) applied to `rows` token rows. `copies` > 1 rotates through that many distinct weight
// (and weight-gradient) buffers, so a shape whose real instances are many (the LM head's vocabulary tiles) is not
// timed on a weight left in the last-level cache by its previous repetition.
typedef struct {
  const char* model;
  const char* name;
  int rows, OC, IC, copies;
  double per_step[kOps];  // calls per DPO step
  float *inp, *out, *dout, *dinp;
  float **W, **dW;
} Shape;

// Calls per DPO step. A linear layer: forward for the policy and for the reference, backward once (full fine-tune,
// so dW is computed). `uses` is how many projections per layer have that shape. The LM head: per vocabulary tile,
// forward for policy and reference and the recomputation in backward, then dinp and dW once.
static Shape linear(const char* model, const char* name, int rows, int OC, int IC, int layers, int uses) {
  const double n = (double)layers * uses;
  return (Shape){.model = model, .name = name, .rows = rows, .OC = OC, .IC = IC, .copies = 1,
                 .per_step = {2 * n, n, n}};
}
static Shape lm_head(const char* model, int rows, int C, int V) {
  const double tiles = V / 4096.0;
  return (Shape){.model = model, .name = "lm_head", .rows = rows, .OC = 4096, .IC = C, .copies = 4,
                 .per_step = {3 * tiles, tiles, tiles}};
}

static float* filled(size_t n, unsigned seed) {
  float* p = aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64);
  if (!p) die("out of memory", NULL);
  // Small values of both signs, so accumulating (beta = 1) over hundreds of repetitions stays far from overflow.
  for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u + seed) % 1000) * 1e-3f - 0.5f;
  return p;
}

static void allocate(Shape* s) {
  const size_t r = (size_t)s->rows, oc = (size_t)s->OC, ic = (size_t)s->IC;
  s->inp = filled(r * ic, 1);
  s->out = filled(r * oc, 2);
  s->dout = filled(r * oc, 3);
  s->dinp = filled(r * ic, 4);
  s->W = malloc(sizeof(float*) * (size_t)s->copies);
  s->dW = malloc(sizeof(float*) * (size_t)s->copies);
  for (int c = 0; c < s->copies; c++) {
    s->W[c] = filled(oc * ic, 5 + (unsigned)c);
    s->dW[c] = filled(oc * ic, 50 + (unsigned)c);
  }
}

static void run(const Blas* b, const Shape* s, Op op, int copy) {
  const int R = s->rows, OC = s->OC, IC = s->IC;
  switch (op) {
    case kFwd: sgemm(b, false, true, R, OC, IC, 1.0f, s->inp, IC, s->W[copy], IC, 0.0f, s->out, OC); break;
    case kDinp: sgemm(b, false, false, R, IC, OC, 1.0f, s->dout, OC, s->W[copy], IC, 1.0f, s->dinp, IC); break;
    default: sgemm(b, true, false, OC, IC, R, 1.0f, s->dout, OC, s->inp, IC, 1.0f, s->dW[copy], IC); break;
  }
}

static void dims(const Shape* s, Op op, int* M, int* N, int* K) {
  if (op == kFwd) *M = s->rows, *N = s->OC, *K = s->IC;
  else if (op == kDinp) *M = s->rows, *N = s->IC, *K = s->OC;
  else *M = s->OC, *N = s->IC, *K = s->rows;
}

// ---------------------------------------------------------------------------------------------------------------
// The library's products checked against a plain double-precision loop, in the three layouts, before any timing:
// a wrong transpose or leading dimension in the bindings above would otherwise time the wrong product.

static void check_layouts(const Blas* b) {
  const int M = 37, N = 29, K = 41;
  float* A = filled((size_t)M * K, 7);
  float* B = filled((size_t)K * N, 8);
  float* C = malloc(sizeof(float) * (size_t)M * N);
  for (int layout = 0; layout < 3; layout++) {
    const bool tA = layout == 2, tB = layout == 0;  // NT (fwd), NN (dinp), TN (dW)
    const int lda = tA ? M : K, ldb = tB ? K : N;
    for (int i = 0; i < M * N; i++) C[i] = (float)(i % 5) - 2.0f;
    sgemm(b, tA, tB, M, N, K, 0.75f, A, lda, B, ldb, 0.5f, C, N);
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) {
        double want = 0.5 * ((double)((i * N + j) % 5) - 2.0);
        double dot = 0;
        for (int k = 0; k < K; k++) {
          const double a = tA ? A[k * lda + i] : A[i * lda + k], bk = tB ? B[j * ldb + k] : B[k * ldb + j];
          dot += a * bk;
        }
        want += 0.75 * dot;
        if (fabs(C[i * N + j] - want) > 1e-4 * (1 + fabs(want))) {
          char where[96];
          snprintf(where, sizeof where, "layout %d, (%d, %d): got %g, want %g", layout, i, j, C[i * N + j], want);
          die("wrong product", where);
        }
      }
  }
  free(A), free(B), free(C);
}

// ---------------------------------------------------------------------------------------------------------------
// What was loaded, from each library's own query functions where it has them.

static void describe(void* lib, const char* path) {
  printf("# library %s\n", path);
  const char* (*corename)(void) = (const char* (*)(void))dlsym(lib, "openblas_get_corename");
  const char* (*config)(void) = (const char* (*)(void))dlsym(lib, "openblas_get_config");
  int (*parallel)(void) = (int (*)(void))dlsym(lib, "openblas_get_parallel");
  int (*ob_threads)(void) = (int (*)(void))dlsym(lib, "openblas_get_num_threads");
  if (corename) printf("# openblas core %s, config %s\n", corename(), config ? config() : "?");
  if (parallel)
    printf("# openblas parallel %d (0 serial, 1 pthreads, 2 openmp), threads %d\n", parallel(),
           ob_threads ? ob_threads() : -1);
  char* (*blis_version)(void) = (char* (*)(void))dlsym(lib, "bli_info_get_version_str");
  int (*blis_arch)(void) = (int (*)(void))dlsym(lib, "bli_arch_query_id");
  char* (*blis_arch_name)(int) = (char* (*)(int))dlsym(lib, "bli_arch_string");
  int64_t (*blis_threads)(void) = (int64_t (*)(void))dlsym(lib, "bli_thread_get_num_threads");
  if (blis_version)
    printf("# blis %s, arch %s, threads %lld\n", blis_version(),
           blis_arch && blis_arch_name ? blis_arch_name(blis_arch()) : "?",
           blis_threads ? (long long)blis_threads() : -1LL);
  typedef struct { int major, minor, patch; const char* hash; unsigned cpu_runtime, gpu_runtime; } DnnlVersion;
  const DnnlVersion* (*dnnl_version)(void) = (const DnnlVersion* (*)(void))dlsym(lib, "dnnl_version");
  int (*dnnl_isa)(void) = (int (*)(void))dlsym(lib, "dnnl_get_effective_cpu_isa");
  if (dnnl_version) {
    const DnnlVersion* v = dnnl_version();
    printf("# onednn %d.%d.%d, cpu runtime %u (2 = OpenMP), effective isa 0x%x (0x7 = avx2)\n", v->major, v->minor,
           v->patch, v->cpu_runtime, dnnl_isa ? dnnl_isa() : -1);
  }
  const char* (*tsdpo_gemm)(void) = (const char* (*)(void))dlsym(lib, "tsdpo_gemm_describe");
  if (tsdpo_gemm) printf("# tsdpo gemm %s\n", tsdpo_gemm());
  int (*omp_threads)(void) = (int (*)(void))dlsym(lib, "omp_get_max_threads");
  if (omp_threads) printf("# omp_get_max_threads %d\n", omp_threads());
  const char* env[] = {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS",
                       "OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_CORETYPE", "TSDPO_SIMD"};
  for (size_t i = 0; i < sizeof env / sizeof env[0]; i++)
    printf("# env %s=%s\n", env[i], getenv(env[i]) ? getenv(env[i]) : "(unset)");
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
  const char* label;
  Blas blas;
  Shape* shapes;
} Library;

// "LABEL:cblas|dnnl:PATH"
static Library open_library(char* spec) {
  char* iface = strchr(spec, ':');
  char* path = iface ? strchr(iface + 1, ':') : NULL;
  if (!path) die("library must be LABEL:cblas|dnnl:PATH", spec);
  *iface++ = 0, *path++ = 0;
  const bool is_dnnl = strcmp(iface, "dnnl") == 0;
  if (!is_dnnl && strcmp(iface, "cblas") != 0) die("interface must be cblas or dnnl", iface);
  void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib) die("dlopen", dlerror());
  Library L = {.label = spec};
  if (is_dnnl) L.blas.dnnl = (DnnlSgemm)dlsym(lib, "dnnl_sgemm");
  else L.blas.cblas = (CblasSgemm)dlsym(lib, "cblas_sgemm");
  if (!L.blas.cblas && !L.blas.dnnl) die("symbol not found", is_dnnl ? "dnnl_sgemm" : "cblas_sgemm");
  printf("# lib %s\n", L.label);
  describe(lib, path);
  check_layouts(&L.blas);
  printf("# layouts NT, NN, TN checked against a double-precision loop\n");
  return L;
}

int main(int argc, char** argv) {
  if (argc < 4) die("usage: sgemm-shapes REPS WARMUP LABEL:cblas|dnnl:LIBRARY.so [...]", NULL);
  const int reps = atoi(argv[1]), warmup = atoi(argv[2]);
  const int nlibs = argc - 3;

  // SmolLM-135M: C 576, FF 1536, 9 heads and 3 KV heads of 64, 30 layers, V 49152.
  // Qwen2.5-0.5B: C 896, FF 4864, 14 heads and 2 KV heads of 64, 24 layers, V 151936.
  // 384 token rows for the layers, 256 for the LM head (tsdpo bench's shapes).
  const Shape step[] = {
      linear("smollm-135m", "q,o 576x576", 384, 576, 576, 30, 2),
      linear("smollm-135m", "k,v 192x576", 384, 192, 576, 30, 2),
      linear("smollm-135m", "gate,up 1536x576", 384, 1536, 576, 30, 2),
      linear("smollm-135m", "down 576x1536", 384, 576, 1536, 30, 1),
      lm_head("smollm-135m", 256, 576, 49152),
      linear("qwen2.5-0.5b", "q,o 896x896", 384, 896, 896, 24, 2),
      linear("qwen2.5-0.5b", "k,v 128x896", 384, 128, 896, 24, 2),
      linear("qwen2.5-0.5b", "gate,up 4864x896", 384, 4864, 896, 24, 2),
      linear("qwen2.5-0.5b", "down 896x4864", 384, 896, 4864, 24, 1),
      lm_head("qwen2.5-0.5b", 256, 896, 151936),
  };
  const int nshapes = (int)(sizeof step / sizeof step[0]);

  Library* libs = malloc(sizeof(Library) * (size_t)nlibs);
  for (int l = 0; l < nlibs; l++) {
    libs[l] = open_library(argv[3 + l]);
    libs[l].shapes = malloc(sizeof step);
    memcpy(libs[l].shapes, step, sizeof step);
    for (int i = 0; i < nshapes; i++) allocate(&libs[l].shapes[i]);
  }
  fflush(stdout);

  // Repetition r runs every product once, shape after shape, each on every library in turn.
  for (int r = 0; r < warmup + reps; r++) {
    for (int i = 0; i < nshapes; i++) {
      for (int op = 0; op < kOps; op++) {
        for (int j = 0; j < nlibs; j++) {
          const Library* L = &libs[(j + r) % nlibs];
          const Shape* s = &L->shapes[i];
          const double t0 = now();
          run(&L->blas, s, (Op)op, r % s->copies);
          const double t = now() - t0;
          if (r < warmup) continue;
          int M, N, K;
          dims(s, (Op)op, &M, &N, &K);
          printf("sample\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%g\t%d\t%.9f\n", L->label, s->model, s->name, kOpName[op], M, N,
                 K, s->per_step[op], r - warmup, t);
        }
      }
    }
  }
  return 0;
}
