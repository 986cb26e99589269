# One-command entry points. Each target creates or refreshes the local virtual environment
# (.venv) from the requirement files first, so it works on a fresh machine.
#   make demo   - segment the bundled demo data with the pretrained hybrid-UNet (outputs/inference)
#   make test   - the test suite (pytest)
#   make test-monailabel - a real MONAI Label server serving the bundle, over REST (own venv, ~8 GB, ~5 min)
#   make test-napari - the napari plugin in a real viewer on a virtual screen (own venv, Xvfb; a few minutes)
#   make test-reliability - the slow kill loop: real trainings killed (SIGKILL) at random moments and mid-save
#   make lint   - ruff, plus the model zoo's isort / black / flake8 settings (pyproject.toml, .flake8)
#   make onnx   - export models/model.pt to models/model.onnx for --backend onnxruntime (done on first use anyway)
PYTHON ?= python3
VENV ?= .venv
# Pinned so that CI and this machine take the local CPU build; override with make TORCH_SPEC="torch>=2.4".
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-reliability test-monailabel test-napari lint benchmark benchmark-quick demo-data onnx clean-venv

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

onnx: $(STAMP)
	$(BIN)/python -m scripts.networks.onnx_export

demo-data: $(STAMP)
	$(BIN)/python -m scripts.simulate --out docs/demo_data --num 3 --seed 7 --size 128 --dtype uint16 --overwrite

clean-venv:
	rm -rf $(VENV)

# MONAI Label in a virtual environment of its own: monailabel 0.8.5 needs numpy < 2, pydicom < 3 and torchvision,
# which exists here only beside torch 2.14.1 (why each pin: requirements-monailabel.txt).
MLABEL_VENV ?= .venv-monailabel
MLABEL_BIN := $(MLABEL_VENV)/bin
MLABEL_STAMP := $(MLABEL_VENV)/.installed

$(MLABEL_STAMP): requirements-monailabel.txt
	@echo "== [1/5] $(MLABEL_VENV): a venv of its own for MONAI Label"
	test -x $(MLABEL_BIN)/python || $(PYTHON) -m venv $(MLABEL_VENV)
	@echo "== [2/5] torch, torchvision, numpy, setuptools first (torch ~5.5 GB, from the local package files)"
	$(MLABEL_BIN)/python -m pip install --quiet $$(grep -E '^(torch|torchvision|numpy|setuptools)[=<>]' requirements-monailabel.txt)
	@echo "== [3/5] sam2 (a requirement of monailabel 0.8.5, source only): pure-Python build"
	SAM2_BUILD_CUDA=0 $(MLABEL_BIN)/python -m pip install --quiet --no-build-isolation $$(grep -E '^sam2==' requirements-monailabel.txt)
	@echo "== [4/5] monailabel, its pinned server stack, the bundle's requirements"
	$(MLABEL_BIN)/python -m pip install --quiet -r requirements-monailabel.txt
	@echo "== [5/5] pip check; versions in $(MLABEL_VENV)/versions.txt"
	$(MLABEL_BIN)/python -m pip check
	$(MLABEL_BIN)/python -m pip freeze > $(MLABEL_VENV)/versions.txt
	touch $(MLABEL_STAMP)

test-monailabel: $(MLABEL_STAMP)
	@echo "== a real MONAI Label server on 127.0.0.1: /info/, /infer/, /train/ (a few minutes)"
	HSRS_BUNDLE=$(CURDIR) $(MLABEL_BIN)/python -m pytest -q -p no:cacheprovider tests/test_monailabel_server.py

# The napari plugin (scripts/napari, docs/napari.md) in a virtual environment of its own: napari, a Qt binding and
# pytest-qt never enter .venv. vispy needs an OpenGL context, which Qt's offscreen platform lacks: the tests run in
# a real viewer on a virtual screen (Debian's xvfb, and the xcb libraries the Qt wheel loads, installed when missing).
NAPARI_VENV ?= .venv-napari
NAPARI_BIN := $(NAPARI_VENV)/bin
NAPARI_STAMP := $(NAPARI_VENV)/.installed
NAPARI_APT := xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 libxcb-render-util0 \
	libxkbcommon-x11-0 libxcb-randr0 libxcb-xkb1 libxcb-shape0 libxcb-xfixes0 libgl1 libegl1 libfontconfig1 libdbus-1-3

$(NAPARI_STAMP): requirements.txt requirements-napari.txt pyproject.toml
	@echo "== [1/4] $(NAPARI_VENV): a venv of its own for napari, $(TORCH_SPEC) first"
	test -x $(NAPARI_BIN)/python || $(PYTHON) -m venv $(NAPARI_VENV)
	$(NAPARI_BIN)/python -m pip install --quiet --upgrade pip
	$(NAPARI_BIN)/python -m pip install --progress-bar off "$(TORCH_SPEC)"
	@echo "== [2/4] requirements.txt + requirements-napari.txt (napari, PyQt5, pytest-qt, onnxruntime)"
	$(NAPARI_BIN)/python -m pip install --progress-bar off -r requirements.txt -r requirements-napari.txt
	@echo "== [3/4] the plugin's manifest registered (entry point napari.manifest; editable, no dependencies)"
	$(NAPARI_BIN)/python -m pip install --progress-bar off --no-deps -e .
	@echo "== [4/4] pip check; versions in $(NAPARI_VENV)/versions.txt"
	$(NAPARI_BIN)/python -m pip check
	$(NAPARI_BIN)/python -m pip freeze > $(NAPARI_VENV)/versions.txt
	touch $(NAPARI_STAMP)

test-napari: $(NAPARI_STAMP)
	@command -v xvfb-run >/dev/null && ldconfig -p | grep -q libxcb-icccm.so.4 || \
		{ echo "== installing Xvfb and the xcb libraries (Debian: $(NAPARI_APT))"; \
		  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(NAPARI_APT) >/dev/null; }
	@echo "== the plugin in a real napari viewer on a virtual screen (xvfb-run): reader, writer, widgets, timing"
	xvfb-run -a -s "-screen 0 1600x1000x24" \
		$(NAPARI_BIN)/python -m pytest -q -p no:cacheprovider -o addopts="-ra --strict-markers" tests/napari
