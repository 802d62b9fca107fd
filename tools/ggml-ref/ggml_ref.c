// ggml's own quantisers and dequantisers as a stdin → stdout filter, for tools/ggml-ref/gen.mjs. Linked against the
// libggml-base.so that node-llama-cpp ships, compiled against the headers of the llama.cpp source it was built from
// (node-llama-cpp's gitRelease.bundle), so the bytes and floats are ggml's, not a re-implementation's.
//
//   ggml_ref info                         one line per type id given: "id name blck_size type_size"
//   ggml_ref quant   <type id> <n/row>    float32 rows on stdin → ggml_quantize_chunk(imatrix = NULL) bytes on stdout
//   ggml_ref dequant <type id> <n>        rows of ggml blocks on stdin → the type's to_float (dequantize_row_*)
//
// Everything little-endian, as the host. Exits 2 on a usage or size error, with the reason on stderr.

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml.h"

static void* read_all(size_t* len) {
  size_t cap = 1 << 16, n = 0;
  char* buf = malloc(cap);
  size_t got;
  while (buf && (got = fread(buf + n, 1, cap - n, stdin)) > 0) {
    n += got;
    if (n == cap) buf = realloc(buf, cap *= 2);
  }
  if (!buf) {
    fprintf(stderr, "ggml_ref: out of memory\n");
    exit(2);
  }
  *len = n;
  return buf;
}

static void write_all(const void* p, size_t n) {
  if (fwrite(p, 1, n, stdout) != n) {
    fprintf(stderr, "ggml_ref: short write\n");
    exit(2);
  }
}

int main(int argc, char** argv) {
  if (argc >= 2 && strcmp(argv[1], "info") == 0) {
    for (int i = 2; i < argc; i++) {
      enum ggml_type t = (enum ggml_type)atoi(argv[i]);
      printf("%d %s %lld %zu\n", (int)t, ggml_type_name(t), (long long)ggml_blck_size(t), ggml_type_size(t));
    }
    return 0;
  }
  if (argc != 4 || (strcmp(argv[1], "quant") != 0 && strcmp(argv[1], "dequant") != 0)) {
    fprintf(stderr, "usage: ggml_ref info <type id>... | quant <type id> <n per row> | dequant <type id> <n>\n");
    return 2;
  }
  const enum ggml_type t = (enum ggml_type)atoi(argv[2]);
  const int64_t n = atoll(argv[3]);
  if (n <= 0 || n % ggml_blck_size(t) != 0) {
    fprintf(stderr, "ggml_ref: n = %lld is not a multiple of %s's block size %lld\n", (long long)n, ggml_type_name(t),
            (long long)ggml_blck_size(t));
    return 2;
  }
  const size_t row = ggml_row_size(t, n);
  size_t len;
  void* in = read_all(&len);
  if (strcmp(argv[1], "quant") == 0) {
    if (len % (sizeof(float) * (size_t)n) != 0) {
      fprintf(stderr, "ggml_ref: %zu input bytes are not whole rows of %lld floats\n", len, (long long)n);
      return 2;
    }
    const int64_t nrows = (int64_t)(len / (sizeof(float) * (size_t)n));
    void* out = calloc((size_t)nrows, row);
    const size_t wrote = ggml_quantize_chunk(t, (const float*)in, out, 0, nrows, n, NULL);
    if (wrote != (size_t)nrows * row) {
      fprintf(stderr, "ggml_ref: ggml_quantize_chunk wrote %zu bytes, expected %zu\n", wrote, (size_t)nrows * row);
      return 2;
    }
    write_all(out, wrote);
  } else {
    if (len % row != 0) {
      fprintf(stderr, "ggml_ref: %zu input bytes are not whole rows of %zu bytes\n", len, row);
      return 2;
    }
    const size_t nrows = len / row;
    float* out = malloc(nrows * (size_t)n * sizeof(float) + 1);
    const struct ggml_type_traits* tr = ggml_get_type_traits(t);
    if (!tr->to_float) {
      fprintf(stderr, "ggml_ref: %s has no to_float\n", ggml_type_name(t));
      return 2;
    }
    for (size_t r = 0; r < nrows; r++) tr->to_float((const char*)in + r * row, out + r * (size_t)n, n);
    write_all(out, nrows * (size_t)n * sizeof(float));
  }
  return 0;
}
