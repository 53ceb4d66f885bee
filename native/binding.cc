// The N-API surface, and nothing else. Arguments arrive checked by the
// TypeScript layer; this file checks only state (is the segment open?) and
// that lengths fit the buffers they describe.
//
// Hot path: keys are written by JS into a buffer registered once with
// setBuffers(); a hit is copied into the read pool JS registered with
// setPool() and the call returns a string, or a number (length * 8 + type)
// for JS to make the value from the pool, so no object is allocated here
// but the string.
#include <napi.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <ctime>
#include <string>

#include "common.h"
#include "crash.h"
#include "jail.h"
#include "proc.h"
#include "table.h"

namespace shmcache {

namespace {

struct AddonData {
  Napi::FunctionReference error_class;
};

Napi::Value MakeError(Napi::Env env, Code code, const std::string& message, int err = 0,
                      const char* syscall = "") {
  AddonData* data = env.GetInstanceData<AddonData>();
  Napi::Object options = Napi::Object::New(env);
  if (err != 0) options.Set("errno", Napi::Number::New(env, err));
  if (syscall != nullptr && syscall[0] != '\0')
    options.Set("syscall", Napi::String::New(env, syscall));
  if (data == nullptr || data->error_class.IsEmpty()) {
    Napi::Error e = Napi::Error::New(env, message);
    e.Set("code", Napi::String::New(env, CodeName(code)));
    return e.Value();
  }
  return data->error_class.New(
      {Napi::String::New(env, CodeName(code)), Napi::String::New(env, message), options});
}

[[noreturn]] void Throw(Napi::Env env, Code code, const std::string& message, int err = 0,
                        const char* syscall = "") {
  throw Napi::Error(env, MakeError(env, code, message, err, syscall));
}

// True when every byte is 7-bit: such a string reads back as latin1, which
// V8 copies instead of decoding.
bool IsAscii(const unsigned char* p, uint64_t n) {
  uint64_t acc = 0;
  uint64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    acc |= w;
  }
  for (; i < n; ++i) acc |= p[i];
  return (acc & 0x8080808080808080ull) == 0;
}

// A non-negative integer argument; NaN and negatives are 0, and anything
// past 2^53 is clamped (no conversion outside uint64_t's range).
uint64_t ToU64(const Napi::Value& v) {
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d > 0)) return 0;
  return d >= 9007199254740992.0 ? 9007199254740992ull : static_cast<uint64_t>(d);
}

}  // namespace

const char* CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "OK";
    case Code::kInvalidOption: return "ERR_SHMCACHE_INVALID_OPTION";
    case Code::kInvalidKey: return "ERR_SHMCACHE_INVALID_KEY";
    case Code::kValueTooLarge: return "ERR_SHMCACHE_VALUE_TOO_LARGE";
    case Code::kNotNumber: return "ERR_SHMCACHE_NOT_NUMBER";
    case Code::kRange: return "ERR_SHMCACHE_RANGE";
    case Code::kPermission: return "ERR_SHMCACHE_PERMISSION";
    case Code::kNotASegment: return "ERR_SHMCACHE_NOT_A_SEGMENT";
    case Code::kCorrupt: return "ERR_SHMCACHE_CORRUPT";
    case Code::kNoSpace: return "ERR_SHMCACHE_NO_SPACE";
    case Code::kTimeout: return "ERR_SHMCACHE_TIMEOUT";
    case Code::kClosed: return "ERR_SHMCACHE_CLOSED";
    case Code::kJail: return "ERR_SHMCACHE_JAIL";
    case Code::kIo: return "ERR_SHMCACHE_IO";
    case Code::kNotFound: return "ERR_SHMCACHE_NOT_FOUND";
  }
  return "ERR_SHMCACHE_IO";
}

namespace {
std::atomic<int64_t> g_clock_offset{0};
}  // namespace

int64_t NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000 +
         g_clock_offset.load(std::memory_order_relaxed);
}

void SetClockOffsetMs(int64_t offset) { g_clock_offset.store(offset, std::memory_order_relaxed); }

