// What the C++ programs share (alexnet_ov_infer for OpenVINO, alexnet_trt_infer for TensorRT, and the
// SDK-free alexnet_sidecar_tool): a small JSON reader for an artifact's sidecar (MODEL.json), SHA-256 to match a
// sidecar to its file, the load-time compatibility rules of TensorRT plans and OpenVINO blobs (the same rules and
// sentences as the Python loaders), a binary PPM (P6) reader, the eval preprocessing (resize the shorter side,
// centre crop, normalise) computed exactly as torchvision computes it, and the top-k of the logits.
//
// JSON reader limits: it parses standard JSON (objects, arrays, strings with every escape including \uXXXX
// surrogate pairs, numbers, true/false/null) into a tree held in memory; numbers are doubles; duplicate keys keep
// the first; no streaming, no comments, nesting depth limited to 64. It is enough for our sidecars (a few KB to a
// few hundred KB with 1000 class names), not a general-purpose library.
#pragma once

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace sidecar {

// -- JSON --------------------------------------------------------------------------------------------------------
struct Value {
    enum class Type { Null, Bool, Number, String, Array, Object };
    Type type = Type::Null;
    bool boolean = false;
    double number = 0.0;
    std::string string;
    std::vector<Value> items;       // Array elements, or Object values (same order as keys)
    std::vector<std::string> keys;  // Object keys

    const Value* find(const std::string& key) const {
        if (type != Type::Object) return nullptr;
        for (size_t i = 0; i < keys.size(); ++i)
            if (keys[i] == key) return &items[i];
        return nullptr;
    }
    const Value& at(const std::string& key) const {
        const Value* v = find(key);
        if (!v) throw std::runtime_error("the sidecar has no \"" + key + "\" field");
        return *v;
    }
    const std::string& str() const {
        if (type != Type::String) throw std::runtime_error("expected a string in the sidecar");
        return string;
    }
    double num() const {
        if (type != Type::Number) throw std::runtime_error("expected a number in the sidecar");
        return number;
    }
};

class Parser {
public:
    explicit Parser(const std::string& text) : s_(text) {}

    Value parseDocument() {
        Value v = parseValue(0);
        skipSpace();
        if (i_ != s_.size()) fail("unexpected text after the JSON value");
        return v;
    }

private:
    const std::string& s_;
    size_t i_ = 0;

    [[noreturn]] void fail(const std::string& what) const {
        throw std::runtime_error("invalid JSON at byte " + std::to_string(i_) + ": " + what);
    }
    void skipSpace() {
        while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
    }
    bool consume(const char* word) {
        size_t n = std::char_traits<char>::length(word);
        if (s_.compare(i_, n, word) == 0) {
            i_ += n;
            return true;
        }
        return false;
    }
    Value parseValue(int depth) {
        if (depth > 64) fail("nested too deeply");
        skipSpace();
        if (i_ >= s_.size()) fail("unexpected end");
        Value v;
        char c = s_[i_];
        if (c == '{') {
            v.type = Value::Type::Object;
            ++i_;
            skipSpace();
            if (i_ < s_.size() && s_[i_] == '}') { ++i_; return v; }
            while (true) {
                skipSpace();
                if (i_ >= s_.size() || s_[i_] != '"') fail("expected a key");
                std::string key = parseString();
                skipSpace();
                if (i_ >= s_.size() || s_[i_] != ':') fail("expected ':'");
                ++i_;
                Value item = parseValue(depth + 1);
                if (!v.find(key)) { v.keys.push_back(key); v.items.push_back(std::move(item)); }
                skipSpace();
                if (i_ < s_.size() && s_[i_] == ',') { ++i_; continue; }
                if (i_ < s_.size() && s_[i_] == '}') { ++i_; return v; }
                fail("expected ',' or '}'");
            }
        }
        if (c == '[') {
            v.type = Value::Type::Array;
            ++i_;
            skipSpace();
            if (i_ < s_.size() && s_[i_] == ']') { ++i_; return v; }
            while (true) {
                v.items.push_back(parseValue(depth + 1));
                skipSpace();
                if (i_ < s_.size() && s_[i_] == ',') { ++i_; continue; }
                if (i_ < s_.size() && s_[i_] == ']') { ++i_; return v; }
                fail("expected ',' or ']'");
            }
        }
        if (c == '"') { v.type = Value::Type::String; v.string = parseString(); return v; }
        if (consume("true")) { v.type = Value::Type::Bool; v.boolean = true; return v; }
        if (consume("false")) { v.type = Value::Type::Bool; return v; }
        if (consume("null")) return v;
        if (c == '-' || (c >= '0' && c <= '9')) {
            size_t start = i_;
            while (i_ < s_.size() && std::string("+-0123456789.eE").find(s_[i_]) != std::string::npos) ++i_;
            v.type = Value::Type::Number;
            try {
                v.number = std::stod(s_.substr(start, i_ - start));
            } catch (const std::exception&) {
                fail("bad number");
            }
            return v;
        }
        fail(std::string("unexpected character '") + c + "'");
    }
    unsigned hex4() {
        if (i_ + 4 > s_.size()) fail("short \\u escape");
        unsigned code = 0;
        for (int k = 0; k < 4; ++k) {
            char h = s_[i_++];
            code <<= 4;
            if (h >= '0' && h <= '9') code |= unsigned(h - '0');
            else if (h >= 'a' && h <= 'f') code |= unsigned(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F') code |= unsigned(h - 'A' + 10);
            else fail("bad \\u escape");
        }
        return code;
    }
    static void appendUtf8(std::string& out, unsigned cp) {
        if (cp < 0x80) {
            out += char(cp);
        } else if (cp < 0x800) {
            out += char(0xC0 | (cp >> 6));
            out += char(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += char(0xE0 | (cp >> 12));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        } else {
            out += char(0xF0 | (cp >> 18));
            out += char(0x80 | ((cp >> 12) & 0x3F));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        }
    }
    std::string parseString() {
        ++i_;  // opening quote
        std::string out;
        while (true) {
            if (i_ >= s_.size()) fail("unterminated string");
            char c = s_[i_++];
            if (c == '"') return out;
            if (c != '\\') { out += c; continue; }
            if (i_ >= s_.size()) fail("unterminated escape");
            char e = s_[i_++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    unsigned cp = hex4();
                    if (cp >= 0xD800 && cp < 0xDC00) {  // a surrogate pair (Python's json writes these)
                        if (!consume("\\u")) fail("lone high surrogate");
                        unsigned low = hex4();
                        if (low < 0xDC00 || low >= 0xE000) fail("bad low surrogate");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    }
                    appendUtf8(out, cp);
                    break;
                }
                default: fail("bad escape");
            }
        }
    }
};

inline std::string readFile(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + path);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

inline std::string baseName(const std::string& path) {
    size_t slash = path.find_last_of('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

// -- SHA-256 (FIPS 180-4), to check that a sidecar describes the file beside it -----------------------------------
class Sha256 {
public:
    void update(const unsigned char* data, size_t size) {
        for (size_t i = 0; i < size; ++i) {
            block_[fill_++] = data[i];
            if (fill_ == 64) {
                compress();
                fill_ = 0;
            }
        }
        bits_ += uint64_t(size) * 8;
    }
    std::string hex() {
        uint64_t bits = bits_;
        const unsigned char one = 0x80, zero = 0;
        update(&one, 1);
        while (fill_ != 56) update(&zero, 1);
        for (int i = 7; i >= 0; --i) {
            unsigned char b = uint8_t(bits >> (8 * i));
            update(&b, 1);
        }
        static const char* digits = "0123456789abcdef";
        std::string out;
        for (uint32_t word : h_)
            for (int i = 28; i >= 0; i -= 4) out += digits[(word >> i) & 0xF];
        return out;
    }

private:
    std::array<uint32_t, 8> h_{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    std::array<unsigned char, 64> block_{};
    size_t fill_ = 0;
    uint64_t bits_ = 0;

    static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
    void compress() {
        static const uint32_t k[64] = {
            0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
            0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
            0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
            0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
            0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
            0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
            0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
            0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
        uint32_t w[64];
        for (int i = 0; i < 16; ++i)
            w[i] = uint32_t(block_[4 * i]) << 24 | uint32_t(block_[4 * i + 1]) << 16 |
                   uint32_t(block_[4 * i + 2]) << 8 | uint32_t(block_[4 * i + 3]);
        for (int i = 16; i < 64; ++i) {
            uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
        for (int i = 0; i < 64; ++i) {
            uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
            uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
        }
        h_[0] += a; h_[1] += b; h_[2] += c; h_[3] += d; h_[4] += e; h_[5] += f; h_[6] += g; h_[7] += h;
    }
};

inline std::string sha256File(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + path);
    Sha256 sha;
    std::vector<char> buffer(1 << 20);
    while (f) {
        f.read(buffer.data(), std::streamsize(buffer.size()));
        sha.update(reinterpret_cast<const unsigned char*>(buffer.data()), size_t(f.gcount()));
    }
    return sha.hex();
}

// -- the sidecar: what every artifact's MODEL.json says ----------------------------------------------------------
struct Sidecar {
    std::string kind;       // "onnx", "plan" or "ovblob" (checkpoints are not for these programs)
    std::string precision;  // fp32, fp16, bf16, int8
    std::string sha256;     // of the artifact itself
    std::string inputName, outputName;
    int resize = 0, crop = 0;
    float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
    std::vector<std::string> classes;
    Value engine;  // the backend's facts as written (an empty object for an exported ONNX)
};

inline std::string sidecarPath(const std::string& artifact) { return artifact + ".json"; }

inline Sidecar loadSidecar(const std::string& path) {
    Value root = Parser(readFile(path)).parseDocument();
    if (root.type != Value::Type::Object) throw std::runtime_error(path + " is not a JSON object");
    Sidecar sc;
    sc.kind = root.at("kind").str();
    if (const Value* p = root.find("precision")) sc.precision = p->str();
    if (const Value* s = root.find("sha256")) sc.sha256 = s->str();
    if (const Value* in = root.find("input"))
        if (const Value* name = in->find("name")) sc.inputName = name->str();
    if (const Value* out = root.find("output"))
        if (const Value* name = out->find("name")) sc.outputName = name->str();
    if (const Value* engine = root.find("engine")) sc.engine = *engine;
    if (sc.engine.type != Value::Type::Object) sc.engine.type = Value::Type::Object;
    const Value& pre = root.at("preprocessing");
    sc.resize = int(pre.at("resize").num());
    sc.crop = int(pre.at("crop").num());
    if (sc.resize <= 0 || sc.crop <= 0 || sc.crop > sc.resize)
        throw std::runtime_error("the sidecar's preprocessing has a bad resize/crop");
    for (int c = 0; c < 3; ++c) {
        sc.mean[c] = float(pre.at("mean").items.at(c).num());
        sc.std[c] = float(pre.at("std").items.at(c).num());
        if (!(sc.std[c] > 0)) throw std::runtime_error("the sidecar's preprocessing has a std that is not positive");
    }
    for (const Value& name : root.at("classes").items) sc.classes.push_back(name.str());
    return sc;
}

// The same refusal as alexnet_deploy.core.manifest.load_manifest: a sidecar must describe the bytes beside it.
inline void checkSha256(const Sidecar& sc, const std::string& artifact) {
    const std::string name = baseName(artifact), json = baseName(sidecarPath(artifact));
    if (sc.sha256.empty())
        throw std::runtime_error("The manifest " + sidecarPath(artifact) + " records no sha256, so it cannot be matched to " +
                                 name + "; write the artifact again with alexnet-deploy.");
    if (sha256File(artifact) != sc.sha256)
        throw std::runtime_error("The sidecar " + json + " does not describe " + name +
                                 " (their sha256 differ): an interrupted or concurrent write left them apart; write "
                                 "the artifact again.");
}

// -- TensorRT plans: the same rule as alexnet_deploy.backends.tensorrt.runner.check_plan_compatible --------------
struct TensorInfo {
    std::string name, mode, dtype;
    std::vector<int64_t> shape;  // -1 for the dynamic batch
};

struct PlanFacts {
    std::string tensorrtVersion, gpuName, computeCapability;
    std::string hardwareCompatibility = "none";
    bool versionCompatible = false;
    std::vector<TensorInfo> io;
};

inline PlanFacts planFacts(const Sidecar& sc) {
    const Value& engine = sc.engine;
    PlanFacts facts;
    facts.tensorrtVersion = engine.at("tensorrt_version").str();
    facts.gpuName = engine.at("gpu").at("name").str();
    facts.computeCapability = engine.at("gpu").at("compute_capability").str();
    if (const Value* opts = engine.find("build_options")) {
        if (const Value* hw = opts->find("hardware_compatibility")) facts.hardwareCompatibility = hw->str();
        if (const Value* vc = opts->find("version_compatible")) facts.versionCompatible = vc->boolean;
    }
    for (const Value& t : engine.at("io").items) {
        TensorInfo info{t.at("name").str(), t.at("mode").str(), t.at("dtype").str(), {}};
        for (const Value& d : t.at("shape").items) info.shape.push_back(int64_t(d.num()));
        facts.io.push_back(info);
    }
    return facts;
}

inline std::vector<int> versionParts(const std::string& text, size_t count) {
    std::vector<int> parts;
    std::stringstream ss(text);
    std::string piece;
    while (parts.size() < count && std::getline(ss, piece, '.')) {
        std::string digits;
        for (char ch : piece)
            if (ch >= '0' && ch <= '9') digits += ch;
        parts.push_back(digits.empty() ? 0 : std::stoi(digits));
    }
    while (parts.size() < count) parts.push_back(0);
    return parts;
}

inline std::string joinProblems(const std::vector<std::string>& problems) {
    std::string joined;
    for (size_t k = 0; k < problems.size(); ++k) joined += (k ? "; " : "") + problems[k];
    return joined;
}

// Returns an empty string when the plan can load here, else the sentence that says why not.
inline std::string checkPlanCompatible(const PlanFacts& plan, const std::string& trtVersion, const std::string& gpuName,
                                       const std::string& computeCapability) {
    std::vector<std::string> problems;
    std::vector<int> built = versionParts(plan.tensorrtVersion, 3), here = versionParts(trtVersion, 3);
    if (plan.versionCompatible) {
        bool sameFamily = here[0] == built[0] || (built[0] == 10 && here[0] == 11);
        if (!(sameFamily && here >= built))
            problems.push_back("a version-compatible plan loads only on the same or a later release of its major version");
    } else if (built != here) {
        problems.push_back("plans load only on the TensorRT release that built them");
    }
    std::vector<int> ccBuilt = versionParts(plan.computeCapability, 2), ccHere = versionParts(computeCapability, 2);
    if (plan.hardwareCompatibility == "ampere_plus") {
        if (ccHere < std::vector<int>{8, 0})
            problems.push_back("an Ampere-plus plan needs a GPU of compute capability 8.0 or newer");
    } else if (ccHere != ccBuilt) {
        problems.push_back("plans load only on GPUs of the compute capability that built them");
    } else if (plan.hardwareCompatibility == "none" && plan.gpuName != gpuName) {
        problems.push_back(
            "it was built without hardware compatibility, for that GPU model only "
            "(hardware compatibility same_compute_capability shares it)");
    }
    if (problems.empty()) return "";
    return "This plan was built by TensorRT " + plan.tensorrtVersion + " for " + plan.gpuName + " (compute " +
           plan.computeCapability + "); this machine has TensorRT " + trtVersion + " and " + gpuName + " (compute " +
           computeCapability + "): " + joinProblems(problems) + ". Rebuild the plan on this machine.";
}

// -- OpenVINO engines and blobs: alexnet_deploy.backends.openvino ------------------------------------------------
// How to compile or import the model: the options its sidecar recorded (an exported ONNX without OpenVINO facts
// gets the defaults: f32 pinned, LATENCY, OpenVINO's threads), and for a blob what it was compiled for.
struct OpenVINOFacts {
    std::string device = "CPU";
    std::string inferencePrecision;  // "" = the model's own arithmetic, which OpenVINO is told is f32
    std::string performanceHint = "LATENCY";
    int threads = 0, numStreams = 0;  // 0: OpenVINO's choice
    // blobs only
    std::string openvinoVersion, runtimeRequirements, sourceSha256;
    std::vector<std::string> cpuFeatures;
};

inline OpenVINOFacts openvinoFacts(const Sidecar& sc) {
    OpenVINOFacts facts;
    const Value& engine = sc.engine;
    if (engine.keys.empty()) {
        if (sc.kind == "ovblob") throw std::runtime_error("the blob's sidecar has no engine facts");
        return facts;  // an exported ONNX: OpenVINO's defaults, f32 pinned
    }
    const Value* backend = engine.find("backend");
    if (!backend || backend->type != Value::Type::String || backend->string != "openvino")
        throw std::runtime_error("The sidecar describes a " +
                                 (backend && backend->type == Value::Type::String ? backend->string : std::string("unknown")) +
                                 " engine, not an OpenVINO one.");
    if (const Value* d = engine.find("device"); d && d->type == Value::Type::String) facts.device = d->string;
    if (const Value* opts = engine.find("options")) {
        if (const Value* p = opts->find("inference_precision"); p && p->type == Value::Type::String)
            facts.inferencePrecision = p->string;
        if (const Value* h = opts->find("performance_hint"); h && h->type == Value::Type::String)
            facts.performanceHint = h->string;
        if (const Value* t = opts->find("threads"); t && t->type == Value::Type::Number) facts.threads = int(t->number);
        if (const Value* s = opts->find("num_streams"); s && s->type == Value::Type::Number)
            facts.numStreams = int(s->number);
    }
    if (sc.kind == "ovblob") {
        facts.openvinoVersion = engine.at("openvino_version").str();
        facts.runtimeRequirements = engine.at("runtime_requirements").str();
        if (const Value* s = engine.find("source_onnx_sha256"); s && s->type == Value::Type::String)
            facts.sourceSha256 = s->string;
        if (const Value* f = engine.find("cpu_features"))
            for (const Value& flag : f->items) facts.cpuFeatures.push_back(flag.str());
    }
    return facts;
}

// One field of OpenVINO's runtime requirements ("meta=1.0;ov=2026.4.1;isa=Intel AVX2"), or "".
inline std::string requirementField(const std::string& requirements, const std::string& key) {
    std::stringstream ss(requirements);
    std::string piece;
    while (std::getline(ss, piece, ';'))
        if (piece.compare(0, key.size() + 1, key + "=") == 0) return piece.substr(key.size() + 1);
    return "";
}

// The same rule as alexnet_deploy.backends.openvino.check_blob_compatible: OpenVINO imports a CPU blob only
// when the runtime requirements it recorded (its release and the instruction set it was compiled for) equal this
// machine's. Returns an empty string when the blob can load here, else the sentence that says why not.
inline std::string checkBlobCompatible(const OpenVINOFacts& blob, const std::string& openvinoHere,
                                       const std::string& requirementsHere) {
    if (blob.runtimeRequirements == requirementsHere) return "";
    std::vector<std::string> problems;
    std::string isaBlob = requirementField(blob.runtimeRequirements, "isa");
    std::string isaHere = requirementField(requirementsHere, "isa");
    if (versionParts(blob.openvinoVersion, 3) != versionParts(openvinoHere, 3))
        problems.push_back("blobs load only on the OpenVINO release that compiled them");
    if (isaBlob != isaHere) problems.push_back("blobs load only on CPUs of the instruction set they were compiled for");
    if (problems.empty())
        problems.push_back("OpenVINO's runtime requirements differ (" + blob.runtimeRequirements + " against " +
                           requirementsHere + ")");
    auto isa = [](const std::string& text) { return text.empty() ? std::string("an unknown instruction set") : text; };
    return "This blob was compiled by OpenVINO " + blob.openvinoVersion + " for " + isa(isaBlob) +
           "; this machine has OpenVINO " + openvinoHere + " and " + isa(isaHere) + ": " + joinProblems(problems) +
           ". Rebuild the blob on this machine (alexnet-deploy build --backend openvino --export-blob) or load the "
           "ONNX it came from.";
}

// -- images ------------------------------------------------------------------------------------------------------
struct Image {
    int width = 0, height = 0;
    std::vector<uint8_t> rgb;  // height x width x 3
};

// Binary PPM (P6, maxval 255) only: convert other formats first, e.g. with Pillow
// (Image.open(p).convert("RGB").save("x.ppm")) or ImageMagick (convert photo.jpg x.ppm).
inline Image readPpm(const std::string& path) {
    std::string data = readFile(path);
    size_t i = 0;
    auto token = [&]() {
        while (i < data.size()) {
            if (data[i] == '#') {
                while (i < data.size() && data[i] != '\n') ++i;
            } else if (std::isspace(static_cast<unsigned char>(data[i]))) {
                ++i;
            } else {
                break;
            }
        }
        size_t start = i;
        while (i < data.size() && !std::isspace(static_cast<unsigned char>(data[i])) && data[i] != '#') ++i;
        return data.substr(start, i - start);
    };
    if (token() != "P6") throw std::runtime_error(path + " is not a binary PPM (P6) image");
    Image img;
    try {
        img.width = std::stoi(token());
        img.height = std::stoi(token());
        if (std::stoi(token()) != 255) throw std::runtime_error("");
    } catch (const std::exception&) {
        throw std::runtime_error(path + " has a PPM header this reader cannot use (needs P6, maxval 255)");
    }
    ++i;  // the single whitespace byte after maxval
    if (img.width <= 0 || img.height <= 0 || img.width > 65535 || img.height > 65535)
        throw std::runtime_error(path + " is truncated or has a bad size");
    size_t bytes = size_t(img.width) * size_t(img.height) * 3;
    if (data.size() < i + bytes) throw std::runtime_error(path + " is truncated or has a bad size");
    img.rgb.assign(data.begin() + long(i), data.begin() + long(i + bytes));
    return img;
}

// One pass of the antialiased bilinear (triangle) resampling of torch's uint8 kernel, which torchvision's
// Resize(antialias=True) runs on uint8 images (and which follows Pillow's): the filter widens by the scale factor
// on a downscale, the weights are computed in double, normalised, and turned into int16 with the largest
// precision that keeps the biggest weight below 2^15; each output is (2^(p-1) + sum(pixel * weight)) >> p,
// clamped to 0..255. Resizes axis `axis` (0 = width, 1 = height) of an interleaved RGB image. Computed this way,
// the result equals torchvision's bit for bit (tests/backends/test_cpp_example.py checks it).
inline Image resamplePass(const Image& in, int outSize, int axis) {
    const int inSize = axis == 0 ? in.width : in.height;
    const double scale = double(inSize) / outSize;
    const double support = scale >= 1.0 ? scale : 1.0;  // bilinear: half the 2-tap window, widened by the scale
    const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
    const int ksize = int(std::ceil(support)) * 2 + 1;
    std::vector<double> weights(size_t(outSize) * ksize, 0.0);
    std::vector<int> first(static_cast<size_t>(outSize)), count(static_cast<size_t>(outSize));
    double maxWeight = 0.0;
    for (int o = 0; o < outSize; ++o) {
        const double center = scale * (o + 0.5);
        const int64_t lo = std::max<int64_t>(int64_t(center - support + 0.5), 0);
        const int64_t n = std::clamp<int64_t>(std::min<int64_t>(int64_t(center + support + 0.5), inSize) - lo, 0, ksize);
        double* w = &weights[size_t(o) * ksize];
        double total = 0.0;
        for (int64_t k = 0; k < n; ++k) {
            const double x = std::fabs((double(k + lo) - center + 0.5) * invscale);
            w[k] = x < 1.0 ? 1.0 - x : 0.0;
            total += w[k];
        }
        if (total != 0.0)
            for (int64_t k = 0; k < n; ++k) {
                w[k] /= total;
                maxWeight = std::max(maxWeight, w[k]);
            }
        first[size_t(o)] = int(lo);
        count[size_t(o)] = int(n);
    }
    unsigned precision = 0;
    for (precision = 0; precision < 22; ++precision)
        if (int(0.5 + maxWeight * (1 << (precision + 1))) >= (1 << 15)) break;
    std::vector<int32_t> fixed(weights.size());
    for (size_t k = 0; k < weights.size(); ++k) {
        const double v = weights[k] * (1 << precision);
        fixed[k] = int16_t(v < 0 ? int(-0.5 + v) : int(0.5 + v));
    }
    Image out;
    out.width = axis == 0 ? outSize : in.width;
    out.height = axis == 0 ? in.height : outSize;
    out.rgb.assign(size_t(out.width) * out.height * 3, 0);
    const int lines = axis == 0 ? in.height : in.width;
    for (int o = 0; o < outSize; ++o) {
        const int32_t* w = &fixed[size_t(o) * ksize];
        for (int line = 0; line < lines; ++line) {
            for (int c = 0; c < 3; ++c) {
                int32_t acc = precision > 0 ? int32_t(1) << (precision - 1) : 0;
                for (int k = 0; k < count[size_t(o)]; ++k) {
                    const int at = first[size_t(o)] + k;
                    const size_t idx = axis == 0 ? (size_t(line) * in.width + at) * 3 + c : (size_t(at) * in.width + line) * 3 + c;
                    acc += int32_t(in.rgb[idx]) * w[k];
                }
                const size_t dst = axis == 0 ? (size_t(line) * out.width + o) * 3 + c : (size_t(o) * out.width + line) * 3 + c;
                out.rgb[dst] = uint8_t(std::clamp(acc >> precision, 0, 255));
            }
        }
    }
    return out;
}

// The eval preset: shorter side to `resize` (longer side int(resize * long / short)), centre crop `crop`,
// to float as torchvision's ToDtype(scale=True) does (x * float(1/255)), then (x - mean) / std in float32.
// Returns the 3 x crop x crop tensor in CHW order.
inline std::vector<float> preprocess(const Image& img, const Sidecar& sc) {
    bool wide = img.width >= img.height;
    int shortSide = wide ? img.height : img.width, longSide = wide ? img.width : img.height;
    int newShort = sc.resize;
    int newLong = int(double(int64_t(sc.resize) * longSide) / shortSide);
    int newW = wide ? newLong : newShort, newH = wide ? newShort : newLong;
    Image resized = img;
    if (newW != img.width) resized = resamplePass(resized, newW, 0);  // horizontal first, as torch and Pillow do
    if (newH != img.height) resized = resamplePass(resized, newH, 1);
    if (sc.crop > newW || sc.crop > newH)
        throw std::runtime_error("the sidecar's crop is larger than the resized image");
    // torchvision rounds the offsets half to even (Python's round); nearbyint does too in the default mode.
    int top = int(std::nearbyint((newH - sc.crop) / 2.0)), left = int(std::nearbyint((newW - sc.crop) / 2.0));
    const float toUnit = float(1.0 / 255.0);
    std::vector<float> chw(size_t(3) * sc.crop * sc.crop);
    for (int c = 0; c < 3; ++c)
        for (int y = 0; y < sc.crop; ++y)
            for (int x = 0; x < sc.crop; ++x) {
                float v = float(resized.rgb[(size_t(top + y) * newW + (left + x)) * 3 + c]) * toUnit;
                chw[(size_t(c) * sc.crop + y) * sc.crop + x] = (v - sc.mean[c]) / sc.std[c];
            }
    return chw;
}

// -- results -----------------------------------------------------------------------------------------------------
struct Ranked {
    size_t index;
    double probability;
};

// Softmax in double of one row of logits, and the k most probable classes, most probable first.
inline std::vector<Ranked> topK(const float* logits, size_t count, size_t k) {
    const float top = *std::max_element(logits, logits + count);
    double total = 0;
    for (size_t i = 0; i < count; ++i) total += std::exp(double(logits[i]) - double(top));
    std::vector<size_t> order(count);
    std::iota(order.begin(), order.end(), 0);
    k = std::min(k, count);
    std::partial_sort(order.begin(), order.begin() + long(k), order.end(),
                      [&](size_t a, size_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    std::vector<Ranked> ranked;
    for (size_t r = 0; r < k; ++r)
        ranked.push_back({order[r], std::exp(double(logits[order[r]]) - double(top)) / total});
    return ranked;
}

// A string for the console: control characters (an ANSI escape in a class name...) shown as \xNN, the rest as is.
inline std::string printable(const std::string& text) {
    std::string out;
    for (unsigned char ch : text) {
        if (ch < 0x20 || ch == 0x7F) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02X", ch);
            out += buf;
        } else {
            out += char(ch);
        }
    }
    return out;
}

// A JSON string literal (UTF-8 passes through; quotes, backslashes and control characters are escaped).
inline std::string jsonString(const std::string& text) {
    std::string out = "\"";
    for (unsigned char ch : text) {
        switch (ch) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (ch < 0x20 || ch == 0x7F) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", ch);
                    out += buf;
                } else {
                    out += char(ch);
                }
        }
    }
    return out + "\"";
}

}  // namespace sidecar
