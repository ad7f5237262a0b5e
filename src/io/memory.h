// What this machine and process have in memory: for choosing layer-major evaluation, refusing a
// run that cannot fit, and reporting peak memory.
#pragma once
#include <cstdint>

namespace ikv::io {

// MemAvailable of /proc/meminfo in bytes (what the kernel could give without swapping); 0 if unknown.
int64_t available_memory_bytes();
// This process's peak resident set so far (getrusage's ru_maxrss) in bytes.
int64_t peak_resident_bytes();

}  // namespace ikv::io
