# Building the vocabulary compression table (needs engram::tokenizer).
if(TARGET engram::tokenizer)
  engram_add_bench(tokenizer_vocab_compressor_bench tokenizer/vocab_compressor_bench.cpp LIBS engram::tokenizer)
endif()
