# SPDX-License-Identifier: MIT
# The reference generated from include/weft.h: `cmake --build BUILD --target weft_doc` writes
# BUILD/doc/html/index.html. Defined only where Doxygen is found (tools/setup installs it).
# Any warning fails the target (cmake/Doxyfile.in), and so does a public function whose comment
# does not say its codes, the threads that may call it and whether it suspends
# (cmake/check_header_docs.py, which also runs as the CTest test header_docs).

find_program(WEFT_DOXYGEN doxygen DOC "Doxygen, for the weft_doc target")
find_package(Python3 COMPONENTS Interpreter QUIET)

if(Python3_Interpreter_FOUND)
  set(WEFT_CHECK_HEADER_DOCS
    ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/cmake/check_header_docs.py
    ${PROJECT_SOURCE_DIR}/include/weft.h)
endif()

if(WEFT_DOXYGEN)
  set(WEFT_DOC_DIR "${PROJECT_BINARY_DIR}/doc")
  configure_file("${PROJECT_SOURCE_DIR}/cmake/Doxyfile.in" "${WEFT_DOC_DIR}/Doxyfile" @ONLY)
  add_custom_target(weft_doc
    ${WEFT_CHECK_HEADER_DOCS}
    COMMAND ${WEFT_DOXYGEN} "${WEFT_DOC_DIR}/Doxyfile"
    COMMAND ${CMAKE_COMMAND} -E echo "weft reference: ${WEFT_DOC_DIR}/html/index.html"
    WORKING_DIRECTORY "${WEFT_DOC_DIR}"
    COMMENT "Doxygen reference of include/weft.h"
    VERBATIM)
endif()
