# Tokenizer: normalisers, decoders, tokenizer.json reading and vocabulary compression, checked
# against Hugging Face tokenizers 0.23.2 (data in tests/data/tokenizer). Needs engram::tokenizer.
if(TARGET engram::tokenizer)
  engram_add_test(tokenizer_normalizer_test tokenizer/normalizer_test.cpp LIBS engram::tokenizer)
  engram_add_test(tokenizer_decoder_test tokenizer/decoder_test.cpp LIBS engram::tokenizer)
  engram_add_test(tokenizer_tokenizer_json_test tokenizer/tokenizer_json_test.cpp LIBS engram::tokenizer)
  engram_add_test(tokenizer_vocab_compressor_test tokenizer/vocab_compressor_test.cpp LIBS engram::tokenizer)
endif()
