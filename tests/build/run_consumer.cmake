# Builds and runs one consumer project from scratch; called by CTest (see CMakeLists.txt here).
#
#   cmake -DMODE=find_package|add_subdirectory|meson -DSOURCE_DIR=<pickscore checkout>
#         -DWORK_DIR=<scratch dir, wiped first> [-DBUILD_DIR=<pickscore build dir to install from>]
#         [-DGENERATOR=Ninja] [-DMAKE_PROGRAM=...] [-DCXX_COMPILER=...] [-DMESON=meson]
#         [-DWANT_VERSION=x.y.z] -P run_consumer.cmake
#
# find_package:     cmake --install BUILD_DIR into WORK_DIR/prefix, then build find_package/ against it.
# add_subdirectory: build add_subdirectory/, which adds SOURCE_DIR as a subdirectory.
# meson:            copy meson_consumer/ and consumer.cpp to WORK_DIR/src, link
#                   WORK_DIR/src/subprojects/pickscore to SOURCE_DIR, meson setup + compile.
# Each mode then runs the program it built, which checks its own results.
cmake_minimum_required(VERSION 3.22)

foreach(var IN ITEMS MODE SOURCE_DIR WORK_DIR)
    if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
        message(FATAL_ERROR "run_consumer.cmake: -D${var}=... is required")
    endif()
endforeach()
set(here "${CMAKE_CURRENT_LIST_DIR}")
if(NOT GENERATOR)
    set(GENERATOR Ninja)
endif()

# Runs a command; on failure prints what it printed and stops.
function(step what)
    message(STATUS "${MODE}: ${what}")
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "${MODE}: ${what} failed (${rc}):\n  ${ARGN}\n${out}")
    endif()
    set(step_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

set(cmake_configure_args -G "${GENERATOR}" -DCMAKE_BUILD_TYPE=Release)
if(MAKE_PROGRAM)
    list(APPEND cmake_configure_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
if(CXX_COMPILER)
    list(APPEND cmake_configure_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()

if(MODE STREQUAL "find_package")
    if(NOT BUILD_DIR OR NOT WANT_VERSION)
        message(FATAL_ERROR "run_consumer.cmake: find_package needs -DBUILD_DIR and -DWANT_VERSION")
    endif()
    set(prefix "${WORK_DIR}/prefix")
    step("install into ${prefix}" "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}")
    # The installed package holds the headers and the CMake package files.
    foreach(f IN ITEMS include/pickscore/core.hpp include/pickscore/ops/gemm.hpp)
        if(NOT EXISTS "${prefix}/${f}")
            message(FATAL_ERROR "find_package: ${f} was not installed")
        endif()
    endforeach()
    file(GLOB_RECURSE config_files "${prefix}/*/pickscoreConfig.cmake" "${prefix}/*/pickscoreConfigVersion.cmake"
         "${prefix}/*/pickscoreTargets.cmake")
    list(LENGTH config_files n_config)
    if(NOT n_config EQUAL 3)
        message(FATAL_ERROR "find_package: expected pickscoreConfig, -ConfigVersion and -Targets.cmake, found: ${config_files}")
    endif()
    # The only program installed is the command-line tool.
    file(GLOB installed_programs RELATIVE "${prefix}/bin" "${prefix}/bin/*")
    list(REMOVE_ITEM installed_programs pickscore)
    if(installed_programs)
        message(FATAL_ERROR "find_package: programs other than pickscore were installed: ${installed_programs}")
    endif()
    step("configure" "${CMAKE_COMMAND}" -S "${here}/find_package" -B "${WORK_DIR}/build" ${cmake_configure_args}
         "-DCMAKE_PREFIX_PATH=${prefix}" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF "-DPICKSCORE_WANT_VERSION=${WANT_VERSION}")
    # It must have used the installed package, not a build tree or a system copy.
    file(STRINGS "${WORK_DIR}/build/CMakeCache.txt" found_dir REGEX "^pickscore_DIR:")
    string(REGEX REPLACE "^pickscore_DIR:[A-Z]+=" "" found_dir "${found_dir}")
    file(REAL_PATH "${found_dir}" found_dir)
    file(REAL_PATH "${prefix}" real_prefix)
    string(FIND "${found_dir}" "${real_prefix}/" at)
    if(NOT at EQUAL 0)
        message(FATAL_ERROR "find_package: pickscore_DIR is ${found_dir}, not inside ${real_prefix}")
    endif()
    step("build" "${CMAKE_COMMAND}" --build "${WORK_DIR}/build")
    set(app "${WORK_DIR}/build/app")
    # An installed pickscore::collect must have given the consumer its program.
    file(GLOB_RECURSE targets_file "${prefix}/*/pickscoreTargets.cmake")
    file(READ "${targets_file}" targets_text)
    string(FIND "${targets_text}" "pickscore::collect" has_collect)
    if(NOT has_collect EQUAL -1 AND NOT EXISTS "${WORK_DIR}/build/app_collect")
        message(FATAL_ERROR "find_package: pickscore::collect is installed but the consumer did not build app_collect")
    endif()
elseif(MODE STREQUAL "add_subdirectory")
    step("configure" "${CMAKE_COMMAND}" -S "${here}/add_subdirectory" -B "${WORK_DIR}/build" ${cmake_configure_args}
         "-DPICKSCORE_SOURCE_DIR=${SOURCE_DIR}")
    step("build" "${CMAKE_COMMAND}" --build "${WORK_DIR}/build")
    set(app "${WORK_DIR}/build/app")
elseif(MODE STREQUAL "meson")
    if(NOT MESON)
        set(MESON meson)
    endif()
    set(src "${WORK_DIR}/src")
    file(COPY "${here}/meson_consumer/meson.build" "${here}/consumer.cpp" DESTINATION "${src}")
    file(MAKE_DIRECTORY "${src}/subprojects")
    file(CREATE_LINK "${SOURCE_DIR}" "${src}/subprojects/pickscore" SYMBOLIC)
    set(env "${CMAKE_COMMAND}" -E env)
    if(CXX_COMPILER)
        list(APPEND env "CXX=${CXX_COMPILER}")
    endif()
    # --force-fallback-for: use the subproject even if a pickscore is installed on the system.
    step("meson setup" ${env} "${MESON}" setup --buildtype=release --force-fallback-for=pickscore
         "${WORK_DIR}/build" "${src}")
    step("meson compile" "${MESON}" compile -C "${WORK_DIR}/build")
    set(app "${WORK_DIR}/build/app")
else()
    message(FATAL_ERROR "run_consumer.cmake: unknown MODE '${MODE}'")
endif()

step("run ${app}" "${app}")
message(STATUS "${MODE}: ${step_output}")
if(MODE STREQUAL "find_package" AND EXISTS "${WORK_DIR}/build/app_collect")
    file(REMOVE "${WORK_DIR}/collect.db" "${WORK_DIR}/collect.db-wal" "${WORK_DIR}/collect.db-shm")
    step("run app_collect" "${WORK_DIR}/build/app_collect" "${WORK_DIR}/collect.db")
    message(STATUS "${MODE}: ${step_output}")
endif()
