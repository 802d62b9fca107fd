// llama.cpp's own quantiser on a GGUF file: quantize <in.gguf> <out.gguf> <ftype number> [requantize], e.g. 7 (Q8_0),
// 15 (Q4_K_M), 18 (Q6_K), or 0 (all F32: with "requantize", a quantised file dequantised by ggml's own to_float).
// Built against the libraries node-llama-cpp ships and run by gen-quantized.mjs and gen-roundtrip.mjs (buildQuantizer
// in common.mjs).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "llama.h"

int main(int argc, char** argv) {
  if (argc != 4 && !(argc == 5 && strcmp(argv[4], "requantize") == 0)) {
    fprintf(stderr, "usage: quantize <in.gguf> <out.gguf> <llama_ftype> [requantize]\n");
    return 2;
  }
  llama_backend_init();
  struct llama_model_quantize_params p = llama_model_quantize_default_params();
  p.ftype = (enum llama_ftype)atoi(argv[3]);
  p.nthread = 1;
  p.allow_requantize = argc == 5;
  uint32_t rc = llama_model_quantize(argv[1], argv[2], &p);
  llama_backend_free();
  return rc == 0 ? 0 : 1;
}
