// alexnet_sidecar_tool: the SDK-free half of the C++ programs (sidecar.hpp), for checking it anywhere (the tests
// run it next to the Python code).
//
//   alexnet_sidecar_tool MODEL.json                           print the fields the programs read
//   alexnet_sidecar_tool MODEL.json IMAGE.ppm OUT.f32         also write the preprocessed 3 x crop x crop tensor
//                                                             (float32, CHW, native byte order)
//   alexnet_sidecar_tool MODEL.plan.json --check TRT_VERSION GPU_NAME COMPUTE_CAPABILITY
//                                                             say whether the plan could load on such a machine
//   alexnet_sidecar_tool MODEL.ovblob.json --check-blob OPENVINO_VERSION RUNTIME_REQUIREMENTS
//                                                             say whether the blob could load on such a machine
//   alexnet_sidecar_tool --sha256 FILE                        print the file's SHA-256
#include <cstdio>
#include <fstream>
#include <iostream>

#include "sidecar.hpp"

int main(int argc, char** argv) {
    if (argc == 3 && std::string(argv[1]) == "--sha256") {
        try {
            std::cout << sidecar::sha256File(argv[2]) << "\n";
            return 0;
        } catch (const std::exception& e) {
            std::cerr << "error: " << e.what() << "\n";
            return 1;
        }
    }
    if (argc != 2 && argc != 4 && argc != 5 && argc != 6) {
        std::cerr << "usage: " << argv[0]
                  << " MODEL.json [IMAGE.ppm OUT.f32 | --check TRT_VERSION GPU CC | --check-blob OV_VERSION REQS]\n";
        return 64;
    }
    try {
        sidecar::Sidecar sc = sidecar::loadSidecar(argv[1]);
        if (argc == 6 && std::string(argv[2]) == "--check") {
            std::string problem = sidecar::checkPlanCompatible(sidecar::planFacts(sc), argv[3], argv[4], argv[5]);
            std::cout << (problem.empty() ? "compatible" : problem) << "\n";
            return problem.empty() ? 0 : 2;
        }
        if (argc == 5 && std::string(argv[2]) == "--check-blob") {
            std::string problem = sidecar::checkBlobCompatible(sidecar::openvinoFacts(sc), argv[3], argv[4]);
            std::cout << (problem.empty() ? "compatible" : problem) << "\n";
            return problem.empty() ? 0 : 2;
        }
        std::cout << "kind=" << sc.kind << "\nprecision=" << sc.precision << "\n";
        if (sc.kind == "plan") {
            sidecar::PlanFacts plan = sidecar::planFacts(sc);
            std::cout << "tensorrt_version=" << plan.tensorrtVersion << "\n"
                      << "gpu=" << plan.gpuName << "\n"
                      << "compute_capability=" << plan.computeCapability << "\n"
                      << "hardware_compatibility=" << plan.hardwareCompatibility << "\n"
                      << "version_compatible=" << (plan.versionCompatible ? "true" : "false") << "\n";
            for (const auto& t : plan.io) {
                std::cout << "io=" << t.name << "," << t.mode << "," << t.dtype;
                for (int64_t d : t.shape) std::cout << "," << d;
                std::cout << "\n";
            }
        } else {
            sidecar::OpenVINOFacts ov = sidecar::openvinoFacts(sc);
            std::cout << "device=" << ov.device << "\ninference_precision=" << ov.inferencePrecision
                      << "\nperformance_hint=" << ov.performanceHint << "\nthreads=" << ov.threads
                      << "\nnum_streams=" << ov.numStreams << "\n";
            if (sc.kind == "ovblob")
                std::cout << "openvino_version=" << ov.openvinoVersion
                          << "\nruntime_requirements=" << ov.runtimeRequirements << "\n";
        }
        std::cout << "resize=" << sc.resize << "\ncrop=" << sc.crop << "\n";
        for (int c = 0; c < 3; ++c) std::cout << "mean" << c << "=" << sc.mean[c] << "\nstd" << c << "=" << sc.std[c] << "\n";
        std::cout << "classes=" << sc.classes.size() << "\n";
        for (const auto& name : sc.classes) std::cout << "class=" << name << "\n";
        if (argc == 4) {
            std::vector<float> chw = sidecar::preprocess(sidecar::readPpm(argv[2]), sc);
            std::ofstream out(argv[3], std::ios::binary);
            out.write(reinterpret_cast<const char*>(chw.data()), std::streamsize(chw.size() * sizeof(float)));
            if (!out) throw std::runtime_error(std::string("cannot write ") + argv[3]);
        }
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
