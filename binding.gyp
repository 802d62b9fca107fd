# The native CPU backend (src/backend/native/), built by scripts/build-native.js during `npm ci`. It needs a C++17
# compiler and nothing else: the matrix products are tsdpo's own (gemm.cc). OpenMP is used when the compiler has it
# (scripts/native-config.js tries); otherwise the addon's own std::thread pool runs the threads (parallel.cc).
{
  "targets": [
    {
      "target_name": "tsdpo_native",
      "sources": [
        "src/backend/native/addon.cc", "src/backend/native/kernels.cc", "src/backend/native/gemm.cc",
        "src/backend/native/parallel.cc"
      ],
      # Baseline code everywhere; the hot loops and the GEMM micro-kernels carry their own AVX2 / AVX-512 copies,
      # chosen at run time (kernels.cc, gemm.cc). -fno-math-errno / -fno-trapping-math let GCC vectorise loops with
      # sqrt and with exp's range selects; nothing in the addon reads errno or the floating-point exception flags.
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags": ["-O3", "-fno-math-errno", "-fno-trapping-math", "<!@(node scripts/native-config.js cflags)"],
      "cflags_cc": ["-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-unknown-pragmas"],
      "ldflags": ["<!@(node scripts/native-config.js ldflags)"],
      "defines": ["NAPI_VERSION=8"],
      "conditions": [
        ["OS=='mac'", {
          "xcode_settings": {
            "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
            "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
            "OTHER_CFLAGS": ["-O3", "-fno-math-errno", "-fno-trapping-math", "<!@(node scripts/native-config.js cflags)"],
            "OTHER_LDFLAGS": ["<!@(node scripts/native-config.js ldflags)"]
          }
        }]
      ]
    }
  ],
  # The MPI binding (src/backend/native/mpi.cc → tsdpo_mpi.node), only where an MPI compiler wrapper is found and
  # links (scripts/native-config.js mpi; TSDPO_MPI=0 leaves it out). Without it tsdpo is unchanged; under mpirun it
  # says the addon has no MPI.
  "conditions": [
    ["'<!(node scripts/native-config.js mpi)'=='1'", {
      "targets": [
        {
          "target_name": "tsdpo_mpi",
          "sources": ["src/backend/native/mpi.cc"],
          "cflags_cc": ["-O2", "-Wall", "<!@(node scripts/native-config.js mpi-cflags)"],
          "ldflags": ["<!@(node scripts/native-config.js mpi-ldflags)"],
          "libraries": ["<!@(node scripts/native-config.js mpi-libs)"],
          "defines": ["NAPI_VERSION=8"]
        }
      ]
    }]
  ]
}
