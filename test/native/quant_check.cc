// Driver for test/quant.test.ts: src/backend/native/quant.inc's dequant_row as a stdin → stdout filter, the same
// protocol as tools/ggml-ref/ggml_ref.c's `dequant`, so the test can hand it ggml's fixture bytes and compare floats.
//
//   quant_check <ggml type id> <n per row> < rows of blocks > float32 rows
//
// Exits 2 when the type is unknown, n is not a whole number of blocks or the input is not whole rows.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "../../src/backend/native/quant.inc"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: quant_check <ggml type id> <n per row>\n");
    return 2;
  }
  const int type = std::atoi(argv[1]);
  const int64_t n = std::atoll(argv[2]);
  const int64_t be = ggml_quant::block_elems(type);
  if (be == 0 || n <= 0 || n % be != 0) {
    std::fprintf(stderr, "quant_check: type %d with n = %lld is not supported\n", type, (long long)n);
    return 2;
  }
  const size_t row = size_t(n / be * ggml_quant::block_bytes(type));
  std::vector<uint8_t> in;
  uint8_t buf[1 << 16];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, stdin)) > 0) in.insert(in.end(), buf, buf + got);
  if (in.size() % row != 0) {
    std::fprintf(stderr, "quant_check: %zu bytes are not whole rows of %zu\n", in.size(), row);
    return 2;
  }
  std::vector<float> out(in.size() / row * size_t(n));
  for (size_t r = 0; r < in.size() / row; r++) {
    if (!ggml_quant::dequant_row(type, in.data() + r * row, out.data() + r * size_t(n), n)) return 2;
  }
  if (std::fwrite(out.data(), sizeof(float), out.size(), stdout) != out.size()) return 2;
  return 0;
}
