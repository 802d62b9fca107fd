// The MPI binding (build/Release/tsdpo_mpi.node), built beside the kernels addon only where MPI is found
// (scripts/native-config.js mpi). Data-parallel training needs little from MPI: start, who am I, a gradient sum that
// is the same bits on every rank and in every run, a gather of small metric vectors, a barrier and an abort.
//
// The gradient sum is not MPI_Allreduce: its reduction order belongs to the library's algorithm choice. Here every
// element is summed in rank order, ((g0 + g1) + g2) + …, by a reduce-scatter built from MPI_Alltoallv (rank r
// receives chunk r of every rank's buffer and sums those in rank order) followed by MPI_Allgatherv of the summed
// chunks. Each element goes through one fixed sequence of additions whatever the timing, so a run is
// bit-reproducible, and a single process that adds its emulated ranks' sums in the same order gets the same bits
// (src/train/distributed.ts, emulate_world_size). The traffic is that of a ring all-reduce: 2·(W−1)/W of the buffer
// out and in per rank.

#include <node_api.h>
#include <mpi.h>
#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace {

bool g_initialised = false;
int g_rank = 0, g_size = 1, g_local_rank = 0, g_local_size = 1;

napi_value fail(napi_env env, const std::string& msg) {
  napi_throw_error(env, nullptr, msg.c_str());
  return nullptr;
}

napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

std::string mpi_error(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, len);
}

void set_int(napi_env env, napi_value obj, const char* key, int64_t v) {
  napi_value x;
  napi_create_int64(env, v, &x);
  napi_set_named_property(env, obj, key, x);
}

// init() → {rank, size, localRank, localSize, library}. Open MPI loads its components with dlopen, and they resolve
// libmpi's symbols globally; Node loads addons without RTLD_GLOBAL, so libmpi is re-opened here with RTLD_GLOBAL
// (RTLD_NOLOAD: the copy already mapped, promoted) before MPI_Init, as mpi4py does.
napi_value Init(napi_env env, napi_callback_info) {
  std::string library;
  if (!g_initialised) {
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(&MPI_Init), &info) && info.dli_fname) {
      library = info.dli_fname;
      if (!dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD))
        return fail(env, std::string("cannot make ") + info.dli_fname + " global: " + dlerror());
    }
    int provided = 0;
    int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return fail(env, "MPI_Init_thread failed: " + mpi_error(rc));
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &g_local_rank);
    MPI_Comm_size(local, &g_local_size);
    MPI_Comm_free(&local);
    g_initialised = true;
  }
  napi_value obj;
  napi_create_object(env, &obj);
  set_int(env, obj, "rank", g_rank);
  set_int(env, obj, "size", g_size);
  set_int(env, obj, "localRank", g_local_rank);
  set_int(env, obj, "localSize", g_local_size);
  napi_value lib;
  napi_create_string_utf8(env, library.c_str(), library.size(), &lib);
  napi_set_named_property(env, obj, "library", lib);
  return obj;
}

// The call's first argument as a float typed array: its data, element count and whether it holds doubles; false when
// it is missing or not a Float32Array / Float64Array.
bool float_array(napi_env env, napi_callback_info info, void** data, size_t* n, bool* is64) {
  size_t argc = 1;
  napi_value v;
  napi_get_cb_info(env, info, &argc, &v, nullptr, nullptr);
  if (argc < 1) return false;
  bool typed = false;
  napi_is_typedarray(env, v, &typed);
  if (!typed) return false;
  napi_typedarray_type type;
  napi_get_typedarray_info(env, v, &type, n, data, nullptr, nullptr);
  if (type != napi_float32_array && type != napi_float64_array) return false;
  *is64 = type == napi_float64_array;
  return true;
}

