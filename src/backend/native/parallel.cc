// The thread pool behind parallel.h: OpenMP when the compiler provides it, otherwise persistent std::threads.
//
// Waiting: on a machine whose cores are shared with other processes, a thread that spins while it waits holds a core
// that the thread it waits for may need (see index.ts on OMP_WAIT_POLICY). Between regions the OpenMP build leaves
// this to libgomp (the addon sets OMP_WAIT_POLICY=passive unless the user chose); the std::thread pool spins briefly,
// then sleeps on a condition variable. Barriers inside a region are ours in both builds, and spin briefly too.

#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

#ifdef _OPENMP
#include <omp.h>
#else
#include <thread>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TSDPO_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define TSDPO_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define TSDPO_CPU_RELAX() ((void)0)
#endif

namespace tsdpo {
namespace par {
namespace {

int g_threads = 1;
thread_local bool t_in_parallel = false;

// Runs body as a team of one on this thread (a nested region, or one thread asked for).
void run_alone(Body body, void* ctx) {
  const bool was = t_in_parallel;
  t_in_parallel = true;
  body(ctx, Team{0, 1, nullptr});
  t_in_parallel = was;
}

// A waiting thread spins this long before it sleeps. The threads of a region do equal shares of work, so most waits
// (a GEMM's barriers between packing and computing) end within microseconds, far sooner than a sleeping thread can
// be woken; a wait that outlasts the spin, because a thread lost its core to another process, sleeps instead of
// holding the core that thread needs.
constexpr auto kSpin = std::chrono::microseconds(200);

template <class Done>
void wait_until(std::mutex& mu, std::condition_variable& cv, Done done) {
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0;; i++) {
    if (done()) return;
    TSDPO_CPU_RELAX();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() > until) break;
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, done);
}

// The barrier of a region, in both builds (OpenMP's own barrier sleeps at once under OMP_WAIT_POLICY=passive, which
// the addon sets: a wake-up per barrier cost a GEMM a tenth of its time).
class Barrier {
 public:
  void wait(int size) {
    const uint64_t gen = gen_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 == size) {
      count_.store(0, std::memory_order_relaxed);
      {
        std::lock_guard<std::mutex> lock(mu_);
        gen_.fetch_add(1, std::memory_order_release);
      }
      cv_.notify_all();
      return;
    }
    wait_until(mu_, cv_, [&] { return gen_.load(std::memory_order_acquire) != gen; });
  }

 private:
  std::atomic<uint64_t> gen_{0};
  std::atomic<int> count_{0};
  std::mutex mu_;
  std::condition_variable cv_;
};

#ifndef _OPENMP
class Pool {
 public:
  // One region at a time (regions are started from the JS thread; nested ones never reach here).
  void run(int nt, Body body, void* ctx) {
    std::lock_guard<std::mutex> one(region_);
    grow(nt - 1);
    {
      std::lock_guard<std::mutex> lock(mu_);
      body_ = body;
      ctx_ = ctx;
      size_ = nt;
      remaining_.store(nt - 1, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    start_.notify_all();
    t_in_parallel = true;
    body(ctx, Team{0, nt, &barrier_});
    t_in_parallel = false;
    wait_until(mu_, done_, [&] { return remaining_.load(std::memory_order_acquire) == 0; });
  }

 private:
  // Workers are detached and never stopped: the pool lives as long as the process (it is never destroyed, so no
  // joinable std::thread is left to a static destructor at exit).
  void grow(int workers) {
    while (static_cast<int>(started_) < workers) {
      const int id = static_cast<int>(++started_);
      std::thread([this, id] { work(id); }).detach();
    }
  }

  void work(int id) {
    uint64_t seen = 0;
    for (;;) {
      wait_until(mu_, start_, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      Body body;
      void* ctx;
      int size;
      {
        std::lock_guard<std::mutex> lock(mu_);
        seen = generation_.load(std::memory_order_relaxed);
        body = body_;
        ctx = ctx_;
        size = size_;
      }
      if (id >= size) continue;  // a region smaller than the pool
      t_in_parallel = true;
      body(ctx, Team{id, size, &barrier_});
      t_in_parallel = false;
      if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        { std::lock_guard<std::mutex> lock(mu_); }
        done_.notify_all();
      }
    }
  }

  std::mutex region_, mu_;
  std::condition_variable start_, done_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> remaining_{0};
  Barrier barrier_;
  unsigned started_ = 0;
  Body body_ = nullptr;
  void* ctx_ = nullptr;
  int size_ = 0;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed, see Pool::grow
  return *p;
}
#endif

}  // namespace

int threads() { return g_threads; }

int set_threads(int n) {
  g_threads = std::clamp(n, 1, 1024);
#ifdef _OPENMP
  omp_set_num_threads(g_threads);
#endif
  return g_threads;
}

#ifdef _OPENMP
const char* kind() { return "openmp"; }

void run_impl(int nt, Body body, void* ctx) {
  if (nt <= 1 || t_in_parallel) return run_alone(body, ctx);
  Barrier barrier;
#pragma omp parallel num_threads(nt)
  {
    t_in_parallel = true;
    body(ctx, Team{omp_get_thread_num(), omp_get_num_threads(), &barrier});
    t_in_parallel = false;
  }
}
#else
const char* kind() { return "std::thread"; }

void run_impl(int nt, Body body, void* ctx) {
  if (nt <= 1 || t_in_parallel) return run_alone(body, ctx);
  pool().run(nt, body, ctx);
}

#endif

void Team::barrier() const {
  if (size > 1) static_cast<Barrier*>(impl)->wait(size);
}

}  // namespace par
}  // namespace tsdpo
