// Which instruction-set copies of the vector code this build has and this CPU can run. kernels.cc (the range
// kernels of simd_kernels.inc) and gemm.cc (the GEMM micro-kernels of gemm_kernels.inc) each compile one copy per
// level and pick theirs by these names, so TSDPO_SIMD moves both together.
#pragma once
#include <cstring>

// Per-instruction-set copies need GCC's `#pragma GCC target`; elsewhere (clang, other CPUs) only the portable copy,
// plain C++ compiled for whatever the compiler targets, is built.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define TSDPO_X86_DISPATCH 1
#else
#define TSDPO_X86_DISPATCH 0
#endif

namespace tsdpo {

// The levels, widest first. "portable" is the plain C++ copy (SSE2 on x86-64, NEON on arm64, as the compiler
// chooses), which every build has.
inline constexpr const char* kSimdLevels[] = {"avx512", "avx2", "portable"};

// True when this build has the copy for `level` and this CPU (and its OS, which must save the wider registers) can
// run it.
inline bool simd_level_runs(const char* level) {
#if TSDPO_X86_DISPATCH
  __builtin_cpu_init();
  if (std::strcmp(level, "avx512") == 0) return __builtin_cpu_supports("x86-64-v4");
  if (std::strcmp(level, "avx2") == 0) return __builtin_cpu_supports("x86-64-v3");
#endif
  return std::strcmp(level, "portable") == 0;
}

}  // namespace tsdpo
