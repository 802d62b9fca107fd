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

// The x86 copies' address where this build has them, else nullptr (for simd_pick's arguments).
#if TSDPO_X86_DISPATCH
#define TSDPO_IF_X86(x) (x)
#else
#define TSDPO_IF_X86(x) nullptr
#endif

// Of one table (or kernel set) per level, the one for `level` when this build has it and this CPU runs it, else
// nullptr.
template <class T>
const T* simd_pick(const char* level, const T* avx512, const T* avx2, const T* portable) {
  if (!simd_level_runs(level)) return nullptr;
  if (std::strcmp(level, "avx512") == 0) return avx512;
  if (std::strcmp(level, "avx2") == 0) return avx2;
  return portable;
}

// The widest of them this CPU runs.
template <class T>
const T* simd_best(const T* avx512, const T* avx2, const T* portable) {
  for (const char* level : kSimdLevels)
    if (const T* t = simd_pick(level, avx512, avx2, portable)) return t;
  return portable;
}

}  // namespace tsdpo