class NativeCache : public Napi::ObjectWrap<NativeCache> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeCache",
                       {
                           InstanceMethod<&NativeCache::Open>("open"),
                           InstanceMethod<&NativeCache::SetBuffers>("setBuffers"),
                           InstanceMethod<&NativeCache::SetPool>("setPool"),
                           InstanceMethod<&NativeCache::MemoView>("memoView"),
                           InstanceMethod<&NativeCache::Delete>("delete"),
                           InstanceMethod<&NativeCache::Incr>("incr"),
                           InstanceMethod<&NativeCache::Cas>("cas"),
                           InstanceMethod<&NativeCache::Claim>("claim"),
                           InstanceMethod<&NativeCache::Release>("release"),
                           InstanceMethod<&NativeCache::Keys>("keys"),
                           InstanceMethod<&NativeCache::Clear>("clear"),
                           InstanceMethod<&NativeCache::GetStats>("stats"),
                           InstanceMethod<&NativeCache::Verify>("verify"),
                           InstanceMethod<&NativeCache::Close>("close"),
                           InstanceMethod<&NativeCache::GetMany>("getMany"),
                           InstanceMethod<&NativeCache::SetMany>("setMany"),
                           InstanceMethod<&NativeCache::DeleteMany>("deleteMany"),
                           InstanceMethod<&NativeCache::Peek>("peek"),
                           InstanceMethod<&NativeCache::Ttl>("ttl"),
                           InstanceMethod<&NativeCache::Info>("info"),
                           InstanceMethod<&NativeCache::Touch>("touch"),
                           InstanceMethod<&NativeCache::Scan>("scan"),
                           InstanceMethod<&NativeCache::Count>("count"),
                       });
  }

  // The hot methods are own properties bound to this object (the function's
  // data is `this`), which spares them the unwrap of an instance method. They
  // are only reached through the object, so they cannot outlive it.
  explicit NativeCache(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeCache>(info) {
    Napi::Env env = info.Env();
    Napi::Object self = info.This().As<Napi::Object>();
    self.Set("get", Napi::Function::New<&NativeCache::Bound<&NativeCache::Get>>(env, "get", this));
    self.Set("has", Napi::Function::New<&NativeCache::Bound<&NativeCache::Has>>(env, "has", this));
    self.Set("set", Napi::Function::New<&NativeCache::Bound<&NativeCache::Set>>(env, "set", this));
  }

 private:
  template <Napi::Value (NativeCache::*method)(const Napi::CallbackInfo&)>
  static Napi::Value Bound(const Napi::CallbackInfo& info) {
    return (static_cast<NativeCache*>(info.Data())->*method)(info);
  }

  void RequireOpen(Napi::Env env) {
    if (!store_.is_open()) Throw(env, Code::kClosed, "the cache is not open");
    // The file was cut short under the mapping (segment.cc): what this handle
    // sees is no longer the file, so it is used no more.
    if (store_.lost_pages() != 0) Throw(env, Code::kCorrupt, TruncatedMessage());
  }
  std::string TruncatedMessage() {
    return "'" + store_.path() + "' was cut short while mapped (" +
           std::to_string(store_.lost_pages()) +
           " pages lost and read as zeros); close this handle and open the segment again";
  }
  uint32_t KeyLength(const Napi::Value& v) {
    uint64_t n = ToU64(v);
    if (n == 0 || n > kMaxKey || n > key_cap_) Throw(v.Env(), Code::kInvalidKey, "bad key length");
    return static_cast<uint32_t>(n);
  }

  // open(path, size, create, stamp, stampMode, leaderPid, leaderStart,
  // lockWaitMs, createFolder, readOnly) -> { created, reset, size, maxValue, readOnly }; stampMode
  // 0 never, 1 explicit, 2 process group (see StampMode).
  Napi::Value Open(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    AttachRequest req;
    req.file.path = info[0].As<Napi::String>().Utf8Value();
    req.file.size = ToU64(info[1]);
    req.file.create = info[2].As<Napi::Boolean>().Value();
    req.stamp = ToU64(info[3]);
    uint32_t mode = info[4].As<Napi::Number>().Uint32Value();
    req.mode = mode == 1 ? StampMode::kExplicit : mode == 2 ? StampMode::kGroup : StampMode::kNever;
    req.leader_pid = static_cast<uint32_t>(ToU64(info[5]));
    req.leader_start = ToU64(info[6]);
    req.file.lock_wait_ms = static_cast<int64_t>(ToU64(info[7]));
    req.file.create_folder = info[8].As<Napi::Boolean>().Value();
    req.file.read_only = info.Length() > 9 && info[9].As<Napi::Boolean>().Value();
    Error error;
    bool created = false, reset = false;
    if (!store_.Open(req, &error, &created, &reset))
      Throw(env, error.code, error.message, error.err, error.syscall);
    Napi::Object r = Napi::Object::New(env);
    r.Set("created", Napi::Boolean::New(env, created));
    r.Set("reset", Napi::Boolean::New(env, reset));
    r.Set("size", Napi::Number::New(env, static_cast<double>(store_.size())));
    r.Set("maxValue", Napi::Number::New(env, static_cast<double>(store_.max_value())));
    r.Set("readOnly", Napi::Boolean::New(env, store_.read_only()));
    return r;
  }

  // setBuffers(key, out, value): the buffers JS shares with the hot path.
  void SetBuffers(const Napi::CallbackInfo& info) {
    auto key = info[0].As<Napi::Buffer<uint8_t>>();
    auto out = info[1].As<Napi::Buffer<uint8_t>>();
    auto val = info[2].As<Napi::Buffer<uint8_t>>();
    key_ref_ = Napi::Persistent(key);
    out_ref_ = Napi::Persistent(out);
    val_ref_ = Napi::Persistent(val);
    key_ = key.Data();
    key_cap_ = key.Length();
    out_ = out.Data();
    out_cap_ = out.Length();
    val_ = val.Data();
    val_cap_ = val.Length();
  }

  // setPool(buffer): where get() copies values (see Get).
  void SetPool(const Napi::CallbackInfo& info) {
    auto pool = info[0].As<Napi::Buffer<uint8_t>>();
    pool_ref_ = Napi::Persistent(pool);
    pool_ = pool.Data();
    pool_cap_ = pool.Length();
  }

  // memoView() -> [the mapping as an ArrayBuffer, byte offset of this
  // handle's memo hit counter or -1]. From then on a string hit also writes a
  // MemoInfo at the start of the `out` buffer. close() detaches the
  // ArrayBuffer before it unmaps, so JS can never read an unmapped page.
  Napi::Value MemoView(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    if (out_cap_ < sizeof(MemoInfo)) Throw(env, Code::kIo, "memoView() before setBuffers()");
    if (view_.IsEmpty()) {
      view_ = Napi::Weak(Napi::ArrayBuffer::New(env, store_.base(), store_.size()));
    }
    // Without a statistics slot JS keeps no memo: no MemoInfo to write.
    memo_ = store_.memo_hits_offset() >= 0;
    Napi::Array r = Napi::Array::New(env, 2);
    r.Set(0u, view_.Value());
    r.Set(1u, Napi::Number::New(env, static_cast<double>(store_.memo_hits_offset())));
    return r;
  }

  // get(keyLength, offset) -> a string value itself; or -1 miss, <= -2 needs
  // (-r - 2) bytes of pool from `offset`, else length * 8 + type with the
  // value copied into the pool at `offset`. JS hands bytes out as views of
  // the pool and never passes that range again, so no returned value is
  // ever overwritten; a string is made here and leaves the range free.
  Napi::Value Get(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    uint32_t klen = KeyLength(info[0]);
    if (pool_ == nullptr) Throw(env, Code::kIo, "get() before setPool()");
    uint64_t off = std::min<uint64_t>(ToU64(info[1]), pool_cap_);
    unsigned char* out = pool_ + off;
    MemoInfo memo;
    ReadResult r = store_.Get(key_, klen, out, pool_cap_ - off, memo_ ? &memo : nullptr);
    double v = -1;
    if (r.status == ReadStatus::kHit) {
      if (r.type == kAscii || r.type == kString) {
        if (memo_) std::memcpy(out_, &memo, sizeof memo);
        napi_value s;
        const char* p = reinterpret_cast<const char*>(out);
        size_t n = static_cast<size_t>(r.length);
        napi_status st = r.type == kAscii ? napi_create_string_latin1(env, p, n, &s)
                                          : napi_create_string_utf8(env, p, n, &s);
        NAPI_THROW_IF_FAILED(env, st, Napi::Value());
        return Napi::Value(env, s);
      }
      v = static_cast<double>(r.length) * 8 + r.type;
    } else if (r.status == ReadStatus::kNeedBuffer) {
      v = -static_cast<double>(r.length) - 2;
    } else if (r.status != ReadStatus::kMiss) {
      ReadFailed(env, r.status);
    }
    return Napi::Number::New(env, v);
  }

  Napi::Value Has(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    ReadStatus st = store_.Has(key_, KeyLength(info[0]));
    if (st != ReadStatus::kHit && st != ReadStatus::kMiss) ReadFailed(env, st);
    return Napi::Boolean::New(env, st == ReadStatus::kHit);
  }

  // set(keyLength, type, valueLength, ttl, onlyIfAbsent[, buffer]) -> status
  Napi::Value Set(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    uint32_t klen = KeyLength(info[0]);
    uint32_t type = info[1].As<Napi::Number>().Uint32Value();
    uint64_t vlen = ToU64(info[2]);
    uint64_t ttl = ToU64(info[3]);
    bool only_if_absent = info[4].As<Napi::Boolean>().Value();
    uint64_t hash = KeyHash(key_, klen);
    const unsigned char* value = val_;
    uint64_t cap = val_cap_;
    if (info.Length() > 5 && info[5].IsString()) {
      // A string JS knows fits the value buffer (3 bytes per UTF-16 unit
      // and the terminator): encoded here, after asking for the key's
      // entry, so that both misses (the JS string, the entry) overlap.
      store_.PrefetchChain(hash);
      size_t written = 0;
      NAPI_THROW_IF_FAILED(env,
                           napi_get_value_string_utf8(env, info[5], reinterpret_cast<char*>(val_),
                                                      val_cap_, &written),
                           Napi::Value());
      vlen = written;
    } else if (info.Length() > 5 && info[5].IsBuffer()) {
      auto buf = info[5].As<Napi::Buffer<uint8_t>>();
      value = buf.Data();
      cap = buf.Length();
    }
    if (type < kString || type > kCodec) Throw(env, Code::kInvalidOption, "bad value type");
    if (vlen > cap) Throw(env, Code::kInvalidOption, "value length exceeds its buffer");
    if (vlen > store_.max_value())
      Throw(env, Code::kValueTooLarge,
            "value of " + std::to_string(vlen) + " bytes is larger than " +
                std::to_string(store_.max_value()));
    if (type == kString && IsAscii(value, vlen)) type = kAscii;
    WriteStatus st =
        store_.Set(hash, key_, klen, static_cast<uint8_t>(type), value, vlen, ttl, only_if_absent);
    return Status(env, st);
  }

  Napi::Value Delete(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    bool removed = false;
    Status(env, store_.Delete(key_, KeyLength(info[0]), &removed));
    return Napi::Boolean::New(env, removed);
  }

  // incr(keyLength, by, initial, ttl) -> status; the result is written as a
  // float64 at the start of the out buffer.
  Napi::Value Incr(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    uint32_t klen = KeyLength(info[0]);
    double by = info[1].As<Napi::Number>().DoubleValue();
    double initial = info[2].As<Napi::Number>().DoubleValue();
    uint64_t ttl = ToU64(info[3]);
    double result = 0;
    WriteStatus st = store_.Incr(key_, klen, by, initial, ttl, &result);
    if (st == WriteStatus::kOk && out_cap_ >= 8) std::memcpy(out_, &result, 8);
    return Status(env, st);
  }

  Napi::Value Cas(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    uint32_t klen = KeyLength(info[0]);
    double expected = info[1].As<Napi::Number>().DoubleValue();
    double next = info[2].As<Napi::Number>().DoubleValue();
    return Status(env, store_.Cas(key_, klen, expected, next));
  }

  // claim(keyLength) -> status; the 8-byte token is at the start of the value
  // buffer. 0 claimed, 1 a value exists, 4 held by a live process.
  Napi::Value Claim(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    uint32_t klen = KeyLength(info[0]);
    return Status(env, store_.Claim(key_, klen, Token()));
  }

  // release(keyLength) -> whether our claim (token in the value buffer) was dropped.
  Napi::Value Release(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    uint32_t klen = KeyLength(info[0]);
    bool released = false;
    Status(env, store_.Release(key_, klen, Token(), &released));
    return Napi::Boolean::New(env, released);
  }

  // keys(prefixLength) -> string[]; the prefix is in the key buffer.
  Napi::Value Keys(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    uint64_t plen = ToU64(info[0]);
    if (plen > key_cap_) Throw(env, Code::kInvalidKey, "bad prefix length");
    std::vector<std::string> keys;
    Status(env, store_.Keys(key_, static_cast<uint32_t>(plen), &keys));
    Napi::Array arr = Napi::Array::New(env, keys.size());
    for (size_t i = 0; i < keys.size(); ++i) arr.Set(i, Napi::String::New(env, keys[i]));
    return arr;
  }

  void Clear(const Napi::CallbackInfo& info) {
    RequireOpen(info.Env());
    Status(info.Env(), store_.Clear());
  }

  Napi::Value GetStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    Stats s = store_.GetStats();
    Napi::Object o = Napi::Object::New(env);
    auto put = [&](const char* name, uint64_t v) {
      o.Set(name, Napi::Number::New(env, static_cast<double>(v)));
    };
    put("size", s.size);
    put("used", s.used);
    put("entries", s.entries);
    put("hits", s.hits);
    put("misses", s.misses);
    put("sets", s.sets);
    put("deletes", s.deletes);
    put("evictions", s.evictions);
    put("expired", s.expired);
    put("repairs", s.repairs);
    put("resets", s.resets);
    put("stamp", s.stamp);
    put("generation", s.generation);
    put("pages", s.pages);
    put("freePages", s.free_pages);
    put("pageSize", s.page_size);
    put("maxValueSize", s.max_value);
    put("shards", s.shards);
    return o;
  }

  Napi::Value Verify(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!store_.is_open()) Throw(env, Code::kClosed, "the cache is not open");
    std::vector<std::string> problems;
    // Touching every page of the mapping finds a file cut short under it.
    if (store_.ProbeLostPages() != 0)
      problems.push_back("file: truncated: " + TruncatedMessage());
    else
      Status(env, store_.Verify(&problems));
    Napi::Array arr = Napi::Array::New(env, problems.size());
    for (size_t i = 0; i < problems.size(); ++i) arr.Set(i, Napi::String::New(env, problems[i]));
    return arr;
  }

  void Close(const Napi::CallbackInfo&) {
    if (!view_.IsEmpty()) {
      Napi::ArrayBuffer view = view_.Value();
      if (!view.IsEmpty() && !view.IsDetached()) view.Detach();
      view_.Reset();
    }
    memo_ = false;
    store_.Close();
    key_ref_.Reset();
    out_ref_.Reset();
    val_ref_.Reset();
    pool_ref_.Reset();
    key_ = out_ = val_ = pool_ = nullptr;
    key_cap_ = out_cap_ = val_cap_ = pool_cap_ = 0;
  }

  // --- batch, peek, info, touch, scan (Store's side: batch.cc) -------------

  // A batch of keys as JS packs them: each a u16 byte length (little-endian)
  // and the key's UTF-8 bytes. Next() checks that it lies inside the buffer.
  struct KeyReader {
    const unsigned char* p;
    const unsigned char* end;
    bool Next(const unsigned char** key, uint32_t* klen) {
      if (end - p < 2) return false;
      uint32_t n = uint32_t{p[0]} | (uint32_t{p[1]} << 8);
      if (n == 0 || n > kMaxKey || static_cast<uint64_t>(end - p - 2) < n) return false;
      *key = p + 2;
      *klen = n;
      p += 2 + n;
      return true;
    }
  };
  static KeyReader BatchKeys(const Napi::Buffer<uint8_t>& buf, uint64_t from) {
    const unsigned char* b = buf.Data();
    uint64_t len = buf.Length();
    return KeyReader{b + std::min(from, len), b + len};
  }

  // getMany(batch, byteOffset, count, poolOffset, results: Float64Array) ->
  // how many keys were read. Keys are read in order from `byteOffset`, each
  // value copied into the pool (8-byte aligned, from `poolOffset`) as get()
  // does; results[2i] is get()'s code for key i (-1 miss, length * 8 + type),
  // results[2i + 1] where in the pool it was copied. A value that does not
  // fit the rest of the pool stops the batch: results[2i] = -(bytes) - 2 and
  // the return value is i (JS gives it a pool and goes on from key i).
  Napi::Value GetMany(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    if (pool_ == nullptr) Throw(env, Code::kIo, "getMany() before setPool()");
    KeyReader keys = BatchKeys(info[0].As<Napi::Buffer<uint8_t>>(), ToU64(info[1]));
    uint64_t count = ToU64(info[2]);
    uint64_t off = std::min<uint64_t>(ToU64(info[3]), pool_cap_);
    Napi::Float64Array results = info[4].As<Napi::Float64Array>();
    if (results.ElementLength() / 2 < count) Throw(env, Code::kIo, "results too short");
    double* res = results.Data();
    uint64_t i = 0;
    for (; i < count; ++i) {
      const unsigned char* key;
      uint32_t klen;
      if (!keys.Next(&key, &klen)) Throw(env, Code::kInvalidKey, "bad key in batch");
      ReadResult r = store_.Get(key, klen, pool_ + off, pool_cap_ - off, nullptr);
      if (r.status == ReadStatus::kHit) {
        res[2 * i] = static_cast<double>(r.length) * 8 + r.type;
        res[2 * i + 1] = static_cast<double>(off);
        off = std::min<uint64_t>((off + r.length + 7) & ~uint64_t{7}, pool_cap_);
      } else if (r.status == ReadStatus::kNeedBuffer) {
        res[2 * i] = -static_cast<double>(r.length) - 2;
        break;
      } else if (r.status == ReadStatus::kMiss) {
        res[2 * i] = -1;
      } else {
        ReadFailed(env, r.status);
      }
    }
    return Napi::Number::New(env, static_cast<double>(i));
  }

  // setMany(batch, count, ttl): each entry a u16 key length, u8 type, u8
  // pad, u32 value length (little-endian), the key, the value. Every entry is
  // checked before the first is stored.
  void SetMany(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    auto buf = info[0].As<Napi::Buffer<uint8_t>>();
    uint64_t count = ToU64(info[1]);
    uint64_t ttl = ToU64(info[2]);
    const unsigned char* base = buf.Data();
    const uint64_t len = buf.Length();
    auto walk = [&](auto&& each) {
      uint64_t at = 0;
      for (uint64_t i = 0; i < count; ++i) {
        if (len - at < 8) Throw(env, Code::kInvalidOption, "bad entry in batch");
        const unsigned char* p = base + at;
        uint32_t klen = uint32_t{p[0]} | (uint32_t{p[1]} << 8);
        uint32_t type = p[2];
        uint32_t vlen;
        std::memcpy(&vlen, p + 4, 4);
        if (klen == 0 || klen > kMaxKey || len - at - 8 < uint64_t{klen} + vlen)
          Throw(env, Code::kInvalidOption, "bad entry in batch");
        if (type < kString || type > kCodec) Throw(env, Code::kInvalidOption, "bad value type");
        if (vlen > store_.max_value())
          Throw(env, Code::kValueTooLarge,
                "value of " + std::to_string(vlen) + " bytes is larger than " +
                    std::to_string(store_.max_value()));
        each(p + 8, klen, type, p + 8 + klen, vlen);
        at += 8 + uint64_t{klen} + vlen;
      }
    };
    walk([](const unsigned char*, uint32_t, uint32_t, const unsigned char*, uint32_t) {});
    if (store_.read_only()) Status(env, WriteStatus::kReadOnly);
    walk([&](const unsigned char* key, uint32_t klen, uint32_t type, const unsigned char* value,
             uint32_t vlen) {
      if (type == kString && IsAscii(value, vlen)) type = kAscii;
      Status(env, store_.Set(KeyHash(key, klen), key, klen, static_cast<uint8_t>(type), value, vlen,
                             ttl, false));
    });
  }

  // deleteMany(batch, count) -> how many live entries were removed.
  Napi::Value DeleteMany(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    auto buf = info[0].As<Napi::Buffer<uint8_t>>();
    uint64_t count = ToU64(info[1]);
    // Checked whole first, so that a bad batch removes nothing.
    KeyReader check = BatchKeys(buf, 0);
    const unsigned char* key;
    uint32_t klen;
    for (uint64_t i = 0; i < count; ++i)
      if (!check.Next(&key, &klen)) Throw(env, Code::kInvalidKey, "bad key in batch");
    if (count > 0 && store_.read_only()) Status(env, WriteStatus::kReadOnly);
    KeyReader keys = BatchKeys(buf, 0);
    double removed = 0;
    for (uint64_t i = 0; i < count && keys.Next(&key, &klen); ++i) {
      bool r = false;
      Status(env, store_.Delete(key, klen, &r));
      if (r) ++removed;
    }
    return Napi::Number::New(env, removed);
  }

  // peek(keyLength, poolOffset): get()'s results, marking and counting nothing.
  Napi::Value Peek(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    uint32_t klen = KeyLength(info[0]);
    if (pool_ == nullptr) Throw(env, Code::kIo, "peek() before setPool()");
    uint64_t off = std::min<uint64_t>(ToU64(info[1]), pool_cap_);
    unsigned char* out = pool_ + off;
    Entry meta;
    ReadResult r = store_.Peek(key_, klen, out, pool_cap_ - off, &meta);
    if (r.status == ReadStatus::kHit) {
      if (r.type == kAscii || r.type == kString) {
        napi_value s;
        const char* p = reinterpret_cast<const char*>(out);
        size_t n = static_cast<size_t>(r.length);
        napi_status st = r.type == kAscii ? napi_create_string_latin1(env, p, n, &s)
                                          : napi_create_string_utf8(env, p, n, &s);
        NAPI_THROW_IF_FAILED(env, st, Napi::Value());
        return Napi::Value(env, s);
      }
      return Napi::Number::New(env, static_cast<double>(r.length) * 8 + r.type);
    }
    if (r.status == ReadStatus::kNeedBuffer)
      return Napi::Number::New(env, -static_cast<double>(r.length) - 2);
    if (r.status != ReadStatus::kMiss) ReadFailed(env, r.status);
    return Napi::Number::New(env, -1);
  }

  // The live entry of the key in the key buffer, checked, copying nothing.
  bool Meta(Napi::Env env, uint32_t klen, Entry* meta) {
    ReadResult r = store_.Peek(key_, klen, nullptr, 0, meta);
    if (r.status != ReadStatus::kHit && r.status != ReadStatus::kMiss) ReadFailed(env, r.status);
    return r.status == ReadStatus::kHit;
  }
  static double Left(const Entry& e) {
    if (e.expires == 0) return 0;
    int64_t left = static_cast<int64_t>(e.expires) - NowMs();
    return static_cast<double>(left < 1 ? 1 : left);
  }

  // ttl(keyLength) -> -1 missing or expired, 0 no expiry, else ms left (>= 1).
  Napi::Value Ttl(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    Entry meta;
    if (!Meta(env, KeyLength(info[0]), &meta)) return Napi::Number::New(env, -1);
    return Napi::Number::New(env, Left(meta));
  }

  // info(keyLength) -> undefined, or [type, value bytes, ttl as ttl()].
  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    Entry meta;
    if (!Meta(env, KeyLength(info[0]), &meta)) return env.Undefined();
    Napi::Array r = Napi::Array::New(env, 3);
    r.Set(0u, Napi::Number::New(env, meta.type));
    r.Set(1u, Napi::Number::New(env, meta.value_len));
    r.Set(2u, Napi::Number::New(env, Left(meta)));
    return r;
  }

  // count() -> entries stored (as stats().entries).
  Napi::Value Count(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    return Napi::Number::New(env, static_cast<double>(store_.Count()));
  }

  // touch(keyLength, ttl) -> whether a live entry was given the new TTL.
  Napi::Value Touch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    uint32_t klen = KeyLength(info[0]);
    bool found = false;
    Status(env, store_.Retime(key_, klen, ToU64(info[1]), &found));
    return Napi::Boolean::New(env, found);
  }

  // scan(shard, cursor, prefixLength, buffer) -> [next cursor (-1: the
  // shard is done), records, bytes needed (0 unless not even one bucket
  // fit), shards]. The prefix is in the key buffer; records are
  // Store::ScanRecord, each followed by its key and value, 8-byte aligned.
  Napi::Value Scan(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    uint64_t si = ToU64(info[0]);
    uint64_t cursor = ToU64(info[1]);
    uint64_t plen = ToU64(info[2]);
    if (plen > key_cap_ || plen > kMaxKey) Throw(env, Code::kInvalidKey, "bad prefix length");
    auto buf = info[3].As<Napi::Buffer<uint8_t>>();
    uint32_t cur = static_cast<uint32_t>(std::min<uint64_t>(cursor, store_.buckets_per_shard()));
    uint32_t count = 0;
    uint64_t need = 0;
    uint32_t shard = static_cast<uint32_t>(std::min<uint64_t>(si, store_.shard_count()));
    Status(env, store_.Scan(shard, &cur, key_, static_cast<uint32_t>(plen), buf.Data(),
                            buf.Length(), &count, &need));
    Napi::Array r = Napi::Array::New(env, 4);
    r.Set(0u, Napi::Number::New(env, cur >= store_.buckets_per_shard() ? -1.0 : cur));
    r.Set(1u, Napi::Number::New(env, count));
    r.Set(2u, Napi::Number::New(env, static_cast<double>(need)));
    r.Set(3u, Napi::Number::New(env, store_.shard_count()));
    return r;
  }

  // remember()'s claim token: the first 8 bytes of the value buffer.
  uint64_t Token() const {
    uint64_t token = 0;
    if (val_cap_ >= sizeof token) std::memcpy(&token, val_, sizeof token);
    return token;
  }

  static Napi::Value Status(Napi::Env env, WriteStatus st) {
    switch (st) {
      case WriteStatus::kCorrupt:
        Throw(env, Code::kCorrupt,
              "a shard of the segment is damaged beyond repair (its mutex could not be taken, "
              "or the damage keeps coming back)");
      case WriteStatus::kTimeout:
        Throw(env, Code::kTimeout,
              "a live process has held a shard lock of the segment for too long");
      case WriteStatus::kNoSpace: Throw(env, Code::kNoSpace, "could not make room in the segment");
      case WriteStatus::kReadOnly:
        Throw(env, Code::kPermission,
              "the segment is open read-only (no write access to the file or its mount)", EROFS,
              "open");
      default: return Napi::Number::New(env, static_cast<int>(st));
    }
  }

  [[noreturn]] static void ReadFailed(Napi::Env env, ReadStatus st) {
    Status(env, st == ReadStatus::kTimeout ? WriteStatus::kTimeout : WriteStatus::kCorrupt);
    Throw(env, Code::kCorrupt, "unreachable");
  }

  Store store_;
  Napi::Reference<Napi::Buffer<uint8_t>> key_ref_, out_ref_, val_ref_, pool_ref_;
  unsigned char* key_ = nullptr;
  unsigned char* out_ = nullptr;  // small scratch: incr()'s result, get()'s MemoInfo
  unsigned char* val_ = nullptr;
  unsigned char* pool_ = nullptr;  // get()'s destination
  size_t key_cap_ = 0, out_cap_ = 0, val_cap_ = 0, pool_cap_ = 0;
  Napi::Reference<Napi::ArrayBuffer> view_;  // memoView()'s, weak
  bool memo_ = false;
};

Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  AddonData* data = info.Env().GetInstanceData<AddonData>();
  data->error_class = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

