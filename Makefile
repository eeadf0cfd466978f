# n3 — thin wrapper around CMake.  `make test` and `make demo` work on a fresh Debian 12 machine.
#
#   make demo      deps + build + a 5-member federation on loopback (examples/quickstart.sh)
#   make deps      install the Debian packages n3 needs (skips what is present)
#   make build     configure and build everything into build/
#   make test      deps + build + the whole test suite (ctest) + a short fuzz run when clang is present
#   make bench     run the benchmarks under bench/ (ratios against peers and physical limits)
#   make fuzz      build the libFuzzer targets with clang and run each for FUZZ_SECONDS from its
#                  corpus (tests/fuzz/corpus/), printing executions, coverage and crashes
#   make fuzz-long the same for FUZZ_SECONDS (600 here) per target; make fuzz-merge re-minimises
#                  the corpus with what the runs found
#   make test-sanitize  the whole ctest suite built with ASan+UBSan in build-sanitize/
#   make man       check that every man page renders without warnings
#   make format    apply .clang-format to every C++ file; format-check fails on any difference
#   make install   install binaries, man pages and completions (PREFIX, DESTDIR)
#   make cross-arm64  cross-build every tool without libtorch for aarch64 into build-arm64/
#   make test-arm64   cross-build, then run the unit and CLI tests under qemu-user, and a round
#                  whose records cross between the two architectures (tests/arm64/)
#   make footprint binary sizes, shared libraries, start-up and peak memory of a node without libtorch
#   make chaos     a 20-round cron/spool federation under seeded SIGKILLs, checked against an
#                  undisturbed run (examples/chaos.sh; results in build/chaos-out)
#   make soak      500 rounds of a small federation through a relay, memory and descriptors of
#                  every process sampled each round (examples/chaos.sh --soak; build/soak-out)
#   make byzantine 2 of 10 members sign-flipped or scaled x10: fedavg, median, trimmed-mean,
#                  krum on Fashion-MNIST (examples/byzantine.sh; build/byzantine-out)

PREFIX      ?= /usr/local
DESTDIR     ?=
BUILD       ?= build
BUILD_TYPE  ?= RelWithDebInfo
JOBS        ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 15
CMAKE_FLAGS ?=
# n3-train and n3-eval need libtorch; `make deps` installs it, so a missing one is an error here
# (WITH_TORCH=OFF builds every other tool, as for a relay or merge node without libtorch).
WITH_TORCH  ?= ON

# Everything n3 needs, from Debian 12's own archive.
DEB_BUILD   = build-essential cmake ninja-build pkg-config git
DEB_LIBS    = libsodium-dev libzstd-dev libzmq3-dev cppzmq-dev libyaml-cpp-dev catch2 \
              libcli11-dev libisal-dev nlohmann-json3-dev libtorch-dev libopenblas0-pthread \
              zlib1g-dev libssl-dev libsentencepiece-dev
DEB_DATA    = dataset-fashion-mnist bible-kjv
DEB_TESTS   = python3 python3-numpy python3-torch python3-zmq iproute2 clang libclang-rt-14-dev \
              groff-base man-db zstd bc clang-format time slurm-wlm munge
DEB_BENCH   = age par2 socat hyperfine gnuplot-nox
DEB_ALL     = $(DEB_BUILD) $(DEB_LIBS) $(DEB_DATA) $(DEB_TESTS) $(DEB_BENCH)
# The cross toolchain and emulator; the arm64 libraries are unpacked by tests/arm64/sysroot.sh.
DEB_ARM64   = crossbuild-essential-arm64 qemu-user-static
ARM64_BUILD   ?= $(BUILD)-arm64
ARM64_SYSROOT ?= $(CURDIR)/$(BUILD)-arm64-sysroot
# n3-train and n3-eval for arm64, against Debian's arm64 libtorch (the edge profile above has none).
ARM64_TORCH_BUILD ?= $(BUILD)-arm64-torch

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps build test ctest bench fuzz fuzz-build fuzz-long fuzz-merge test-sanitize fuzz-smoke man format \
	format-check install uninstall clean demo deps-arm64 cross-arm64 test-arm64 footprint chaos soak byzantine

