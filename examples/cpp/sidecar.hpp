// The parts of the C++ example that need no TensorRT: a small JSON reader for the plan's sidecar
// (model.plan.json), the plan/machine compatibility rule, a binary PPM (P6) reader, and the eval preprocessing
// (resize the shorter side, centre crop, normalise) done the way torchvision's Resize(antialias=True) does it.
//
// JSON reader limits: it parses standard JSON (objects, arrays, strings with every escape including \uXXXX
// surrogate pairs, numbers, true/false/null) into a tree held in memory; numbers are doubles; duplicate keys keep
// the first; no streaming, no comments, nesting depth limited to 64. It is enough for our sidecars (a few KB to a
// few hundred KB with 1000 class names), not a general-purpose library.
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <fstream>
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

// -- the sidecar's fields that the example uses ------------------------------------------------------------------
struct TensorInfo {
    std::string name, mode, dtype;
    std::vector<int64_t> shape;  // -1 for the dynamic batch
};

struct Sidecar {
    std::string tensorrtVersion, gpuName, computeCapability;
    std::string hardwareCompatibility = "none";
    bool versionCompatible = false;
    std::vector<TensorInfo> io;
    int resize = 0, crop = 0;
    float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
    std::vector<std::string> classes;
};

inline Sidecar loadSidecar(const std::string& path) {
    Value root = Parser(readFile(path)).parseDocument();
    Sidecar sc;
    const Value& engine = root.at("engine");
    sc.tensorrtVersion = engine.at("tensorrt_version").str();
    sc.gpuName = engine.at("gpu").at("name").str();
    sc.computeCapability = engine.at("gpu").at("compute_capability").str();
    if (const Value* opts = engine.find("build_options")) {
        if (const Value* hw = opts->find("hardware_compatibility")) sc.hardwareCompatibility = hw->str();
        if (const Value* vc = opts->find("version_compatible")) sc.versionCompatible = vc->boolean;
    }
    for (const Value& t : engine.at("io").items) {
        TensorInfo info{t.at("name").str(), t.at("mode").str(), t.at("dtype").str(), {}};
        for (const Value& d : t.at("shape").items) info.shape.push_back(int64_t(d.num()));
        sc.io.push_back(info);
    }
    const Value& pre = root.at("preprocessing");
    sc.resize = int(pre.at("resize").num());
    sc.crop = int(pre.at("crop").num());
    for (int c = 0; c < 3; ++c) {
        sc.mean[c] = float(pre.at("mean").items.at(c).num());
        sc.std[c] = float(pre.at("std").items.at(c).num());
    }
    for (const Value& name : root.at("classes").items) sc.classes.push_back(name.str());
    return sc;
}

// -- compatibility: the same rule as alexnet_deploy.runners.tensorrt_runner.check_plan_compatible ----------------
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

// Returns an empty string when the plan can load here, else the sentence that says why not.
inline std::string checkCompatible(const Sidecar& sc, const std::string& trtVersion, const std::string& gpuName,
                                   const std::string& computeCapability) {
    std::vector<std::string> problems;
    std::vector<int> built = versionParts(sc.tensorrtVersion, 3), here = versionParts(trtVersion, 3);
    if (sc.versionCompatible) {
        bool sameFamily = here[0] == built[0] || (built[0] == 10 && here[0] == 11);
        if (!(sameFamily && here >= built))
            problems.push_back("a version-compatible plan loads only on the same or a later release of its major version");
    } else if (built != here) {
        problems.push_back("plans load only on the TensorRT release that built them");
    }
    std::vector<int> ccBuilt = versionParts(sc.computeCapability, 2), ccHere = versionParts(computeCapability, 2);
    if (sc.hardwareCompatibility == "ampere_plus") {
        if (ccHere < std::vector<int>{8, 0})
            problems.push_back("an Ampere-plus plan needs a GPU of compute capability 8.0 or newer");
    } else if (ccHere != ccBuilt) {
        problems.push_back("plans load only on GPUs of the compute capability that built them");
    } else if (sc.hardwareCompatibility == "none" && sc.gpuName != gpuName) {
        problems.push_back(
            "it was built without hardware compatibility, for that GPU model only "
            "(hardware compatibility same_compute_capability shares it)");
    }
    if (problems.empty()) return "";
    std::string joined;
    for (size_t k = 0; k < problems.size(); ++k) joined += (k ? "; " : "") + problems[k];
    return "This plan was built by TensorRT " + sc.tensorrtVersion + " for " + sc.gpuName + " (compute " +
           sc.computeCapability + "); this machine has TensorRT " + trtVersion + " and " + gpuName + " (compute " +
           computeCapability + "): " + joined + ". Rebuild the plan on this machine.";
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
    size_t bytes = size_t(img.width) * size_t(img.height) * 3;
    if (img.width <= 0 || img.height <= 0 || data.size() < i + bytes)
        throw std::runtime_error(path + " is truncated or has a bad size");
    img.rgb.assign(data.begin() + long(i), data.begin() + long(i + bytes));
    return img;
}

