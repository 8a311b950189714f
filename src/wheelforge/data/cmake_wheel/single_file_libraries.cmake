# wheelforge (cmake build kind): every shared library of the project is installed as ONE file.
#
# Passed as -DCMAKE_PROJECT_INCLUDE=<this file>; it runs right after the first project() call.
# A library with VERSION/SOVERSION installs as libX.so.M.N.P plus the symlinks libX.so.M and
# libX.so; a wheel is a zip, which stores each symlink as a full copy of the library (seen in
# the stock llama-cpp-python wheel: libggml-cuda.so up to six times).  Once the top-level
# CMakeLists.txt has been read (every target exists, nothing generated yet), this unsets both
# properties on every shared and module library: each installs as libX.so with SONAME libX.so,
# the name the programs then record as NEEDED.  Install rules read these properties when the
# build system is generated, so changing them after install(TARGETS ...) takes effect.
# cmake_language(DEFER) needs CMake >= 3.19.
include_guard(GLOBAL)
cmake_minimum_required(VERSION 3.19)

function(_wheelforge_targets_under dir out)
    get_property(found DIRECTORY "${dir}" PROPERTY BUILDSYSTEM_TARGETS)
    get_property(subdirs DIRECTORY "${dir}" PROPERTY SUBDIRECTORIES)
    foreach(sub IN LISTS subdirs)
        _wheelforge_targets_under("${sub}" more)
        list(APPEND found ${more})
    endforeach()
    set(${out} ${found} PARENT_SCOPE)
endfunction()

function(_wheelforge_single_file_libraries)
    _wheelforge_targets_under("${CMAKE_SOURCE_DIR}" targets)
    set(changed "")
    foreach(target IN LISTS targets)
        get_target_property(type ${target} TYPE)
        if(type STREQUAL "SHARED_LIBRARY" OR type STREQUAL "MODULE_LIBRARY")
            set_property(TARGET ${target} PROPERTY VERSION)
            set_property(TARGET ${target} PROPERTY SOVERSION)
            list(APPEND changed ${target})
        endif()
    endforeach()
    message(STATUS "wheelforge: one file per shared library (VERSION/SOVERSION unset): ${changed}")
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _wheelforge_single_file_libraries)
