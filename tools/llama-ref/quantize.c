// llama.cpp's own quantiser on a GGUF file: quantize <in.gguf> <out.gguf> <ftype number>, e.g. 7 (Q8_0),
// 15 (Q4_K_M), 18 (Q6_K). Built and run by quantize-fixtures.mjs against the libraries node-llama-cpp ships.
#include <stdio.h>
#include <stdlib.h>
#include "llama.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: quantize <in.gguf> <out.gguf> <llama_ftype>\n");
    return 2;
  }
  llama_backend_init();
  struct llama_model_quantize_params p = llama_model_quantize_default_params();
  p.ftype = (enum llama_ftype)atoi(argv[3]);
  p.nthread = 1;
  uint32_t rc = llama_model_quantize(argv[1], argv[2], &p);
  llama_backend_free();
  return rc == 0 ? 0 : 1;
}