// One pass of the antialiased bilinear (triangle) resampling used by Pillow and by torchvision's
// Resize(antialias=True) on uint8 images: for a downscale the filter widens by the scale factor. Resizes axis
// `axis` (0 = width, 1 = height) of an interleaved RGB image and rounds back to uint8, as those libraries do.
inline Image resamplePass(const Image& in, int outSize, int axis) {
    int inSize = axis == 0 ? in.width : in.height;
    double scale = double(inSize) / outSize;
    double filterScale = std::max(scale, 1.0);
    double support = 1.0 * filterScale;
    Image out;
    out.width = axis == 0 ? outSize : in.width;
    out.height = axis == 0 ? in.height : outSize;
    out.rgb.assign(size_t(out.width) * out.height * 3, 0);
    for (int o = 0; o < outSize; ++o) {
        double center = (o + 0.5) * scale;
        int lo = std::max(int(center - support + 0.5), 0);
        int hi = std::min(int(center + support + 0.5), inSize);
        std::vector<double> w(size_t(hi - lo));
        double total = 0;
        for (int k = lo; k < hi; ++k) {
            double x = std::fabs((k - center + 0.5) / filterScale);
            w[size_t(k - lo)] = x < 1.0 ? 1.0 - x : 0.0;
            total += w[size_t(k - lo)];
        }
        for (double& wk : w) wk = total > 0 ? wk / total : 0;
        int lines = axis == 0 ? in.height : in.width;
        for (int line = 0; line < lines; ++line) {
            for (int c = 0; c < 3; ++c) {
                double acc = 0;
                for (int k = lo; k < hi; ++k) {
                    size_t idx = axis == 0 ? (size_t(line) * in.width + k) * 3 + c : (size_t(k) * in.width + line) * 3 + c;
                    acc += w[size_t(k - lo)] * in.rgb[idx];
                }
                size_t dst = axis == 0 ? (size_t(line) * out.width + o) * 3 + c : (size_t(o) * out.width + line) * 3 + c;
                out.rgb[dst] = uint8_t(std::clamp(std::floor(acc + 0.5), 0.0, 255.0));
            }
        }
    }
    return out;
}

// The eval preset: shorter side to `resize` (longer side int(resize * long / short)), centre crop `crop`,
// scale to [0, 1], normalise with mean/std. Returns the 3 x crop x crop tensor in CHW order.
inline std::vector<float> preprocess(const Image& img, const Sidecar& sc) {
    bool wide = img.width >= img.height;
    int shortSide = wide ? img.height : img.width, longSide = wide ? img.width : img.height;
    int newShort = sc.resize;
    int newLong = int(double(int64_t(sc.resize) * longSide) / shortSide);
    int newW = wide ? newLong : newShort, newH = wide ? newShort : newLong;
    Image resized = img;
    if (newW != img.width) resized = resamplePass(resized, newW, 0);  // horizontal first, as Pillow does
    if (newH != img.height) resized = resamplePass(resized, newH, 1);
    if (sc.crop > newW || sc.crop > newH)
        throw std::runtime_error("the sidecar's crop is larger than the resized image");
    // torchvision rounds the offsets half to even (Python's round); nearbyint does too in the default mode.
    int top = int(std::nearbyint((newH - sc.crop) / 2.0)), left = int(std::nearbyint((newW - sc.crop) / 2.0));
    std::vector<float> chw(size_t(3) * sc.crop * sc.crop);
    for (int c = 0; c < 3; ++c)
        for (int y = 0; y < sc.crop; ++y)
            for (int x = 0; x < sc.crop; ++x) {
                float v = resized.rgb[(size_t(top + y) * newW + (left + x)) * 3 + c] / 255.0f;
                chw[(size_t(c) * sc.crop + y) * sc.crop + x] = (v - sc.mean[c]) / sc.std[c];
            }
    return chw;
}

}  // namespace sidecar
