// The addon's one thread pool. Every threaded kernel, the GEMM included, runs its work through run(): OpenMP when the
// compiler has it (GCC, Linux clang with libomp), otherwise a small std::thread pool of our own (Apple clang ships
// no OpenMP), so a build without OpenMP is still multi-threaded and still native.
//
// A parallel region: run(nt, f) calls f(team) once on each of nt threads (the caller is thread 0) and returns when
// all have finished. team.barrier() waits for the whole team. A region started from inside another (attention's
// per-head tasks call the GEMM) runs on the calling thread alone, as a team of one: tasks are the unit of
// parallelism there, and the nested call stays sequential and allocation-free.
#pragma once
#include <cstdint>
#include <type_traits>

namespace tsdpo {
namespace par {

struct Team {
  int id;    // 0 .. size-1
  int size;  // threads in this region
  void* impl;
  void barrier() const;
};

// The pool's size (threads a region uses at most); set_threads clamps to [1, 1024] and returns the size set.
int threads();
int set_threads(int n);
// "openmp" or "std::thread": which implementation this build uses.
const char* kind();

using Body = void (*)(void* ctx, const Team& team);
void run_impl(int nt, Body body, void* ctx);

template <class F>
void run(int nt, F&& f) {
  using Fn = std::remove_reference_t<F>;
  run_impl(nt, [](void* ctx, const Team& team) { (*static_cast<Fn*>(ctx))(team); },
           const_cast<void*>(static_cast<const void*>(&f)));
}

}  // namespace par
}  // namespace tsdpo
