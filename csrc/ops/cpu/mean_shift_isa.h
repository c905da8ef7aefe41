// The instruction-set namespace and the constants shared by the parts of the CPU mean-shift
// core (mean_shift_core.cpp and the headers it includes, compiled once per instruction set).
#pragma once

#include <cstdint>

#ifndef PANONET_MS_ISA
#define PANONET_MS_ISA baseline
#endif

namespace panonet::ms::PANONET_MS_ISA {
namespace {

constexpr int kBatch = 8;            // seeds sharing one window query (vector lanes)
constexpr int64_t kMaxGroup = 128;   // seeds packed into batches together (see climb)
// Relative guard band of the float32 squared-distance test.
constexpr double kFloatGuard = 1e-5;
using Mask = uint32_t;

}  // namespace
}  // namespace panonet::ms::PANONET_MS_ISA
