// alexnet_sidecar_tool: the example's TensorRT-free half, for checking it anywhere (the tests run it on a CPU box).
//
//   alexnet_sidecar_tool MODEL.plan.json                      print the fields the example reads
//   alexnet_sidecar_tool MODEL.plan.json IMAGE.ppm OUT.f32    also write the preprocessed 3 x crop x crop tensor
//                                                             (float32, CHW, native byte order)
//   alexnet_sidecar_tool MODEL.plan.json --check TRT_VERSION GPU_NAME COMPUTE_CAPABILITY
//                                                             say whether the plan could load on such a machine
#include <cstdio>
#include <fstream>
#include <iostream>

#include "sidecar.hpp"

int main(int argc, char** argv) {
    if (argc != 2 && argc != 4 && argc != 6) {
        std::cerr << "usage: " << argv[0] << " MODEL.plan.json [IMAGE.ppm OUT.f32 | --check TRT_VERSION GPU CC]\n";
        return 64;
    }
    try {
        sidecar::Sidecar sc = sidecar::loadSidecar(argv[1]);
        if (argc == 6 && std::string(argv[2]) == "--check") {
            std::string problem = sidecar::checkCompatible(sc, argv[3], argv[4], argv[5]);
            std::cout << (problem.empty() ? "compatible" : problem) << "\n";
            return problem.empty() ? 0 : 2;
        }
        std::cout << "tensorrt_version=" << sc.tensorrtVersion << "\n"
                  << "gpu=" << sc.gpuName << "\n"
                  << "compute_capability=" << sc.computeCapability << "\n"
                  << "hardware_compatibility=" << sc.hardwareCompatibility << "\n"
                  << "version_compatible=" << (sc.versionCompatible ? "true" : "false") << "\n"
                  << "resize=" << sc.resize << "\ncrop=" << sc.crop << "\n";
        for (int c = 0; c < 3; ++c) std::cout << "mean" << c << "=" << sc.mean[c] << "\nstd" << c << "=" << sc.std[c] << "\n";
        for (const auto& t : sc.io) {
            std::cout << "io=" << t.name << "," << t.mode << "," << t.dtype;
            for (int64_t d : t.shape) std::cout << "," << d;
            std::cout << "\n";
        }
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
