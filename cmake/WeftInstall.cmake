# SPDX-License-Identifier: MIT
# Install rules: libraries, the public header, a pkg-config file and a CMake package.
#
#   find_package(weft 0.1 REQUIRED)
#   target_link_libraries(app PRIVATE weft::weft)          # shared library
#   target_link_libraries(app PRIVATE weft::weft_static)   # static library (pulls in pthread)
#
#   cc app.c $(pkg-config --cflags --libs weft)
#   cc -static app.c $(pkg-config --static --cflags --libs weft)
#
# Included from the top-level CMakeLists.txt after lib/ (install(TARGETS) may name targets of
# another directory since CMake 3.13).

include(CMakePackageConfigHelpers)

set(WEFT_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/weft"
  CACHE STRING "Where the CMake package of weft is installed (relative to the prefix)")
mark_as_advanced(WEFT_INSTALL_CMAKEDIR)

# The static library keeps the export name weft_static (its file is libweft.a beside libweft.so).
set_target_properties(weft PROPERTIES EXPORT_NAME weft)
set_target_properties(weft_static PROPERTIES EXPORT_NAME weft_static)

install(TARGETS weft weft_static
  EXPORT weftTargets
  RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}" COMPONENT runtime
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT runtime
    NAMELINK_COMPONENT development
  ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT development)

# The gdb commands (tools/weft-gdb.py: `weft tasks`, `weft bt ID`) beside the shared library, named
# as gdb's auto-loading looks for them: <the library's real file name>-gdb.py.
install(FILES "${PROJECT_SOURCE_DIR}/tools/weft-gdb.py"
  DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  RENAME "libweft.so.${PROJECT_VERSION}-gdb.py"
  COMPONENT runtime)

install(FILES "${PROJECT_SOURCE_DIR}/include/weft.h"
  DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}" COMPONENT development)

install(EXPORT weftTargets
  NAMESPACE weft::
  FILE weftTargets.cmake
  DESTINATION "${WEFT_INSTALL_CMAKEDIR}"
  COMPONENT development)

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/weftConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/weftConfig.cmake"
  INSTALL_DESTINATION "${WEFT_INSTALL_CMAKEDIR}")
# 0.x: only the same minor version is compatible; from 1.0 on, the same major version.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(WEFT_VERSION_COMPATIBILITY SameMinorVersion)
else()
  set(WEFT_VERSION_COMPATIBILITY SameMajorVersion)
endif()
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/weftConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY ${WEFT_VERSION_COMPATIBILITY})
install(FILES
  "${PROJECT_BINARY_DIR}/weftConfig.cmake"
  "${PROJECT_BINARY_DIR}/weftConfigVersion.cmake"
  DESTINATION "${WEFT_INSTALL_CMAKEDIR}" COMPONENT development)

# pkg-config: the prefix is found from where the .pc file lies (${pcfiledir}), so the file is right
# whatever prefix is chosen at install time (`cmake --install build --prefix DIR`, DESTDIR, a moved
# tree). Absolute CMAKE_INSTALL_*DIR values are written as they are.
set(WEFT_PC_DIR "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
if(IS_ABSOLUTE "${WEFT_PC_DIR}")
  set(WEFT_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH _up "/prefix/${WEFT_PC_DIR}" "/prefix")
  string(REGEX REPLACE "/$" "" _up "${_up}")
  set(WEFT_PC_PREFIX "\${pcfiledir}/${_up}")
endif()
foreach(dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(WEFT_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(WEFT_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
configure_file("${PROJECT_SOURCE_DIR}/cmake/weft.pc.in" "${PROJECT_BINARY_DIR}/weft.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/weft.pc" DESTINATION "${WEFT_PC_DIR}" COMPONENT development)
