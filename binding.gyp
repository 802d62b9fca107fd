# The native CPU backend (src/backend/native/). Built by scripts/build-native.js during `npm ci`; a failed build
# leaves tsdpo on its TypeScript backend. OpenBLAS flags come from scripts/native-config.js.
{
  "targets": [
    {
      "target_name": "tsdpo_native",
      "sources": ["src/backend/native/addon.cc", "src/backend/native/kernels.cc"],
      # Baseline x86-64 code everywhere; the hot loops carry their own AVX2 / AVX-512 clones (kernels.cc).
      # -fno-math-errno / -fno-trapping-math let GCC vectorise loops with sqrt and with exp's range selects; nothing
      # in the addon reads errno or the floating-point exception flags.
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags": ["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "<!@(node scripts/native-config.js cflags)"],
      "cflags_cc": ["-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "ldflags": ["-fopenmp"],
      "libraries": ["<!@(node scripts/native-config.js libs)"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
