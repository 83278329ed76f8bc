# End-to-end tests of the `engram` command-line tool against the oracle's goldens.
if(TARGET engram_cli)
  engram_add_test(cli_test cli/cli_test.cpp LIBS engram::tokenizer)
  target_compile_definitions(cli_test PRIVATE ENGRAM_CLI_PATH="$<TARGET_FILE:engram_cli>")
  add_dependencies(cli_test engram_cli)
  # probe and bench --probe.
  engram_add_test(probe_cli_test cli/probe_cli_test.cpp)
  target_compile_definitions(probe_cli_test PRIVATE ENGRAM_CLI_PATH="$<TARGET_FILE:engram_cli>")
  add_dependencies(probe_cli_test engram_cli)
  # engram --help, every command's --help, unknown commands and options, the README's table.
  engram_add_test(help_cli_test cli/help_cli_test.cpp)
  target_compile_definitions(help_cli_test PRIVATE ENGRAM_CLI_PATH="$<TARGET_FILE:engram_cli>"
                                                   ENGRAM_README_PATH="${PROJECT_SOURCE_DIR}/README.md")
  add_dependencies(help_cli_test engram_cli)
  # demo on configs with fewer than three heads per order.
  engram_add_test(demo_cli_test cli/demo_cli_test.cpp)
  target_compile_definitions(demo_cli_test PRIVATE ENGRAM_CLI_PATH="$<TARGET_FILE:engram_cli>")
  add_dependencies(demo_cli_test engram_cli)
  # info, hash and forward --model on V4.1 directories as released.
  engram_add_test(model_cli_test cli/model_cli_test.cpp)
  target_compile_definitions(model_cli_test PRIVATE ENGRAM_CLI_PATH="$<TARGET_FILE:engram_cli>")
  add_dependencies(model_cli_test engram_cli)
  # pack, forward --table, bench-offload (the memory-tier commands).
  engram_add_test(tier_cli_test cli/tier_cli_test.cpp)
  if(TARGET engram::xxhash)  # reads the packed tables it writes (page checksums)
    target_link_libraries(tier_cli_test PRIVATE engram::xxhash)
  endif()
  target_compile_definitions(tier_cli_test PRIVATE ENGRAM_CLI_PATH="$<TARGET_FILE:engram_cli>")
  add_dependencies(tier_cli_test engram_cli)
  # push and forward --table memcached:// against a loopback pool (skips without memcached).
  engram_add_test(remote_cli_test cli/remote_cli_test.cpp)
  if(TARGET engram::memcached)
    target_compile_definitions(remote_cli_test PRIVATE ENGRAM_HAVE_MEMCACHED=1)
  endif()
  target_compile_definitions(remote_cli_test PRIVATE ENGRAM_CLI_PATH="$<TARGET_FILE:engram_cli>")
  add_dependencies(remote_cli_test engram_cli)
  # demo, bench and mini_model at small sizes: output shape, own checks, exit status.
  engram_add_test(cli_smoke_test cli/smoke_test.cpp)
  target_compile_definitions(cli_smoke_test PRIVATE ENGRAM_CLI_PATH="$<TARGET_FILE:engram_cli>")
  add_dependencies(cli_smoke_test engram_cli)
  if(TARGET mini_model)
    target_compile_definitions(cli_smoke_test PRIVATE ENGRAM_MINI_MODEL_PATH="$<TARGET_FILE:mini_model>")
    add_dependencies(cli_smoke_test mini_model)
  endif()
endif()