DEMO_OUT ?= demo-out

all: build

# $(call apt_install,PACKAGES): install those not installed yet.
define apt_install
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make: installing:$$missing"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	else echo "make: all Debian packages present"; fi
endef

deps-arm64: deps
	$(call apt_install,$(DEB_ARM64))
	$(SUDO) bash tests/arm64/sysroot.sh --torch $(ARM64_SYSROOT)

$(ARM64_BUILD)/build.ninja:
	cmake -S . -B $(ARM64_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DN3_WERROR=ON -DN3_WITH_TORCH=OFF \
	  -DCMAKE_TOOLCHAIN_FILE=$(CURDIR)/tests/arm64/toolchain.cmake -DN3_ARM64_SYSROOT=$(ARM64_SYSROOT)

$(ARM64_TORCH_BUILD)/build.ninja:
	cmake -S . -B $(ARM64_TORCH_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DN3_WERROR=ON -DN3_WITH_TORCH=ON \
	  -DCMAKE_TOOLCHAIN_FILE=$(CURDIR)/tests/arm64/toolchain.cmake -DN3_ARM64_SYSROOT=$(ARM64_SYSROOT)

cross-arm64: deps-arm64
	$(MAKE) $(ARM64_BUILD)/build.ninja $(ARM64_TORCH_BUILD)/build.ninja
	cmake --build $(ARM64_BUILD) -j $(JOBS)
	cmake --build $(ARM64_TORCH_BUILD) -j $(JOBS) --target n3-train n3-eval n3-sentencepiece

# The unit and CLI tests of the arm64 build under qemu-user (tools run through the wrappers
# in $(ARM64_BUILD)/tools-emulated), then records crossing architectures (x86-64 build in $(BUILD)),
# with an update trained by the arm64 n3-train.
test-arm64: cross-arm64
	$(MAKE) build
	ctest --test-dir $(ARM64_BUILD) --output-on-failure -j $(JOBS)
	N3_TOOLS=$(CURDIR)/$(BUILD)/tools N3_ARM64_TOOLS=$(CURDIR)/$(ARM64_BUILD)/tools-emulated \
	  N3_ARM64_TRAIN_TOOLS=$(CURDIR)/$(ARM64_TORCH_BUILD)/tools-emulated \
	  N3_SRC=$(CURDIR) bash tests/arm64/cross-round.sh

deps:
	$(call apt_install,$(DEB_ALL))

# Binary sizes per node profile, shared libraries, start-up time and peak memory (bench/footprint.sh);
# the arm64 sizes too when make cross-arm64 ran.
footprint: build
	N3_BIN=$(CURDIR)/$(BUILD)/tools \
	  $$([ -x $(ARM64_BUILD)/tools/n3-send ] && echo N3_ARM64_BIN=$(CURDIR)/$(ARM64_BUILD)/tools) \
	  bash bench/footprint.sh

# The reliability runs of README's Reliability section: long (minutes to an hour), each ends
# with a summary line and exits 1 when a check fails. CHAOS_ARGS etc. add options.
CHAOS_ARGS     ?=
SOAK_ARGS      ?=
BYZANTINE_ARGS ?=
chaos: build
	N3_BIN=$(CURDIR)/$(BUILD)/tools bash examples/chaos.sh --rounds 20 $(CHAOS_ARGS) $(BUILD)/chaos-out

soak: build
	N3_BIN=$(CURDIR)/$(BUILD)/tools bash examples/chaos.sh --soak --rounds 500 --members 2 --limit 50 \
	  --eval-limit 500 $(SOAK_ARGS) $(BUILD)/soak-out

byzantine: build
	N3_BIN=$(CURDIR)/$(BUILD)/tools bash examples/byzantine.sh $(BYZANTINE_ARGS) $(BUILD)/byzantine-out

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DN3_WERROR=ON -DN3_WITH_TORCH=$(WITH_TORCH) $(CMAKE_FLAGS)

build: $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

ctest: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

test: deps
	$(MAKE) format-check
	$(MAKE) build
	$(MAKE) fuzz-smoke
	$(MAKE) ctest

bench: deps build
	@set -e; for b in bench/*.sh; do echo "== $$b"; N3_BIN=$(CURDIR)/$(BUILD)/tools bash $$b; done

# libFuzzer targets need clang; without it the smoke run is skipped with a note.
fuzz-smoke:
	@if command -v clang++ >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_SECONDS); \
	else echo "make: clang++ not found, fuzz smoke run skipped"; fi

# The libFuzzer build (clang, ASan+UBSan, no libtorch) and its targets.
fuzz-build:
	cmake -S . -B $(BUILD)-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DN3_FUZZ=ON -DN3_WITH_TORCH=OFF $(CMAKE_FLAGS)
	cmake --build $(BUILD)-fuzz -j $(JOBS) --target n3_fuzz_all

# Every target for FUZZ_SECONDS from its corpus (tests/fuzz/corpus/NAME), then the table
# (tests/fuzz/run.sh); FUZZ_RUNS=N stops each target at N executions instead.
fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh $(BUILD)-fuzz

# The long campaign, one target at a time: FUZZ_SECONDS per target, 600 unless given.
fuzz-long: fuzz-build
	FUZZ_SECONDS=$(if $(filter command line environment,$(origin FUZZ_SECONDS)),$(FUZZ_SECONDS),600) \
	  bash tests/fuzz/run.sh $(BUILD)-fuzz

# Re-minimises the checked-in corpus with what the last runs found (libFuzzer -merge=1).
fuzz-merge: fuzz-build
	bash tests/fuzz/run.sh --merge $(BUILD)-fuzz

# The whole suite under AddressSanitizer and UndefinedBehaviorSanitizer, in its own build dir.
# ASAN_OPTIONS and UBSAN_OPTIONS come from tests/sanitize.env (why each one: see that file).
test-sanitize:
	cmake -S . -B $(BUILD)-sanitize -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DN3_WERROR=ON \
	  -DN3_SANITIZE=ON -DN3_WITH_TORCH=$(WITH_TORCH) $(CMAKE_FLAGS)
	cmake --build $(BUILD)-sanitize -j $(JOBS)
	set -a && . tests/sanitize.env && set +a && \
	  ctest --test-dir $(BUILD)-sanitize --output-on-failure -j $(JOBS)

man:
	@set -e; for m in man/*.[157]; do \
	  out=$$(LC_ALL=C.UTF-8 MANWIDTH=80 groff -t -man -Tutf8 -ww -z $$m 2>&1); \
	  if [ -n "$$out" ]; then echo "$$m: $$out"; exit 1; fi; done; echo "man pages render cleanly"

CXX_SOURCES = { git ls-files --cached --others --exclude-standard -- '*.cpp' '*.hpp' 2>/dev/null || find lib tools tests bench -name '*.[ch]pp'; }

format:
	$(CXX_SOURCES) | xargs clang-format -i

format-check:
	@$(CXX_SOURCES) | xargs clang-format --dry-run -Werror && echo "format: every C++ file matches .clang-format"

install: build
	DESTDIR=$(DESTDIR) cmake --install $(BUILD) --prefix $(PREFIX)

demo: deps
	$(MAKE) build
	N3_BIN=$(CURDIR)/$(BUILD)/tools bash examples/quickstart.sh $(DEMO_OUT)

clean:
	rm -rf $(BUILD) $(BUILD)-fuzz $(BUILD)-sanitize $(ARM64_BUILD) $(ARM64_TORCH_BUILD)
