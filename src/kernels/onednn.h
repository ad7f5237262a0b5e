// The one oneDNN CPU engine every oneDNN primitive of the process runs on.
#pragma once
#include <oneapi/dnnl/dnnl.hpp>

namespace ikv::kernels {

dnnl::engine& onednn_engine();

}  // namespace ikv::kernels
