// Shared definitions of the shmcache native layer: status codes, the error
// record handed back to the binding, hashing and atomic helpers.
#ifndef SHMCACHE_COMMON_H_
#define SHMCACHE_COMMON_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace shmcache {

// Error codes: the binding maps them to the ERR_SHMCACHE_* strings.
enum class Code {
  kOk = 0,
  kInvalidOption,
  kInvalidKey,
  kValueTooLarge,
  kNotNumber,
  kRange,
  kPermission,
  kNotASegment,
  kCorrupt,
  kNoSpace,
  kTimeout,
  kClosed,
  kJail,
  kIo,
  kNotFound,
};

const char* CodeName(Code code);

// What went wrong in an operation that can fail for a reason outside the
// caller's control (the file system, a damaged segment).
struct Error {
  Code code = Code::kOk;
  int err = 0;               // errno, 0 when no OS call failed
  const char* syscall = "";  // the failing OS call, "" when none
  std::string message;

  bool ok() const { return code == Code::kOk; }
  void Set(Code c, std::string msg, int e = 0, const char* sc = "") {
    code = c;
    message = std::move(msg);
    err = e;
    syscall = sc;
  }
};

inline uint64_t Load64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline uint64_t Mix(uint64_t a, uint64_t b) {
  __uint128_t r = static_cast<__uint128_t>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}

// The last 1..7 bytes of a string as one word, without a byte loop (whose
// byte stores a following 8-byte load cannot forward from): two overlapping
// reads. Injective for a given `n`.
inline uint64_t LoadTail(const unsigned char* p, size_t n) {
  if (n >= 4) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + n - 4, 4);
    return lo | (static_cast<uint64_t>(hi) << 32);
  }
  return p[0] | (static_cast<uint64_t>(p[n / 2]) << 8) | (static_cast<uint64_t>(p[n - 1]) << 16);
}

// A fast 64-bit hash of a byte string (multiply-fold over 8-byte words).
// Used for keys (KeyHash in table.h: shard, bucket, and part of the entry
// checksum).
inline uint64_t Hash(const void* data, size_t n, uint64_t seed) {
  constexpr uint64_t k1 = 0x9E3779B97F4A7C15ull;
  constexpr uint64_t k2 = 0xD6E8FEB86659FD93ull;
  const unsigned char* p = static_cast<const unsigned char*>(data);
  uint64_t h = seed ^ (n * k1);
  while (n >= 16) {
    h = Mix(h ^ Load64(p), k2) ^ Mix(Load64(p + 8) ^ k1, h | 1);
    p += 16;
    n -= 16;
  }
  if (n >= 8) {
    h = Mix(h ^ Load64(p), k2);
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    uint64_t tail = LoadTail(p, n);
    h = Mix(h ^ tail ^ (static_cast<uint64_t>(n) << 56), k1);
  }
  return Mix(h ^ (h >> 29), k2) ^ (h >> 32);
}

inline uint64_t Rotl(uint64_t v, int r) { return (v << r) | (v >> (64 - r)); }

// Two 64-bit lanes: SSE2 on x86-64, NEON on arm64, through the compiler's
// generic vectors.
typedef uint64_t U64x2 __attribute__((vector_size(16)));

// A fast checksum for values (Fletcher-style sums in four independent lanes,
// mixed at the end): every changed word changes it, and it runs at several
// bytes a cycle, so that reading a 1 KB value does not cost a hash of it.
// It detects damage; it is no defence against a deliberate forgery. With
// kCopy it also copies the bytes to `dst` as it reads them, so that a read
// from the segment passes over the value once, and the sums run while the
// copy waits for memory. The lanes are pairs of vector lanes; the result is
// the same as lane by lane.
template <bool kCopy>
inline uint64_t ChecksumImpl(unsigned char* dst, const unsigned char* p, size_t n, uint64_t seed) {
  U64x2 a01 = {seed, seed ^ 0x9E3779B97F4A7C15ull}, a23 = {~seed, seed * 3 + 1};
  U64x2 b01 = {0, 0}, b23 = {0, 0};
  size_t len = n;
  while (n >= 32) {
    U64x2 w01, w23;
    std::memcpy(&w01, p, 16);
    std::memcpy(&w23, p + 16, 16);
    if constexpr (kCopy) {
      std::memcpy(dst, &w01, 16);
      std::memcpy(dst + 16, &w23, 16);
      dst += 32;
    }
    a01 += w01;
    b01 += a01;
    a23 += w23;
    b23 += a23;
    p += 32;
    n -= 32;
  }
  uint64_t a0 = a01[0], a1 = a01[1], a2 = a23[0], a3 = a23[1];
  uint64_t b0 = b01[0], b1 = b01[1], b2 = b23[0], b3 = b23[1];
  while (n >= 8) {
    uint64_t w = Load64(p);
    if constexpr (kCopy) {
      std::memcpy(dst, &w, 8);
      dst += 8;
    }
    a0 += w;
    b0 += a0;
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    if constexpr (kCopy) {
      // Summed from the copy: what is returned is what was checked.
      std::memcpy(dst, p, n);
      p = dst;
    }
    uint64_t tail = LoadTail(p, n);
    a1 += tail;
    b1 += a1;
  }
  // Two independent multiply-folds finish it (they run side by side).
  uint64_t x = a0 ^ Rotl(b0, 13) ^ Rotl(a2, 31) ^ Rotl(b2, 41) ^ len;
  uint64_t y = a1 ^ Rotl(b1, 29) ^ Rotl(a3, 47) ^ Rotl(b3, 53);
  return Mix(x, 0xD6E8FEB86659FD93ull) ^ Rotl(Mix(y, 0x9E3779B97F4A7C15ull), 32);
}

inline uint64_t Checksum(const void* data, size_t n, uint64_t seed) {
  return ChecksumImpl<false>(nullptr, static_cast<const unsigned char*>(data), n, seed);
}

// Copies `n` bytes from `src` to `dst` and returns Checksum() of them.
inline uint64_t CopyChecksum(void* dst, const void* src, size_t n, uint64_t seed) {
  return ChecksumImpl<true>(static_cast<unsigned char*>(dst),
                            static_cast<const unsigned char*>(src), n, seed);
}

// Brent's cycle detection for a walk along refs read from the mapping:
// Seen(ref) turns true once the walk is back at a ref it passed, within
// about twice the loop's length, so a chain rewritten into a loop costs its
// own length and not the 2^20-step cap (and no copy is made of it twice).
struct CycleGuard {
  uint32_t mark = 0, power = 1, lam = 0;
  bool Seen(uint32_t ref) {
    if (ref == mark) return true;
    if (++lam == power) {
      mark = ref;
      power <<= 1;
      lam = 0;
    }
    return false;
  }
};

template <typename T>
inline std::atomic_ref<T> Atomic(T& v) {
  return std::atomic_ref<T>(v);
}

// Milliseconds since the epoch, plus the test-only clock offset.
int64_t NowMs();
void SetClockOffsetMs(int64_t offset);

}  // namespace shmcache

#endif  // SHMCACHE_COMMON_H_
