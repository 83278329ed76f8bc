# The worked examples, run end to end at small sizes.
if(TARGET finetune)
  # finetune: Engram beats the frozen backbone on held-out text; same seed, same losses.
  engram_add_test(finetune_test example/finetune_test.cpp LIBS engram::tokenizer)
  target_compile_definitions(finetune_test PRIVATE ENGRAM_FINETUNE_PATH="$<TARGET_FILE:finetune>")
  add_dependencies(finetune_test finetune)
  if(TARGET engram_cli)  # its alias `engram train`
    target_compile_definitions(finetune_test PRIVATE ENGRAM_CLI_PATH="$<TARGET_FILE:engram_cli>")
    add_dependencies(finetune_test engram_cli)
  endif()
  find_package(PNG QUIET)  # as examples/CMakeLists.txt: finetune --plot is built with libpng
  if(PNG_FOUND)
    target_compile_definitions(finetune_test PRIVATE ENGRAM_FINETUNE_HAVE_PNG=1)
  endif()
endif()
