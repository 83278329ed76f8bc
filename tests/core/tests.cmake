# Core tests: the headers every folder may use (error, detail/).
engram_add_test(core_cpu_features_test core/cpu_features_test.cpp)
engram_add_test(core_posix_file_test core/posix_file_test.cpp LABELS threads)
