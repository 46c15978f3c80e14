// alexnet_ov_infer: run an alexnet-deploy model with OpenVINO's C++ API, as its sidecar says, and print the top-5
// of each image with class names; or time it (--bench).
//
//   alexnet_ov_infer MODEL IMAGE.ppm... [--top-k K] [--batch B] [--threads N] [--json]
//   alexnet_ov_infer MODEL [IMAGE.ppm...] --bench N [--batch B] [--warmup W] [--threads N]
//
// MODEL is what `alexnet-deploy export` or `build --backend openvino` wrote, with its sidecar MODEL.json beside it:
// an ONNX model (read and compiled here with the properties the sidecar recorded: f32 pinned unless it says bf16
// or f16, the performance hint, streams and threads) or an exported blob NAME.ovblob (imported: no ONNX parsing,
// no graph compilation). Before OpenVINO sees any bytes, the sidecar's sha256 must match the file, and a blob's
// recorded OpenVINO release and instruction set must equal this machine's (the rule of
// alexnet_deploy.backends.openvino.check_blob_compatible, with the same sentence).
//
// --bench N times N synchronous inferences of one batch (B copies of the images given, or of a fixed
// pseudo-random input when none are) after W warm-up calls, and prints JSON: load time, latency percentiles,
// images/s, and every latency (ms) so that a benchmark can compute its statistics the same way for every runner.
// Exit codes: 0 ok, 1 error (one sentence on stderr), 64 usage.
#include <openvino/openvino.hpp>
#include <openvino/op/parameter.hpp>
#include <openvino/op/relu.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "sidecar.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double msSince(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// The last meaningful line of an OpenVINO error (its first lines are C++ source locations), as the Python
// backend's _reason does.
std::string ovReason(const std::string& what) {
    std::stringstream ss(what);
    std::string line, last;
    while (std::getline(ss, line)) {
        size_t a = line.find_first_not_of(" \t\r"), b = line.find_last_not_of(" \t\r");
        if (a == std::string::npos) continue;
        line = line.substr(a, b - a + 1);
        if (line.rfind("Exception from", 0) == 0) continue;
        last = line;
    }
    while (!last.empty() && (last.back() == '.' || last.back() == ':')) last.pop_back();
    if (last.size() > 200) last.resize(200);
    return last.empty() ? "unknown error" : last;
}

// What OpenVINO requires of a machine to import a blob compiled here and now (its release and instruction set):
// the RUNTIME_REQUIREMENTS of a one-operation model compiled on `device`.
std::string runtimeRequirementsHere(ov::Core& core, const std::string& device) {
    auto input = std::make_shared<ov::op::v0::Parameter>(ov::element::f32, ov::Shape{1});
    auto relu = std::make_shared<ov::op::v0::Relu>(input);
    auto probe = std::make_shared<ov::Model>(ov::OutputVector{relu}, ov::ParameterVector{input}, "probe");
    return core.compile_model(probe, device).get_property(ov::runtime_requirements);
}

std::string releaseOf(const std::string& build) { return build.substr(0, build.find('-')); }

ov::element::Type precisionType(const std::string& name) {
    if (name.empty() || name == "f32") return ov::element::f32;
    if (name == "bf16") return ov::element::bf16;
    if (name == "f16") return ov::element::f16;
    throw std::runtime_error("the sidecar names an unknown OpenVINO inference precision '" + name + "'");
}

ov::hint::PerformanceMode hintMode(const std::string& name) {
    if (name == "LATENCY") return ov::hint::PerformanceMode::LATENCY;
    if (name == "THROUGHPUT") return ov::hint::PerformanceMode::THROUGHPUT;
    throw std::runtime_error("the sidecar names an unknown OpenVINO performance hint '" + name + "'");
}

struct Args {
    std::string model;
    std::vector<std::string> images;
    size_t topK = 5;
    int batch = 0, threads = 0, bench = 0, warmup = 10;
    bool json = false;
};

