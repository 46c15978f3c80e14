// alexnet_trt_infer: load a plan exported by `alexnet-deploy build --backend tensorrt`, read its sidecar
// (MODEL.plan.json) for the I/O names, preprocessing and class names, run one image and print the top-5. Everything
// that is not TensorRT (sidecar, compatibility rule, sha256, PPM, preprocessing, top-k) is sidecar.hpp, shared with
// alexnet_ov_infer, which is compiled and run in the tests.
//
//   alexnet_trt_infer MODEL.plan IMAGE.ppm [--device N]
//
// TensorRT 10.x/11.x C++ API: createInferRuntime -> deserializeCudaEngine -> createExecutionContext ->
// setInputShape / setTensorAddress (every I/O tensor, by name) -> enqueueV3. Objects are released with delete
// (destroy() is gone since 10.0), in the order context, engine, runtime.
//
// Status: written against the TensorRT 10.x/11.x C++ API documentation and NOT compiled against TensorRT or run
// on any machine of this project (none has TensorRT or a GPU); its TensorRT-free half (sidecar.hpp) is compiled
// and tested on a CPU through sidecar_tool.cpp and alexnet_ov_infer.
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "sidecar.hpp"

namespace {

class Logger : public nvinfer1::ILogger {
public:
    void log(Severity severity, const char* msg) noexcept override {
        if (severity <= Severity::kWARNING) std::cerr << "TensorRT: " << msg << "\n";
    }
};

void cudaCheck(cudaError_t status, const char* what) {
    if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

// Device buffer owned for the scope of main().
struct DeviceBuffer {
    void* ptr = nullptr;
    explicit DeviceBuffer(size_t bytes) { cudaCheck(cudaMalloc(&ptr, bytes), "cudaMalloc"); }
    ~DeviceBuffer() { cudaFree(ptr); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

// IEEE half <-> float without cuda_fp16.h, for plans whose I/O is float16 (round to nearest even).
uint16_t floatToHalf(float value) {
    uint32_t x;
    std::memcpy(&x, &value, 4);
    uint32_t sign = (x >> 16) & 0x8000u, mant = x & 0x7FFFFFu;
    int32_t exp = int32_t((x >> 23) & 0xFF) - 127 + 15;
    if (((x >> 23) & 0xFF) == 0xFF) return uint16_t(sign | 0x7C00u | (mant ? 0x200u : 0));  // inf / nan
    if (exp >= 31) return uint16_t(sign | 0x7C00u);                                           // overflow
    if (exp <= 0) {                                                                          // subnormal / zero
        if (exp < -10) return uint16_t(sign);
        mant |= 0x800000u;
        uint32_t shift = uint32_t(14 - exp);
        uint32_t half = mant >> shift, rest = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rest > mid || (rest == mid && (half & 1u))) ++half;
        return uint16_t(sign | half);
    }
    uint32_t half = sign | (uint32_t(exp) << 10) | (mant >> 13), rest = mant & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // may carry into the exponent: correct
    return uint16_t(half);
}

float halfToFloat(uint16_t h) {
    uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu, x;
    if (exp == 0) {
        if (mant == 0) {
            x = sign;
        } else {  // subnormal: normalise
            int e = -1;
            do { ++e; mant <<= 1; } while (!(mant & 0x400u));
            x = sign | (uint32_t(127 - 15 - e) << 23) | ((mant & 0x3FFu) << 13);
        }
    } else if (exp == 31) {
        x = sign | 0x7F800000u | (mant << 13);
    } else {
        x = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}

size_t elementSize(nvinfer1::DataType type) {
    switch (type) {
        case nvinfer1::DataType::kFLOAT: return 4;
        case nvinfer1::DataType::kHALF: return 2;
        default: throw std::runtime_error("this example handles float32 and float16 I/O tensors only");
    }
}

int64_t volume(const nvinfer1::Dims& dims) {
    int64_t v = 1;
    for (int32_t i = 0; i < dims.nbDims; ++i) v *= dims.d[i];
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3 && !(argc == 5 && std::string(argv[3]) == "--device")) {
        std::cerr << "usage: " << argv[0] << " MODEL.plan IMAGE.ppm [--device N]\n";
        return 64;
    }
    const std::string planPath = argv[1], imagePath = argv[2];
    const int device = argc == 5 ? std::stoi(argv[4]) : 0;
    try {
        // 1. The sidecar first: refuse a plan from another TensorRT or GPU before TensorRT sees its bytes.
        sidecar::Sidecar sc = sidecar::loadSidecar(sidecar::sidecarPath(planPath));
        if (sc.kind != "plan") throw std::runtime_error(planPath + " is a " + sc.kind + ", not a TensorRT plan.");
        const sidecar::PlanFacts facts = sidecar::planFacts(sc);
        sidecar::checkSha256(sc, planPath);
        cudaCheck(cudaSetDevice(device), "cudaSetDevice");
        cudaDeviceProp prop{};
        cudaCheck(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
        const int32_t v = getInferLibVersion();  // major * 10000 + minor * 100 + patch since TensorRT 10
        const std::string trtVersion =
            std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." + std::to_string(v % 100);
        const std::string problem = sidecar::checkPlanCompatible(
            facts, trtVersion, prop.name, std::to_string(prop.major) + "." + std::to_string(prop.minor));
        if (!problem.empty()) {
            std::cerr << "error: " << problem << "\n";
            return 1;
        }

        // 2. The image, preprocessed as the sidecar says.
        std::vector<float> input = sidecar::preprocess(sidecar::readPpm(imagePath), sc);

        // 3. The engine.
        std::string plan = sidecar::readFile(planPath);
        Logger logger;
        std::unique_ptr<nvinfer1::IRuntime> runtime{nvinfer1::createInferRuntime(logger)};
        if (!runtime) throw std::runtime_error("createInferRuntime failed");
        if (facts.versionCompatible) runtime->setEngineHostCodeAllowed(true);  // the plan embeds the lean runtime
        std::unique_ptr<nvinfer1::ICudaEngine> engine{runtime->deserializeCudaEngine(plan.data(), plan.size())};
        if (!engine) throw std::runtime_error("TensorRT could not deserialize " + planPath + " (see its log above)");
        std::unique_ptr<nvinfer1::IExecutionContext> context{engine->createExecutionContext()};
        if (!context) throw std::runtime_error("createExecutionContext failed");

        // 4. I/O by name; the sidecar must describe this engine.
        std::string inputName, outputName;
        for (int32_t i = 0; i < engine->getNbIOTensors(); ++i) {
            const char* name = engine->getIOTensorName(i);
            (engine->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT ? inputName : outputName) = name;
        }
        if (engine->getNbIOTensors() != 2 || inputName.empty() || outputName.empty())
            throw std::runtime_error("this example expects one input and one output tensor");
        for (const auto& t : facts.io)
            if ((t.mode == "input" && t.name != inputName) || (t.mode == "output" && t.name != outputName))
                throw std::runtime_error("the sidecar's I/O names do not match the plan's (" + inputName + ", " +
                                         outputName + ")");

        nvinfer1::Dims inDims{};
        inDims.nbDims = 4;
        inDims.d[0] = 1;
        inDims.d[1] = 3;
        inDims.d[2] = sc.crop;
        inDims.d[3] = sc.crop;
        if (!context->setInputShape(inputName.c_str(), inDims))
            throw std::runtime_error("the plan does not accept a 1 x 3 x " + std::to_string(sc.crop) + " x " +
                                     std::to_string(sc.crop) + " input");
        const nvinfer1::Dims outDims = context->getTensorShape(outputName.c_str());
        const int64_t numClasses = volume(outDims);
        const nvinfer1::DataType inType = engine->getTensorDataType(inputName.c_str());
        const nvinfer1::DataType outType = engine->getTensorDataType(outputName.c_str());

        // 5. Host data in the engine's input type, device buffers, one stream.
        std::vector<uint8_t> hostIn(input.size() * elementSize(inType));
        if (inType == nvinfer1::DataType::kFLOAT) {
            std::memcpy(hostIn.data(), input.data(), hostIn.size());
        } else {
            auto* h = reinterpret_cast<uint16_t*>(hostIn.data());
            for (size_t i = 0; i < input.size(); ++i) h[i] = floatToHalf(input[i]);
        }
        std::vector<uint8_t> hostOut(size_t(numClasses) * elementSize(outType));
        DeviceBuffer dIn(hostIn.size()), dOut(hostOut.size());
        cudaStream_t stream;
        cudaCheck(cudaStreamCreate(&stream), "cudaStreamCreate");
        if (!context->setTensorAddress(inputName.c_str(), dIn.ptr) ||
            !context->setTensorAddress(outputName.c_str(), dOut.ptr))
            throw std::runtime_error("setTensorAddress failed");
        cudaCheck(cudaMemcpyAsync(dIn.ptr, hostIn.data(), hostIn.size(), cudaMemcpyHostToDevice, stream), "copy in");
        if (!context->enqueueV3(stream)) throw std::runtime_error("enqueueV3 failed");
        cudaCheck(cudaMemcpyAsync(hostOut.data(), dOut.ptr, hostOut.size(), cudaMemcpyDeviceToHost, stream), "copy out");
        cudaCheck(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
        cudaStreamDestroy(stream);

        // 6. Softmax and the top-5.
        std::vector<float> logits(static_cast<size_t>(numClasses));
        for (size_t i = 0; i < logits.size(); ++i)
            logits[i] = outType == nvinfer1::DataType::kFLOAT ? reinterpret_cast<float*>(hostOut.data())[i]
                                                              : halfToFloat(reinterpret_cast<uint16_t*>(hostOut.data())[i]);
        const std::vector<sidecar::Ranked> top = sidecar::topK(logits.data(), logits.size(), 5);
        std::cout << "top-" << top.size() << " for " << sidecar::printable(imagePath) << " (TensorRT " << trtVersion
                  << ", " << sidecar::printable(prop.name) << ")\n";
        for (size_t r = 0; r < top.size(); ++r) {
            const size_t c = top[r].index;
            const std::string name = c < sc.classes.size() ? sc.classes[c] : "class " + std::to_string(c);
            std::cout << r + 1 << "\t" << c << "\t" << std::fixed << std::setprecision(4) << top[r].probability << "\t"
                      << sidecar::printable(name) << "\n";
        }
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
