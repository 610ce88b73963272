# Infrastructure checks, included by the main Makefile (`include mk/iac.mk`); also usable
# alone: make -f mk/iac.mk iac-check
#
#   make iac-venv   .venv-iac: checkov (requirements-iac.txt) and, apart from it in
#                   .venv-iac/tfcheck-lib, python-hcl2 for tools.tfcheck
#   make iac-check  terraform fmt -check (when terraform is on PATH), checkov, schema check
#
# checkov and python-hcl2 stay out of .venv: their dependencies conflict with ours (and with
# each other: both install a module named `hcl2`).
PYTHON ?= $(shell command -v python3.12 || ls /root/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null | head -n1 || echo python3.12)
IAC_VENV := .venv-iac
IAC_BIN := $(IAC_VENV)/bin
IAC_LIB := $(IAC_VENV)/tfcheck-lib
IAC_STAMP := $(IAC_VENV)/.installed
TF_DIR := terraform

.PHONY: iac-venv iac-check iac-fmt iac-checkov iac-schema

$(IAC_STAMP): requirements-iac.txt tools/tfcheck/requirements.txt
	rm -rf $(IAC_VENV)
	$(PYTHON) -m venv $(IAC_VENV)
	$(IAC_BIN)/pip install --quiet --upgrade pip
	$(IAC_BIN)/pip install --quiet -r requirements-iac.txt
	$(IAC_BIN)/pip install --quiet --target $(IAC_LIB) -r tools/tfcheck/requirements.txt
	touch $(IAC_STAMP)

iac-venv: $(IAC_STAMP)

iac-fmt:
	@if command -v terraform >/dev/null 2>&1; then \
		echo "terraform fmt -check -recursive $(TF_DIR)"; \
		TF_CLI_CONFIG_FILE=/dev/null terraform fmt -check -recursive -diff $(TF_DIR); \
	else \
		echo "note: terraform not on PATH, skipping 'terraform fmt -check' (checkov and tfcheck still run)"; \
	fi

iac-checkov: $(IAC_STAMP)
	$(IAC_BIN)/checkov --quiet --compact --skip-download --framework terraform \
		--directory $(TF_DIR)

iac-schema: $(IAC_STAMP)
	PYTHONPATH=$(IAC_LIB):. $(IAC_BIN)/python -m tools.tfcheck $(TF_DIR)

iac-check: iac-fmt iac-checkov iac-schema