int positive(const std::string& flag, const std::string& text) {
    size_t used = 0;
    int value = 0;
    try {
        value = std::stoi(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used != text.size() || value < (flag == "--warmup" ? 0 : 1))
        throw std::invalid_argument(flag + " takes a " + (flag == "--warmup" ? "non-negative" : "positive") +
                                    " integer, not '" + text + "'");
    return value;
}

Args parseArgs(int argc, char** argv) {
    Args args;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
            return argv[++i];
        };
        if (a == "--json") args.json = true;
        else if (a == "--top-k") args.topK = size_t(positive(a, value()));
        else if (a == "--batch") args.batch = positive(a, value());
        else if (a == "--threads") args.threads = positive(a, value());
        else if (a == "--bench") args.bench = positive(a, value());
        else if (a == "--warmup") args.warmup = positive(a, value());
        else if (a.rfind("--", 0) == 0) throw std::invalid_argument("unknown option " + a);
        else if (args.model.empty()) args.model = a;
        else args.images.push_back(a);
    }
    if (args.model.empty()) throw std::invalid_argument("no model given");
    if (args.images.empty() && !args.bench) throw std::invalid_argument("no images given");
    return args;
}

double percentile(std::vector<double> sorted, double q) {  // linear interpolation, as numpy's default
    std::sort(sorted.begin(), sorted.end());
    double pos = q * double(sorted.size() - 1);
    size_t lo = size_t(pos), hi = std::min(lo + 1, sorted.size() - 1);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - double(lo));
}

std::string fixed(double v, int digits) {
    std::ostringstream ss;
    ss << std::fixed << std::setprecision(digits) << v;
    return ss.str();
}

}  // namespace

