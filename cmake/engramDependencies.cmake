# Finds engram's dependencies; used by the build and, installed, by engramConfig.cmake.
# Required: Eigen3, nlohmann_json. Optional (each enables one component): utf8proc + zlib
# (engram::tokenizer), xxHash (engram::xxhash), liburing (engram::uring), libmemcached
# (engram::memcached), OpenBLAS (engram::blas: LinearT's GEMM where the AVX-512 panel kernel is not built).
include(CMakeFindDependencyMacro)
find_dependency(Eigen3 3.3 NO_MODULE)
find_dependency(nlohmann_json 3.10)
find_package(ZLIB QUIET)
find_package(PkgConfig QUIET)

function(_engram_pkg target module)
  if(NOT TARGET ${target} AND PKG_CONFIG_FOUND)
    pkg_check_modules(_engram_${module} QUIET IMPORTED_TARGET GLOBAL ${module})
    if(_engram_${module}_FOUND)
      add_library(${target} INTERFACE IMPORTED GLOBAL)
      target_link_libraries(${target} INTERFACE PkgConfig::_engram_${module})
    endif()
  endif()
endfunction()

_engram_pkg(engram_dep::utf8proc libutf8proc)
_engram_pkg(engram_dep::xxhash libxxhash)
_engram_pkg(engram_dep::uring liburing)
_engram_pkg(engram_dep::memcached libmemcached)
_engram_pkg(engram_dep::blas openblas)