Napi::Value SetClockOffset(const Napi::CallbackInfo& info) {
  SetClockOffsetMs(static_cast<int64_t>(info[0].As<Napi::Number>().DoubleValue()));
  return info.Env().Undefined();
}

// shardOf(key: string, nshards) -> the shard index of a key (tests).
Napi::Value ShardOf(const Napi::CallbackInfo& info) {
  std::string key = info[0].As<Napi::String>().Utf8Value();
  uint32_t n = info[1].As<Napi::Number>().Uint32Value();
  if (n == 0 || (n & (n - 1)) != 0) return info.Env().Undefined();
  return Napi::Number::New(
      info.Env(), ShardOfKey(reinterpret_cast<const unsigned char*>(key.data()), key.size(), n));
}

// jail(root, uid, gid): root "" for none, uid/gid -1 for none.
Napi::Value JailCall(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string root = info[0].As<Napi::String>().Utf8Value();
  double uid = info[1].As<Napi::Number>().DoubleValue();
  double gid = info[2].As<Napi::Number>().DoubleValue();
  Error error;
  if (!Jail(root, uid >= 0, static_cast<uid_t>(uid), gid >= 0, static_cast<gid_t>(gid), &error))
    Throw(env, error.code, error.message, error.err, error.syscall);
  return env.Undefined();
}

// The binding floor for benchmarks: a call that does nothing.
Napi::Value Noop(const Napi::CallbackInfo& info) { return info.Env().Undefined(); }

Napi::Value GetLockedReads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(LockedReads()));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitCrashPoints();
  InitProcessInfo();
  env.SetInstanceData(new AddonData());
  exports.Set("NativeCache", NativeCache::Define(env));
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass));
  exports.Set("setClockOffset", Napi::Function::New(env, SetClockOffset));
  exports.Set("noop", Napi::Function::New(env, Noop));
  exports.Set("lockedReads", Napi::Function::New(env, GetLockedReads));
  exports.Set("shardOf", Napi::Function::New(env, ShardOf));
  exports.Set("jail", Napi::Function::New(env, JailCall));
  exports.Set("abiVersion", Napi::Number::New(env, kVersion));
  return exports;
}

}  // namespace shmcache

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return shmcache::Init(env, exports);
}

NODE_API_MODULE(NODE_GYP_MODULE_NAME, InitModule)
