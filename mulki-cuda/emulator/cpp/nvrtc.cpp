// A stand-in for NVRTC: "compiles" to a placeholder, since the emulated driver runs the kernels
// compiled as C++ ahead of time. (CI compiles the real sources with the real NVRTC separately.)
#include <stdlib.h>
#include <string.h>

typedef int nvrtcResult;
#define API extern "C" __attribute__((visibility("default")))

static const char PTX[] = "// mulki CUDA emulator: the kernels are built into the emulated driver\n";

API nvrtcResult nvrtcCreateProgram(void** prog, const char*, const char*, int, const char* const*,
                                   const char* const*) {
    *prog = malloc(1);
    return 0;
}
API nvrtcResult nvrtcDestroyProgram(void** prog) {
    free(*prog);
    *prog = nullptr;
    return 0;
}
API nvrtcResult nvrtcCompileProgram(void*, int, const char* const*) { return 0; }
API nvrtcResult nvrtcGetPTXSize(void*, size_t* n) {
    *n = sizeof PTX;
    return 0;
}
API nvrtcResult nvrtcGetPTX(void*, char* out) {
    memcpy(out, PTX, sizeof PTX);
    return 0;
}
API nvrtcResult nvrtcGetProgramLogSize(void*, size_t* n) {
    *n = 1;
    return 0;
}
API nvrtcResult nvrtcGetProgramLog(void*, char* out) {
    out[0] = 0;
    return 0;
}
API const char* nvrtcGetErrorString(nvrtcResult) { return "NVRTC_SUCCESS"; }
