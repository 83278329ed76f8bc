// engram/nn/detail/eigen_support.hpp: Eigen map aliases for row-major `[rows, cols]` buffers
// (PyTorch's layout), shared by the nn/ and layer/ kernels. Threading (parallel_for) and scratch
// storage (AlignedBuffer) are core helpers: engram/detail/parallel.hpp, detail/aligned_buffer.hpp.
// Not part of the public API.
#pragma once

#include <Eigen/Core>

namespace engram::detail {

template <class Scalar>
using RowMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class Scalar>
using RowMatrixMap = Eigen::Map<RowMatrix<Scalar>>;
template <class Scalar>
using ConstRowMatrixMap = Eigen::Map<const RowMatrix<Scalar>>;
template <class Scalar>
using ArrayMap = Eigen::Map<Eigen::Array<Scalar, Eigen::Dynamic, 1>>;
template <class Scalar>
using ConstArrayMap = Eigen::Map<const Eigen::Array<Scalar, Eigen::Dynamic, 1>>;

}  // namespace engram::detail
