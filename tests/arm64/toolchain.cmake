# tests/arm64/toolchain.cmake — cross-compiling n3 for aarch64 with Debian's cross toolchain
# (crossbuild-essential-arm64) against the sysroot that tests/arm64/sysroot.sh unpacks.
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=tests/arm64/toolchain.cmake \
#         -DN3_ARM64_SYSROOT=/path/to/sysroot -DN3_WITH_TORCH=OFF
# `make cross-arm64` does this.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

if(NOT N3_ARM64_SYSROOT)
  message(FATAL_ERROR "set N3_ARM64_SYSROOT to the folder tests/arm64/sysroot.sh made")
endif()
set(N3_ARM64_SYSROOT "${N3_ARM64_SYSROOT}" CACHE PATH "arm64 libraries (tests/arm64/sysroot.sh)")
# Passed on to try_compile projects, which read this file again.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES N3_ARM64_SYSROOT)

# Libraries and headers from the sysroot (and the cross toolchain's own), programs from the host.
set(CMAKE_FIND_ROOT_PATH "${N3_ARM64_SYSROOT}" /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# pkg-config looks only at the sysroot's .pc files and prefixes their paths with it.
set(ENV{PKG_CONFIG_LIBDIR}
  "${N3_ARM64_SYSROOT}/usr/lib/aarch64-linux-gnu/pkgconfig:${N3_ARM64_SYSROOT}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "${N3_ARM64_SYSROOT}")
set(ENV{PKG_CONFIG_PATH} "")

# Debian's multiarch headers (openssl/opensslconf.h, ...) live in usr/include/aarch64-linux-gnu.
string(APPEND CMAKE_C_FLAGS_INIT " -isystem ${N3_ARM64_SYSROOT}/usr/include/aarch64-linux-gnu")
string(APPEND CMAKE_CXX_FLAGS_INIT " -isystem ${N3_ARM64_SYSROOT}/usr/include/aarch64-linux-gnu")

# The sysroot's shared libraries need each other at link time.
# (A few of libtorch's, gloo and HDF4 among them, live in usr/lib rather than the multiarch folder.)
set(_n3_libdirs "${N3_ARM64_SYSROOT}/usr/lib/aarch64-linux-gnu" "${N3_ARM64_SYSROOT}/lib/aarch64-linux-gnu"
  "${N3_ARM64_SYSROOT}/usr/lib")
foreach(d ${_n3_libdirs})
  string(APPEND CMAKE_EXE_LINKER_FLAGS_INIT " -Wl,-rpath-link,${d}")
  string(APPEND CMAKE_SHARED_LINKER_FLAGS_INIT " -Wl,-rpath-link,${d}")
endforeach()

# Binaries and tests run under qemu-user: ctest and the CLI tests start them through it.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64-static -L /usr/aarch64-linux-gnu
  -E "LD_LIBRARY_PATH=${N3_ARM64_SYSROOT}/usr/lib/aarch64-linux-gnu:${N3_ARM64_SYSROOT}/lib/aarch64-linux-gnu:${N3_ARM64_SYSROOT}/usr/lib")
