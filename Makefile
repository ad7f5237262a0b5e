# The two commands a newcomer types (README): `make run` and `make test`.
BUILD ?= build
JOBS ?= $(shell nproc)
CONFIG ?= configs/quickstart.yaml

.PHONY: deps build run test bench fuzz clean

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja: CMakeLists.txt | deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# `make run` compiles only the library and ikv-eval; `make test` builds the rest (tests, benchmarks).
run: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS) --target ikv-eval
	$(BUILD)/ikv-eval run $(CONFIG)

test: build
	cd $(BUILD) && ctest --output-on-failure --timeout 900

bench: build
	$(BUILD)/ikv-bench all

fuzz: deps
	scripts/fuzz.sh 60

clean:
	rm -rf $(BUILD)
