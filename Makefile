# One-command entry points. Each target creates or refreshes the local virtual environment
# (.venv) from the requirement files first, so it works on a fresh machine.
#   make demo   - segment the bundled demo data with the pretrained hybrid-UNet (outputs/inference)
#   make test   - the test suite (pytest)
#   make test-reliability - the slow kill loop: real trainings killed (SIGKILL) at random moments and mid-save
#   make lint   - ruff, plus the model zoo's isort / black / flake8 settings (pyproject.toml, .flake8)
PYTHON ?= python3
VENV ?= .venv
# Pinned so that CI and this machine take the local CPU build; override with make TORCH_SPEC="torch>=2.4".
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-reliability lint benchmark benchmark-quick demo-data clean-venv

$(STAMP): requirements.txt requirements-dev.txt
	@echo "== setting up $(VENV): Python venv, $(TORCH_SPEC), then requirements.txt + requirements-dev.txt (a few minutes the first time)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "== installing $(TORCH_SPEC)"
	$(BIN)/python -m pip install --progress-bar off "$(TORCH_SPEC)"
	@echo "== installing requirements.txt requirements-dev.txt"
	$(BIN)/python -m pip install --progress-bar off -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip freeze > $(VENV)/versions.txt
	touch $(STAMP)
	@echo "== $(VENV) ready (versions in $(VENV)/versions.txt)"

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m monai.bundle run --config_file configs/inference.yaml --meta_file configs/metadata.json --logging_file configs/logging.conf
	@echo "label maps, overlays and summary.csv are in outputs/inference/"

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-reliability: $(STAMP)
	$(BIN)/python -m pytest -q -m reliability tests/test_reliability.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/isort --check-only --diff .
	$(BIN)/black --skip-magic-trailing-comma --check .
	$(BIN)/flake8 --count --statistics .

benchmark: $(STAMP)
	$(BIN)/python -m scripts.benchmark

benchmark-quick: $(STAMP)
	$(BIN)/python -m scripts.benchmark --quick

demo-data: $(STAMP)
	$(BIN)/python -m scripts.simulate --out docs/demo_data --num 3 --seed 7 --size 128 --dtype uint16 --overwrite

clean-venv:
	rm -rf $(VENV)