template <typename T>
int ordered_sum(T* buf, size_t n, MPI_Datatype type) {
  const int W = g_size;
  if (W == 1 || n == 0) return MPI_SUCCESS;
  // Segments of 1 Mi elements: every count fits an int, and the scratch below stays small and warm in cache
  // rather than a fresh gigabyte to fault in on every call.
  const size_t seg_max = static_cast<size_t>(1) << 20;
  std::vector<int> counts(W), displs(W), rcounts(W), rdispls(W);
  static thread_local std::vector<T> recv, mine;
  for (size_t s0 = 0; s0 < n; s0 += seg_max) {
    const size_t len = std::min(seg_max, n - s0);
    T* seg = buf + s0;
    // chunk r = [len·r/W, len·(r+1)/W)
    for (int r = 0; r < W; r++) {
      const size_t lo = len * r / W, hi = len * (r + 1) / W;
      counts[r] = static_cast<int>(hi - lo);
      displs[r] = static_cast<int>(lo);
    }
    const int my = counts[g_rank];
    if (recv.size() < static_cast<size_t>(my) * W) recv.resize(static_cast<size_t>(my) * W);
    for (int q = 0; q < W; q++) {
      rcounts[q] = my;
      rdispls[q] = my * q;
    }
    int rc = MPI_Alltoallv(seg, counts.data(), displs.data(), type, recv.data(), rcounts.data(), rdispls.data(), type, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return rc;
    if (mine.size() < static_cast<size_t>(my)) mine.resize(my);
    std::memcpy(mine.data(), recv.data(), sizeof(T) * my);  // rank 0's part
    for (int q = 1; q < W; q++) {
      const T* part = recv.data() + static_cast<size_t>(my) * q;
      for (int i = 0; i < my; i++) mine[i] = mine[i] + part[i];  // in rank order, one rounding per addition
    }
    rc = MPI_Allgatherv(mine.data(), my, type, seg, counts.data(), displs.data(), type, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return rc;
  }
  return MPI_SUCCESS;
}

// orderedSum(buf: Float32Array | Float64Array): buf ← Σ_r buf_r in rank order, on every rank.
napi_value OrderedSum(napi_env env, napi_callback_info info) {
  if (!g_initialised) return fail(env, "mpi: orderedSum before init");
  void* data = nullptr;
  size_t n = 0;
  bool is64 = false;
  if (!float_array(env, info, &data, &n, &is64)) return fail(env, "mpi.orderedSum: expected a Float32Array or Float64Array");
  int rc = is64 ? ordered_sum(static_cast<double*>(data), n, MPI_DOUBLE) : ordered_sum(static_cast<float*>(data), n, MPI_FLOAT);
  if (rc != MPI_SUCCESS) return fail(env, "mpi.orderedSum: " + mpi_error(rc));
  return undefined(env);
}

// allgather(x: Float64Array) → Float64Array of size·x.length, rank r's x at r·x.length. Every rank passes the same length.
napi_value Allgather(napi_env env, napi_callback_info info) {
  if (!g_initialised) return fail(env, "mpi: allgather before init");
  void* data = nullptr;
  size_t n = 0;
  bool is64 = false;
  if (!float_array(env, info, &data, &n, &is64) || !is64) return fail(env, "mpi.allgather: expected a Float64Array");
  napi_value ab, out;
  void* outData = nullptr;
  napi_create_arraybuffer(env, n * g_size * sizeof(double), &outData, &ab);
  napi_create_typedarray(env, napi_float64_array, n * g_size, ab, 0, &out);
  int rc = MPI_Allgather(data, static_cast<int>(n), MPI_DOUBLE, outData, static_cast<int>(n), MPI_DOUBLE, MPI_COMM_WORLD);
  if (rc != MPI_SUCCESS) return fail(env, "mpi.allgather: " + mpi_error(rc));
  return out;
}

napi_value Barrier(napi_env env, napi_callback_info) {
  if (!g_initialised) return fail(env, "mpi: barrier before init");
  int rc = MPI_Barrier(MPI_COMM_WORLD);
  if (rc != MPI_SUCCESS) return fail(env, "mpi.barrier: " + mpi_error(rc));
  return undefined(env);
}

napi_value Finalize(napi_env env, napi_callback_info) {
  if (g_initialised) {
    int done = 0;
    MPI_Finalized(&done);
    if (!done) MPI_Finalize();
  }
  return undefined(env);
}

// abort(code): ends every rank of the job (one rank's error must not leave the others waiting in a collective).
napi_value Abort(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  int32_t code = 1;
  if (argc >= 1) napi_get_value_int32(env, argv[0], &code);
  if (g_initialised) MPI_Abort(MPI_COMM_WORLD, code);
  return undefined(env);
}

napi_value Register(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"init", nullptr, Init, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"orderedSum", nullptr, OrderedSum, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"allgather", nullptr, Allgather, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"barrier", nullptr, Barrier, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"finalize", nullptr, Finalize, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"abort", nullptr, Abort, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Register)
