# A newcomer's three commands: make install, make test, make demo.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-slow demo lint bench clean

install: $(STAMP)

# Reinstall when the package's declared dependencies change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow

# The main job: Fashion-MNIST (Debian package or download), a CIFAR-style ResNet, the test accuracy.
demo: install
	./scripts/get-fashion-mnist.sh $(BIN)/resnetlab
	$(BIN)/resnetlab train fashion_mnist_fast

bench: install
	$(BIN)/python benchmarks/data_speed.py
	$(BIN)/python benchmarks/train_speed.py

lint: install
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
