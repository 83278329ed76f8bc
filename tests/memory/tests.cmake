engram_add_test(memory_codec_test memory/codec_test.cpp)
engram_add_test(memory_embedding_table_test memory/embedding_table_test.cpp)
engram_add_test(memory_any_embedding_table_test memory/any_embedding_table_test.cpp)
# Memory tiers, the packed table format and prefetch (tests/memory/tiers/).
include(${CMAKE_CURRENT_LIST_DIR}/tiers/tests.cmake)
