# Two entry points: `make demo` and `make test`. Both set up .venv first (idempotent, fast when
# nothing changed: the stamp depends on pyproject.toml and constraints.txt).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SYSTAMP := $(VENV)/.system-libs
DEBS := xvfb xauth libgl1 libegl1 libglib2.0-0 libfontconfig1 libdbus-1-3 libxkbcommon-x11-0 \
        libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-render-util0 libxcb-shape0 \
        libxcb-xinerama0 libxcb-xkb1 libxcb-cursor0
DATA_DIR ?= $(abspath ../shared/data)

.PHONY: setup demo test system-libs clean

setup: $(STAMP) $(SYSTAMP)

$(SYSTAMP):
	@bash scripts/install-system-libs.sh $(DEBS)
	@mkdir -p $(VENV) && touch $@

$(STAMP): pyproject.toml constraints.txt scripts/setup-venv.sh
	@bash scripts/setup-venv.sh $(PYTHON) $(VENV)
	@touch $@

demo: setup
	$(VENV)/bin/automat run --sample srtio3 -o automat-demo --elements Sr,Ti,O

test: setup
	AUTOMAT_DATA_DIR=$${AUTOMAT_DATA_DIR:-$(DATA_DIR)} xvfb-run -a -s "-screen 0 1600x1200x24" \
		$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) automat-demo build *.egg-info src/*.egg-info
