# Runs at every build (target moba_build_info): writes build_info.cpp with the source tree's git
# commit and dirty flag as they are when the binary is built, not when CMake was configured.
# configure_file rewrites the file only when its content changes, so an unchanged tree
# relinks nothing.
set(MOBA_BUILD_COMMIT "unknown")
set(MOBA_BUILD_DIRTY "false")
find_package(Git QUIET)
if(GIT_FOUND AND EXISTS "${SOURCE_DIR}/.git")
  execute_process(COMMAND "${GIT_EXECUTABLE}" rev-parse HEAD WORKING_DIRECTORY "${SOURCE_DIR}"
                  OUTPUT_VARIABLE _commit OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _rc)
  if(_rc EQUAL 0 AND _commit)
    set(MOBA_BUILD_COMMIT "${_commit}")
    # Tracked files that differ from HEAD (untracked files do not make a build dirty).
    execute_process(COMMAND "${GIT_EXECUTABLE}" status --porcelain --untracked-files=no
                    WORKING_DIRECTORY "${SOURCE_DIR}" OUTPUT_VARIABLE _status ERROR_QUIET)
    if(_status)
      set(MOBA_BUILD_DIRTY "true")
    endif()
  endif()
endif()
configure_file("${SOURCE_DIR}/experiments/build_info.cpp.in" "${OUTPUT}" @ONLY)