int main(int argc, char** argv) {
    Args args;
    try {
        args = parseArgs(argc, argv);
    } catch (const std::invalid_argument& e) {
        std::cerr << "usage: " << argv[0] << " MODEL IMAGE.ppm... [--top-k K] [--batch B] [--threads N] [--json]\n"
                  << "       " << argv[0] << " MODEL [IMAGE.ppm...] --bench N [--batch B] [--warmup W] [--threads N]\n"
                  << "error: " << e.what() << "\n";
        return 64;
    }
    try {
        // 1. The sidecar, and the file it describes.
        const std::string jsonPath = sidecar::sidecarPath(args.model);
        std::ifstream probe(jsonPath);
        if (!probe) throw std::runtime_error(args.model + " has no manifest (" + sidecar::baseName(jsonPath) + " is missing).");
        probe.close();
        sidecar::Sidecar sc = sidecar::loadSidecar(jsonPath);
        if (sc.kind != "onnx" && sc.kind != "ovblob")
            throw std::runtime_error(sidecar::baseName(args.model) + " is a " + sc.kind +
                                     "; alexnet_ov_infer runs ONNX models and OpenVINO blobs (.ovblob).");
        sidecar::OpenVINOFacts facts = sidecar::openvinoFacts(sc);
        sidecar::checkSha256(sc, args.model);
        const bool blob = sc.kind == "ovblob";

        // 2. OpenVINO, the device, and for a blob the compatibility rule, before OpenVINO reads the model.
        ov::Core core;
        const std::string ovVersion = releaseOf(ov::get_openvino_version().buildNumber);
        const std::vector<std::string> devices = core.get_available_devices();
        const std::string family = facts.device.substr(0, facts.device.find_first_of(".:"));
        const bool virtualDevice = family == "AUTO" || family == "MULTI" || family == "HETERO" || family == "BATCH";
        bool present = virtualDevice;
        for (const auto& d : devices) present = present || d == facts.device || d.substr(0, d.find('.')) == family;
        if (!present) {
            std::string list;
            for (const auto& d : devices) list += (list.empty() ? "" : ", ") + d;
            throw std::runtime_error("This engine was built for the OpenVINO " + facts.device +
                                     " device, which this machine lacks (available: " + (list.empty() ? "none" : list) + ").");
        }
        if (blob) {
            const std::string problem =
                sidecar::checkBlobCompatible(facts, ovVersion, runtimeRequirementsHere(core, facts.device));
            if (!problem.empty()) throw std::runtime_error(problem);
        }

        // 3. Compile (ONNX) or import (blob) with the recorded properties; --threads overrides the sidecar's.
        ov::AnyMap properties{ov::hint::performance_mode(hintMode(facts.performanceHint)),
                              ov::hint::inference_precision(precisionType(facts.inferencePrecision))};
        const int threads = args.threads ? args.threads : facts.threads;
        if (threads) properties.insert(ov::inference_num_threads(threads));
        if (facts.numStreams) properties.insert(ov::num_streams(facts.numStreams));
        const auto loadStart = Clock::now();
        ov::CompiledModel compiled;
        const std::string name = sidecar::baseName(args.model);
        if (blob) {
            std::ifstream stream(args.model, std::ios::binary);
            try {
                compiled = core.import_model(stream, facts.device, properties);
            } catch (const ov::Exception& e) {
                throw std::runtime_error("OpenVINO cannot import " + name + ": " + ovReason(e.what()) + ".");
            }
        } else {
            std::shared_ptr<ov::Model> model;
            try {
                model = core.read_model(args.model);
            } catch (const ov::Exception& e) {
                throw std::runtime_error("OpenVINO cannot read " + name + ": " + ovReason(e.what()) + ".");
            }
            try {
                compiled = core.compile_model(model, facts.device, properties);
            } catch (const ov::Exception& e) {
                throw std::runtime_error("OpenVINO cannot compile " + name + " for " + facts.device + ": " +
                                         ovReason(e.what()) + ".");
            }
        }
        const double loadMs = msSince(loadStart);

        // 4. One N x 3 x crop x crop input and one N x classes output, as the sidecar says.
        if (compiled.inputs().size() != 1 || compiled.outputs().size() != 1)
            throw std::runtime_error(name + " must have one input and one output.");
        const ov::Output<const ov::Node> input = compiled.input(), output = compiled.output();
        if (!sc.inputName.empty() && !input.get_names().count(sc.inputName))
            throw std::runtime_error(name + "'s input is not '" + sc.inputName + "', which its sidecar names.");
        const ov::PartialShape outShape = output.get_partial_shape();
        if (outShape.rank().is_static() && outShape.rank().get_length() == 2 && outShape[1].is_static() &&
            !sc.classes.empty() && size_t(outShape[1].get_length()) != sc.classes.size())
            throw std::runtime_error(name + " gives " + std::to_string(outShape[1].get_length()) +
                                     " logits, but its sidecar names " + std::to_string(sc.classes.size()) + " classes.");
        if (input.get_element_type() != ov::element::f32)
            throw std::runtime_error(name + " takes " + input.get_element_type().get_type_name() +
                                     " input; this program feeds float32.");

        // 5. The images, preprocessed as the sidecar says.
        const size_t imageSize = size_t(3) * sc.crop * sc.crop;
        std::vector<std::vector<float>> tensors;
        for (const auto& path : args.images) tensors.push_back(sidecar::preprocess(sidecar::readPpm(path), sc));

        ov::InferRequest request = compiled.create_infer_request();
        auto runBatch = [&](std::vector<float>& data, size_t n) -> ov::Tensor {
            ov::Tensor in(ov::element::f32, ov::Shape{n, 3, size_t(sc.crop), size_t(sc.crop)}, data.data());
            request.set_input_tensor(in);
            request.infer();
            return request.get_output_tensor();
        };
        const std::string source = blob ? "imported blob" : "ONNX read and compiled";
        const std::string precision = compiled.get_property(ov::hint::inference_precision).get_type_name();
        const int threadsInEffect = compiled.get_property(ov::inference_num_threads);

        if (args.bench) {
            const size_t batch = size_t(args.batch ? args.batch : std::max<size_t>(1, tensors.size()));
            std::vector<float> data(batch * imageSize);
            if (tensors.empty()) {
                uint32_t state = 12345;  // a fixed pseudo-random input: timing does not depend on the values
                for (float& v : data) {
                    state = state * 1664525u + 1013904223u;
                    v = float(state >> 8) / float(1u << 24) * 4.0f - 2.0f;
                }
            } else {
                for (size_t i = 0; i < batch; ++i)
                    std::copy(tensors[i % tensors.size()].begin(), tensors[i % tensors.size()].end(),
                              data.begin() + long(i * imageSize));
            }
            const auto firstStart = Clock::now();
            runBatch(data, batch);
            const double firstMs = msSince(firstStart);
            for (int i = 0; i < args.warmup; ++i) runBatch(data, batch);
            std::vector<double> latencies;
            const auto total = Clock::now();
            for (int i = 0; i < args.bench; ++i) {
                const auto t = Clock::now();
                runBatch(data, batch);
                latencies.push_back(msSince(t));
            }
            const double totalMs = msSince(total);
            std::cout << "{\"model\": " << sidecar::jsonString(args.model) << ", \"source\": " << sidecar::jsonString(source)
                      << ", \"openvino\": " << sidecar::jsonString(ovVersion) << ", \"device\": "
                      << sidecar::jsonString(facts.device) << ", \"inference_precision\": " << sidecar::jsonString(precision)
                      << ", \"threads\": " << threadsInEffect << ", \"load_ms\": " << fixed(loadMs, 3)
                      << ", \"first_infer_ms\": " << fixed(firstMs, 3) << ", \"batch\": " << batch
                      << ", \"iterations\": " << args.bench << ", \"warmup\": " << args.warmup
                      << ", \"median_ms\": " << fixed(percentile(latencies, 0.5), 4)
                      << ", \"p90_ms\": " << fixed(percentile(latencies, 0.9), 4)
                      << ", \"p99_ms\": " << fixed(percentile(latencies, 0.99), 4)
                      << ", \"images_per_s\": " << fixed(double(batch) * args.bench / (totalMs / 1e3), 2)
                      << ", \"latencies_ms\": [";
            for (size_t i = 0; i < latencies.size(); ++i) std::cout << (i ? ", " : "") << fixed(latencies[i], 4);
            std::cout << "]}\n";
            return 0;
        }

        // 6. Inference in batches, softmax and the top-k.
        const size_t batch = size_t(args.batch ? args.batch : tensors.size());
        std::vector<std::vector<sidecar::Ranked>> results;
        for (size_t start = 0; start < tensors.size(); start += batch) {
            const size_t n = std::min(batch, tensors.size() - start);
            std::vector<float> data(n * imageSize);
            for (size_t i = 0; i < n; ++i)
                std::copy(tensors[start + i].begin(), tensors[start + i].end(), data.begin() + long(i * imageSize));
            ov::Tensor out = runBatch(data, n);
            if (out.get_element_type() != ov::element::f32 || out.get_shape().size() != 2 || out.get_shape()[0] != n)
                throw std::runtime_error(name + " returned " + out.get_shape().to_string() + " " +
                                         out.get_element_type().get_type_name() + " logits; expected N x classes float32.");
            const size_t classes = out.get_shape()[1];
            for (size_t i = 0; i < n; ++i) results.push_back(sidecar::topK(out.data<float>() + i * classes, classes, args.topK));
        }
        auto className = [&](size_t c) { return c < sc.classes.size() ? sc.classes[c] : std::to_string(c); };
        if (args.json) {
            std::cout << "{\"model\": " << sidecar::jsonString(args.model) << ", \"source\": " << sidecar::jsonString(source)
                      << ", \"openvino\": " << sidecar::jsonString(ovVersion) << ", \"device\": "
                      << sidecar::jsonString(facts.device) << ", \"inference_precision\": " << sidecar::jsonString(precision)
                      << ", \"threads\": " << threadsInEffect << ", \"load_ms\": " << fixed(loadMs, 3)
                      << ", \"predictions\": [";
            for (size_t i = 0; i < results.size(); ++i) {
                std::cout << (i ? ", " : "") << "{\"path\": " << sidecar::jsonString(args.images[i]) << ", \"top\": [";
                for (size_t r = 0; r < results[i].size(); ++r) {
                    char prob[32];
                    std::snprintf(prob, sizeof prob, "%.9g", results[i][r].probability);
                    std::cout << (r ? ", " : "") << "{\"index\": " << results[i][r].index
                              << ", \"class\": " << sidecar::jsonString(className(results[i][r].index))
                              << ", \"probability\": " << prob << "}";
                }
                std::cout << "]}";
            }
            std::cout << "]}\n";
            return 0;
        }
        std::cout << sidecar::printable(name) << ": " << source << " (OpenVINO " << ovVersion << ", " << facts.device
                  << ", inference precision " << precision << ", " << threadsInEffect << " threads, loaded in " << fixed(loadMs, 1)
                  << " ms)\n";
        for (size_t i = 0; i < results.size(); ++i) {
            std::cout << sidecar::printable(args.images[i]) << "\n";
            for (const auto& r : results[i])
                std::cout << "  " << fixed(100.0 * r.probability, 2) << "%\t" << r.index << "\t"
                          << sidecar::printable(className(r.index)) << "\n";
        }
    } catch (const ov::Exception& e) {
        std::cerr << "error: OpenVINO failed: " << ovReason(e.what()) << ".\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
