# dynamoe: the two commands a new user needs are `make demo` and `make test`.
BUILD    ?= build
BENCH_ARGS ?= --sections all
JOBS     ?= $(shell nproc)
DYNAMOE  := $(BUILD)/dynamoe
DEMO_CFG ?= configs/demo.yaml
DEMO_RUN ?= demo

FUZZ_BUILD   ?= build-fuzz
FUZZ_RUNS    ?= 1000000
FUZZ_TARGETS ?= all

.PHONY: all deps build test demo bench fuzz clean

all: build

## deps: install the Debian packages dynamoe needs (idempotent)
deps:
	@bash scripts/install-deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

## build: configure and compile the library, the CLI and the tests
build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

## test: build, then run every test through CTest
test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 1200

## demo: fetch Fashion-MNIST, train the demo model, evaluate its checkpoint
demo: build
	$(DYNAMOE) data fetch fashion-mnist
	$(DYNAMOE) train --config $(DEMO_CFG) --name $(DEMO_RUN) --overwrite
	$(DYNAMOE) eval --checkpoint runs/$(DEMO_RUN)

## bench: MoE layer and training speed side by side with PyTorch (bench-out/bench.txt)
bench: build
	$(DYNAMOE) data fetch fashion-mnist
	@mkdir -p bench-out
	bash -o pipefail -c 'OMP_WAIT_POLICY=PASSIVE $(DYNAMOE) bench $(BENCH_ARGS) | tee bench-out/bench.txt'

## fuzz: build the parsers' libFuzzer targets (clang-14, ASan, UBSan) in $(FUZZ_BUILD), run each FUZZ_RUNS times
fuzz:
	@bash scripts/install-deps.sh --fuzz
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++-14 -DDYNAMOE_FUZZ=ON
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_targets
	bash scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_RUNS) $(FUZZ_TARGETS)

clean:
	rm -rf $(BUILD)
