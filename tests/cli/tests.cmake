# End-to-end tests of the `engram` command-line tool against the oracle's goldens.
if(TARGET engram_cli)
  engram_add_test(cli_test cli/cli_test.cpp LIBS engram::tokenizer)
  target_compile_definitions(cli_test PRIVATE ENGRAM_CLI_PATH="$<TARGET_FILE:engram_cli>")
  add_dependencies(cli_test engram_cli)
  # info, hash and forward --model on V4.1 directories as released.
  engram_add_test(model_cli_test cli/model_cli_test.cpp)
  target_compile_definitions(model_cli_test PRIVATE ENGRAM_CLI_PATH="$<TARGET_FILE:engram_cli>")
  add_dependencies(model_cli_test engram_cli)
  # pack, forward --table, bench-offload (the memory-tier commands).
  engram_add_test(tier_cli_test cli/tier_cli_test.cpp)
  target_compile_definitions(tier_cli_test PRIVATE ENGRAM_CLI_PATH="$<TARGET_FILE:engram_cli>")
  add_dependencies(tier_cli_test engram_cli)
  # push and forward --table memcached:// against a loopback pool (skips without memcached).
  engram_add_test(remote_cli_test cli/remote_cli_test.cpp)
  if(TARGET engram::memcached)
    target_compile_definitions(remote_cli_test PRIVATE ENGRAM_HAVE_MEMCACHED=1)
  endif()
  target_compile_definitions(remote_cli_test PRIVATE ENGRAM_CLI_PATH="$<TARGET_FILE:engram_cli>")
  add_dependencies(remote_cli_test engram_cli)
endif()
