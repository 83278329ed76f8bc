// engram/detail/compiled.hpp: header-only or compiled mode, decided once per translation unit.
//
// Header-only (the default): every function is defined in the headers; non-template ones are
// `inline` (ENGRAM_INLINE).
// Compiled mode (ENGRAM_EXTERN_TEMPLATES defined; linking engram::instantiations defines it): the
// common template instantiations are `extern template` and the heavy non-template entry points
// (file parsers, config and table loaders, open_table) are only declared; their one definition
// is in src/engram_instantiations.cpp, which defines ENGRAM_COMPILING_INSTANTIATIONS too. Such
// a header includes its definitions from a `detail/*_impl.hpp` when ENGRAM_DEFINITIONS is 1,
// so a consumer TU in compiled mode neither parses them nor their dependencies (nlohmann-json,
// the tiers behind open_table) nor compiles them. Every TU of a program uses one mode.
#pragma once

#if defined(ENGRAM_EXTERN_TEMPLATES) && !defined(ENGRAM_COMPILING_INSTANTIATIONS)
#define ENGRAM_DEFINITIONS 0
#else
#define ENGRAM_DEFINITIONS 1
#endif

#ifdef ENGRAM_EXTERN_TEMPLATES
#define ENGRAM_INLINE
#else
#define ENGRAM_INLINE inline
#endif

#ifdef ENGRAM_EXTERN_TEMPLATES
namespace engram::detail {
/// Whether engram::instantiations was compiled with OpenMP (its layers' kernels run on
/// kernel_threads() threads); a consumer compiled with OpenMP expects true.
bool instantiations_use_openmp() noexcept;
}  // namespace engram::detail
#endif
