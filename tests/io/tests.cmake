engram_add_test(io_safetensors_test io/safetensors_test.cpp)
engram_add_test(io_config_test io/config_test.cpp)
