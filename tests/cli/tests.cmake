# End-to-end tests of the `engram` command-line tool against the oracle's goldens.
if(TARGET engram_cli)
  engram_add_test(cli_test cli/cli_test.cpp LIBS engram::tokenizer)
  target_compile_definitions(cli_test PRIVATE ENGRAM_CLI_PATH="$<TARGET_FILE:engram_cli>")
  add_dependencies(cli_test engram_cli)
endif()
